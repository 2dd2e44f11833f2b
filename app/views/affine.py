"""Page 3: log p(a·x + b) under contrast a and brightness b (paper Fig. 4 left and middle)."""

import numpy as np
import streamlit as st

from app import charts, components, loading
from dsm_core.analysis import (
    affine_in_range,
    affine_logp_db,
    affine_logp_db_grid,
    contrast_finding,
    contrast_slice_logp_db,
)

GRID_SIZE = 21  # a, b in linspace(0, 1, 21): 441 forward passes, computed once per image
SLICE_SIZE = 21

st.title("Brightness & contrast")
st.markdown(
    "Scale the contrast by **a** and shift the brightness by **b**: the image becomes a·x + b. "
    "**The paper** (§3.2, Fig. 4, on ImageNet64) finds that brightness barely changes log p "
    "while **lower contrast makes an image more probable**, shown on the slice b = ½: the "
    "support of the density is *star-shaped*, every image is joined to the constant images by a "
    "path of rising probability. The map shows a + b ≤ 1, where a·x + b stays in [0, 1]; the "
    "line plots show only the a·x + b that stay in [0, 1]."
)
st.caption(
    "Every value here is the one-shot log p, −U(a·x + b, 0): it is only as good as the "
    "energy's consistency across noise levels. Check a value that matters with the "
    "probability-flow ODE below, which uses only the scores."
)

bundle = components.require_bundle()
components.require_energy(bundle)
model = bundle.model
heldout = components.heldout_or_warn(bundle)
image = components.image_picker(bundle, heldout, "affine")
x = image.tensor()  # (1, C, H, W)

a_grid = np.linspace(0.0, 1.0, GRID_SIZE)
b_grid = np.linspace(0.0, 1.0, GRID_SIZE)
store = loading.result_store()
grid_key = ("affine", bundle.key, image.digest, GRID_SIZE)
grid = store.get(grid_key)
if grid is None:
    bar = st.progress(0.0, text="log p(a·x + b) grid")
    grid = affine_logp_db_grid(
        model, x, a_grid, b_grid, progress=components.progress_callback(bar, "contrast values")
    ).numpy()  # (A, B)
    bar.empty()
    store.put(grid_key, grid)
finding_key = ("affine_finding", bundle.key, image.digest)
finding = store.get(finding_key)
if finding is None:
    finding = contrast_finding(model, x)
    store.put(finding_key, finding)
slope = float(finding.slope_db[0])
components.verdict(
    bool(finding.agrees[0]),
    f"On the paper's slice b = {finding.b:g}, from a = 0 to {finding.a[-1]:g}, log p of this "
    f"image {'falls' if slope < 0 else 'rises'} with the contrast (least-squares slope "
    f"{slope:+.2f} dB/dim per unit of a: from {finding.logp_db[0, 0]:+.2f} to "
    f"{finding.logp_db[0, -1]:+.2f} dB/dim).",
)


@st.fragment
def affine_panel() -> None:
    cols = st.columns(2)
    a = cols[0].slider("contrast a", 0.0, 1.5, 1.0, step=0.01, key="affine_a")
    b = cols[1].slider("brightness b", -0.5, 1.0, 0.0, step=0.01, key="affine_b")
    current = float(affine_logp_db(model, x, [a], [b])[0, 0, 0])
    original = float(grid[-1, 0])  # a = 1, b = 0
    transformed = a * x[0] + b
    outside = bool((transformed < 0).any() or (transformed > 1).any())
    left, middle, right = st.columns([1, 1, 2])
    with left:
        components.show_image(image.pixels, caption="x", size=160)
    with middle:
        st.image(
            components.display_tensor(transformed, 160),
            caption=f"a·x + b (a = {a:.2f}, b = {b:.2f})",
            width=160,
        )
        if outside:
            st.caption(":orange[Some pixels leave [0, 1]; shown clipped, scored as they are.]")
    with right:
        m = st.columns(2)
        change = round(current - original, 2)
        m[0].metric(
            "log p(a·x + b) [dB/dim]",
            f"{current:+.2f}",
            delta=f"{change:+.2f}" if change != 0 else None,
        )
        m[1].metric("log p(x) [dB/dim]", f"{original:+.2f}")
        orders = (current - original) * model.d / 10 if change != 0 else 0.0
        st.caption(
            "The change is per dimension: multiply by d = "
            f"{model.d} and divide by 10 for the change in log₁₀ p "
            f"({orders:+,.1f} orders of magnitude)."
        )
    plots = st.columns([3, 2])
    plots[0].plotly_chart(charts.affine_heatmap(a_grid, b_grid, grid, (a, b)), key="affine_heatmap")
    with plots[1]:
        # only the a·x + b inside [0, 1] are scored (NaN: a gap in the line)
        a_line = np.linspace(0.0, 1.5, SLICE_SIZE)
        inside_a = affine_in_range(x, a_line, [b])[0, :, 0].numpy()
        along_a = np.full(SLICE_SIZE, np.nan)
        if inside_a.any():
            along_a[inside_a] = contrast_slice_logp_db(model, x, a_line[inside_a], b)[0].numpy()
        st.plotly_chart(
            charts.line_with_marker(
                a_line, along_a, a, current, title=f"vary contrast (b = {b:.2f})", x_title="a"
            ),
            key="affine_slice_a",
        )
        b_line = np.linspace(-0.5, 1.0, SLICE_SIZE)
        inside_b = affine_in_range(x, [a], b_line)[0, 0].numpy()
        along_b = np.full(SLICE_SIZE, np.nan)
        if inside_b.any():
            along_b[inside_b] = affine_logp_db(model, x, [a], b_line[inside_b])[0, 0].numpy()
        st.plotly_chart(
            charts.line_with_marker(
                b_line, along_b, b, current, title=f"vary brightness (a = {a:.2f})", x_title="b"
            ),
            key="affine_slice_b",
        )

    components.ode_check_panel(
        bundle, heldout, transformed[None], [f"a·x + b (a = {a:.2f}, b = {b:.2f})"], "affine"
    )


affine_panel()
