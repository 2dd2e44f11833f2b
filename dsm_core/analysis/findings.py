"""The paper's findings as tests on a model: each returns the measured statistic and whether it
agrees with what the paper reports (Figs. 3, 4, 5, 12, 13), so an interface states a finding only
next to the number that supports or contradicts it.

- ``gumbel_finding``: is the histogram of log p well fitted by a Gumbel (Fig. 3, §3.2)? KS test
  at level 5 % and the Gumbel-vs-Normal likelihood; ``gumbel_qq`` gives the QQ plot.
- ``contrast_finding``: does log p(a x + b) fall with the contrast a on the paper's slice
  b = 1/2, a in [0, 1/2] (Fig. 4 middle)? The sign of the least-squares slope.
- ``sparsity_finding``: is log p anti-correlated with the wavelet participation ratio (Fig. 4
  right)? Spearman's rank correlation and its p-value.
- ``interpolation_finding``: does the path (1 - a) x0 + a x1 drop below the chord of the endpoints'
  log p (Fig. 12: for medium- and high-probability pairs; a slight rise for low-probability ones)?
- ``smoothing_finding``: does gradient ascent smooth the image (Fig. 13)? Total variation
  before and after.
- ``one_shot_check``: does the one-shot energy agree with the probability-flow ODE (eq. 14) on
  given images, within the ODE's error and the disagreement seen on the model's test images?
- ``noise_level_figure``: log p and d_eff against t for several images and a test-set average,
  with the trained noise range (Fig. 5).
- ``dimensionality_finding``: do more probable images have lower-dimensional neighbourhoods
  (Fig. 5 right)? Spearman's rank correlation of log p with d_eff at each trained t <= 1e-2.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from dsm_core import units
from dsm_core.analysis._common import Progress, check_images
from dsm_core.analysis.affine import contrast_slice_logp_db
from dsm_core.analysis.dimensionality import dimensionality_curves
from dsm_core.analysis.estimators import ode_nll_nats
from dsm_core.analysis.gumbel import GumbelFit
from dsm_core.analysis.interpolation import Interpolation
from dsm_core.analysis.logp import logp_db, percentile_of
from dsm_core.analysis.sparsity import spearman_test, total_variation
from dsm_core.energy import BaseEnergy
from dsm_core.noise import as_t_grid

# Significance level of every test here: the Kolmogorov-Smirnov test of the Gumbel fit and the
# Spearman rank correlations of the sparsity and dimensionality findings.
SIGNIFICANCE_LEVEL = 0.05
# Fig. 12: "for low-probability images, [interpolation] leads to a slight increase". A pair counts
# as low-probability when both endpoints lie in the lowest third of the test set.
LOW_PROBABILITY_PERCENTILE = 100.0 / 3.0
PAPER_CONTRAST_B = (
    0.5  # Fig. 4 middle: the slice b = 1/2, where a x + b stays in [0, 1] for a <= 1/2
)
# Fig. 5: "a sizable range of scales t in [1e-9, 1e-2] where almost the entire range of
# dimensionalities coexist"; the rank test of dimensionality_finding runs up to this t.
PAPER_DIMENSIONALITY_T_MAX = 1e-2


# ------------------------------------------------------------------------------ Fig. 3: Gumbel


@dataclass(frozen=True)
class GumbelFinding:
    """Whether log p over a test set is "well fitted by a Gumbel" (paper Fig. 3).

    Attributes:
        ks_statistic: KS distance between the values and the fitted Gumbel.
        ks_critical: the KS distance above which a sample of ``num_values`` from the fitted law
            is rejected at level ``SIGNIFICANCE_LEVEL`` (``scipy.stats.kstwo``; parameters fitted
            to the same data make the test lenient, so a rejection is conclusive).
        gumbel_nll: mean negative log-likelihood under the Gumbel (nats per value).
        normal_nll: same under the maximum-likelihood Normal.
        num_values: sample size.
    """

    ks_statistic: float
    ks_critical: float
    gumbel_nll: float
    normal_nll: float
    num_values: int

    @property
    def ks_passes(self) -> bool:
        return self.ks_statistic <= self.ks_critical

    @property
    def gumbel_beats_normal(self) -> bool:
        return self.gumbel_nll < self.normal_nll

    @property
    def agrees(self) -> bool:
        """The fit passes the KS test and explains the data better than a Normal."""
        return self.ks_passes and self.gumbel_beats_normal


def gumbel_finding(fit: GumbelFit, *, level: float = SIGNIFICANCE_LEVEL) -> GumbelFinding:
    """Test the Gumbel fit of log p (paper Fig. 3, §3.2: "well approximated by a Gumbel")."""
    critical = float(stats.kstwo.ppf(1.0 - level, fit.num_values))
    return GumbelFinding(
        ks_statistic=fit.ks_statistic,
        ks_critical=critical,
        gumbel_nll=fit.mean_nll,
        normal_nll=fit.normal_nll,
        num_values=fit.num_values,
    )


def gumbel_qq(logp_db: np.ndarray | torch.Tensor, fit: GumbelFit) -> tuple[np.ndarray, np.ndarray]:
    """QQ plot data: (Gumbel quantiles, sorted values), both (N,) in dB/dim.

    The i-th sorted value is paired with the fitted Gumbel's quantile at ``(i + 1/2) / N``; a good
    fit lies on the diagonal.
    """
    values = np.sort(np.asarray(logp_db, dtype=np.float64).reshape(-1))
    probabilities = (np.arange(values.size) + 0.5) / values.size
    return stats.gumbel_r.ppf(probabilities, fit.loc, fit.scale), values


# --------------------------------------------------------------------- Fig. 4: contrast, sparsity


@dataclass(frozen=True)
class ContrastFinding:
    """log p(a x + b) along the paper's slice (Fig. 4 middle), and its least-squares slope.

    Attributes:
        a: contrasts (A,).
        b: the brightness offset of the slice.
        logp_db: log p(a x + b) in dB/dim, (B, A).
        slope_db: least-squares slope of log p against a, dB/dim per unit of a, (B,).
    """

    a: np.ndarray
    b: float
    logp_db: np.ndarray
    slope_db: np.ndarray

    @property
    def agrees(self) -> np.ndarray:
        """(B,) bool: log p falls with the contrast (the paper: lower contrast, more probable)."""
        return self.slope_db < 0


def contrast_finding(
    model: BaseEnergy,
    x: torch.Tensor,
    a: np.ndarray | list[float] | None = None,
    b: float = PAPER_CONTRAST_B,
) -> ContrastFinding:
    """The sign of d log p(a x + b) / da on the slice b = 1/2, a in [0, 1/2] (paper Fig. 4).

    The default contrasts keep ``a x + b`` inside [0, 1], so no image outside the data range is
    scored.
    """
    a = np.linspace(0.0, 0.5, 11) if a is None else np.asarray(a, dtype=np.float64)
    values = contrast_slice_logp_db(model, x, torch.as_tensor(a), b).double().numpy()  # (B, A)
    centred = a - a.mean()
    slope = (values - values.mean(axis=1, keepdims=True)) @ centred / np.sum(centred**2)
    return ContrastFinding(a=a, b=float(b), logp_db=values, slope_db=slope)


@dataclass(frozen=True)
class SparsityFinding:
    """Rank correlation of log p with the wavelet participation ratio (Fig. 4 right).

    Attributes:
        spearman: Spearman's rank correlation of (participation ratio, log p).
        p_value: its two-sided p-value.
        num_images: number of images.
    """

    spearman: float
    p_value: float
    num_images: int

    @property
    def agrees(self) -> bool:
        """Sparser images (lower ratio) are significantly more probable (at 5 %)."""
        return self.spearman < 0 and self.p_value < SIGNIFICANCE_LEVEL


def sparsity_finding(
    participation_ratio: np.ndarray | torch.Tensor, logp_db: np.ndarray | torch.Tensor
) -> SparsityFinding:
    """Test the paper's finding that log p decreases with the participation ratio (Fig. 4).

    The app's verdict on precomputed ratios; its statistic is ``sparsity.smoothness_check``'s
    ``spearman_pr`` (the bench's check from the images, with total variation besides).
    """
    rho, p_value = spearman_test(participation_ratio, logp_db)
    return SparsityFinding(rho, p_value, int(np.asarray(participation_ratio).size))


# ------------------------------------------------------------------------- Fig. 12: interpolation


@dataclass(frozen=True)
class InterpolationFinding:
    """The path's log p against the chord, on the interior weights 0 < alpha < 1 (Fig. 12).

    Attributes:
        mean_excess_db: mean of path - chord over the interior weights (dB/dim).
        max_excess_db, max_alpha: the largest path - chord and its alpha (interior).
        min_excess_db, min_alpha: the smallest (most negative) and its alpha (interior).
        endpoint_percentiles: percentiles of log p(x0), log p(x1) in the reference set.
    """

    mean_excess_db: float
    max_excess_db: float
    max_alpha: float
    min_excess_db: float
    min_alpha: float
    endpoint_percentiles: tuple[float, float]

    @property
    def path_below(self) -> bool:
        """The path is on average below the chord."""
        return self.mean_excess_db < 0

    @property
    def low_probability_pair(self) -> bool:
        """Both endpoints in the lowest third of the reference set (Fig. 12's exception)."""
        return max(self.endpoint_percentiles) < LOW_PROBABILITY_PERCENTILE

    @property
    def agrees(self) -> bool:
        """Below the chord for a medium/high-probability pair, above for a low-probability one."""
        return self.path_below != self.low_probability_pair


def interpolation_finding(
    path: Interpolation, reference_logp_db: np.ndarray | torch.Tensor, index: int = 0
) -> InterpolationFinding:
    """Test Fig. 12 on one pair of ``path`` (row ``index``); needs >= 3 weights."""
    alphas = path.alphas.numpy()
    interior = (alphas > 0) & (alphas < 1)
    if not interior.any():
        raise ValueError("need at least one weight strictly between 0 and 1")
    excess = path.excess_db[index].numpy()[interior]
    inner = alphas[interior]
    ends = torch.stack([path.path_logp_db[index, 0], path.path_logp_db[index, -1]])
    percentiles = percentile_of(ends, torch.as_tensor(reference_logp_db)).tolist()
    return InterpolationFinding(
        mean_excess_db=float(excess.mean()),
        max_excess_db=float(excess.max()),
        max_alpha=float(inner[int(np.argmax(excess))]),
        min_excess_db=float(excess.min()),
        min_alpha=float(inner[int(np.argmin(excess))]),
        endpoint_percentiles=(float(percentiles[0]), float(percentiles[1])),
    )


# ------------------------------------------------------------------------ Fig. 13: ascent smooths


@dataclass(frozen=True)
class SmoothingFinding:
    """Total variation of the start and of the result of ascent or descent (Fig. 13).

    Attributes:
        start_tv: total variation of the start (B,).
        result_tv: total variation of the result (B,).
        direction: "ascent" or "descent".
    """

    start_tv: np.ndarray
    result_tv: np.ndarray
    direction: str

    @property
    def agrees(self) -> np.ndarray:
        """(B,) bool: ascent lowered the total variation (smoother), descent raised it."""
        if self.direction == "ascent":
            return self.result_tv < self.start_tv
        return self.result_tv > self.start_tv


def smoothing_finding(
    start: torch.Tensor, result: torch.Tensor, direction: str
) -> SmoothingFinding:
    """Test Fig. 13 (ascent smooths, descent adds detail) on images before and after."""
    if direction not in ("ascent", "descent"):
        raise ValueError(f"direction must be 'ascent' or 'descent', got {direction!r}")
    return SmoothingFinding(
        total_variation(start).numpy(), total_variation(result).numpy(), direction
    )


# ----------------------------------------------------------------- one-shot energy vs the ODE


# How far past [0, 1] a pixel may lie before its image counts as outside the data range: one 8-bit
# grey level. A model with the box term (``EnergyConfig.box_term``) ends its samples within
# 3 sqrt(t_min) = 0.003 of the box, a difference no 8-bit image shows.
GREY_LEVEL = 1.0 / 255.0


def outside_data_range(x: torch.Tensor) -> np.ndarray:
    """(B,) bool: some pixel of the image lies more than one grey level (1/255) outside [0, 1],
    where no data was seen."""
    return ((x < -GREY_LEVEL) | (x > 1.0 + GREY_LEVEL)).flatten(1).any(dim=1).numpy()


@dataclass(frozen=True)
class OneShotCheck:
    """The one-shot log p of images next to the probability-flow ODE's (eq. 14), in dB/dim.

    Attributes:
        one_shot_db: -U(x, 0) (B,).
        ode_db: the ODE's log p (B,); NaN where its trajectory diverged.
        ode_stderr_db: its Hutchinson standard error (B,) (NaN with one probe).
        test_spread_db: the largest |one-shot - ODE| seen on the model's test images (0 if not
            measured).
        outside: (B,) bool, pixels outside [0, 1].
    """

    one_shot_db: np.ndarray
    ode_db: np.ndarray
    ode_stderr_db: np.ndarray
    test_spread_db: float
    outside: np.ndarray

    @property
    def difference_db(self) -> np.ndarray:
        """one-shot - ODE (B,)."""
        return self.one_shot_db - self.ode_db

    @property
    def tolerance_db(self) -> np.ndarray:
        """max(3 x the ODE's standard error, the test-set spread) (B,)."""
        stderr = np.nan_to_num(self.ode_stderr_db, nan=0.0)
        return np.maximum(3.0 * stderr, self.test_spread_db)

    @property
    def disagrees(self) -> np.ndarray:
        """(B,) bool: |one-shot - ODE| is larger than the tolerance, or the ODE diverged."""
        return ~(np.abs(self.difference_db) <= self.tolerance_db)


# Settings of the app's check: RK4 on 16 log-t steps, 2 Hutchinson probes (a standard error).
CHECK_ODE_STEPS = 16
CHECK_ODE_PROBES = 2


def one_shot_check(
    model: BaseEnergy,
    x: torch.Tensor,
    *,
    test_spread_db: float = 0.0,
    num_steps: int = CHECK_ODE_STEPS,
    num_probes: int = CHECK_ODE_PROBES,
    generator: torch.Generator | None = None,
    progress: Progress | None = None,
) -> OneShotCheck:
    """The ODE's log p of images next to their one-shot log p (paper §A.2, eq. 14).

    Args:
        model: a normalised energy model.
        x: images (B, *image_shape) (values outside [0, 1] are scored as they are, and flagged).
        test_spread_db: the disagreement to tolerate, from ``one_shot_spread`` on test images.
        num_steps: RK4 steps of the ODE on the log-t grid.
        num_probes: Hutchinson probes (>= 2 for a standard error).
        generator: source of the probes.
        progress: ``progress(done, total)`` along the ODE.
    """
    x = check_images(model, x)
    one_shot = logp_db(model, x).double().numpy()
    ode_db = np.full(x.shape[0], math.nan)
    stderr_db = np.full(x.shape[0], math.nan)
    # the whole batch at once; if a trajectory leaves the finite numbers (an image far outside
    # the data, an untrained model), image by image, NaN for those that diverge
    groups = [slice(0, x.shape[0])]
    while groups:
        rows = groups.pop()
        try:
            estimate = ode_nll_nats(
                model,
                x[rows],
                num_steps=num_steps,
                num_probes=num_probes,
                generator=generator,
                progress=progress,
            )
        except ValueError:
            if rows.stop - rows.start > 1:
                groups.extend(slice(i, i + 1) for i in range(rows.start, rows.stop))
            continue
        ode_db[rows] = estimate.logp_db.double().numpy()
        stderr_db[rows] = units.nats_to_db_per_dim(estimate.stderr_nats, model.d).abs().numpy()
    return OneShotCheck(
        one_shot_db=one_shot,
        ode_db=ode_db,
        ode_stderr_db=stderr_db,
        test_spread_db=float(test_spread_db),
        outside=outside_data_range(x),
    )


def one_shot_spread(
    model: BaseEnergy,
    x_test: torch.Tensor,
    *,
    num_steps: int = CHECK_ODE_STEPS,
    num_probes: int = CHECK_ODE_PROBES,
    generator: torch.Generator | None = None,
    progress: Progress | None = None,
) -> float:
    """The largest |one-shot - ODE| log p (dB/dim) on test images: how far the two estimates
    differ on data the model was made for (the tolerance of ``one_shot_check``)."""
    check = one_shot_check(
        model,
        x_test,
        num_steps=num_steps,
        num_probes=num_probes,
        generator=generator,
        progress=progress,
    )
    return float(np.max(np.abs(check.difference_db)))


# ------------------------------------------------------------ Fig. 5: across noise levels


@dataclass(frozen=True)
class NoiseRange:
    """The noise variances a model was trained on; None where the model does not say."""

    t_min: float | None
    t_max: float | None


def trained_noise_range(model: BaseEnergy) -> NoiseRange:
    """The smallest and largest trained noise variance of a model.

    t_min: ``model.t_min`` (the floor the model is flat below), else the training config's
    ``noise.t_min`` in its metadata; t_max: the level its normalisation was computed at
    (``metadata["log_norm_t_max"]``), else the training config's ``noise.t_max``.
    """
    metadata = getattr(model, "metadata", None) or {}
    noise = (metadata.get("train_config") or {}).get("noise") or {}
    t_min = float(model.t_min) if getattr(model, "t_min", 0.0) > 0 else noise.get("t_min")
    t_max = metadata.get("log_norm_t_max", noise.get("t_max"))
    return NoiseRange(
        None if t_min is None else float(t_min), None if t_max is None else float(t_max)
    )


@dataclass(frozen=True)
class NoiseLevelFigure:
    """Paper Fig. 5 on a model: effective log p and d_eff against t.

    Attributes:
        ts: noise variances (T,).
        logp_db: effective log p -E[U(y, t) | x] of each image, dB/dim (K, T).
        d_eff: effective dimensionality (eq. 11) of each image (K, T).
        d_eff_stderr: its Monte Carlo standard error (K, T).
        clean_logp_db: log p(x) = -U(x, 0) of each image, dB/dim (K,) (a model with a floor
            t_min evaluates it there).
        reference_logp_db: effective log p of each reference image, dB/dim (M, T) (one noise
            draw each; M = 0 without them).
        reference_d_eff: d_eff of each reference image (M, T).
        reference_clean_logp_db: log p(x) of each reference image, dB/dim (M,).
        trained: the trained noise range.
        d: dimension of one image.
    """

    ts: np.ndarray
    logp_db: np.ndarray
    d_eff: np.ndarray
    d_eff_stderr: np.ndarray
    clean_logp_db: np.ndarray
    reference_logp_db: np.ndarray
    reference_d_eff: np.ndarray
    reference_clean_logp_db: np.ndarray
    trained: NoiseRange
    d: int

    @property
    def mean_logp_db(self) -> np.ndarray:
        """Average effective log p over the reference images (T,) (NaN without them)."""
        return _reference_mean(self.reference_logp_db)

    @property
    def mean_d_eff(self) -> np.ndarray:
        """Average d_eff over the reference images (T,) (NaN without them)."""
        return _reference_mean(self.reference_d_eff)

    @property
    def below_trained(self) -> np.ndarray:
        """(T,) bool: t below the smallest trained noise variance (the model is flat there by
        construction, or extrapolates)."""
        if self.trained.t_min is None:
            return np.zeros(self.ts.shape, dtype=bool)
        return self.ts < self.trained.t_min

    @property
    def above_d(self) -> np.ndarray:
        """(K, T) bool: d_eff exceeds d by more than 2 standard errors."""
        return self.d_eff - self.d > 2.0 * self.d_eff_stderr


def _reference_mean(values: np.ndarray) -> np.ndarray:
    """Mean over the rows of (M, T) values; NaN (T,) when M = 0."""
    if values.shape[0] == 0:
        return np.full(values.shape[1], math.nan)
    return values.mean(axis=0)


def noise_level_figure(
    model: BaseEnergy,
    x: torch.Tensor,
    ts: torch.Tensor | list[float],
    *,
    reference: torch.Tensor | None = None,
    num_noise: int = 8,
    generator: torch.Generator | None = None,
    progress: Progress | None = None,
) -> NoiseLevelFigure:
    """Fig. 5: effective log p and d_eff of images x against t, and of ``reference`` images
    (one noise draw each, averaged as the paper's test-set average), with every image's log p.

    Args:
        model: a normalised energy model.
        x: images (K, *image_shape) drawn as separate curves.
        ts: noise variances (T,).
        reference: images (M, *image_shape) averaged into one curve, or None.
        num_noise: noise draws per image of x and level.
        generator: source of the noise.
        progress: ``progress(done, total)`` over both passes.
    """
    ts = as_t_grid(ts)
    passes = 1 if reference is None else 2
    total = passes * len(ts)

    def stage(offset: int) -> Progress | None:
        if progress is None:
            return None
        return lambda done, _: progress(offset + done, total)

    curves = dimensionality_curves(
        model, x, ts, num_noise=num_noise, generator=generator, progress=stage(0)
    )
    reference_logp = reference_d_eff = np.empty((0, len(ts)))
    reference_clean = np.empty(0)
    if reference is not None:
        average = dimensionality_curves(
            model, reference, ts, num_noise=1, generator=generator, progress=stage(len(ts))
        )
        reference_logp = average.effective_logp_db.numpy()
        reference_d_eff = average.d_eff_denoiser.numpy()
        reference_clean = logp_db(model, reference).double().numpy()
    return NoiseLevelFigure(
        ts=ts.numpy(),
        logp_db=curves.effective_logp_db.numpy(),
        d_eff=curves.d_eff_denoiser.numpy(),
        d_eff_stderr=curves.d_eff_denoiser_stderr.numpy(),
        clean_logp_db=logp_db(model, x).double().numpy(),
        reference_logp_db=reference_logp,
        reference_d_eff=reference_d_eff,
        reference_clean_logp_db=reference_clean,
        trained=trained_noise_range(model),
        d=model.d,
    )


@dataclass(frozen=True)
class DimensionalityFinding:
    """Rank correlation of log p with d_eff across images, level by level (Fig. 5 right).

    Attributes:
        ts: the tested noise variances, those of the figure in [t_min, 1e-2] (L,).
        spearman: Spearman's rank correlation of (log p(x), d_eff(x, t)) at each of them (L,).
        p_value: its two-sided p-value (L,).
        num_images: images ranked at each level (the figure's curves and reference images).
        t_smallest, t_largest: the figure's smallest and largest t.
        d_eff_fraction_smallest, d_eff_fraction_largest: mean d_eff / d over the same images at
            those two levels (the paper: about 1 at small t, about 0 at large t).
    """

    ts: np.ndarray
    spearman: np.ndarray
    p_value: np.ndarray
    num_images: int
    t_smallest: float
    t_largest: float
    d_eff_fraction_smallest: float
    d_eff_fraction_largest: float

    @property
    def significant(self) -> np.ndarray:
        """(L,) bool: a negative correlation, significant at 5 %."""
        return (self.spearman < 0) & (self.p_value < SIGNIFICANCE_LEVEL)

    @property
    def agrees(self) -> bool:
        """More probable images are lower-dimensional at most tested levels: the correlation is
        negative and significant at strictly more than half of them."""
        return 2 * int(self.significant.sum()) > len(self.ts)


def dimensionality_finding(figure: NoiseLevelFigure) -> DimensionalityFinding:
    """Test Fig. 5's "higher-probability images have lower-dimensional neighborhoods, even at
    relatively small scales, while lower-probability images have nearly full-dimensional
    neighborhoods" (paper §3.3, over t in [1e-9, 1e-2]) on a figure's data.

    The images are the figure's curves and its reference images together. At each t of the
    figure inside the trained range [t_min, ``PAPER_DIMENSIONALITY_T_MAX`` = 1e-2] (from 0 where
    the model does not record t_min), Spearman's rank correlation of the images' log p(x)
    (``clean_logp_db``) with their d_eff(x, t) and its two-sided p-value
    (``sparsity.spearman_test``, ``scipy.stats.spearmanr``; its t approximation is lenient below
    about 10 images). The verdict agrees when rho < 0 with p < 0.05 at strictly more than half
    of those levels. d_eff / d at the figure's smallest and largest t reports the other half of
    the finding (d_eff reaches d at small t and vanishes at large t) as numbers.

    Raises:
        ValueError: fewer than 3 images, or no t of the figure in the tested range.
    """
    clean = np.concatenate([figure.clean_logp_db, figure.reference_clean_logp_db])
    d_eff = np.concatenate([figure.d_eff, figure.reference_d_eff])  # (K + M, T)
    if clean.size < 3:
        raise ValueError(f"need at least 3 images to rank, got {clean.size}")
    low = figure.trained.t_min or 0.0
    tested = (figure.ts >= low) & (figure.ts <= PAPER_DIMENSIONALITY_T_MAX)
    if not tested.any():
        raise ValueError(
            f"no noise level of the figure in [{low:.0e}, {PAPER_DIMENSIONALITY_T_MAX:.0e}]"
        )
    tests = [spearman_test(clean, d_eff[:, j]) for j in np.flatnonzero(tested)]
    fraction = d_eff.mean(axis=0) / figure.d
    return DimensionalityFinding(
        ts=figure.ts[tested],
        spearman=np.array([rho for rho, _ in tests]),
        p_value=np.array([p for _, p in tests]),
        num_images=int(clean.size),
        t_smallest=float(figure.ts[0]),
        t_largest=float(figure.ts[-1]),
        d_eff_fraction_smallest=float(fraction[0]),
        d_eff_fraction_largest=float(fraction[-1]),
    )


# ------------------------------------------------------------------ Fig. 3: reference images


@dataclass(frozen=True)
class ReferenceImages:
    """Fig. 3's reference points: a constant image of intensity 1/2 and uniform noise in [0, 1].

    Attributes:
        labels: ("constant 0.5", "uniform noise").
        images: (2, *image_shape) in [0, 1].
        logp_db: their log p in dB/dim (2,).
    """

    labels: tuple[str, ...]
    images: torch.Tensor
    logp_db: np.ndarray


def reference_images(
    model: BaseEnergy, *, generator: torch.Generator | None = None
) -> ReferenceImages:
    """log p of the constant image 0.5 and of a uniform-noise image (paper Fig. 3 arrows)."""
    shape = tuple(model.image_shape)
    constant = torch.full((1, *shape), 0.5)
    noise = torch.rand((1, *shape), generator=generator)
    images = torch.cat([constant, noise])
    values = logp_db(model, images).double().numpy()
    return ReferenceImages(("constant 0.5", "uniform noise"), images, values)
