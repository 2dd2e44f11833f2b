"""Page 1: the distribution of log p over the held-out images, its Gumbel fit, and galleries."""

import numpy as np
import streamlit as st

from app import charts, components, loading
from dsm_core import units
from dsm_core.packaging import rank_indices

st.title("Explore the test set")
st.markdown(
    "Each held-out image gets a log probability from **one forward pass** of the energy network, "
    "log p(x) = −U(x), in **dB per dimension** (10·log₁₀ p(x) / d). The paper (§3.2, Fig. 3) finds "
    "that these values are *not* concentrated: they spread over tens of dB/dim, with a heavy tail "
    "of very probable images (smooth, low contrast), and the histogram is well fitted by a "
    "**Gumbel** distribution (red curve)."
)

bundle = components.require_bundle()
components.require_energy(bundle)
heldout = components.heldout_or_warn(bundle)
if heldout is None:
    st.stop()
logp = heldout.logp_db
gumbel = loading.gumbel_fit(logp)
d = bundle.model.d
spread_db = float(logp.max() - logp.min())

cols = st.columns(5)
cols[0].metric("held-out images", f"{logp.size:,}")
cols[1].metric(
    "entropy [dB/dim]",
    f"{-logp.mean():.2f}",
    help="−E[log p], the mean of −log p over the test set, estimates the differential entropy "
    "of the data (paper §3.2: −11.4 dB/dim for grayscale ImageNet64; negative because images "
    "fill a tiny part of the unit cube, whose uniform density has entropy 0).",
)
mean_energy = units.logp_db_to_energy_nats(float(logp.mean()), d)
bound = (bundle.metrics or {}).get("nll_bits_per_dim_dequantized")
cols[2].metric(
    "test NLL [bits/dim]",
    f"{units.discrete_nll_bits_per_dim(mean_energy, d):.3f}",
    help="Negative log-likelihood of the 8-bit images: continuous NLL + 8 bits (paper A.1)."
    + (
        f" The dequantized bound of the model card (the energy averaged over each pixel's "
        f"1/256 bin, a true upper bound) is {bound:.3f} bits/dim: quote that one when the data "
        "has exact repeats, as Fashion-MNIST's zero background."
        if bound is not None
        else ""
    ),
)
cols[3].metric(
    "Gumbel location [dB/dim]", f"{gumbel.loc:+.2f}", help="The mode of the fitted density."
)
cols[4].metric("Gumbel scale [dB/dim]", f"{gumbel.scale:.2f}")
st.caption(
    f"The test set spans {spread_db:.1f} dB/dim: the most probable image is "
    f"10^{d * spread_db / 10:,.0f} times more probable than the least (d = {d}). "
    f"Gumbel fit: Kolmogorov–Smirnov distance {gumbel.ks_statistic:.3f}; "
    f"a Normal fit would have mean {gumbel.normal_mean:.2f} and s.d. {gumbel.normal_sd:.2f} dB/dim "
    f"(mean NLL {gumbel.mean_nll:.3f} nats under the Gumbel vs {gumbel.normal_nll:.3f} under the "
    "Normal: lower is a better fit)."
)


@st.fragment
def histogram_panel() -> None:
    c1, c2, c3 = st.columns([1, 1, 2])
    log_y = c1.toggle("log-scale density", key="testset_log_y")
    show_normal = c2.toggle("show Normal fit", key="testset_normal")
    num_bins = c3.slider("bins", 10, 80, 30, key="testset_bins")
    figure = charts.logp_histogram(
        logp, gumbel, log_y=log_y, num_bins=num_bins, show_normal=show_normal
    )
    st.plotly_chart(figure, key="testset_histogram")


histogram_panel()

st.subheader("Which images are probable?")
if heldout.images is None:
    st.info("This model folder has no test_images.npz, so there are no images to show.")
    st.stop()
image_logp = heldout.image_logp_db
st.markdown(
    "High-probability images in the paper contain small objects on blank backgrounds; "
    "low-probability ones are filled with dense texture (an image's energy in bits is the length "
    "of its optimal code). Click **Probe** under an image to study it."
)
num_shown = st.slider("images per gallery", 4, 24, 8, step=4, key="testset_num_shown")


def gallery(positions: np.ndarray, kind: str) -> None:
    per_row = 8
    for start in range(0, len(positions), per_row):
        columns = st.columns(per_row)
        for column, position in zip(columns, positions[start : start + per_row], strict=False):
            position = int(position)
            with column:
                components.show_image(
                    heldout.images[position],
                    caption=f"#{position} · {image_logp[position]:+.2f} dB/dim",
                    size=96,
                )
                if st.button("Probe", key=f"testset_probe_{kind}_{position}"):
                    st.session_state[components.IMAGE_INDEX] = position
                    st.session_state[components.IMAGE_CHOICE] = "test"
                    st.switch_page(components.PROBE_PAGE)


tabs = st.tabs(["Highest log p", "Lowest log p", "Evenly spaced", "In a range"])
with tabs[0]:
    gallery(rank_indices(image_logp, num_shown, "highest"), "highest")
with tabs[1]:
    gallery(rank_indices(image_logp, num_shown, "lowest"), "lowest")
with tabs[2]:
    st.caption("From the least to the most probable, evenly spaced in rank.")
    gallery(rank_indices(image_logp, num_shown, "even"), "even")
with tabs[3]:
    low, high = float(np.floor(image_logp.min())), float(np.ceil(image_logp.max()))
    chosen = st.slider(
        "log p range (dB/dim)",
        low,
        max(high, low + 1.0),
        (low, max(high, low + 1.0)),
        step=0.1,
        key="testset_range",
    )
    inside = np.flatnonzero((image_logp >= chosen[0]) & (image_logp <= chosen[1]))
    st.caption(f"{inside.size} of {image_logp.size} images in this range.")
    order = inside[rank_indices(image_logp[inside], num_shown, "even")]
    gallery(order, "range")
