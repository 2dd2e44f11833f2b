"""Agreement of two models' log p on the same images: the generalization test (Fig. 2, §3.1)."""

import math
from dataclasses import dataclass

import torch

from dsm_core.analysis._common import Progress
from dsm_core.analysis.logp import logp_db
from dsm_core.energy import BaseEnergy


@dataclass(frozen=True)
class GeneralizationSummary:
    """Statistics of ``diff = log p_A - log p_B`` in dB/dim over N images (reference-spec §4.3).

    Attributes:
        mean_diff_db: mean of diff.
        mean_abs_diff_db: mean of |diff|.
        rms_diff_db: root mean square of diff.
        pearson: Pearson correlation of log p_A and log p_B (NaN if either is constant).
        num_images: N.
    """

    mean_diff_db: float
    mean_abs_diff_db: float
    rms_diff_db: float
    pearson: float
    num_images: int


@dataclass(frozen=True)
class GeneralizationResult:
    """Scatter data (log p under each model, dB/dim, (N,)) and its summary (Fig. 2)."""

    logp_db_a: torch.Tensor
    logp_db_b: torch.Tensor
    summary: GeneralizationSummary


def generalization_summary(
    logp_db_a: torch.Tensor | list[float], logp_db_b: torch.Tensor | list[float]
) -> GeneralizationSummary:
    """Mean difference, mean |difference|, RMS difference and correlation of log p (Fig. 2).

    Args:
        logp_db_a: log p in dB/dim under model A (N,), N >= 1.
        logp_db_b: log p in dB/dim under model B of the same images (N,).
    """
    a = torch.as_tensor(logp_db_a, dtype=torch.float64).reshape(-1)
    b = torch.as_tensor(logp_db_b, dtype=torch.float64).reshape(-1)
    if a.shape != b.shape or a.numel() == 0:
        raise ValueError(f"need two equal non-empty sets, got {tuple(a.shape)}, {tuple(b.shape)}")
    diff = a - b
    ca, cb = a - a.mean(), b - b.mean()
    denominator = math.sqrt(ca.square().sum().item() * cb.square().sum().item())
    pearson = (ca * cb).sum().item() / denominator if denominator > 0 else math.nan
    return GeneralizationSummary(
        mean_diff_db=diff.mean().item(),
        mean_abs_diff_db=diff.abs().mean().item(),
        rms_diff_db=diff.square().mean().sqrt().item(),
        pearson=pearson,
        num_images=a.numel(),
    )


def compare_models(
    model_a: BaseEnergy,
    model_b: BaseEnergy,
    x: torch.Tensor,
    *,
    t: float = 0.0,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
) -> GeneralizationResult:
    """log p of the same images under two models, and how well they agree (paper Fig. 2).

    The paper trains two models on disjoint halves of the data and compares them on images of
    both halves; each model carries its own normalisation constant.

    Args:
        model_a, model_b: normalised energy models of the same image shape.
        x: images (N, *image_shape) in [0, 1].
        t: noise variance (0 in the paper).
        batch_size: images per forward pass (default:
            ``VALUES_PER_BATCH`` / d, 64 images of 32x32).
        device: compute device (default: each model's own).
        progress: ``progress(done, 2)`` after each model.

    Returns:
        ``GeneralizationResult`` with diff = A - B.
    """
    results = []
    for k, model in enumerate((model_a, model_b)):
        results.append(logp_db(model, x, t, batch_size=batch_size, device=device).double())
        if progress is not None:
            progress(k + 1, 2)
    return GeneralizationResult(results[0], results[1], generalization_summary(*results))
