"""Page 4: log p along the straight line between two images vs the chord (paper Fig. 12)."""

import numpy as np
import streamlit as st

from app import charts, components, loading
from dsm_core.analysis import interpolation_logp_db
from dsm_core.explore import logp_report

NUM_ALPHAS = 21

st.title("Interpolate")
st.markdown(
    "Blend two images, (1 − α)·x₀ + α·x₁, and follow log p along the way. If the density's "
    "support were convex, log p would stay near the **chord** between the end points; the paper "
    "(§D.3, Fig. 12) finds that it usually rises **above** it: averages of images are smoother, "
    "and smoother images are more probable."
)

bundle = components.require_bundle()
components.require_energy(bundle)
model = bundle.model
heldout = components.heldout_or_warn(bundle)
first = components.image_picker(bundle, heldout, "interp", label="x₀")
if heldout is None or heldout.images is None:
    st.info("The second image comes from the test set, which this model folder does not have.")
    st.stop()
if "interp_b" not in st.session_state:
    st.session_state["interp_b"] = (
        int(st.session_state[components.IMAGE_INDEX]) + heldout.num_images // 2
    ) % heldout.num_images
second_position = st.number_input(
    f"x₁: test image (0–{heldout.num_images - 1})",
    min_value=0,
    max_value=heldout.num_images - 1,
    step=1,
    key="interp_b",
)
second = components.with_digest(components.test_image(heldout, int(second_position)))
x0, x1 = first.tensor(), second.tensor()

store = loading.result_store()
key = ("interp", bundle.key, first.digest, second.digest, NUM_ALPHAS)
path = store.get(key)
if path is None:
    bar = st.progress(0.0, text="log p along the path")
    path = interpolation_logp_db(
        model, x0, x1, NUM_ALPHAS, progress=components.progress_callback(bar, "α values")
    )
    bar.empty()
    store.put(key, path)
alphas = path.alphas.numpy()
path_db = path.path_logp_db[0].numpy()
chord_db = path.chord_logp_db[0].numpy()


@st.fragment
def blend_panel() -> None:
    alpha = st.slider("α", 0.0, 1.0, 0.5, step=0.01, key="interp_alpha")
    blend = (1.0 - alpha) * x0 + alpha * x1
    value = float(logp_report(model, blend).logp_db[0])
    chord = (1.0 - alpha) * chord_db[0] + alpha * chord_db[-1]
    cols = st.columns([1, 1, 1, 2])
    with cols[0]:
        components.show_image(first.pixels, caption=f"x₀ ({path_db[0]:+.2f} dB/dim)", size=140)
    with cols[1]:
        st.image(
            components.display_tensor(blend[0], 140),
            caption=f"α = {alpha:.2f} ({value:+.2f} dB/dim)",
            width=140,
        )
    with cols[2]:
        components.show_image(second.pixels, caption=f"x₁ ({path_db[-1]:+.2f} dB/dim)", size=140)
    with cols[3]:
        st.metric(
            "log p of the blend [dB/dim]", f"{value:+.2f}", delta=f"{value - chord:+.2f} vs chord"
        )
        excess = float(np.max(path_db - chord_db))
        st.caption(
            f"Largest excess of the path over the chord: {excess:+.2f} dB/dim "
            f"(at α = {alphas[int(np.argmax(path_db - chord_db))]:.2f})."
        )
    st.plotly_chart(
        charts.interpolation_plot(alphas, path_db, chord_db, alpha, value), key="interp_plot"
    )


blend_panel()
