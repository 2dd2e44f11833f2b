"""Plotly figure builders: arrays in, go.Figure out (no computation beyond layout)."""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from dsm_core.analysis import GumbelFit

LOGP_AXIS = "log p(x)  [dB/dim]"
MARKER_COLORS = (
    "#1f4e9c",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#ff7f0e",
    "#17becf",
    "#8c564b",
    "#e377c2",
)
_MARGIN = {"l": 10, "r": 10, "t": 40, "b": 10}
_LEGEND_BELOW = {"orientation": "h", "yanchor": "top", "y": -0.22, "x": 0.0}


@dataclass(frozen=True)
class Marker:
    """A vertical line on a log p axis: a value (dB/dim) and its label."""

    value: float
    label: str
    color: str = MARKER_COLORS[0]


@dataclass(frozen=True)
class Thumbnail:
    """A small image drawn above a log p axis at its value (paper Fig. 3): a PNG data URI."""

    value: float
    label: str
    png_uri: str


def axis_range(logp_db: np.ndarray, margin: float = 0.15) -> tuple[float, float]:
    """The x range of a log p plot: the test set's values and a margin, nothing else."""
    low, high = float(np.min(logp_db)), float(np.max(logp_db))
    span = max(high - low, 1e-6)
    return low - margin * span, high + margin * span


def logp_histogram(
    logp_db: np.ndarray,
    gumbel: GumbelFit | None,
    *,
    log_y: bool = False,
    num_bins: int = 30,
    markers: Sequence[Marker] = (),
    show_normal: bool = False,
    title: str = "log p of the held-out images",
    thumbnails: Sequence[Thumbnail] = (),
) -> go.Figure:
    """Density histogram of log p with the fitted Gumbel (and Normal) density and markers.

    Traces, in order: the histogram ("test images"), "Gumbel fit", optionally "Normal fit", then
    one vertical line per marker (named by its label), as in paper Fig. 3. The x axis stays on the
    test set (``axis_range``): a marker outside it is drawn at the nearer edge as a dotted line,
    its label saying its value and pointing off the axis. Thumbnails are drawn above the plot at
    their log p (clamped to the axis likewise).
    """
    logp = np.asarray(logp_db, dtype=np.float64)
    low, high = float(logp.min()), float(logp.max())
    span = max(high - low, 1e-6)
    x_low, x_high = axis_range(logp)
    grid = np.linspace(x_low, x_high, 400)
    width = span / max(num_bins, 1)
    fig = go.Figure()
    fig.add_trace(
        go.Histogram(
            x=logp,
            histnorm="probability density",
            xbins={"start": low - 1e-9, "end": high + width, "size": width},
            name="test images",
            marker={"color": "rgba(120,120,120,0.55)", "line": {"color": "#555", "width": 0.5}},
            hovertemplate="%{x}<br>density %{y:.3g}<extra></extra>",
        )
    )
    peak = 1.0 / width / max(len(logp), 1)  # at least one image's bar height
    if gumbel is not None:
        density = gumbel.pdf(grid)
        peak = max(peak, float(density.max()))
        fig.add_trace(
            go.Scatter(
                x=grid,
                y=density,
                mode="lines",
                name="Gumbel fit",
                line={"color": "#d62728", "width": 2.5},
                hovertemplate="Gumbel density %{y:.3g}<extra></extra>",
            )
        )
        if show_normal:
            fig.add_trace(
                go.Scatter(
                    x=grid,
                    y=gumbel.normal_pdf(grid),
                    mode="lines",
                    name="Normal fit",
                    line={"color": "#1f77b4", "width": 1.5, "dash": "dash"},
                )
            )
    counts, _ = np.histogram(logp, bins=max(num_bins, 1))
    peak = max(peak, float(counts.max()) / (len(logp) * width))
    floor = 1e-4 * peak
    for marker in markers:
        if not np.isfinite(marker.value):
            continue
        shown = float(np.clip(marker.value, x_low, x_high))
        outside = shown != marker.value
        label = marker.label
        if outside:
            arrow = "→" if marker.value > x_high else "←"
            label = f"{marker.label} {arrow} {marker.value:+,.1f}"
        fig.add_trace(
            go.Scatter(
                x=[shown, shown],
                y=[floor if log_y else 0.0, 1.15 * peak],
                mode="lines+text",
                text=["", label],
                textposition="top left"
                if shown == x_high
                else "top right"
                if shown == x_low
                else "top center",
                name=marker.label,
                line={"color": marker.color, "width": 2.5, "dash": "dot" if outside else "solid"},
                customdata=[marker.value, marker.value],
                hovertemplate=f"{marker.label}: {marker.value:.2f} dB/dim"
                + (" (off the axis)" if outside else "")
                + "<extra></extra>",
            )
        )
    for thumb in thumbnails:
        fig.add_layout_image(
            source=thumb.png_uri,
            xref="x",
            yref="paper",
            x=float(np.clip(thumb.value, x_low, x_high)),
            y=1.02,
            sizex=(x_high - x_low) / 12,
            sizey=0.22,
            xanchor="center",
            yanchor="bottom",
            layer="above",
        )
    fig.update_layout(
        title=title,
        xaxis_title=LOGP_AXIS,
        yaxis_title="density  [1 / (dB/dim)]",
        bargap=0.02,
        margin=_MARGIN | ({"t": 120} if thumbnails else {}),
        height=360 + (80 if thumbnails else 0),
        legend=_LEGEND_BELOW,
    )
    fig.update_xaxes(range=[x_low, x_high])
    if log_y:
        fig.update_yaxes(type="log", range=[np.log10(floor), np.log10(1.4 * peak)])
    return fig


def qq_plot(theoretical: np.ndarray, empirical: np.ndarray) -> go.Figure:
    """Sorted log p against the fitted Gumbel's quantiles, with the diagonal (a perfect fit)."""
    low = float(min(np.min(theoretical), np.min(empirical)))
    high = float(max(np.max(theoretical), np.max(empirical)))
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=theoretical,
            y=empirical,
            mode="markers",
            name="test images",
            marker={"size": 4, "color": "#1f4e9c"},
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[low, high],
            y=[low, high],
            mode="lines",
            name="perfect fit",
            line={"color": "#d62728", "dash": "dash"},
        )
    )
    fig.update_layout(
        title="QQ plot: test images vs the Gumbel fit",
        xaxis_title="Gumbel quantile  [dB/dim]",
        yaxis_title="log p of the test images  [dB/dim]",
        margin=_MARGIN,
        height=360,
        showlegend=False,
    )
    return fig


def sparsity_scatter(
    participation_ratio: np.ndarray,
    logp_db: np.ndarray,
    current: tuple[float, float] | None = None,
) -> go.Figure:
    """log p against the wavelet participation ratio (paper Fig. 4 right), current image marked.

    The axes stay on the test set; a current image off them is drawn at the edge."""
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=participation_ratio,
            y=logp_db,
            mode="markers",
            name="test images",
            marker={"size": 5, "color": "rgba(31,78,156,0.5)"},
            hovertemplate="PR %{x:.3f}<br>log p %{y:.2f} dB/dim<extra></extra>",
        )
    )
    y_low, y_high = axis_range(logp_db, 0.08)
    if current is not None:
        fig.add_trace(
            go.Scatter(
                x=[current[0]],
                y=[float(np.clip(current[1], y_low, y_high))],
                mode="markers",
                name="this image",
                marker={"size": 14, "color": "#d62728", "symbol": "star"},
                customdata=[current[1]],
                hovertemplate="this image<br>PR %{x:.3f}<br>log p %{customdata:.2f}<extra></extra>",
            )
        )
    fig.update_layout(
        title="log p against sparsity (participation ratio of wavelet coefficients)",
        xaxis_title="participation ratio  (smaller = sparser)",
        yaxis_title=LOGP_AXIS,
        margin=_MARGIN,
        height=360,
        legend=_LEGEND_BELOW,
    )
    fig.update_yaxes(range=[y_low, y_high])
    return fig


def affine_heatmap(
    a: np.ndarray, b: np.ndarray, grid_db: np.ndarray, current: tuple[float, float]
) -> go.Figure:
    """log p(a x + b) over contrast a (rows) and brightness b (columns), paper Fig. 4 left.

    Cells with a + b > 1 (where a x + b can leave [0, 1]) are left blank, as in the paper.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    z = np.where(a[:, None] + b[None, :] <= 1.0 + 1e-9, grid_db, np.nan)
    fig = go.Figure(
        go.Heatmap(
            x=b,
            y=a,
            z=z,
            colorscale="Viridis",
            colorbar={"title": "dB/dim"},
            name="log p(a·x+b)",
            hovertemplate="a=%{y:.2f}, b=%{x:.2f}<br>log p %{z:.2f} dB/dim<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[current[1]],
            y=[current[0]],
            mode="markers",
            name="current (a, b)",
            marker={"symbol": "x", "size": 14, "color": "#d62728", "line": {"width": 2}},
        )
    )
    fig.update_layout(
        title="log p(a·x + b)",
        xaxis_title="brightness offset b",
        yaxis_title="contrast a",
        margin=_MARGIN,
        height=380,
        showlegend=False,
    )
    return fig


def line_with_marker(
    x: np.ndarray,
    y: np.ndarray,
    current_x: float,
    current_y: float,
    *,
    title: str,
    x_title: str,
    y_title: str = LOGP_AXIS,
    name: str = "log p",
    log_x: bool = False,
) -> go.Figure:
    """One curve and a marker at the current value (slices, interpolation, noise levels)."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=name, marker={"size": 4}))
    fig.add_trace(
        go.Scatter(
            x=[current_x],
            y=[current_y],
            mode="markers",
            name="current",
            marker={"size": 12, "color": "#d62728", "symbol": "circle-open", "line": {"width": 3}},
        )
    )
    fig.update_layout(
        title=title,
        xaxis_title=x_title,
        yaxis_title=y_title,
        margin=_MARGIN,
        height=300,
        showlegend=False,
    )
    if log_x:
        fig.update_xaxes(type="log")
    return fig


def interpolation_plot(
    alphas: np.ndarray, path_db: np.ndarray, chord_db: np.ndarray, alpha: float, current_db: float
) -> go.Figure:
    """log p along (1 - α) x0 + α x1 against the chord of the end points (paper Fig. 12)."""
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(x=alphas, y=path_db, mode="lines+markers", name="log p along the path")
    )
    fig.add_trace(
        go.Scatter(
            x=alphas,
            y=chord_db,
            mode="lines",
            name="chord (1-α) log p(x₀) + α log p(x₁)",
            line={"dash": "dash", "color": "#555"},
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[alpha],
            y=[current_db],
            mode="markers",
            name="current α",
            marker={"size": 12, "color": "#d62728", "symbol": "circle-open", "line": {"width": 3}},
        )
    )
    fig.update_layout(
        title="log p along the straight line between the two images",
        xaxis_title="α",
        yaxis_title=LOGP_AXIS,
        margin=_MARGIN,
        height=340,
        legend=_LEGEND_BELOW,
    )
    return fig


def ascent_curve(steps: np.ndarray, logp_db: np.ndarray, best_step: int | None) -> go.Figure:
    """log p of each iterate of gradient ascent/descent (paper Fig. 13)."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=steps, y=logp_db, mode="lines", name="log p of the iterate"))
    if best_step is not None and len(steps):
        where = int(np.searchsorted(steps, best_step))
        where = min(where, len(steps) - 1)
        fig.add_trace(
            go.Scatter(
                x=[steps[where]],
                y=[logp_db[where]],
                mode="markers",
                name="best iterate",
                marker={"size": 12, "color": "#d62728", "symbol": "star"},
            )
        )
    fig.update_layout(
        title="log p during the run",
        xaxis_title="step",
        yaxis_title=LOGP_AXIS,
        margin=_MARGIN,
        height=300,
        showlegend=False,
    )
    return fig


def noise_level_curves(
    ts: np.ndarray,
    curves: dict[str, np.ndarray],
    *,
    title: str,
    y_title: str,
    mean: np.ndarray | None = None,
    mean_label: str = "test-set average",
    reference: float | None = None,
    reference_label: str = "",
    errors: dict[str, np.ndarray] | None = None,
    t_min: float | None = None,
    t_max: float | None = None,
) -> go.Figure:
    """Quantities against the noise variance t on a log axis (paper Fig. 5).

    One trace per curve (points below ``t_min`` drawn as open circles), the test-set average as
    a dashed black line, a horizontal reference (e.g. d), and the trained range: the region below
    ``t_min`` shaded and labelled "below the trained range", a vertical line at t_min and t_max.
    """
    ts = np.asarray(ts, dtype=np.float64)
    below = np.zeros(ts.shape, dtype=bool) if t_min is None else ts < t_min
    fig = go.Figure()
    for i, (name, values) in enumerate(curves.items()):
        error = None if errors is None or name not in errors else errors[name]
        fig.add_trace(
            go.Scatter(
                x=ts,
                y=values,
                mode="lines+markers",
                name=name,
                line={"color": MARKER_COLORS[i % len(MARKER_COLORS)]},
                marker={"symbol": np.where(below, "circle-open", "circle").tolist(), "size": 7},
                error_y=None if error is None else {"type": "data", "array": error},
            )
        )
    if mean is not None and np.isfinite(mean).any():
        fig.add_trace(
            go.Scatter(
                x=ts,
                y=mean,
                mode="lines",
                name=mean_label,
                line={"color": "black", "dash": "dash", "width": 2},
            )
        )
    if reference is not None:
        fig.add_trace(
            go.Scatter(
                x=[float(np.min(ts)), float(np.max(ts))],
                y=[reference, reference],
                mode="lines",
                name=reference_label,
                line={"color": "#888", "dash": "dot"},
            )
        )
    # annotations on a log axis take log10 coordinates (shapes take data values)
    if t_min is not None and below.any():
        fig.add_vrect(x0=float(np.min(ts)), x1=t_min, fillcolor="#bbb", opacity=0.3, line_width=0)
        fig.add_annotation(
            x=float(np.log10(t_min)),
            y=1.0,
            yref="paper",
            text="below the trained range",
            showarrow=False,
            xanchor="right",
            yanchor="bottom",
            font={"size": 11, "color": "#555"},
        )
    for value, label, anchor in ((t_min, "t_min", "left"), (t_max, "t_max", "right")):
        if value is not None and np.min(ts) <= value <= np.max(ts):
            fig.add_vline(x=value, line={"color": "#666", "width": 1.5})
            fig.add_annotation(
                x=float(np.log10(value)),
                y=0.0,
                yref="paper",
                text=f"trained {label}",
                showarrow=False,
                xanchor=anchor,
                yanchor="bottom",
                font={"size": 11, "color": "#555"},
            )
    fig.update_layout(
        title=title,
        xaxis_title="noise variance t (per pixel)",
        yaxis_title=y_title,
        margin=_MARGIN,
        height=340,
        legend=_LEGEND_BELOW,
    )
    fig.update_xaxes(type="log", exponentformat="power")
    return fig


def signed_map(values: np.ndarray, *, title: str, colorbar_title: str) -> go.Figure:
    """A signed image (H, W) with a symmetric diverging colour scale (score maps, differences)."""
    values = np.asarray(values, dtype=np.float64)
    limit = float(np.nanmax(np.abs(values))) if values.size else 1.0
    limit = limit if limit > 0 else 1.0
    fig = go.Figure(
        go.Heatmap(
            z=values,
            colorscale="RdBu_r",
            zmin=-limit,
            zmax=limit,
            colorbar={"title": colorbar_title},
            hovertemplate="row %{y}, col %{x}<br>%{z:.3g}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed", scaleanchor="x", showticklabels=False)
    fig.update_xaxes(showticklabels=False, constrain="domain")
    fig.update_layout(title=title, margin=_MARGIN, height=330)
    return fig


def estimator_points(
    names: Sequence[str], logp_db: Sequence[float], stderr_db: Sequence[float | None]
) -> go.Figure:
    """log p of one image by several estimators: points with ±1 standard error where there is
    one (no bars from 0: the axis spans the values, which may all be far from 0)."""
    errors = [e if e is not None and np.isfinite(e) else 0.0 for e in stderr_db]
    fig = go.Figure(
        go.Scatter(
            x=list(names),
            y=list(logp_db),
            mode="markers+text",
            error_y={"type": "data", "array": errors},
            marker={"color": list(MARKER_COLORS[: len(names)]), "size": 14},
            text=[f"{v:+.2f}" for v in logp_db],
            textposition="middle right",
            name="log p",
        )
    )
    fig.update_layout(
        title="log p of the image by each estimator",
        yaxis_title=LOGP_AXIS,
        margin=_MARGIN,
        height=320,
        showlegend=False,
    )
    return fig


def ode_gap_path(
    t: np.ndarray, gap_db: np.ndarray, stderr_db: np.ndarray, trained_t_min: float
) -> go.Figure:
    """One-shot minus ODE log p along the ODE's path (``ODEGapProfile`` rows at t > 0), one
    image: a line against log t with a ±1 s.e. band, zero marked, the trained floor (if > 0)
    marked."""
    band = np.nan_to_num(stderr_db, nan=0.0)
    fig = go.Figure(
        [
            go.Scatter(
                x=np.concatenate([t, t[::-1]]),
                y=np.concatenate([gap_db + band, (gap_db - band)[::-1]]),
                fill="toself",
                line={"width": 0},
                fillcolor="rgba(31, 78, 156, 0.15)",
                hoverinfo="skip",
                name="±1 s.e. (Hutchinson)",
            ),
            go.Scatter(
                x=t,
                y=gap_db,
                mode="lines+markers",
                name="one-shot − ODE",
                line={"color": MARKER_COLORS[0]},
                marker={"size": 4},
            ),
        ]
    )
    fig.add_hline(y=0.0, line={"color": "gray", "dash": "dot"})
    if trained_t_min > 0:  # a model without a trained floor has none to mark
        fig.add_vline(x=trained_t_min, line={"color": MARKER_COLORS[2], "dash": "dash"})
        # on a log axis an annotation's x is log10 of the value (add_vline's own label is not)
        fig.add_annotation(
            x=float(np.log10(trained_t_min)),
            y=1.0,
            yref="paper",
            text="trained floor",
            showarrow=False,
            xanchor="left",
            font={"color": MARKER_COLORS[2]},
        )
    fig.update_layout(
        title="one-shot − ODE log p of the path point at each noise level",
        xaxis={"title": "noise variance t (log scale)", "type": "log"},
        yaxis_title="one-shot − ODE  [dB/dim]",
        margin=_MARGIN,
        height=340,
        legend=_LEGEND_BELOW,
    )
    return fig


def generalization_scatter(
    logp_db_a: np.ndarray, logp_db_b: np.ndarray, *, title: str, labels: Sequence[str] = ()
) -> go.Figure:
    """log p under model A against model B of the same images, with the diagonal (Fig. 2)."""
    a = np.asarray(logp_db_a, dtype=np.float64)
    b = np.asarray(logp_db_b, dtype=np.float64)
    low, high = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=a,
            y=b,
            mode="markers",
            name="images",
            marker={"size": 5, "color": "rgba(31,78,156,0.6)"},
            text=list(labels) or None,
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[low, high],
            y=[low, high],
            mode="lines",
            name="equal log p",
            line={"color": "#d62728", "dash": "dash"},
        )
    )
    fig.update_layout(
        title=title,
        xaxis_title="log p under model A  [dB/dim]",
        yaxis_title="log p under model B  [dB/dim]",
        margin=_MARGIN,
        height=380,
        showlegend=False,
    )
    return fig


def generalization_curve(sizes: np.ndarray, mean_abs_diff_db: dict[str, np.ndarray]) -> go.Figure:
    """Mean |log p_A - log p_B| against the training-set size N, log-log (Fig. 2's summary)."""
    fig = go.Figure()
    for i, (name, values) in enumerate(mean_abs_diff_db.items()):
        fig.add_trace(
            go.Scatter(
                x=sizes,
                y=values,
                mode="lines+markers",
                name=name,
                line={"color": MARKER_COLORS[i % len(MARKER_COLORS)]},
            )
        )
    fig.update_layout(
        title="disagreement of the two models against N",
        xaxis_title="training images per model N",
        yaxis_title="mean |log p_A − log p_B|  [dB/dim]",
        margin=_MARGIN,
        height=340,
        legend=_LEGEND_BELOW,
    )
    fig.update_xaxes(type="log")
    fig.update_yaxes(type="log")
    return fig


def logp_map_figure(
    preview: np.ndarray,
    logp_db: np.ndarray,
    tops: np.ndarray,
    lefts: np.ndarray,
    tile: int,
    stride: int,
    full_size: tuple[int, int],
    marked: dict[str, int] | None = None,
) -> go.Figure:
    """The photo with a translucent map of its tiles' log p on top (native pixel coordinates).

    preview: uint8 (C, h, w) of the whole image; logp_db: (rows, columns); tops/lefts: each
    tile's corner (rows * columns,); full_size: (height, width); marked: label -> tile index,
    drawn as outlined squares (the most and least probable tiles).
    """
    height, width = full_size
    rgb = (np.repeat(preview, 3, axis=0) if preview.shape[0] == 1 else preview).transpose(1, 2, 0)
    scale = width / rgb.shape[1]
    rows, cols = logp_db.shape
    # each cell covers its tile's stride x stride block, from the image's corner
    centres_y = tops.reshape(rows, cols)[:, 0] + stride / 2
    centres_x = lefts.reshape(rows, cols)[0, :] + stride / 2
    fig = go.Figure()
    fig.add_trace(go.Image(z=rgb, x0=scale / 2, y0=scale / 2, dx=scale, dy=scale, name="photo"))
    fig.add_trace(
        go.Heatmap(
            x=centres_x,
            y=centres_y,
            z=logp_db,
            opacity=0.55,
            colorscale="Viridis",
            colorbar={"title": "dB/dim"},
            name="log p of the tile",
            hovertemplate="tile at (%{x:.0f}, %{y:.0f})<br>log p %{z:.2f} dB/dim<extra></extra>",
        )
    )
    for i, (label, index) in enumerate((marked or {}).items()):
        top, left = float(tops[index]), float(lefts[index])
        fig.add_shape(
            type="rect",
            x0=left,
            y0=top,
            x1=left + tile,
            y1=top + tile,
            line={"color": ("#d62728", "#1f77b4")[i % 2], "width": 3},
            name=label,
        )
    fig.update_yaxes(autorange="reversed", scaleanchor="x", range=[height, 0], showticklabels=False)
    fig.update_xaxes(range=[0, width], showticklabels=False, constrain="domain")
    fig.update_layout(
        title=f"log p of each {tile}×{tile} tile at native resolution"
        + (f" (one tile every {stride} pixels)" if stride > tile else ""),
        margin=_MARGIN,
        height=520,
    )
    return fig
