"""log p along straight lines between images vs the chord of the endpoints (paper Fig. 12, §D.3)."""

from dataclasses import dataclass

import torch

from dsm_core.analysis._common import Progress, check_images
from dsm_core.analysis.logp import logp_db
from dsm_core.energy import BaseEnergy


@dataclass(frozen=True)
class Interpolation:
    """log p along ``(1 - alpha) x0 + alpha x1`` and the chord between the endpoints' log p.

    Attributes:
        alphas: interpolation weights (A,).
        path_logp_db: log p of the interpolated images, dB/dim, (B, A).
        chord_logp_db: ``(1 - alpha) log p(x0) + alpha log p(x1)``, dB/dim, (B, A).
    """

    alphas: torch.Tensor
    path_logp_db: torch.Tensor
    chord_logp_db: torch.Tensor

    @property
    def excess_db(self) -> torch.Tensor:
        """``path - chord`` (B, A): positive where the path is more probable than the chord
        (log p above its chord, as the paper observes: the support is not convex)."""
        return self.path_logp_db - self.chord_logp_db


def interpolation_logp_db(
    model: BaseEnergy,
    x0: torch.Tensor,
    x1: torch.Tensor,
    alphas: torch.Tensor | list[float] | int = 21,
    *,
    t: float = 0.0,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
) -> Interpolation:
    """log p along the segment x0 -> x1 vs linear interpolation of the endpoints' log p (Fig. 12).

    The paper writes the chord as ``alpha log p(x0) + (1 - alpha) log p(x1)``, with weights
    swapped relative to its path ``(1 - alpha) x0 + alpha x1``; here both use ``(1 - alpha)`` on
    x0 (reference-spec §4.8), so path and chord agree at both ends.

    Args:
        model: a normalised energy model.
        x0: start images (B, *image_shape) in [0, 1].
        x1: end images, same shape (pairs are (x0[i], x1[i])).
        alphas: weights (A,), or a number of equally spaced weights in [0, 1].
        t: noise variance at which to evaluate (0: clean density).
        batch_size: images per forward pass (default:
            ``VALUES_PER_BATCH`` / d, 64 images of 32x32).
        device: compute device (default: the model's).
        progress: ``progress(done, total)`` after each alpha.

    Returns:
        An ``Interpolation`` (tensors on the CPU, float64).
    """
    x0 = check_images(model, x0, "x0")
    x1 = check_images(model, x1, "x1")
    if x1.shape != x0.shape:
        raise ValueError(f"x1 must have the shape of x0 {tuple(x0.shape)}, got {tuple(x1.shape)}")
    if isinstance(alphas, int):
        alphas = torch.linspace(0.0, 1.0, alphas, dtype=torch.float64)
    alphas = torch.as_tensor(alphas, dtype=torch.float64).reshape(-1)
    ends = logp_db(
        model, torch.cat([x0, x1]), t, batch_size=batch_size, device=device
    ).double()  # (2B,)
    start, end = ends[: x0.shape[0]], ends[x0.shape[0] :]
    chord = (1.0 - alphas)[None, :] * start[:, None] + alphas[None, :] * end[:, None]  # (B, A)
    columns = []
    for j, alpha in enumerate(alphas.tolist()):
        path = (1.0 - alpha) * x0 + alpha * x1
        columns.append(logp_db(model, path, t, batch_size=batch_size, device=device).double())
        if progress is not None:
            progress(j + 1, alphas.numel())
    return Interpolation(alphas, torch.stack(columns, dim=1), chord)
