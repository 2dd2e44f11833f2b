"""Page 7: images drawn from the model by reverse diffusion with its own score (§A.2)."""

import numpy as np
import pandas as pd
import streamlit as st
import torch

from app import charts, components, loading
from dsm_core.analysis import iter_samples, outside_data_range, sampling_score_evaluations
from dsm_core.explore import logp_report
from dsm_core.images import tensor_to_pixels

LONG_RUN_S = 20.0  # warn before a run expected to take longer than this

RESULT = "sample_result"
METHODS = {  # the first is the default
    "ancestral": "reverse diffusion (SDE), ancestral steps",
    "reverse_sde": "reverse diffusion (SDE), Euler-Maruyama",
    "ode": "probability-flow ODE (deterministic)",
    "langevin": "annealed Langevin",
}

st.title("Sample")
st.markdown(
    "The gradient of the energy is a score, so the model is also a diffusion model: start from "
    "pure noise N(0, t_max I) and walk the noise level down while following ∇ log p_t "
    "(paper §A.2). Each sample is then scored by the energy, and its log p placed on the "
    "test-set histogram; the probability-flow ODE checks that one-shot value. A small model "
    "trained on a CPU is far from the paper's ImageNet model: compare its samples with the "
    "test images."
)

bundle = components.require_bundle()
model = bundle.model
heldout = components.heldout_or_warn(bundle)

cols = st.columns([1.6, 1, 1, 1])  # the method labels are long
method = cols[0].selectbox("method", list(METHODS), format_func=METHODS.get, key="sample_method")
num_steps = cols[1].slider("steps", 10, 1000, 100, step=10, key="sample_steps")
num_samples = cols[2].slider("images", 1, 16, 8, key="sample_count")
seed = cols[3].number_input("seed", 0, 100_000, 0, key="sample_seed")
settings = (bundle.key, method, num_steps, num_samples, seed)
evaluations = sampling_score_evaluations(method, num_steps)
seconds = evaluations * loading.seconds_per_score_evaluation(bundle, num_samples)
images_words = f"{num_samples} image{'s' * (num_samples != 1)}"
cost = (
    f"{evaluations:,} score evaluations of {images_words}, about {seconds:,.0f} s on this "
    "machine (timed once per model and batch)"
)
if seconds > LONG_RUN_S:
    st.warning(
        f"This run will take a while: {cost}."
        + (" Annealed Langevin makes 10 updates per noise level." if method == "langevin" else "")
    )
else:
    st.caption(cost + ".")

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
    st.session_state[RESULT] = (settings, images, logp)

stored = st.session_state.get(RESULT)
if stored is None or stored[0] != settings:
    st.caption("Choose a method and press **Sample**.")
    st.stop()
_, images, logp = stored
pixels = tensor_to_pixels(images)
outside = outside_data_range(images)
if outside.any():
    st.warning(
        f"{int(outside.sum())} of {len(pixels)} samples have pixels more than a grey level "
        "outside [0, 1] "
        f"({', '.join(f's{i}' for i in np.flatnonzero(outside))}; shown clipped, scored as they "
        "are): the model saw no data there, and its log p of them says little."
    )
per_row = 8
for start in range(0, len(pixels), per_row):
    row = st.columns(per_row)
    for offset, column in enumerate(row[: len(pixels) - start]):
        i = start + offset
        caption = f"s{i}" + ("" if logp is None else f" · {logp[i]:+.2f} dB/dim")
        caption += " · outside [0, 1]" if outside[i] else ""  # by more than a grey level
        with column:
            components.show_image(pixels[i], caption=caption, size=96)
actions = st.columns([2, 1, 1, 1, 2], vertical_alignment="bottom")
chosen = actions[0].selectbox(
    "sample", range(len(pixels)), format_func=lambda i: f"s{i}", key="sample_chosen"
)
with actions[1]:
    components.probe_button(pixels[chosen], f"sample s{chosen}", "Sample", "sample_probe")
with actions[2]:
    components.download_png(pixels, "samples.png", "sample_png", "PNG (all)")
if logp is not None:
    with actions[3]:
        table = pd.DataFrame(
            {"sample": [f"s{i}" for i in range(len(pixels))], "logp_db": logp, "outside": outside}
        )
        components.download_csv(table, "samples_logp.csv", "sample_csv", "log p (CSV)")
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
        f"Median log p of the samples: {np.median(logp):+.2f} dB/dim; mean of the test images: "
        f"{heldout.logp_db.mean():+.2f} dB/dim. The axis stays on the test set: a sample off it "
        "is drawn at the edge, dotted, with its value."
    )
if logp is not None:
    components.ode_check_panel(
        bundle, heldout, images, [f"s{i}" for i in range(len(pixels))], "sample"
    )
