"""Denoising with the Miyasawa-Tweedie denoiser D(y, t) and its PSNR per noise level (Table 1)."""

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from dsm_core import units
from dsm_core.analysis._common import (
    Progress,
    batch_size_for,
    check_images,
    chunks,
    model_device,
    randn,
)
from dsm_core.energy import BaseEnergy, DenoisingModel
from dsm_core.losses import time_score_term
from dsm_core.noise import PSNR_GRID_DB, add_noise, batch_t, tweedie_denoise


def psnr_key(psnr_db: float) -> str:
    """JSON key of an input PSNR in metrics.json and the training log: '-30', '-22.5', ..., '90'."""
    return f"{psnr_db:g}"


@dataclass(frozen=True)
class DenoisingResult:
    """Denoising performance per noise level over a set of images.

    Attributes:
        psnr_in_db: input PSNRs (L,), ``-10 log10 t``.
        t: noise variances per pixel (L,).
        mse: per-pixel MSE of D(y, t) averaged over images (L,).
        psnr_out_db: PSNR of that mean MSE (L,) (Table 1: PSNR of the mean, not mean of PSNRs).
        mse_per_image: per-pixel MSE of each image (L, B).
        time_loss: mean time-score term (``losses.time_score_term``, paper eq. 5) per level (L,),
            or None (not asked for, or a score model).
        time_loss_zero: the same term for the predictor dU/dt = 0 on the same draws (L,), i.e.
            the mean of ``(1 - |z|^2/d)^2 / 4`` (expected value 1/(2d)), or None. The exact time
            score does no worse than this constant (it is the conditional mean of the target),
            so ``time_loss / time_loss_zero > 1`` at a level means the model's dU/dt there is
            worse than no time dependence at all.
    """

    psnr_in_db: torch.Tensor
    t: torch.Tensor
    mse: torch.Tensor
    psnr_out_db: torch.Tensor
    mse_per_image: torch.Tensor
    time_loss: torch.Tensor | None = None
    time_loss_zero: torch.Tensor | None = None

    def _table(self, values: torch.Tensor | None) -> dict[str, float] | None:
        if values is None:
            return None
        pairs = zip(self.psnr_in_db.tolist(), values.tolist(), strict=True)
        return {psnr_key(a): float(b) for a, b in pairs}

    def psnr_table(self) -> dict[str, float]:
        """{input PSNR (``psnr_key``): output PSNR}, both in dB: metrics.json's ``psnr_db``."""
        return self._table(self.psnr_out_db)

    def time_loss_table(self) -> dict[str, float] | None:
        """{input PSNR (``psnr_key``): mean time-score term}, or None."""
        return self._table(self.time_loss)

    def time_loss_zero_table(self) -> dict[str, float] | None:
        """{input PSNR (``psnr_key``): the zero predictor's mean time-score term}, or None."""
        return self._table(self.time_loss_zero)


def denoise(
    model: DenoisingModel,
    y: torch.Tensor,
    t: float | torch.Tensor,
    *,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """``D(y, t) = y - t grad_y U(y, t)``, the estimate of E[x | y] (paper eq. 37), batched.

    Works for energy and score models. ``t`` is a float or (B,); returns (B, *image_shape) on the
    CPU, detached.
    """
    y = check_images(model, y, "y")
    device = model_device(model, device)
    t = batch_t(t, y)  # (B,), checked
    out = []
    for rows in chunks(y.shape[0], batch_size_for(model.d, batch_size)):
        out.append(model.denoise(y[rows].to(device), t[rows].to(device)).detach().cpu())
    return torch.cat(out)


def denoising_psnr(
    model: DenoisingModel,
    x: torch.Tensor,
    psnr_in_db: torch.Tensor | Sequence[float] | None = None,
    *,
    time_loss: bool = False,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
) -> DenoisingResult:
    """Output PSNR of the model's denoiser at each input PSNR over a set of images (Table 1).

    One noise draw per image per level (reference-spec §4.1); ``MSE(level)`` is the mean over
    images of the per-pixel MSE of D(y, t) (paper eq. 37), and the output PSNR is
    ``-10 log10 MSE(level)``. This is the one producer of metrics.json's ``psnr_db`` table.

    Args:
        model: an energy or score model.
        x: clean images (B, *image_shape) in [0, 1].
        psnr_in_db: input PSNRs (L,), default ``noise.PSNR_GRID_DB`` (Table 1's grid).
        time_loss: also average the time-score term of an energy model at each level (the same
            autograd call gives grad_y and grad_t).
        generator: source of the noise (CPU): for each level, one draw per image in order.
        batch_size: images per forward/backward pass (default:
            ``VALUES_PER_BATCH`` / d, 64 images of 32x32).
        device: compute device (default: the model's).
        progress: ``progress(done, L)`` after each level.

    Returns:
        A ``DenoisingResult`` (float64, CPU).
    """
    x = check_images(model, x)
    psnr = PSNR_GRID_DB if psnr_in_db is None else psnr_in_db
    psnr = torch.as_tensor(psnr, dtype=torch.float64).reshape(-1)
    ts = units.psnr_db_to_t(psnr)
    per_image = torch.empty(len(ts), x.shape[0], dtype=torch.float64)
    with_time = time_loss and isinstance(model, BaseEnergy)
    time_per_image = torch.empty_like(per_image) if with_time else None
    zero_per_image = torch.empty_like(per_image) if with_time else None
    device = model_device(model, device)
    for j, t in enumerate(ts.tolist()):
        for rows in chunks(x.shape[0], batch_size_for(model.d, batch_size)):
            xb = x[rows]
            # one draw per image, so the noise does not depend on batch_size
            z = torch.cat([randn((1, *x.shape[1:]), generator, x.dtype) for _ in range(len(xb))])
            y = add_noise(xb, t, z).to(device)
            tb = batch_t(t, y)
            if with_time:
                _, grad_y, grad_t = model.energy_and_scores(y, tb)
                denoised = tweedie_denoise(y, tb, grad_y).cpu()
                noise = y - xb.to(device)
                term = time_score_term(noise, tb, grad_t, model.d)  # (n,)
                zero = time_score_term(noise, tb, torch.zeros_like(grad_t), model.d)  # (n,)
                time_per_image[j, rows] = term.double().cpu()
                zero_per_image[j, rows] = zero.double().cpu()
            else:
                denoised = model.denoise(y, tb).detach().cpu()
            per_image[j, rows] = (denoised.double() - xb.double()).flatten(1).square().mean(dim=1)
        if progress is not None:
            progress(j + 1, len(ts))
    mse = per_image.mean(dim=1)
    return DenoisingResult(
        psnr,
        ts,
        mse,
        units.mse_to_psnr_db(mse),
        per_image,
        time_per_image.mean(dim=1) if with_time else None,
        zero_per_image.mean(dim=1) if with_time else None,
    )
