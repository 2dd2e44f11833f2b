"""Estimates of -log p(x) other than the one-shot energy U(x, 0) (paper §A.2, eqs. 13-18).

All three integrate over noise levels from t = 0 to ``t_max``:

- ``ode_nll_nats``: the probability-flow ODE ``dx/dt = grad_y U(x, t) / 2`` run forward from the
  image, with ``-log p = prior(x_tmax) - (1/2) int_0^tmax Laplacian_y U(x_t, t) dt`` (eqs. 13-14);
  a deterministic generative model's likelihood, the Laplacian by Hutchinson's estimator.
- ``mse_nll_nats``: the denoising bound
  ``(d/2) ln(2 pi e t_max) - int (t d - E|x - D|^2) dt / (2t^2)`` (eq. 16)
  ``= (d/2) ln(2 pi e t_max) - (1/2) int (d - d_eff(x, t)) d ln t``.
- ``sde_nll_nats``: the Itô estimator along Brownian paths x_t = x + w_t (eqs. 17-18). Its
  expectation is eq. 16 only if the stochastic integral is taken with ``grad_y U`` at the END of
  each increment (a backward Itô integral, i.e. the forward Itô integral of the time-reversed
  path, as in the references, which integrate the reverse SDE). With the usual forward (left-point)
  Itô sum, Itô's formula and eq. 35 show that an extra ``- int Laplacian U dt`` would be needed; see
  the docstring of ``sde_nll_nats``.

``prior="gaussian"`` is the paper's ``|x_T|^2 / (2 t_max) + (d/2) ln(2 pi t_max)`` (eq. 14, 18; for
eq. 16 its mean ``(d/2) ln(2 pi e t_max)``); the data mean and variance make it off by about
``<x_T, mean>/t_max`` and ``d var / (2 t_max)`` nats. ``prior="model"`` uses the model's own
normalised energy at ``t_max`` instead (eq. 15, exact for an exact model).

The segment [0, t_min] of the log-t grid (t_min defaults to the model's trained floor, below which
the model is flat in t): the ODE takes one Heun step in t from t = 0 (the model is evaluated at
t = 0, as for the one-shot energy); the MSE integral adds ``(d - d_eff(t_min))/2``,
exact when ``d - d_eff`` is linear in t below t_min (true for a smooth density); the SDE path starts
at x and takes its first increment from 0 to t_min.
"""

import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from dsm_core import units
from dsm_core.analysis._common import (
    Progress,
    batch_size_for,
    check_images,
    chunks,
    lowest_t,
    model_device,
    randn,
    require_energy,
)
from dsm_core.analysis.dimensionality import dimensionality_curves
from dsm_core.energy import BaseEnergy, DenoisingModel
from dsm_core.flow import State, in_log_t, integrate_adaptive, ode_step
from dsm_core.noise import batch_t

Prior = Literal["gaussian", "model"]
DEFAULT_T_MIN = 1e-9
DEFAULT_T_MAX = 1e3


@dataclass(frozen=True)
class NLLEstimate:
    """An estimate of -log p(x) in nats per image, with its cost.

    Attributes:
        nll_nats: estimate of ``-log p(x)`` (B,), continuous density, total nats.
        stderr_nats: Monte Carlo standard error (B,) (0 for a deterministic estimate).
        num_score_evals: gradient evaluations ``grad_y U`` (one forward + one backward pass each)
            per image (plain forward passes count as one each).
        num_hvp_evals: Hessian-vector products (one extra backward pass each) per image.
        wall_seconds: wall time of the whole call.
        d: dimension of one image.
        method: "ode", "mse" or "sde".
    """

    nll_nats: torch.Tensor
    stderr_nats: torch.Tensor
    num_score_evals: int
    num_hvp_evals: int
    wall_seconds: float
    d: int
    method: str

    @property
    def logp_db(self) -> torch.Tensor:
        """log p in dB/dim (B,)."""
        return units.energy_nats_to_logp_db(self.nll_nats, self.d)

    @property
    def bits_per_dim(self) -> torch.Tensor:
        """Continuous NLL in bits/dim (B,) (add ``units.QUANTIZATION_BITS`` for 8-bit data)."""
        return units.nats_to_bits_per_dim(self.nll_nats, self.d)


def _check_range(t_min: float, t_max: float) -> None:
    if not 0.0 < t_min < t_max:
        raise ValueError(f"need 0 < t_min < t_max, got t_min={t_min}, t_max={t_max}")


def _prior_nats(
    model: DenoisingModel, x_end: torch.Tensor, t_max: float, prior: Prior
) -> torch.Tensor:
    """-log p_{t_max}(x_end) (n,): the Gaussian N(0, t_max I) of eq. 14, or the model's energy."""
    if prior == "gaussian":
        quad = x_end.flatten(1).double().square().sum(1) / (2.0 * t_max)
        return quad + 0.5 * model.d * math.log(2.0 * math.pi * t_max)
    if prior == "model":
        energy_model = require_energy(model, 'prior="model"')
        with torch.inference_mode():
            return energy_model.energy(x_end, t_max).double()
    raise ValueError(f"prior must be 'gaussian' or 'model', got {prior!r}")


# ---------------------------------------------------------------- probability-flow ODE (eq. 13-14)


def _probes(
    shape: tuple[int, ...],
    num_probes: int,
    probe: str,
    generator: torch.Generator | None,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Hutchinson probes for one image, (P, *shape): Rademacher +-1 or standard normal."""
    if probe == "rademacher":
        bits = torch.randint(0, 2, (num_probes, *shape), generator=generator)
        return (2 * bits - 1).to(dtype)
    if probe == "gaussian":
        return randn((num_probes, *shape), generator, dtype)
    raise ValueError(f"probe must be 'rademacher' or 'gaussian', got {probe!r}")


def _batch_probes(
    shape: tuple[int, ...],
    num_images: int,
    num_probes: int,
    probe: str,
    generator: torch.Generator | None,
    dtype: torch.dtype,
) -> torch.Tensor:
    """``_probes`` for each of n images in turn, (P, n, *shape)."""
    per_image = [_probes(shape, num_probes, probe, generator, dtype) for _ in range(num_images)]
    return torch.stack(per_image, dim=1)


def _velocity(
    model: BaseEnergy, x: torch.Tensor, t: float, probes: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(grad_y U / 2 (n, ...), Laplacian_y U / 2 (P, n)) at (x, t), one row per probe.

    probes: (P, n, ...), or None for the exact trace (one row). Each Hessian-vector product is
    one backward pass through the graph of grad_y U (``create_graph=True``).
    """
    with torch.enable_grad():
        y = x.detach().requires_grad_(True)
        t_b = batch_t(t, y)
        _, grad_y, _ = model.energy_and_scores(y, t_b, create_graph=True)
        if probes is None:
            laplacian = torch.zeros(1, x.shape[0], dtype=torch.float64, device=x.device)
            flat = grad_y.flatten(1)  # (n, d)
            for k in range(flat.shape[1]):
                (row,) = torch.autograd.grad(flat[:, k].sum(), y, retain_graph=True)
                laplacian[0] += row.flatten(1)[:, k].double()
        else:
            rows = []
            for v in probes:
                (hv,) = torch.autograd.grad((grad_y * v).sum(), y, retain_graph=True)
                rows.append((hv * v).flatten(1).sum(1).double())  # v^T H v, (n,)
            laplacian = torch.stack(rows)  # (P, n)
    return 0.5 * grad_y.detach(), 0.5 * laplacian


class _CountedField:
    """The joint field ``((x, L), t) -> (grad_y U / 2, Laplacian U / 2)`` of the flow and its
    log-determinant (paper eq. 14), with fixed probes, counting evaluations."""

    def __init__(self, model: BaseEnergy, probes: torch.Tensor | None):
        self.model, self.probes, self.count = model, probes, 0

    def __call__(self, state: State, t: float) -> State:
        self.count += 1
        return _velocity(self.model, state[0], t, self.probes)


def _log_t_steps(
    field: _CountedField, state: State, s_lo: float, s_hi: float, num_steps: int, solver: str
):
    """The joint state after each of ``num_steps`` fixed steps from s_lo to s_hi (s = ln t)."""
    s_grid = np.linspace(s_lo, s_hi, num_steps + 1)
    for s_a, s_b in zip(s_grid[:-1], s_grid[1:], strict=True):
        state = ode_step(in_log_t(field), state, s_a, s_b, solver)
        yield state


def ode_nll_nats(
    model: BaseEnergy,
    x: torch.Tensor,
    *,
    t_min: float | None = None,
    t_max: float = DEFAULT_T_MAX,
    num_steps: int = 50,
    solver: Literal["heun", "rk4", "adaptive"] = "rk4",
    trace: Literal["hutchinson", "exact"] = "hutchinson",
    num_probes: int = 1,
    probe: Literal["rademacher", "gaussian"] = "rademacher",
    prior: Prior = "gaussian",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
) -> NLLEstimate:
    """-log p(x) of the probability-flow ODE model (paper eqs. 13-14, §A.2).

    Solves ``dx/dt = grad_y U(x, t) / 2`` forward from x at t = 0 to t_max jointly with
    ``dL/dt = Laplacian_y U(x, t) / 2`` (one L per Hutchinson probe), and returns
    ``prior(x_tmax) - mean_probes L(t_max)``. One Heun step in
    t covers [0, t_min]; from t_min to t_max the integration variable is ``s = ln t``
    (``dx/ds = t grad_y U / 2``), with ``num_steps`` fixed steps (Heun: 2 evaluations per step, RK4:
    4) or scipy's adaptive RK45 (``solver="adaptive"``, tolerances rtol/atol on the joint state).

    Args:
        model: a normalised energy model.
        x: images (B, *image_shape).
        t_min: start of the log-t grid (default: the model's trained floor ``model.t_min``,
            1e-9 as in the release for a model without one).
        t_max: end of the integration, where the prior is evaluated.
        num_steps: fixed steps on the log-t grid (ignored by "adaptive").
        solver: "heun", "rk4" or "adaptive". On the 16-dim Gaussian oracle over [1e-9, 1e3],
            RK4 with 50 steps (202 evaluations) is within 0.002 nats; Heun needs 400 steps
            (802 evaluations) for 0.01.
        trace: "hutchinson" (``num_probes`` fixed probes per image for the whole trajectory) or
            "exact" (d Hessian-vector products per evaluation; tiny d only).
        num_probes: Hutchinson probes per evaluation.
        probe: "rademacher" or "gaussian" probes.
        prior: "gaussian" (eq. 14) or "model" (the model's U(x_T, t_max)).
        rtol, atol: tolerances of the adaptive solver.
        generator: source of the probes (CPU), drawn per image in order.
        batch_size: images integrated together (default:
            ``VALUES_PER_BATCH`` / d, 64 images of 32x32).
        device: compute device (default: the model's).
        progress: ``progress(done, total)`` after each step (per chunk of images).

    Returns:
        ``NLLEstimate`` with method "ode". The trajectory is deterministic; ``stderr_nats`` is
        the spread of the per-probe estimates / sqrt(num_probes) (0 for the exact trace, NaN
        for a single probe).
    """
    require_energy(model, "the probability-flow ODE")
    x = check_images(model, x)
    t_min = lowest_t(model, t_min, DEFAULT_T_MIN)
    _check_range(t_min, t_max)
    if prior not in ("gaussian", "model"):
        raise ValueError(f"prior must be 'gaussian' or 'model', got {prior!r}")
    if solver not in ("heun", "rk4", "adaptive"):
        raise ValueError(f"solver must be 'heun', 'rk4' or 'adaptive', got {solver!r}")
    if trace not in ("hutchinson", "exact"):
        raise ValueError(f"trace must be 'hutchinson' or 'exact', got {trace!r}")
    device = model_device(model, device)
    start_time = time.perf_counter()
    chunk_list = list(chunks(x.shape[0], batch_size_for(model.d, batch_size)))
    total = len(chunk_list) * (num_steps + 1 if solver != "adaptive" else 2)
    done = 0
    nll = torch.empty(x.shape[0], dtype=torch.float64)
    stderr = torch.zeros_like(nll)
    num_evals = 0
    for rows in chunk_list:
        xb = x[rows].to(device)
        probes = None
        if trace == "hutchinson":
            probes = _batch_probes(x.shape[1:], len(xb), num_probes, probe, generator, x.dtype)
            probes = probes.to(device)  # (P, n, ...)
        field = _CountedField(model, probes)
        num_rows = 1 if probes is None else probes.shape[0]
        log_det = torch.zeros(num_rows, xb.shape[0], dtype=torch.float64, device=device)
        # joint state (x, int_0^t Laplacian / 2 dt (P, n)); [0, t_min]: one Heun step in t,
        # starting from the model at t = 0
        state = ode_step(field, (xb, log_det), 0.0, t_min, "heun")
        done += 1
        if progress is not None:
            progress(done, total)
        s_lo, s_hi = math.log(t_min), math.log(t_max)
        if solver == "adaptive":
            state = integrate_adaptive(in_log_t(field), state, s_lo, s_hi, rtol, atol)
            done += 1
            if progress is not None:
                progress(done, total)
        else:
            for stepped in _log_t_steps(field, state, s_lo, s_hi, num_steps, solver):
                state = stepped
                done += 1
                if progress is not None:
                    progress(done, total)
        state, log_det = state
        per_probe = _prior_nats(model, state, t_max, prior) - log_det  # (P, n)
        nll[rows] = per_probe.mean(dim=0).cpu()
        if trace == "hutchinson":
            spread = (
                per_probe.std(dim=0) if num_probes > 1 else torch.full_like(nll[rows], math.nan)
            )
            stderr[rows] = (spread / math.sqrt(num_probes)).cpu()
        num_evals = max(num_evals, field.count)  # per image; adaptive: the costliest chunk
    num_prior = 1 if prior == "model" else 0
    hvp_per_eval = model.d if trace == "exact" else num_probes
    return NLLEstimate(
        nll_nats=nll,
        stderr_nats=stderr,
        num_score_evals=num_evals + num_prior,
        num_hvp_evals=num_evals * hvp_per_eval,
        wall_seconds=time.perf_counter() - start_time,
        d=model.d,
        method="ode",
    )


# Where ``ODEGapProfile.gap_by_band`` splits t by default: below 1e-3, 1e-3 to 1, above 1.
GAP_BAND_EDGES = (1e-3, 1.0)


@dataclass(frozen=True)
class ODEGapProfile:
    """One-shot log p against the probability-flow ODE at every point of the ODE's own path.

    Row k is the path point x_k at noise variance ``t[k]`` (row 0: the image itself at t = 0,
    where ``logp_db`` takes its one-shot value): ``one_shot_db[k]`` is
    ``log p_t(x_k)`` from the energy at (x_k, t[k]) alone, ``ode_db[k]`` the same quantity from
    the ODE run on from t[k] to t_max (the prior at x_T plus the integrated Laplacian). For an
    exact energy the two agree at every t; how their difference ``gap_db`` grows as t falls says
    in which band of noise levels the energy breaks the heat equation, and
    ``gap_db[0]`` is one-shot log p minus ``ode_nll_nats``'s log p of the image.

    Attributes:
        t: (K,) noise variances: 0, then t_min ... t_max on the ODE's log-t grid.
        one_shot_db: (K, B) one-shot log p_t of the path points, dB/dim.
        ode_db: (K, B) ODE log p_t of the same points, dB/dim.
        ode_stderr_db: (K, B) Hutchinson standard error of ode_db (NaN for one probe).
    """

    t: np.ndarray
    one_shot_db: torch.Tensor
    ode_db: torch.Tensor
    ode_stderr_db: torch.Tensor

    @property
    def gap_db(self) -> torch.Tensor:
        """one-shot - ODE, (K, B) dB/dim."""
        return self.one_shot_db - self.ode_db

    def gap_by_band(self, edges: Sequence[float] = GAP_BAND_EDGES) -> torch.Tensor:
        """(len(edges) + 1, B) the part of ``gap_db[0]`` that forms in each band of t: [0,
        edges[0]), ..., [edges[-1], t_max] (the last with the prior's mismatch at t_max), each
        edge at its nearest grid point; the rows sum to ``gap_db[0]``."""
        bounds = (0.0, *edges)
        rows = [self.gap_at(a) - self.gap_at(b) for a, b in itertools.pairwise(bounds)]
        rows.append(self.gap_at(bounds[-1]))
        return torch.stack(rows)

    def gap_at(self, t: float) -> torch.Tensor:
        """gap_db (B,) at the grid point nearest t (in ln t; t = 0 is row 0). ``gap_at(a) -
        gap_at(b)`` is the part of the one-shot - ODE difference that forms between a and b."""
        if t <= 0:
            return self.gap_db[0]
        k = 1 + int(np.argmin(np.abs(np.log(self.t[1:]) - math.log(t))))
        return self.gap_db[k]


def ode_gap_profile(
    model: BaseEnergy,
    x: torch.Tensor,
    *,
    t_min: float | None = None,
    t_max: float = DEFAULT_T_MAX,
    num_steps: int = 50,
    num_probes: int = 4,
    prior: Prior = "gaussian",
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
) -> ODEGapProfile:
    """Where in t one-shot log p and the probability-flow ODE part (``ODEGapProfile``).

    Runs ``ode_nll_nats``'s integration (one Heun step from t = 0 to the trained floor, then
    RK4 on the same log-t grid; Rademacher probes; same prior) and records the path: at each
    grid point, the one-shot log p of the path point and the ODE's log p of it (what remains
    of the integral, to t_max). Not in the paper; issue 12 used it to find that the gap at
    gradient-ascent results forms in two bands of t.

    Args:
        model: a normalised energy model.
        x: images (B, *image_shape).
        t_min, t_max, num_steps, num_probes, prior, generator, batch_size, device: as
            ``ode_nll_nats`` (RK4, Hutchinson trace).
        progress: ``progress(done, total)`` after each ODE step and each recorded row.

    Returns:
        The profile, K = num_steps + 2 rows: t = 0, then t_min ... t_max.

    Raises:
        ValueError: not an energy model, a bad t range or num_steps < 1.
    """
    require_energy(model, "the probability-flow ODE")
    x = check_images(model, x)
    t_min = lowest_t(model, t_min, DEFAULT_T_MIN)
    _check_range(t_min, t_max)
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    device = model_device(model, device)
    s_lo, s_hi = math.log(t_min), math.log(t_max)
    t_grid = np.concatenate([[0.0], np.exp(np.linspace(s_lo, s_hi, num_steps + 1))])  # (K,)
    chunk_list = list(chunks(x.shape[0], batch_size_for(model.d, batch_size)))
    total, done = len(chunk_list) * (2 * num_steps + 2), 0  # ODE steps, then rows
    one_shot = torch.empty(num_steps + 2, x.shape[0], dtype=torch.float64)
    ode = torch.empty_like(one_shot)
    stderr = torch.empty_like(one_shot)
    for rows in chunk_list:
        xb = x[rows].to(device)
        probes = _batch_probes(x.shape[1:], len(xb), num_probes, "rademacher", generator, x.dtype)
        field = _CountedField(model, probes.to(device))
        log_det = torch.zeros(num_probes, xb.shape[0], dtype=torch.float64, device=device)
        path = [(xb, log_det), ode_step(field, (xb, log_det), 0.0, t_min, "heun")]
        for state in _log_t_steps(field, path[-1], s_lo, s_hi, num_steps, "rk4"):
            path.append(state)
            done += 1
            if progress is not None:
                progress(done, total)
        prior_nats = _prior_nats(model, path[-1][0], t_max, prior)  # (n,)
        for k, (x_k, log_det_k) in enumerate(path):
            # -log p_t(x_k) by the ODE: prior minus the Laplacian integrated from t_k to t_max
            per_probe = prior_nats - (path[-1][1] - log_det_k)  # (P, n)
            ode[k, rows] = units.energy_nats_to_logp_db(per_probe.mean(dim=0), model.d).cpu()
            spread = (
                per_probe.std(dim=0) if num_probes > 1 else torch.full_like(prior_nats, math.nan)
            )
            stderr[k, rows] = (
                units.nats_to_db_per_dim(spread, model.d) / math.sqrt(num_probes)
            ).cpu()
            with torch.no_grad():
                one_shot[k, rows] = units.energy_nats_to_logp_db(
                    model.energy(x_k, float(t_grid[k])).double(), model.d
                ).cpu()
            done += 1
            if progress is not None:
                progress(done, total)
    return ODEGapProfile(t_grid, one_shot, ode, stderr)


# ---------------------------------------------------------------- denoising bound (eq. 16)


def mse_nll_nats(
    model: DenoisingModel,
    x: torch.Tensor,
    *,
    t_min: float | None = None,
    t_max: float = DEFAULT_T_MAX,
    num_points: int = 65,
    num_noise: int = 8,
    control_variate: bool = True,
    prior: Prior = "gaussian",
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
) -> NLLEstimate:
    """The denoising-error estimate of -log p(x) (paper eq. 16, §A.2; eq. 15 with prior="model").

    ``-log p = (d/2) ln(2 pi e t_max) - (1/2) int_0^t_max (d - d_eff(x, t)) d ln t`` with
    ``d_eff = E_z |x - D(y, t)|^2 / t`` (eq. 11), ``D = y - t grad_y U``. The integral uses the
    trapezoid rule on ``num_points`` log-spaced t in [t_min, t_max], plus ``(d - d_eff(t_min))/2``
    for [0, t_min]; each d_eff from ``num_noise`` draws. For the true energy this is exact; for a
    model it is an upper bound on -log p (in expectation). Works for score models too
    (``prior="gaussian"``).

    Args:
        model: an energy or score model.
        x: images (B, *image_shape).
        t_min, t_max: range of the log-t grid (t_min default: the model's trained floor, else
            1e-9).
        num_points: quadrature nodes (>= 2).
        num_noise: noise draws per image and node.
        control_variate: subtract the zero-mean ``beta (|z|^2 - d)`` from each squared error
            (leave-one-out beta; see ``dimensionality_curves``). Same mean, much lower variance
            at small t. Needs num_noise >= 2 to have an effect.
        prior: "gaussian" (eq. 16: ``(d/2) ln(2 pi e t_max)``) or "model" (eq. 15: the effective
            energy ``E_y[U(y, t_max) | x]`` from the same draws).
        generator: source of the noise (CPU).
        batch_size: noisy images per forward/backward pass (default:
            ``VALUES_PER_BATCH`` / d, 64 images of 32x32).
        device: compute device (default: the model's).
        progress: ``progress(done, num_points)`` after each node.

    Returns:
        ``NLLEstimate`` with method "mse" and its Monte Carlo standard error.
    """
    x = check_images(model, x)
    t_min = lowest_t(model, t_min, DEFAULT_T_MIN)
    _check_range(t_min, t_max)
    if num_points < 2:
        raise ValueError(f"num_points must be >= 2, got {num_points}")
    if prior not in ("gaussian", "model"):
        raise ValueError(f"prior must be 'gaussian' or 'model', got {prior!r}")
    if prior == "model":
        require_energy(model, 'prior="model"')
    start_time = time.perf_counter()
    ts = torch.logspace(math.log10(t_min), math.log10(t_max), num_points, dtype=torch.float64)
    curves = dimensionality_curves(
        model,
        x,
        ts,
        num_noise=num_noise,
        generator=generator,
        batch_size=batch_size,
        device=device,
        control_variate=control_variate,
        progress=progress,
    )
    h = (math.log(t_max) - math.log(t_min)) / (num_points - 1)
    weights = torch.full((num_points,), h, dtype=torch.float64)
    weights[0] = weights[-1] = 0.5 * h
    weights[0] += 1.0  # the [0, t_min] segment, (d - d_eff(t_min)) / 2 with the factor 1/2 below
    d = model.d
    integral = 0.5 * ((d - curves.d_eff_denoiser) * weights).sum(dim=1)  # (B,)
    # independent draws per node: the variances add
    variance = ((0.5 * weights) ** 2 * curves.d_eff_denoiser_stderr**2).sum(dim=1)  # (B,)
    if prior == "gaussian":
        upper = torch.full_like(integral, units.gaussian_entropy_nats(d, t_max))
    else:
        upper = curves.effective_energy_nats[:, -1]
        variance = variance + curves.effective_energy_stderr_nats[:, -1] ** 2
    nll = upper - integral
    return NLLEstimate(
        nll_nats=nll,
        stderr_nats=variance.sqrt(),
        num_score_evals=num_points * num_noise,
        num_hvp_evals=0,
        wall_seconds=time.perf_counter() - start_time,
        d=d,
        method="mse",
    )


# ---------------------------------------------------------------- Itô / SDE estimator (eq. 17-18)


def sde_nll_nats(
    model: DenoisingModel,
    x: torch.Tensor,
    *,
    t_min: float | None = None,
    t_max: float = DEFAULT_T_MAX,
    num_steps: int = 1000,
    num_paths: int = 8,
    prior: Prior = "gaussian",
    richardson: bool = True,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
) -> NLLEstimate:
    """The stochastic (Itô) estimate of -log p(x) along Brownian paths (paper eqs. 17-18, §A.2).

    Each path starts at x_0 = x and follows ``x_k = x_{k-1} + sqrt(t_k - t_{k-1}) xi_k`` on the grid
    ``t_0 = 0, t_1 = t_min, ..., t_N = t_max`` (geometric from t_min). With ``g_k = grad_y U(x_k,
    t_k)`` evaluated at the END of each increment,

        -log p = prior(x_N) - sum_k [ <g_k, x_k - x_{k-1}> - |g_k|^2 (t_k - t_{k-1}) / 2 ].

    Why the end point: by Itô's formula and the diffusion equation of the energy
    (``dU/dt = Lap U / 2 - |grad U|^2 / 2``, eq. 35), ``U(x_0, 0) = U(x_T, T) - int <grad U, dx>
    - int Lap U dt + int |grad U|^2 dt / 2`` with the forward (left-point) integral. The end-point
    sum equals the left-point sum plus ``int Lap U dt``, so with it eq. 17 holds path by path for
    the true energy, and its mean for a model is exactly eq. 16 (by Stein's lemma). A left-point
    sum would be biased by ``int E[Lap U] dt`` (about ``sum_i ln(1 + t_max / lam_i)`` nats for a
    Gaussian). One gradient per step, no Laplacian.

    Discretisation: the mean of the end-point sum is a Riemann sum of eq. 16's integrand, with an
    O(h) bias (h = ln(t_max / t_min) / num_steps; about +0.7 nats for d = 16 and 1000 steps on
    [1e-9, 1e3]). ``richardson=True`` also forms the sum on every other grid point of the same
    path (no extra evaluations) and returns ``2 fine - coarse``, which cancels the O(h) term.

    Args:
        model: an energy or score model (``prior="gaussian"`` for a score model).
        x: images (B, *image_shape).
        t_min, t_max: first positive and last grid time (t_min default: the model's trained
            floor, else 1e-9).
        num_steps: geometric steps from t_min to t_max (gradient evaluations per path); even
            when ``richardson``.
        num_paths: independent paths per image (the estimate is their mean).
        prior: "gaussian" (eq. 18) or "model" (eq. 17 with the model's U(x_T, t_max)).
        richardson: extrapolate from this grid and the grid of every other point (see above).
        generator: seeds one CPU generator per path, in order, so the draws do not depend on
            batch_size or device.
        batch_size: paths simulated together (default:
            ``VALUES_PER_BATCH`` / d, 64 images of 32x32).
        device: compute device (default: the model's).
        progress: ``progress(done, total)`` after each step of each chunk of paths.

    Returns:
        ``NLLEstimate`` with method "sde": mean over paths and its standard error.
    """
    x = check_images(model, x)
    t_min = lowest_t(model, t_min, DEFAULT_T_MIN)
    _check_range(t_min, t_max)
    if num_paths < 1 or num_steps < 1:
        raise ValueError("num_paths and num_steps must be >= 1")
    if richardson and num_steps % 2:
        raise ValueError(f"richardson needs an even num_steps, got {num_steps}")
    if prior == "model":
        require_energy(model, 'prior="model"')
    device = model_device(model, device)
    start_time = time.perf_counter()
    ts = [0.0, *np.geomspace(t_min, t_max, num_steps).tolist()]
    num_rows = x.shape[0] * num_paths
    seeds = torch.randint(0, 2**62, (num_rows,), generator=generator).tolist()
    per_path = torch.empty(num_rows, dtype=torch.float64)
    chunk_list = list(chunks(num_rows, batch_size_for(model.d, batch_size)))
    total, done = len(chunk_list) * num_steps, 0
    for rows in chunk_list:
        generators = [torch.Generator().manual_seed(seed) for seed in seeds[rows]]
        image_index = torch.arange(rows.start, rows.stop) // num_paths
        state = x[image_index].to(device)
        n = state.shape[0]
        ito_sum = torch.zeros(n, dtype=torch.float64, device=device)
        coarse_sum = torch.zeros_like(ito_sum)  # the same path on every other grid point
        coarse_start = state
        for k in range(1, len(ts)):
            dt = ts[k] - ts[k - 1]
            xi = torch.cat([randn((1, *x.shape[1:]), g, x.dtype) for g in generators]).to(device)
            increment = math.sqrt(dt) * xi
            state = state + increment
            t_b = batch_t(ts[k], state)
            grad_y = model.grad_y(state, t_b).detach()  # at the end of the increment
            grad_sq = grad_y.flatten(1).double().square().sum(1)
            ito_sum += (grad_y * increment).flatten(1).sum(1).double() - 0.5 * dt * grad_sq
            if richardson and k % 2 == 0:
                coarse_increment = state - coarse_start
                coarse_dt = ts[k] - ts[k - 2]
                coarse_inner = (grad_y * coarse_increment).flatten(1).sum(1).double()
                coarse_sum += coarse_inner - 0.5 * coarse_dt * grad_sq
                coarse_start = state
            done += 1
            if progress is not None:
                progress(done, total)
        if richardson:  # both sums have an O(h) bias; 2 fine - coarse removes it
            ito_sum = 2.0 * ito_sum - coarse_sum
        per_path[rows] = (_prior_nats(model, state, t_max, prior) - ito_sum).cpu()
    per_path = per_path.view(x.shape[0], num_paths)
    stderr = (
        per_path.std(dim=1) / math.sqrt(num_paths)
        if num_paths > 1
        else torch.full((x.shape[0],), math.nan, dtype=torch.float64)
    )
    return NLLEstimate(
        nll_nats=per_path.mean(dim=1),
        stderr_nats=stderr,
        num_score_evals=num_paths * (num_steps + (1 if prior == "model" else 0)),
        num_hvp_evals=0,
        wall_seconds=time.perf_counter() - start_time,
        d=model.d,
        method="sde",
    )
