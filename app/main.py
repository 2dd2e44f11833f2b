"""DSM Explorer: how probable does a dual-score-matching energy model find an image, and why?

Router only: global switches (torch threads, Pillow's pixel limit, glibc's mmap threshold),
shared session state, the sidebar, and st.navigation over one page per file in app/views/. Run with
``streamlit run app/main.py``; the model is checkpoints/default/ unless DSM_MODEL names a folder
or a Hugging Face repo id (with DSM_MODEL_REVISION).
"""

import ctypes
import ctypes.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run app/main.py` puts only app/ on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from app import components, loading  # noqa: E402
from dsm_core.images import DEFAULT_MAX_PIXELS  # noqa: E402

# Global switches live here, not in dsm_core. One intra-op thread by default: the app's work is
# many small forward passes, sessions run in parallel threads of one process, and on a busy
# 2-core box a second OpenMP thread made one 32x32 forward pass ~100x slower (7 ms -> 0.9 s)
# through spin-waiting. DSM_TORCH_THREADS overrides it (shared by all sessions).
_threads = max(1, int(os.environ.get("DSM_TORCH_THREADS", "1") or 1))
if torch.get_num_threads() != _threads:
    torch.set_num_threads(_threads)
# Pillow warns above this many pixels and refuses at twice it (DecompressionBombError);
# dsm_core.images checks the same limit from the header before decoding anything.
Image.MAX_IMAGE_PIXELS = DEFAULT_MAX_PIXELS
# glibc: serve every allocation of 1 MiB or more with mmap, so a freed image buffer leaves the
# process. Each script run is a new thread; with glibc's per-thread arenas and its rising mmap
# threshold, freed decode buffers stayed resident (8 distinct 5000x5000 uploads, one thread
# each: +466 MB resident; with this: +97 MB, the decoded pixels actually kept).
_libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
if hasattr(_libc, "mallopt"):
    _libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD (malloc.h); fixed, no longer dynamic

st.set_page_config(
    page_title="DSM Explorer",
    page_icon=":material/blur_on:",
    layout="wide",
    initial_sidebar_state="expanded",
)
components.init_state()

PAGES = {
    "Explore": [
        st.Page(
            "views/testset.py",
            title="Explore the test set",
            icon=":material/bar_chart:",
            default=True,
        ),
        st.Page("views/probe.py", title="Probe an image", icon=":material/image_search:"),
    ],
    "Probes of the density": [
        st.Page("views/affine.py", title="Brightness & contrast", icon=":material/contrast:"),
        st.Page("views/interpolate.py", title="Interpolate", icon=":material/linear_scale:"),
        st.Page(
            "views/ascent.py", title="Gradient ascent / descent", icon=":material/trending_up:"
        ),
    ],
    "Estimators and sampling": [
        st.Page("views/estimators.py", title="Compare estimators", icon=":material/functions:"),
        st.Page("views/sample.py", title="Sample", icon=":material/auto_awesome:"),
        st.Page(
            "views/generalization.py", title="Generalization (Fig. 2)", icon=":material/join_inner:"
        ),
    ],
    "About": [
        st.Page("views/model.py", title="Model", icon=":material/settings:"),
        st.Page("views/units.py", title="What do these units mean?", icon=":material/straighten:"),
    ],
}
page = st.navigation(PAGES)

with st.sidebar:
    choice = components.current_choice()
    try:
        bundle = loading.get_bundle(choice)
        c, h, w = bundle.model.image_shape
        st.caption(f"**Model:** {bundle.kind} · {c}×{h}×{w} · {bundle.num_params:,} parameters")
        if bundle.metrics and bundle.metrics.get("provisional"):
            st.caption(":orange[provisional model: numbers are placeholders]")
    except Exception as exc:  # the page itself shows the full message
        st.caption(f":red[Model not loaded: {exc}]")
    st.caption(
        "Energy model U(x) = −log p(x) learned by *dual score matching* "
        "(Guth, Kadkhodaie & Simoncelli, 2025)."
    )

page.run()
