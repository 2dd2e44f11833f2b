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


def logp_histogram(
    logp_db: np.ndarray,
    gumbel: GumbelFit | None,
    *,
    log_y: bool = False,
    num_bins: int = 30,
    markers: Sequence[Marker] = (),
    show_normal: bool = False,
    title: str = "log p of the held-out images",
) -> go.Figure:
    """Density histogram of log p with the fitted Gumbel (and Normal) density and markers.

    Traces, in order: the histogram ("test images"), "Gumbel fit", optionally "Normal fit", then
    one vertical line per marker (named by its label), as in paper Fig. 3.
    """
    logp = np.asarray(logp_db, dtype=np.float64)
    low, high = float(logp.min()), float(logp.max())
    values = [m.value for m in markers if np.isfinite(m.value)]
    span = max(high - low, 1e-6)
    grid_low = min([low - 0.15 * span, *values])
    grid_high = max([high + 0.15 * span, *values])
    grid = np.linspace(grid_low, grid_high, 400)
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
        fig.add_trace(
            go.Scatter(
                x=[marker.value, marker.value],
                y=[floor if log_y else 0.0, 1.15 * peak],
                mode="lines+text",
                text=["", marker.label],
                textposition="top center",
                name=marker.label,
                line={"color": marker.color, "width": 2.5},
                hovertemplate=f"{marker.label}: {marker.value:.2f} dB/dim<extra></extra>",
            )
        )
    fig.update_layout(
        title=title,
        xaxis_title=LOGP_AXIS,
        yaxis_title="density  [1 / (dB/dim)]",
        bargap=0.02,
        margin=_MARGIN,
        height=360,
        legend=_LEGEND_BELOW,
    )
    if log_y:
        fig.update_yaxes(type="log", range=[np.log10(floor), np.log10(1.4 * peak)])
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
    curves_db: dict[str, np.ndarray],
    *,
    title: str,
    y_title: str,
    reference: float | None = None,
    reference_label: str = "",
    errors: dict[str, np.ndarray] | None = None,
) -> go.Figure:
    """Quantities against the noise variance t on a log axis (paper Fig. 5)."""
    fig = go.Figure()
    for i, (name, values) in enumerate(curves_db.items()):
        error = None if errors is None or name not in errors else errors[name]
        fig.add_trace(
            go.Scatter(
                x=ts,
                y=values,
                mode="lines+markers",
                name=name,
                line={"color": MARKER_COLORS[i % len(MARKER_COLORS)]},
                error_y=None if error is None else {"type": "data", "array": error},
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
    fig.update_layout(
        title=title,
        xaxis_title="noise variance t (per pixel)",
        yaxis_title=y_title,
        margin=_MARGIN,
        height=320,
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


def estimator_bars(
    names: Sequence[str], logp_db: Sequence[float], stderr_db: Sequence[float]
) -> go.Figure:
    """log p of one image by several estimators, with ±1 standard error bars."""
    errors = [e if np.isfinite(e) else 0.0 for e in stderr_db]
    fig = go.Figure(
        go.Bar(
            x=list(names),
            y=list(logp_db),
            error_y={"type": "data", "array": errors},
            marker={"color": list(MARKER_COLORS[: len(names)])},
            text=[f"{v:.2f}" for v in logp_db],
            textposition="outside",
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
