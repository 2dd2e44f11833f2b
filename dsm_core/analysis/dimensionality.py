"""Effective dimensionality and effective energy around images (paper §3.3, Fig. 5).

For ``y = x + sqrt(t) z`` the paper defines (eqs. 11, 12, proved equal in §B.3 for an exact model)

    d_eff(x, t) = E_z |x - D(y, t)|^2 / t                         (denoiser form, eq. 11)
                = d - d E_y[U(y, t) | x] / d(log t / 2)            (energy form, eq. 12)

With ``D = y - t grad_y U`` the first is ``E |z - sqrt(t) grad_y U|^2``. For the second, the
derivative of the effective energy along the path ``y = x + sqrt(t) z`` (z fixed) is
``dU/dt = grad_t U + <grad_y U, z> / (2 sqrt(t))``, so

    d_eff = d - 2 t E[grad_t U] - sqrt(t) E[<grad_y U, z>]

(a pathwise derivative: no finite differences over the t grid). All three quantities (both d_eff
forms and the effective energy E_y[U(y, t) | x]) come from the same energy_and_scores call.
"""

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch

from dsm_core import units
from dsm_core.analysis._common import (
    Progress,
    batch_size_for,
    check_images,
    model_device,
    randn,
)
from dsm_core.energy import BaseEnergy, DenoisingModel
from dsm_core.noise import add_noise, as_t_grid, batch_t

DEFAULT_NUM_NOISE = 100


@dataclass(frozen=True)
class DimensionalityCurves:
    """Monte Carlo estimates per image and noise level, with their standard errors.

    Attributes:
        ts: noise variances per pixel (T,).
        d_eff_denoiser: eq. 11, ``E|x - D(y,t)|^2 / t`` (B, T).
        d_eff_denoiser_stderr: its Monte Carlo standard error (B, T).
        d_eff_energy: eq. 12 by the pathwise derivative of the effective energy (B, T);
            NaN for a model without energy.
        d_eff_energy_stderr: its standard error (B, T).
        effective_energy_nats: ``E_y[U(y, t) | x]`` in nats (B, T) (Fig. 5 left, energy sign);
            NaN for a model without energy.
        effective_energy_stderr_nats: its standard error (B, T).
        d: dimension of one image.
        num_noise: noise draws per image and level.
    """

    ts: torch.Tensor
    d_eff_denoiser: torch.Tensor
    d_eff_denoiser_stderr: torch.Tensor
    d_eff_energy: torch.Tensor
    d_eff_energy_stderr: torch.Tensor
    effective_energy_nats: torch.Tensor
    effective_energy_stderr_nats: torch.Tensor
    d: int
    num_noise: int

    @property
    def effective_logp_db(self) -> torch.Tensor:
        """``-E_y[U(y, t) | x]`` in dB/dim (B, T), the curves of Fig. 5 left."""
        return units.energy_nats_to_logp_db(self.effective_energy_nats, self.d)


def _row_batches(
    x: torch.Tensor, num_noise: int, batch_size: int, generator: torch.Generator | None
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(image index (n,), x rows (n, ...), z rows (n, ...)) in batches of ``batch_size`` rows.

    Noise is drawn image by image, ``num_noise`` at a time, in a fixed order, so the draws (and the
    results) do not depend on ``batch_size``.
    """
    pending_idx, pending_z, count = [], [], 0
    for i in range(x.shape[0]):
        pending_idx.append(torch.full((num_noise,), i, dtype=torch.long))
        pending_z.append(randn((num_noise, *x.shape[1:]), generator, x.dtype))
        count += num_noise
        while count >= batch_size or (i == x.shape[0] - 1 and count > 0):
            idx, z = torch.cat(pending_idx), torch.cat(pending_z)
            yield idx[:batch_size], x[idx[:batch_size]], z[:batch_size]
            pending_idx, pending_z = [idx[batch_size:]], [z[batch_size:]]
            count = idx.numel() - min(batch_size, idx.numel())


def _loo_control_variate(
    raw: torch.Tensor, z_sq: torch.Tensor, d: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``raw - beta (|z|^2 - d)`` with ``beta`` = leave-one-out mean of raw / d, per image.

    raw, z_sq: (B, N). ``E|z|^2 = d`` exactly and each beta is independent of its own z, so the
    mean is unchanged; the |z|^2 fluctuation, which dominates raw at small t, cancels.

    Returns:
        The corrected values (B, N) and an extra variance (B,) for their mean: the betas share
        their draws, which the spread of the values misses. We add the second-order term
        ``Var(beta_bar) Var(c) / N + (Cov(raw, c) / (N d))^2`` (c = |z|^2 - d); it matters only
        where the corrected values hardly vary (small t), and there it makes the standard error
        conservative (about 2x on the Gaussian oracle) where it was otherwise 2x optimistic.
    """
    n = raw.shape[1]
    if n < 2:
        return raw, torch.zeros(raw.shape[0], dtype=raw.dtype)
    c = z_sq - d
    beta = ((raw.sum(dim=1, keepdim=True) - raw) / ((n - 1) * d)).clamp(0.0, 1.0)  # (B, N)
    cov = ((raw - raw.mean(1, keepdim=True)) * (c - c.mean(1, keepdim=True))).sum(1) / (n - 1)
    extra = raw.var(dim=1) / (n * d**2) * c.var(dim=1) / n + (cov / (n * d)) ** 2
    return raw - beta * c, extra


def _mean_stderr(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard error over the last dimension."""
    n = values.shape[-1]
    stderr = values.std(dim=-1) / math.sqrt(n) if n > 1 else torch.full_like(values[..., 0], 0)
    return values.mean(dim=-1), stderr


def dimensionality_curves(
    model: DenoisingModel,
    x: torch.Tensor,
    ts: torch.Tensor | list[float],
    *,
    num_noise: int = DEFAULT_NUM_NOISE,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    control_variate: bool = False,
    progress: Progress | None = None,
) -> DimensionalityCurves:
    """Both effective dimensionalities and the effective energy over noise levels (Fig. 5).

    For each image and t, ``num_noise`` draws of z give y = x + sqrt(t) z and one
    ``energy_and_scores`` call each (reference-spec §4.7: 1000 draws for 15 reference images,
    or one draw per image for a test-set average). A score model (no energy) gets only eq. 11.

    Args:
        model: an energy model (all outputs) or a score model (denoiser form only).
        x: clean images (B, *image_shape) in [0, 1].
        ts: noise variances per pixel (T,); t = 0 gives d_eff = d.
        num_noise: noise draws per image and level.
        generator: source of the noise (CPU); same seed, same draws whatever batch_size/device.
        batch_size: noisy images per forward/backward pass (default:
            ``VALUES_PER_BATCH`` / d, 64 images of 32x32).
        device: compute device (default: the model's).
        control_variate: subtract ``beta (|z|^2 - d)`` from the denoiser form (zero mean,
            leave-one-out beta; needs num_noise >= 2). It removes the chi-square noise of |z|^2
            that dominates at small t; not in the paper.
        progress: ``progress(done, T)`` after each noise level.

    Returns:
        ``DimensionalityCurves`` (CPU, float64).
    """
    x = check_images(model, x)
    if num_noise < 1:
        raise ValueError(f"num_noise must be >= 1, got {num_noise}")
    device = model_device(model, device)
    ts = as_t_grid(ts)
    has_energy = isinstance(model, BaseEnergy)
    num_images, d = x.shape[0], model.d
    shape = (num_images, len(ts))
    results = {k: torch.full(shape, math.nan, dtype=torch.float64) for k in range(6)}
    for j, t in enumerate(ts.tolist()):
        raw = torch.empty(num_images * num_noise, dtype=torch.float64)
        z_sq = torch.empty_like(raw)
        energy_form = torch.full_like(raw, math.nan)
        energy = torch.full_like(raw, math.nan)
        start = 0
        for _, xb, zb in _row_batches(x, num_noise, batch_size_for(model.d, batch_size), generator):
            xb, zb = xb.to(device), zb.to(device)
            n = xb.shape[0]
            y = add_noise(xb, t, zb)
            tb = batch_t(t, y)
            if has_energy:
                e, grad_y, grad_t = model.energy_and_scores(y, tb)
            else:
                grad_y = model.grad_y(y, tb).detach()
            rows = slice(start, start + n)
            # |x - D|^2 / t = |z - sqrt(t) grad_y|^2, also defined at t = 0
            raw[rows] = (zb - math.sqrt(t) * grad_y).flatten(1).square().sum(1).double().cpu()
            z_sq[rows] = zb.flatten(1).square().sum(1).double().cpu()
            if has_energy:
                inner = (grad_y * zb).flatten(1).sum(1)  # <grad_y U, z>, (n,)
                form = d - 2.0 * t * grad_t - math.sqrt(t) * inner
                energy_form[rows] = form.double().cpu()
                energy[rows] = e.double().cpu()
            start += n
        raw, z_sq = raw.view(num_images, num_noise), z_sq.view(num_images, num_noise)
        extra_var = torch.zeros(num_images, dtype=torch.float64)
        if control_variate:
            raw, extra_var = _loo_control_variate(raw, z_sq, d)
        for k, values in enumerate((raw, energy_form, energy)):
            mean, stderr = _mean_stderr(values.view(num_images, num_noise))
            if k == 0:
                stderr = (stderr.square() + extra_var).sqrt()
            results[2 * k][:, j], results[2 * k + 1][:, j] = mean, stderr
        if progress is not None:
            progress(j + 1, len(ts))
    return DimensionalityCurves(ts, *(results[k] for k in range(6)), d=d, num_noise=num_noise)


def effective_dimensionality(
    model: DenoisingModel,
    x: torch.Tensor,
    ts: torch.Tensor | list[float],
    *,
    num_noise: int = DEFAULT_NUM_NOISE,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    method: Literal["denoiser", "energy"] = "denoiser",
    control_variate: bool = False,
    progress: Progress | None = None,
) -> torch.Tensor:
    """Effective dimensionality d_eff(x, t) (B, T) (paper eq. 11, Fig. 5 right).

    ``method="denoiser"`` (default, the paper's choice for stability: non-negative, an upper
    bound for any denoiser) uses ``E_z |x - D(y, t)|^2 / t``; ``method="energy"`` uses
    eq. 12 via the pathwise derivative of the effective energy (energy models only). Arguments as
    ``dimensionality_curves``.
    """
    if method not in ("denoiser", "energy"):
        raise ValueError(f"method must be 'denoiser' or 'energy', got {method!r}")
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
    return curves.d_eff_denoiser if method == "denoiser" else curves.d_eff_energy


def effective_energy_nats(
    model: BaseEnergy,
    x: torch.Tensor,
    ts: torch.Tensor | list[float],
    *,
    num_noise: int = DEFAULT_NUM_NOISE,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
) -> torch.Tensor:
    """Effective energy ``E_y[U(y, t) | x]`` in nats (B, T) (paper §3.3, Fig. 5 left).

    Forward passes only (no gradients). At t_max it approaches ``(d/2) ln(2 pi e t)``.
    Arguments as ``dimensionality_curves``.
    """
    x = check_images(model, x)
    device = model_device(model, device)
    ts = as_t_grid(ts)
    out = torch.empty(x.shape[0], len(ts), dtype=torch.float64)
    for j, t in enumerate(ts.tolist()):
        total = torch.zeros(x.shape[0], dtype=torch.float64)
        with torch.inference_mode():
            for idx, xb, zb in _row_batches(
                x, num_noise, batch_size_for(model.d, batch_size), generator
            ):
                y = add_noise(xb.to(device), t, zb.to(device))
                e = model.energy(y, batch_t(t, y))
                total.index_add_(0, idx, e.double().cpu())
        out[:, j] = total / num_noise
        if progress is not None:
            progress(j + 1, len(ts))
    return out
