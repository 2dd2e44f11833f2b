"""Page 2: one image (from the test set or uploaded) - its log p, denoising, score, noise levels."""

import numpy as np
import pandas as pd
import streamlit as st
import torch

from app import charts, components, loading
from dsm_core import participation_ratio, units
from dsm_core.analysis import (
    dequantized_nll_bits_per_dim,
    dimensionality_finding,
    logp_map,
    noise_level_figure,
    percentile_of,
    sparsity_finding,
)
from dsm_core.explore import denoising_example, logp_gradient, logp_report
from dsm_core.images import (
    IMAGE_SUFFIXES,
    SMALL_POLICIES,
    ImageLoadError,
    pixels_to_tensor,
)
from dsm_core.packaging import rank_indices

st.title("Probe an image")
st.markdown(
    "How probable does the model find this image? The energy network returns "
    "U(x) = −log p(x) in **one forward pass** (no ODE, no sampling). Below: the image as the model "
    "sees it, its log p in several units and where it falls in the test-set histogram; then the "
    "model's denoiser, its score (∇ log p) and how log p and the local dimensionality change "
    "with the noise level."
)

bundle = components.require_bundle()
components.require_energy(bundle)
model = bundle.model
heldout = components.heldout_or_warn(bundle)
c, h, w = model.image_shape
has_tests = heldout is not None and heldout.images is not None

sources = (["Test set"] if has_tests else []) + ["Upload"]
# Every run: another page may have changed the shared choice since this radio was drawn. With
# no upload, "Test set" is only a default: a user who just removed the upload stays on "Upload".
wanted = "Upload" if st.session_state[components.IMAGE_CHOICE] == "upload" else "Test set"
current = st.session_state.get("probe_source")
if current not in sources or components.has_upload() or wanted == "Upload":
    st.session_state["probe_source"] = wanted if wanted in sources else sources[0]


def _sync_source() -> None:
    st.session_state[components.IMAGE_CHOICE] = (
        "upload" if st.session_state["probe_source"] == "Upload" else "test"
    )


source = st.radio(
    "Image from", sources, key="probe_source", horizontal=True, on_change=_sync_source
)

image: components.CurrentImage | None = None
decoded = None
if source == "Test set":
    st.session_state["probe_index"] = min(
        int(st.session_state[components.IMAGE_INDEX]), heldout.num_images - 1
    )

    def _sync_index() -> None:
        st.session_state[components.IMAGE_INDEX] = int(st.session_state["probe_index"])

    def _step(delta: int) -> None:
        st.session_state["probe_index"] = int(
            np.clip(st.session_state["probe_index"] + delta, 0, heldout.num_images - 1)
        )
        _sync_index()

    cols = st.columns([3, 1, 1, 1], vertical_alignment="bottom")
    position = cols[0].number_input(
        f"test image (0–{heldout.num_images - 1}; the sample is sorted by dataset index)",
        min_value=0,
        max_value=heldout.num_images - 1,
        step=1,
        key="probe_index",
        on_change=_sync_index,
    )
    cols[1].button("◀ previous", key="probe_prev", on_click=_step, args=(-1,))
    cols[2].button("next ▶", key="probe_next", on_click=_step, args=(1,))

    def _random() -> None:
        generator = np.random.default_rng()
        st.session_state["probe_index"] = int(generator.integers(heldout.num_images))
        _sync_index()

    cols[3].button("random", key="probe_random", on_click=_random)
    image = components.with_digest(components.test_image(heldout, int(position)))
else:
    kinds = ", ".join(s.lstrip(".").upper() for s in IMAGE_SUFFIXES)
    upload = st.file_uploader(
        f"Your image ({kinds}; or a .npz/.npy array of images)",
        type=[s.lstrip(".") for s in IMAGE_SUFFIXES] + ["npz", "npy"],
        key="probe_upload",
        on_change=components.upload_changed,
        args=("probe_upload",),
    )
    if upload is None and components.has_upload():  # uploaded before leaving this page
        cols = st.columns([4, 1], vertical_alignment="center")
        origin = st.session_state.get(components.UPLOAD_ORIGIN)
        how = f"sent from *{origin}*" if origin else "uploaded earlier"
        cols[0].caption(f"Using **{st.session_state[components.UPLOAD_NAME]}**, {how}.")
        cols[1].button("remove it", key="probe_forget", on_click=components.forget_upload)
    cols = st.columns(3)
    cols[0].radio(
        "fit to the model",
        ["resize", "crop"],
        key=components.UPLOAD_FIT,
        help="resize: the centred square, downsampled to the model's size with antialiasing "
        "(like the training crops). crop: the central pixels at full resolution (a detail).",
        format_func=lambda v: {"resize": "resize (whole image)", "crop": "crop (centre)"}[v],
    )
    cols[1].radio(
        "if smaller than the model",
        list(SMALL_POLICIES),
        key=components.UPLOAD_SMALL,
        help="pad: mirror the image outward (the mirrored border is part of what is scored). "
        "upscale: enlarge smoothly (smooth images are more probable). refuse: do not score it.",
    )
    name = st.session_state.get(components.UPLOAD_NAME, "")
    if name.lower().endswith((".npz", ".npy")):
        cols[2].number_input(
            "image in the array", min_value=0, step=1, key=components.UPLOAD_ARRAY_INDEX
        )
    if not components.has_upload():
        st.info(
            f"Upload an image: it will be converted to {'grayscale' if c == 1 else 'RGB'} and "
            f"brought to {h}×{w} pixels, as the model was trained."
        )
        st.stop()
    try:
        decoded = loading.decode(
            st.session_state[components.UPLOAD_BYTES],
            name,
            int(st.session_state[components.UPLOAD_ARRAY_INDEX]),
        )
    except ImageLoadError as exc:
        st.error(f"**{name}** cannot be used: {exc}")
        st.stop()
    image = components.uploaded_image(bundle)
    if image is None:
        st.stop()

x = image.tensor()  # (1, C, H, W)
report = logp_report(model, x, None if heldout is None else heldout.logp_db)
logp_db = float(report.logp_db[0])

left, right = st.columns([1, 2])
with left:
    if decoded is not None:
        shown = components.preview(decoded.pixels, 256)
        st.image(
            shown,
            caption=f"as uploaded ({decoded.width}×{decoded.height})",
            width=int(shown.shape[1]),
            output_format="PNG",
        )
    components.show_image(image.pixels, caption=f"as the model sees it ({h}×{w})", size=192)
    if image.notes:
        st.caption("  \n".join(f"• {note}" for note in image.notes))
    components.download_png(image.pixels, "image.png", "probe_png", "this image (PNG)")
with right:
    bound = float(
        dequantized_nll_bits_per_dim(
            model,
            torch.from_numpy(image.pixels[None].astype(np.int64)),
            generator=torch.Generator().manual_seed(0),
        )[0]
    )
    m = st.columns(3) + st.columns(3)
    m[0].metric(
        "log p [dB/dim]",
        f"{logp_db:+.2f}",
        help="10·log₁₀ p(x) / d. +10 dB/dim means 10^d times more probable.",
    )
    m[3].metric(
        "density at the pixels + 8 [bits/dim]",
        f"{report.nll_bits_per_dim_discrete[0]:.3f}",
        help="−log₂ p(x) / d of the continuous density at the pixel values "
        f"({report.nll_bits_per_dim[0]:.3f} bits/dim) + 8 bits/dim: the release's 8-bit NLL "
        "convention (paper A.1) and the unit of the test NLL. Not a bound on the NLL of the "
        "8-bit image: a density that peaks at these exact values (flat images) can make it "
        "negative; the model card's dequantized NLL is the bound.",
    )
    m[1].metric(
        "log p [nats]",
        f"{report.logp_nats[0]:,.1f}",
        help=f"Natural log of the density over all d = {report.d} dimensions: −U(x).",
    )
    m[4].metric(
        "NLL of the 8-bit image ≤ [bits/dim]",
        f"{bound:.3f}",
        help="The dequantized bound: the energy averaged over each pixel's 1/256 bin "
        "(4 uniform draws), + 8 bits/dim. A true upper bound on −log₂ P / d of these 8-bit "
        "pixels, which a spike of the density at the exact pixel values cannot lower.",
    )
    if report.percentile is not None:
        m[2].metric(
            "test-set percentile",
            f"{report.percentile[0]:.1f} %",
            help="Share of held-out images with a lower log p.",
        )

    @st.fragment
    def histogram_with_marker() -> None:
        log_y = st.toggle("log-scale density", key="probe_log_y")
        gumbel = loading.gumbel_fit(heldout.logp_db)
        marker = charts.Marker(logp_db, "this image")
        figure = charts.logp_histogram(
            heldout.logp_db, gumbel, log_y=log_y, markers=[marker], title="Where this image falls"
        )
        st.plotly_chart(figure, key="probe_histogram")

    if heldout is not None:
        histogram_with_marker()

components.ode_check_panel(bundle, heldout, x, [image.label], "probe")


def log_p_map() -> None:
    """The upload's model-size tiles at native resolution, scored one by one (a map)."""
    fit = st.session_state[components.UPLOAD_FIT]
    mode = {
        "resize": f"the whole image, its centred square resized to {h}×{w}",
        "crop": f"the central {h}×{w} crop (of the image as decoded)",
    }[fit]
    st.subheader("log p map at native resolution")
    st.markdown(
        f"The log p above is of **{mode}** (*fit to the model*: {fit}). Resizing a large photo "
        "to the model's size averages its detail away, which makes it smoother and more "
        f"probable; the map instead scores {h}×{w} tiles of the photo at its own resolution."
    )
    data = st.session_state[components.UPLOAD_BYTES]
    name = st.session_state[components.UPLOAD_NAME]
    index = int(st.session_state[components.UPLOAD_ARRAY_INDEX])
    map_key = (bundle.key, loading.digest(np.frombuffer(data, dtype=np.uint8)), index)
    if st.button("Compute the log p map", key="probe_map_run"):
        bar = st.progress(0.0, text="decoding at native resolution")
        try:
            tiled = loading.decode_tiles(data, name, index, tuple(model.image_shape))
        except ImageLoadError as exc:
            bar.empty()
            st.error(f"**{name}**: no map: {exc}")
            return
        result = logp_map(model, tiled, progress=components.progress_callback(bar, "tiles"))
        bar.empty()
        st.session_state["probe_map"] = (map_key, result)
    stored = st.session_state.get("probe_map")
    if stored is None or stored[0] != map_key:
        st.caption("Press **Compute the log p map** (at most 1,024 tiles).")
        return
    result = stored[1]
    tiled = result.tiled
    order = result.order
    best, worst = int(order[0]), int(order[-1])
    flat = result.logp_db.ravel()
    st.plotly_chart(
        charts.logp_map_figure(
            tiled.preview,
            result.logp_db,
            tiled.tops,
            tiled.lefts,
            h,
            tiled.stride,
            (tiled.height, tiled.width),
            {"most probable": best, "least probable": worst},
        ),
        key="probe_map",
    )
    median_words = ""
    if heldout is not None:
        percentile = float(percentile_of(result.median_db, heldout.logp_db))
        median_words = f" (percentile {percentile:.0f} of the test set)"
    st.caption(
        f"{flat.size:,} tiles of {tiled.width}×{tiled.height}: median {result.median_db:+.2f} "
        f"dB/dim{median_words}, from {flat.min():+.2f} to {flat.max():+.2f}; the number at the "
        f"top of the page ({logp_db:+.2f}) is of {mode}. Red square: the most probable tile; "
        "blue: the least."
    )
    cols = st.columns(4)
    for column, (label, k) in zip(
        cols, (("most probable tile", best), ("least probable tile", worst)), strict=False
    ):
        with column:
            components.show_image(
                tiled.tiles[k],
                caption=f"{label}: {flat[k]:+.2f} dB/dim at ({tiled.lefts[k]}, {tiled.tops[k]})",
                size=128,
            )
            components.probe_button(
                tiled.tiles[k],
                f"{label.split()[0]} tile at {tiled.lefts[k]},{tiled.tops[k]}",
                "Probe an image (log p map)",
                f"probe_map_probe_{label.split()[0]}",
            )
    with cols[2]:
        table = pd.DataFrame({"top": tiled.tops, "left": tiled.lefts, "logp_db": flat})
        components.download_csv(table, "logp_map.csv", "probe_map_csv", "tile log p (CSV)")


if decoded is not None and max(decoded.width, decoded.height) >= 2 * h:
    log_p_map()

tabs = st.tabs(
    ["Denoise", "Score map ∇ log p", "Across noise levels (Fig. 5)", "Sparsity (Fig. 4)"]
)

with tabs[0]:

    @st.fragment
    def denoise_panel() -> None:
        st.markdown(
            "Add Gaussian noise of variance t and let the model remove it with its own score: "
            "D(y, t) = y + t ∇ log p_t(y) (Miyasawa–Tweedie, paper eq. 37). Input PSNR "
            "= −10 log₁₀ t."
        )
        cols = st.columns([3, 1])
        psnr_in = cols[0].slider("input PSNR (dB)", -10, 60, 20, key="probe_psnr")
        seed = cols[1].number_input("noise seed", 0, 10_000, 0, key="probe_noise_seed")
        example = denoising_example(
            model, x, float(psnr_in), generator=torch.Generator().manual_seed(int(seed))
        )
        shown = st.columns(3)
        with shown[0]:
            st.image(components.display_tensor(x[0], 160), caption="clean x", width=160)
        with shown[1]:
            st.image(
                components.display_tensor(example.noisy[0], 160),
                caption=f"noisy y ({example.psnr_in_db[0]:.1f} dB; shown clipped to [0, 1])",
                width=160,
            )
        with shown[2]:
            st.image(
                components.display_tensor(example.denoised[0], 160),
                caption=f"denoised D(y, t): {example.psnr_out_db[0]:.1f} dB",
                width=160,
            )
        gain = example.psnr_out_db[0] - example.psnr_in_db[0]
        st.caption(f"t = {example.t:.3g}; the denoiser gains {gain:+.1f} dB of PSNR on this draw.")

    denoise_panel()

with tabs[1]:

    @st.fragment
    def score_panel() -> None:
        st.markdown(
            "The gradient of log p with respect to the pixels, in nats per unit of intensity: "
            "**red** pixels would make the image more probable if brightened, **blue** if "
            "darkened. At t = 0 it is the score of the clean density; at larger t, of the "
            "blurred density p_t."
        )
        levels = {"t = 0 (clean)": 0.0} | {
            f"PSNR {p} dB (t = {units.psnr_db_to_t(p):.0e})": float(units.psnr_db_to_t(p))
            for p in (60, 40, 20, 0)
        }
        label = st.select_slider("noise level", list(levels), key="probe_score_level")
        score = logp_gradient(model, x, levels[label])[0]  # (C, H, W)
        cols = st.columns([2, 1])
        with cols[0]:
            for channel in range(score.shape[0]):
                figure = charts.signed_map(
                    score[channel].numpy(),
                    title="∇ log p" + (f" (channel {'RGB'[channel]})" if c == 3 else ""),
                    colorbar_title="nats/unit",
                )
                st.plotly_chart(figure, key=f"probe_score_{channel}")
        with cols[1]:
            norm = float(score.double().norm())
            st.metric("‖∇ log p‖", f"{norm:,.1f}", help="Euclidean norm, nats per unit intensity.")
            st.caption(
                "A gradient ascent step moves along this map (see *Gradient ascent / descent*)."
            )

    score_panel()

with tabs[2]:
    st.markdown(
        "**The paper** (§3.3, Fig. 5): for y = x + √t z, the **effective log p** −E[U(y, t) | x] "
        "stays flat while the noise is smaller than the local support around x, then falls to the "
        "test-set mean; the **effective dimensionality** d_eff(x, t) = E‖x − D(y, t)‖² / t "
        "(eq. 11) vanishes at large t and reaches d at small t; and over t in [10⁻⁹, 10⁻²], "
        "*higher-probability images have lower-dimensional neighborhoods, even at relatively "
        "small scales, while lower-probability images have nearly full-dimensional "
        "neighborhoods*. Curves: this image and three test images (the least, median and most "
        "probable of the sample); dashed: the average over test images."
    )
    cols = st.columns(4)
    num_levels = cols[0].slider("noise levels", 5, 25, 13, key="probe_curve_levels")
    num_noise = cols[1].slider("noise draws per level", 1, 64, 8, key="probe_curve_draws")
    num_average = cols[2].slider(
        "test-set images in the average", 0, 64, 16, key="probe_curve_average"
    )
    t_range = cols[3].select_slider(
        "range of t (log10)",
        options=list(range(-10, 4)),
        value=(-8, 3),
        key="probe_curve_range",
    )
    ts = np.logspace(t_range[0], t_range[1], num_levels)
    examples = []
    if has_tests:
        examples = [int(v) for v in rank_indices(heldout.image_logp_db, 3, "even")]
    labels = ["this image"] + [f"test #{position}" for position in examples]
    average_count = min(num_average, heldout.num_images) if has_tests else 0
    settings = (num_levels, num_noise, average_count, tuple(t_range), tuple(examples))
    result_key = ("curves", bundle.key, image.digest, settings)
    evaluations = num_levels * (len(labels) * num_noise + average_count)
    if st.button("Compute", key="probe_curve_run", type="primary"):
        bar = st.progress(0.0, text="noise levels")
        stack = [x] + [components.test_image(heldout, i).tensor() for i in examples]
        figure = noise_level_figure(
            model,
            torch.cat(stack),
            torch.as_tensor(ts),
            reference=None
            if average_count == 0
            else pixels_to_tensor(heldout.images[:average_count]),
            num_noise=num_noise,
            generator=torch.Generator().manual_seed(0),
            progress=components.progress_callback(bar, "noise levels"),
        )
        bar.empty()
        st.session_state["probe_curves"] = (result_key, figure)
    stored = st.session_state.get("probe_curves")
    if stored is None or stored[0] != result_key:
        st.caption(f"{evaluations:,} gradient evaluations. Press **Compute**.")
    else:
        figure = stored[1]
        trained = figure.trained
        plots = st.columns(2)
        plots[0].plotly_chart(
            charts.noise_level_curves(
                figure.ts,
                dict(zip(labels, figure.logp_db, strict=True)),
                mean=figure.mean_logp_db,
                mean_label=f"average of {average_count} test images",
                title="effective log p  −E[U(y, t) | x]",
                y_title="dB/dim",
                t_min=trained.t_min,
                t_max=trained.t_max,
            ),
            key="probe_curve_logp",
        )
        plots[1].plotly_chart(
            charts.noise_level_curves(
                figure.ts,
                dict(zip(labels, figure.d_eff, strict=True)),
                errors=dict(zip(labels, figure.d_eff_stderr, strict=True)),
                mean=figure.mean_d_eff,
                mean_label=f"average of {average_count} test images",
                title="effective dimensionality d_eff (eq. 11)",
                y_title="d_eff",
                reference=float(figure.d),
                reference_label=f"d = {figure.d}",
                t_min=trained.t_min,
                t_max=trained.t_max,
            ),
            key="probe_curve_deff",
        )
        try:
            finding = dimensionality_finding(figure)
        except ValueError as exc:
            st.caption(f"No test of the paper's rank finding: {exc}.")
        else:
            significant = int(finding.significant.sum())
            components.verdict(
                finding.agrees,
                f"Over the {finding.num_images} images (the {len(labels)} curves and the "
                f"{average_count} test images of the average), Spearman's rank correlation of "
                f"log p with d_eff is negative and significant (p < 0.05) at {significant} of "
                f"the {len(finding.ts)} levels t in [{finding.ts[0]:.1e}, {finding.ts[-1]:.1e}] "
                f"(ρ from {finding.spearman.min():+.2f} to {finding.spearman.max():+.2f})"
                + (
                    ": more probable images have lower-dimensional neighbourhoods."
                    if finding.agrees
                    else ": not at most of them."
                )
                + f" d_eff / d is {finding.d_eff_fraction_smallest:.2f} at "
                f"t = {finding.t_smallest:.0e} and {finding.d_eff_fraction_largest:.2f} at "
                f"t = {finding.t_largest:.0e} (the paper: ≈ 1 at small t, ≈ 0 at large t).",
            )
        below = figure.below_trained
        if trained.t_min is None:
            st.caption("This model folder does not record the noise range it was trained on.")
        elif below.any():
            how = (
                "it is evaluated at t_min there, so its curves are flat by construction"
                if model.t_min > 0
                else "its values there are extrapolations of the network, not learned"
            )
            st.caption(
                f"Shaded, open circles: t below the smallest trained noise variance "
                f"t_min = {trained.t_min:.0e} ({int(below.sum())} of {len(below)} levels): {how}."
            )
        above = figure.above_d
        if above.any():
            where = [
                f"{label} at t = {', '.join(f'{t:.0e}' for t in figure.ts[row])}"
                for label, row in zip(labels, above, strict=True)
                if row.any()
            ]
            st.caption(
                f"d_eff > d = {figure.d} beyond 2 standard errors for {'; '.join(where)}: there "
                "the denoiser's error is larger than the noise it was given (returning y "
                "unchanged would do better). For an exact model, d_eff ≤ d holds on average over "
                "images, not for each image; well above d it is model error."
            )
        else:
            st.caption(
                f"d_eff stays within 2 standard errors of d = {figure.d} or below it everywhere: "
                "at small t it is ≈ d up to the Monte Carlo noise of ‖z‖² (±√(2d/n))."
            )
        table = pd.DataFrame({"t": figure.ts})
        for label, values, dims in zip(labels, figure.logp_db, figure.d_eff, strict=True):
            table[f"{label} effective log p (dB/dim)"] = values
            table[f"{label} d_eff"] = dims
        table["test average effective log p (dB/dim)"] = figure.mean_logp_db
        table["test average d_eff"] = figure.mean_d_eff
        components.download_csv(table, "noise_levels.csv", "probe_curve_csv", "figure data (CSV)")

with tabs[3]:
    st.markdown(
        "**The paper** (§3.2, Fig. 4 right): log p is correlated with the sparsity of the "
        "image's wavelet coefficients, measured by their participation ratio ‖c‖₁² / (d ‖c‖₂²) "
        "in (0, 1] (smaller = sparser): sparser images are more probable."
    )
    if not has_tests:
        st.info("This model folder has no test images to compare with.")
    else:
        ratios = loading.participation_ratios(heldout, bundle.key)
        sparsity = sparsity_finding(ratios, heldout.image_logp_db)
        current_ratio = float(participation_ratio(x)[0])
        components.verdict(
            sparsity.agrees,
            f"On the {sparsity.num_images:,} test images, Spearman's rank correlation of the "
            f"participation ratio with log p is {sparsity.spearman:+.2f} "
            f"(p = {sparsity.p_value:.1g}"
            + (
                "): sparser images are more probable."
                if sparsity.agrees
                else "): not a significant negative correlation."
            ),
        )
        st.plotly_chart(
            charts.sparsity_scatter(ratios, heldout.image_logp_db, (current_ratio, logp_db)),
            key="probe_sparsity",
        )
        st.caption(f"This image: participation ratio {current_ratio:.3f}, log p {logp_db:+.2f}.")
