"""Page 1: the distribution of log p over the held-out images, its Gumbel fit, and galleries."""

import base64

import numpy as np
import pandas as pd
import streamlit as st

from app import charts, components, loading
from dsm_core import units
from dsm_core.analysis import gumbel_qq
from dsm_core.images import tensor_to_pixels
from dsm_core.packaging import rank_indices

st.title("Explore the test set")
st.markdown(
    "Each held-out image gets a log probability from **one forward pass** of the energy network, "
    "log p(x) = −U(x), in **dB per dimension** (10·log₁₀ p(x) / d). **The paper** (§3.2, Fig. 3, "
    "on ImageNet64) finds that these values are *not* concentrated: they spread over tens of "
    "dB/dim, with a heavy tail of very probable images (smooth, low contrast), and that their "
    "histogram is well fitted by a **Gumbel** distribution. Below: what this model gives on its "
    "own test images, and whether a Gumbel fits them."
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
cols[0].metric(
    "held-out log p values",
    f"{logp.size:,}",
    help="Test images whose log p the model folder holds (the histogram); the galleries below "
    "show the sample of them whose pixels are packaged with the model.",
)
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
    f"10^{d * spread_db / 10:,.0f} times more probable than the least (d = {d})."
)
finding = loading.gumbel_finding(logp)
ks_words = (
    "within" if finding.ks_passes else "beyond"
) + f" the 5 % critical value {finding.ks_critical:.3f} for n = {finding.num_values:,}"
fit_words = (
    ("fits better than" if finding.gumbel_beats_normal else "fits worse than")
    + f" a Normal (mean NLL {finding.gumbel_nll:.3f} vs {finding.normal_nll:.3f} nats; "
    "lower is better)"
)
components.verdict(
    finding.agrees,
    f"On these {finding.num_values:,} test images the Gumbel fit has a Kolmogorov–Smirnov distance "
    f"of {finding.ks_statistic:.3f}, {ks_words}, and {fit_words}"
    + ("." if finding.agrees else ": the histogram is not well fitted by a Gumbel."),
)
references = loading.reference_images(bundle, bundle.key)


def _thumbnail(pixels: np.ndarray, value: float, label: str) -> charts.Thumbnail:
    data = base64.b64encode(components.png_bytes(pixels)).decode()
    return charts.Thumbnail(value, label, f"data:image/png;base64,{data}")


def _examples() -> list[charts.Thumbnail]:
    """Fig. 3's right panel: sample images at evenly spaced ranks, and the reference images."""
    thumbs = []
    if heldout.images is not None:
        for position in rank_indices(heldout.image_logp_db, 5, "even"):
            value = float(heldout.image_logp_db[position])
            thumbs.append(_thumbnail(heldout.images[position], value, f"#{position}"))
    for label, image, value in zip(
        references.labels, references.images, references.logp_db, strict=True
    ):
        thumbs.append(_thumbnail(tensor_to_pixels(image), float(value), label))
    return thumbs


@st.fragment
def histogram_panel() -> None:
    c1, c2, c3, c4 = st.columns([1, 1, 1, 2])
    log_y = c1.toggle("log-scale density", key="testset_log_y")
    show_normal = c2.toggle("show Normal fit", key="testset_normal")
    show_examples = c3.toggle("example images (Fig. 3)", value=True, key="testset_examples")
    num_bins = c4.slider("bins", 10, 80, 30, key="testset_bins")
    markers = [
        charts.Marker(float(value), label, color)
        for label, value, color in zip(
            references.labels, references.logp_db, ("#2ca02c", "#8c564b"), strict=True
        )
    ]
    figure = charts.logp_histogram(
        logp,
        gumbel,
        log_y=log_y,
        num_bins=num_bins,
        show_normal=show_normal,
        markers=markers,
        thumbnails=_examples() if show_examples else (),
    )
    plots = st.columns([3, 2])
    plots[0].plotly_chart(figure, key="testset_histogram")
    plots[1].plotly_chart(charts.qq_plot(*gumbel_qq(logp, gumbel)), key="testset_qq")
    st.caption(
        "Reference points as in the paper's Fig. 3: a constant image of intensity 0.5 "
        f"({references.logp_db[0]:+.2f} dB/dim) and an image of uniform noise in [0, 1] "
        f"({references.logp_db[1]:+.2f} dB/dim); a value off the test set's range is drawn at the "
        "edge, dotted, with its value. Thumbnails sit at their log p. Both are one-shot values of "
        "images far from any training image, where the energy may not be consistent across noise "
        "levels: the check below puts the ODE's value beside each."
    )
    components.ode_check_panel(
        bundle, heldout, references.images, references.labels, "testset_references"
    )
    table = pd.DataFrame({"dataset_index": heldout.indices, "logp_db": logp})
    components.download_csv(table, "test_logp_db.csv", "testset_csv", "log p values (CSV)")


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
st.caption(
    f"The galleries browse the {heldout.num_images:,} test images packaged with the model "
    f"(of the {logp.size:,} in the histogram)."
)


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
