"""Agreement of two models' log p on the same images: the generalization test (Fig. 2, §3.1)."""

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
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


@dataclass(frozen=True)
class GeneralizationRun:
    """One N of a generalization experiment as ``train/generalization.py`` writes it (Fig. 2).

    Attributes:
        size: training images per model N.
        on_a: log p under models A and B of "A images" (A's training images).
        on_b: the same for "B images".
    """

    size: int
    on_a: GeneralizationResult
    on_b: GeneralizationResult

    @property
    def mean_abs_diff_db(self) -> float:
        """mean |log p_A - log p_B| over the images of both sets."""
        diff = torch.cat(
            [self.on_a.logp_db_a - self.on_a.logp_db_b, self.on_b.logp_db_a - self.on_b.logp_db_b]
        )
        return diff.abs().mean().item()


def read_generalization_runs(folder: str | Path) -> list[GeneralizationRun]:
    """The scatter files of a generalization folder, by increasing N.

    Reads ``N{N}/scatter.npz`` (as ``train/generalization.py`` writes them) or
    ``scatter_N{N}.npz`` (as in ``docs/results/``), arrays ``logp_db_model_{a,b}_on_{A,B}``.

    Raises:
        FileNotFoundError: no scatter file in the folder.
    """
    folder = Path(folder)
    paths = {}
    for path in [*folder.glob("N*/scatter.npz"), *folder.glob("scatter_N*.npz")]:
        name = path.parent.name if path.name == "scatter.npz" else path.stem.split("_", 1)[1]
        if name[1:].isdigit():
            paths[int(name[1:])] = path
    if not paths:
        raise FileNotFoundError(f"{folder}: no N*/scatter.npz or scatter_N*.npz")
    runs = []
    for size in sorted(paths):
        with np.load(paths[size], allow_pickle=False) as archive:
            results = []
            for images in ("A", "B"):
                a = torch.from_numpy(archive[f"logp_db_model_a_on_{images}"]).double()
                b = torch.from_numpy(archive[f"logp_db_model_b_on_{images}"]).double()
                results.append(GeneralizationResult(a, b, generalization_summary(a, b)))
        runs.append(GeneralizationRun(size, *results))
    return runs


@dataclass(frozen=True)
class ConvergenceFinding:
    """Whether two models' log p converge as their training sets grow (paper Fig. 2).

    Attributes:
        sizes: N of each run, increasing.
        mean_abs_diff_db: mean |log p_A - log p_B| over both image sets at each N.
    """

    sizes: tuple[int, ...]
    mean_abs_diff_db: tuple[float, ...]

    @property
    def monotone(self) -> bool:
        """The disagreement falls at every larger N."""
        values = self.mean_abs_diff_db
        return all(b < a for a, b in zip(values[:-1], values[1:], strict=True))

    @property
    def agrees(self) -> bool:
        """The largest N has the smallest disagreement of all (the paper: they converge)."""
        values = self.mean_abs_diff_db
        return len(values) >= 2 and values[-1] == min(values) and values[-1] < values[0]


def convergence_finding(runs: list[GeneralizationRun]) -> ConvergenceFinding:
    """Test Fig. 2's finding on runs of increasing N."""
    return ConvergenceFinding(
        tuple(run.size for run in runs), tuple(run.mean_abs_diff_db for run in runs)
    )
