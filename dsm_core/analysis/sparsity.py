"""Sparsity and smoothness of images: participation ratio of multi-scale Haar wavelet coefficients,
total variation, and the check that smooth, sparse images are more probable (Fig. 4 right, §3.2).

The transform is an orthonormal 2-D Haar pyramid written in torch (reference-spec §4.6 uses pywt
``dwt2`` with 'db1', mode 'symmetric'; the tests check this one against pywt). Level j = 0 is the
finest; each level splits the current low-pass image into four bands of half the size, and the
low-pass band goes on to level j + 1, until the image is 1 x 1 (J = log2(H) levels for H = W a
power of two). The coefficient vector holds, each multiplied by ``2^-(j+1)``, the three detail
bands of every level plus the low-pass band of the coarsest level (for a 64 x 64 image:
3 (1024 + 256 + 64 + 16 + 4 + 1) + 1 = 4096 coefficients).

Other sizes: an odd side is first extended by repeating its last row or column, which is what
pywt's 'symmetric' mode does for the two-tap Haar filter, so the coefficients equal pywt's
``wavedec2(x, 'db1', mode='symmetric', level=J)`` with ``J = ceil(log2(max(H, W)))``; there are
then more coefficients than pixels and the transform is no longer orthonormal, but the PR stays a
scale-free measure in (0, 1]. Channels are transformed separately and their coefficients pooled.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch

from dsm_core.analysis._common import chunks

DEFAULT_BATCH_SIZE = 1024


def num_haar_levels(height: int, width: int) -> int:
    """Levels until the low-pass image is 1 x 1: ``ceil(log2(max(H, W)))``."""
    return max(0, math.ceil(math.log2(max(height, width))))


def _pad_even(x: torch.Tensor) -> torch.Tensor:
    """Repeat the last row / column of an odd-sized (..., H, W) so both sides are even."""
    if x.shape[-2] % 2:
        x = torch.cat([x, x[..., -1:, :]], dim=-2)
    if x.shape[-1] % 2:
        x = torch.cat([x, x[..., :, -1:]], dim=-1)
    return x


def haar_level(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One orthonormal 2-D Haar step: (..., H, W) -> low-pass and three detail bands, each
    (..., ceil(H/2), ceil(W/2)). For even sides the map is orthonormal (energy preserving)."""
    x = _pad_even(x)
    a, b = x[..., 0::2, 0::2], x[..., 0::2, 1::2]
    c, e = x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    low = (a + b + c + e) / 2.0
    vertical_edges = (a - b + c - e) / 2.0  # difference along the width
    horizontal_edges = (a + b - c - e) / 2.0  # difference along the height
    diagonal = (a - b - c + e) / 2.0
    return low, horizontal_edges, vertical_edges, diagonal


def haar_coefficients(x: torch.Tensor, *, scaled: bool = True) -> torch.Tensor:
    """Multi-scale Haar coefficients of images, finest level first (Fig. 4 right).

    Args:
        x: images (B, C, H, W) (or (B, H, W)).
        scaled: multiply level j by ``2^-(j+1)`` (reference-spec §4.6); False gives the plain
            orthonormal transform (so ``|c|_2 = |x|_2`` for power-of-two sides).

    Returns:
        (B, n) coefficients: per level the three detail bands, then the coarsest low-pass band;
        n = C H W for power-of-two square sides. float64.
    """
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ValueError(f"expected images (B, C, H, W), got {tuple(x.shape)}")
    low = x.double()
    levels = num_haar_levels(x.shape[-2], x.shape[-1])
    parts = []
    for j in range(levels):
        low, *details = haar_level(low)
        factor = 2.0 ** -(j + 1) if scaled else 1.0
        parts.extend(band.flatten(1) * factor for band in details)
    parts.append(low.flatten(1) * (2.0**-levels if scaled and levels else 1.0))
    return torch.cat(parts, dim=1)


def participation_ratio(x: torch.Tensor, *, batch_size: int = DEFAULT_BATCH_SIZE) -> torch.Tensor:
    """Participation ratio ``|c|_1^2 / (n |c|_2^2)`` of scaled Haar coefficients, (B,) (Fig. 4).

    In (0, 1]: 1/n when a single coefficient is non-zero (e.g. a constant image), 1 when all have
    the same magnitude; smaller means sparser. NaN for an all-zero image.

    Args:
        x: images (B, C, H, W) in [0, 1] (any size; see the module docstring for odd sizes).
        batch_size: images transformed at a time.

    Returns:
        (B,) float64 on the CPU.
    """
    out = []
    for rows in chunks(x.shape[0], batch_size):
        c = haar_coefficients(x[rows].detach())
        l1 = c.abs().sum(dim=1)
        l2_sq = c.square().sum(dim=1)
        out.append((l1.square() / (c.shape[1] * l2_sq)).cpu())
    return torch.cat(out) if out else torch.empty(0, dtype=torch.float64)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation per pixel: mean of |horizontal| + |vertical| differences.

    ``(sum |x[h, w+1] - x[h, w]| + sum |x[h+1, w] - x[h, w]|) / (C H W)``, so a constant image
    gives 0 and a one-pixel checkerboard of amplitude 1 about ``2``.

    Args:
        x: images (B, C, H, W).

    Returns:
        (B,) float64.
    """
    if x.ndim != 4:
        raise ValueError(f"expected images (B, C, H, W), got {tuple(x.shape)}")
    x = x.double()
    horizontal = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).sum(dim=1)
    vertical = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).sum(dim=1)
    return (horizontal + vertical) / math.prod(x.shape[1:])


def spearman_test(
    a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray
) -> tuple[float, float]:
    """Spearman rank correlation of two (N,) samples and its two-sided p-value (ties get average
    ranks); the one rank correlation of the sparsity checks (``smoothness_check`` here, the app's
    ``findings.sparsity_finding``)."""
    from scipy.stats import spearmanr

    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    result = spearmanr(a, b)
    return float(result.statistic), float(result.pvalue)


def spearman(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Spearman rank correlation of two (N,) samples (ties get average ranks)."""
    return spearman_test(a, b)[0]


@dataclass(frozen=True)
class SmoothnessCheck:
    """Do smooth images get higher log p? (paper §3.2: log p falls with texture / sparsity).

    Attributes:
        fraction: size of each extreme group as a fraction of the images.
        low_tv_logp_db: mean log p (dB/dim) of the ``fraction`` lowest-TV images.
        high_tv_logp_db: mean log p of the ``fraction`` highest-TV images.
        spearman_tv: rank correlation of log p with total variation (negative expected).
        spearman_pr: rank correlation of log p with the Haar participation ratio (negative
            expected: sparser, lower-PR images are more probable).
    """

    fraction: float
    low_tv_logp_db: float
    high_tv_logp_db: float
    spearman_tv: float
    spearman_pr: float

    @property
    def passes(self) -> bool:
        """Smooth beats textured, and log p falls with both TV and PR."""
        return (
            self.low_tv_logp_db > self.high_tv_logp_db
            and self.spearman_tv < 0
            and self.spearman_pr < 0
        )


def smoothness_check(
    logp_db: torch.Tensor, x: torch.Tensor, fraction: float = 0.1
) -> SmoothnessCheck:
    """Compare log p of the smoothest and most textured images, and its rank correlations.

    Args:
        logp_db: log p of each image in dB/dim (B,).
        x: the images (B, C, H, W) in [0, 1].
        fraction: extreme-group size (at least one image each).

    Returns:
        a ``SmoothnessCheck``.
    """
    logp_db = torch.as_tensor(logp_db, dtype=torch.float64).reshape(-1)
    if logp_db.shape[0] != x.shape[0]:
        raise ValueError(f"{logp_db.shape[0]} log p values for {x.shape[0]} images")
    if not 0 < fraction <= 0.5:
        raise ValueError(f"fraction must be in (0, 0.5], got {fraction}")
    tv = total_variation(x)
    order = torch.argsort(tv, stable=True)
    count = max(1, int(round(fraction * len(tv))))
    return SmoothnessCheck(
        fraction=fraction,
        low_tv_logp_db=logp_db[order[:count]].mean().item(),
        high_tv_logp_db=logp_db[order[-count:]].mean().item(),
        spearman_tv=spearman(logp_db, tv),
        spearman_pr=spearman(logp_db, participation_ratio(x)),
    )
