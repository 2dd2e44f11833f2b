"""Single-image probes composed for interactive use: log p in every unit, score maps, denoising.

Thin compositions of the analyses, so an interface (the app, a notebook) shows numbers computed
in one place: ``logp_report`` (log p in dB/dim, nats, bits/dim, percentile within a reference
set), ``logp_gradient`` (the score grad_x log p as an image), ``denoising_example`` (one noisy
draw and the model's denoised estimate with both PSNRs).
"""

from dataclasses import dataclass

import numpy as np
import torch

from dsm_core import units
from dsm_core.analysis._common import check_images, chunks, model_device
from dsm_core.analysis.denoising import denoise
from dsm_core.analysis.logp import energy_nats, percentile_of
from dsm_core.energy import BaseEnergy, DenoisingModel
from dsm_core.noise import add_noise


@dataclass(frozen=True)
class LogpReport:
    """log p of a batch of images in every unit the app shows, (B,) float64 arrays.

    Attributes:
        logp_db: log p in dB/dim, ``10 log10 p / d``.
        logp_nats: log p in nats, total over the d dimensions (``-U(x, 0)``).
        nll_bits_per_dim: continuous negative log-likelihood in bits/dim, ``-log2 p / d``.
        nll_bits_per_dim_discrete: the NLL of the 8-bit image, ``+ 8`` bits (paper A.1).
        percentile: percentile (0-100) within the reference log p values, or None.
        d: dimension of one image.
    """

    logp_db: np.ndarray
    logp_nats: np.ndarray
    nll_bits_per_dim: np.ndarray
    nll_bits_per_dim_discrete: np.ndarray
    percentile: np.ndarray | None
    d: int


def logp_report(
    model: BaseEnergy,
    x: torch.Tensor,
    reference_logp_db: np.ndarray | torch.Tensor | None = None,
    *,
    t: float = 0.0,
) -> LogpReport:
    """log p(x) of images x (B, *image_shape) in [0, 1], in dB/dim, nats and bits/dim.

    One forward pass per batch (``energy_nats``, the one-shot estimate of paper §3.1); the
    percentile is ``percentile_of`` within ``reference_logp_db`` (e.g. the test set, Fig. 3).
    """
    energy_float = energy_nats(model, x, t)  # (B,), the model's dtype
    # dB/dim from the model's dtype, exactly as logp_db() (and the packaged test set) computes it,
    # so a held-out image gets the very value stored for it and its percentile counts it as equal
    logp_db = units.energy_nats_to_logp_db(energy_float, model.d).double()
    energy = energy_float.double()
    d = model.d
    percentile = None
    if reference_logp_db is not None:
        percentile = percentile_of(logp_db, reference_logp_db).numpy()
    return LogpReport(
        logp_db=logp_db.numpy(),
        logp_nats=(-energy).numpy(),
        nll_bits_per_dim=units.nats_to_bits_per_dim(energy, d).numpy(),
        nll_bits_per_dim_discrete=units.discrete_nll_bits_per_dim(energy, d).numpy(),
        percentile=percentile,
        d=d,
    )


def logp_gradient(
    model: DenoisingModel,
    x: torch.Tensor,
    t: float = 0.0,
    *,
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """The score ``grad_x log p_t(x) = -grad_y U(x, t)`` in nats per unit intensity (B, C, H, W).

    Where it is positive, brightening that pixel raises log p. Computed with
    ``torch.autograd.grad`` on the input only (no parameter gradients), on the CPU.
    """
    x = check_images(model, x)
    device = model_device(model, device)
    out = torch.empty_like(x, device="cpu")
    for rows in chunks(x.shape[0], batch_size):
        out[rows] = -model.grad_y(x[rows].to(device), t).detach().cpu()
    return out


@dataclass(frozen=True)
class DenoisingExample:
    """One noisy observation y = x + sqrt(t) z and the model's estimate D(y, t) of x.

    Attributes:
        noisy: y, (B, C, H, W) (not clipped: Gaussian noise leaves [0, 1]).
        denoised: D(y, t) = y - t grad_y U(y, t), (B, C, H, W).
        t: the noise variance per pixel.
        psnr_in_db: PSNR of y against x (B,), close to the nominal ``-10 log10 t``.
        psnr_out_db: PSNR of D(y, t) against x (B,).
    """

    noisy: torch.Tensor
    denoised: torch.Tensor
    t: float
    psnr_in_db: np.ndarray
    psnr_out_db: np.ndarray


def denoising_example(
    model: DenoisingModel,
    x: torch.Tensor,
    psnr_db: float,
    *,
    generator: torch.Generator | None = None,
) -> DenoisingExample:
    """Add Gaussian noise at the input PSNR ``psnr_db`` (t = 10^(-psnr/10)) and denoise it.

    The Miyasawa-Tweedie denoiser of the energy (paper eq. 37) on one draw of noise per image,
    as in Table 1 (which averages the MSE over a test set).
    """
    x = check_images(model, x)
    t = float(units.psnr_db_to_t(float(psnr_db)))
    z = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    noisy = add_noise(x, t, z)
    denoised = denoise(model, noisy, t)

    def psnr(estimate: torch.Tensor) -> np.ndarray:
        mse = (estimate.double() - x.double()).flatten(1).square().mean(dim=1)
        return units.mse_to_psnr_db(mse.clamp_min(1e-30)).numpy()

    return DenoisingExample(noisy, denoised, t, psnr(noisy), psnr(denoised))
