"""Page 4: log p along the straight line between two images vs the chord (paper Fig. 12)."""

import pandas as pd
import streamlit as st

from app import charts, components, loading
from dsm_core.analysis import interpolation_finding, interpolation_logp_db
from dsm_core.explore import logp_report
from dsm_core.images import tensor_to_pixels

NUM_ALPHAS = 21

st.title("Interpolate")
st.markdown(
    "Blend two images, (1 − α)·x₀ + α·x₁, and follow log p along the way, against the **chord** "
    "(1 − α) log p(x₀) + α log p(x₁). **The paper** (§D.3, Fig. 12, on ImageNet64) finds that "
    "for medium- and high-probability pairs log p **drops sharply below the chord**, even for α "
    "close to 0 or 1 (the superposition of two natural images is not a natural image), while for "
    "low-probability pairs it rises slightly (the blend of two dense textures is a texture of "
    "lower contrast)."
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
finding = interpolation_finding(path, heldout.logp_db)
low_pair = finding.low_probability_pair
pair_words = (
    f"This pair is low-probability (test-set percentiles {finding.endpoint_percentiles[0]:.0f} "
    f"and {finding.endpoint_percentiles[1]:.0f}, both in the lowest third), so the paper expects "
    "a slight rise"
    if low_pair
    else f"This pair is medium/high-probability (test-set percentiles "
    f"{finding.endpoint_percentiles[0]:.0f} and {finding.endpoint_percentiles[1]:.0f}), so the "
    "paper expects a drop below the chord"
)
components.verdict(
    finding.agrees,
    f"{pair_words}; here the path lies on average "
    f"{abs(finding.mean_excess_db):.2f} dB/dim {'below' if finding.path_below else 'above'} the "
    "chord for 0 < α < 1.",
)


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
        if finding.max_excess_db <= 0:
            extreme = (
                f"The path lies below the chord at every 0 < α < 1; deepest drop "
                f"{finding.min_excess_db:+.2f} dB/dim at α = {finding.min_alpha:.2f}."
            )
        elif finding.min_excess_db >= 0:
            extreme = (
                f"The path lies above the chord at every 0 < α < 1; largest excess "
                f"{finding.max_excess_db:+.2f} dB/dim at α = {finding.max_alpha:.2f}."
            )
        else:
            extreme = (
                f"The path crosses the chord: from {finding.min_excess_db:+.2f} dB/dim "
                f"(α = {finding.min_alpha:.2f}) to {finding.max_excess_db:+.2f} "
                f"(α = {finding.max_alpha:.2f})."
            )
        st.caption(extreme)
        frame = tensor_to_pixels(blend[0])
        buttons = st.columns(2)
        with buttons[0]:
            components.probe_button(
                frame, f"blend alpha {alpha:.2f}", "Interpolate", "interp_probe"
            )
        with buttons[1]:
            components.download_png(frame, f"blend_alpha_{alpha:.2f}.png", "interp_png")
    st.plotly_chart(
        charts.interpolation_plot(alphas, path_db, chord_db, alpha, value), key="interp_plot"
    )
    table = pd.DataFrame({"alpha": alphas, "path_logp_db": path_db, "chord_logp_db": chord_db})
    components.download_csv(table, "interpolation.csv", "interp_csv", "figure data (CSV)")


blend_panel()
