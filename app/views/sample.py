"""Page 7: images drawn from the model by reverse diffusion with its own score (§A.2)."""

import numpy as np
import streamlit as st
import torch

from app import charts, components, loading
from dsm_core.analysis import iter_samples
from dsm_core.explore import logp_report
from dsm_core.images import tensor_to_pixels

RESULT = "sample_result"
METHODS = {
    "reverse_sde": "reverse diffusion (SDE)",
    "ode": "probability-flow ODE (deterministic)",
    "langevin": "annealed Langevin",
}

st.title("Sample")
st.markdown(
    "The gradient of the energy is a score, so the model is also a diffusion model: start from "
    "pure noise N(0, t_max I) and walk the noise level down while following ∇ log p_t "
    "(paper §A.2). Each sample is then scored by the energy, and its log p placed on the "
    "test-set histogram. A small model on a CPU makes textures rather than objects."
)

bundle = components.require_bundle()
model = bundle.model
heldout = components.heldout_or_warn(bundle)

cols = st.columns(4)
method = cols[0].selectbox("method", list(METHODS), format_func=METHODS.get, key="sample_method")
num_steps = cols[1].slider("steps", 10, 1000, 100, step=10, key="sample_steps")
num_samples = cols[2].slider("images", 1, 16, 8, key="sample_count")
seed = cols[3].number_input("seed", 0, 100_000, 0, key="sample_seed")
settings = (bundle.key, method, num_steps, num_samples, seed)

if st.button("Sample", key="sample_run", type="primary"):
    bar = st.progress(0.0, text="denoising steps")
    preview = st.empty()
    generator = torch.Generator().manual_seed(int(seed))
    every = max(1, num_steps // 20)
    last = None
    for item in iter_samples(
        model, num_samples, method=method, num_steps=num_steps, generator=generator
    ):
        last = item
        if item.step % every == 0 or item.step == item.total:
            bar.progress(item.step / item.total, text=f"step {item.step}/{item.total}")
            with preview.container():
                st.caption(f"noise variance t = {item.t:.3g}")
                row = st.columns(min(num_samples, 8))
                for column, sample in zip(row, item.images[:8], strict=False):
                    column.image(components.display_tensor(sample, 96), width=96)
    bar.empty()
    preview.empty()
    images = last.images
    logp = logp_report(model, images).logp_db if bundle.is_energy else None
    outside = int(((images < 0) | (images > 1)).flatten(1).any(dim=1).sum())
    st.session_state[RESULT] = (settings, tensor_to_pixels(images), logp, outside)

stored = st.session_state.get(RESULT)
if stored is None or stored[0] != settings:
    st.caption("Choose a method and press **Sample**.")
    st.stop()
_, pixels, logp, num_outside = stored
if num_outside:
    st.caption(
        f":orange[{num_outside} of {len(pixels)} samples have pixels outside [0, 1]] (shown "
        "clipped; scored as they are): an under-trained model's sampler can leave the image range."
    )
per_row = 8
for start in range(0, len(pixels), per_row):
    row = st.columns(per_row)
    for offset, column in enumerate(row[: len(pixels) - start]):
        i = start + offset
        caption = f"sample {i}" + ("" if logp is None else f" · {logp[i]:+.2f} dB/dim")
        with column:
            components.show_image(pixels[i], caption=caption, size=96)
if logp is not None and heldout is not None:
    markers = [
        charts.Marker(float(v), f"s{i}", charts.MARKER_COLORS[i % len(charts.MARKER_COLORS)])
        for i, v in enumerate(logp)
    ]
    st.plotly_chart(
        charts.logp_histogram(
            heldout.logp_db,
            loading.gumbel_fit(heldout.logp_db),
            markers=markers,
            title="log p of the samples among the test images",
        ),
        key="sample_histogram",
    )
    st.caption(
        f"Mean log p of the samples: {np.mean(logp):+.2f} dB/dim; of the test images: "
        f"{heldout.logp_db.mean():+.2f} dB/dim."
    )
