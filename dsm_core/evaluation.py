"""Evaluation of a model on held-out images, composed from the analyses: losses, NLL, log p.

The procedures follow the release (reference-spec §2.5, §4.1-4.4): denoising PSNR on the input
PSNR grid ``noise.PSNR_GRID_DB`` with the time-score term at the same levels
(``analysis.denoising_psnr``), the loss at random t, and the discrete NLL in bits/dim (+8) with K
re-estimated at t_max on the same held-out images.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from dsm_core import units
from dsm_core.analysis._common import model_device
from dsm_core.analysis.denoising import DenoisingResult, denoising_psnr
from dsm_core.analysis.gumbel import GumbelFit, fit_gumbel
from dsm_core.analysis.logp import dequantized_nll_bits_per_dim, energy_nats
from dsm_core.config import LossConfig, NoiseConfig
from dsm_core.energy import BaseEnergy, DenoisingModel
from dsm_core.losses import score_matching_terms
from dsm_core.noise import PSNR_GRID_DB, add_noise, sample_t
from dsm_core.normalization import estimate_log_norm


def _generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    return None if seed is None else torch.Generator(device=device).manual_seed(seed)


def random_t_loss(
    model: DenoisingModel,
    x: torch.Tensor,
    noise_cfg: NoiseConfig,
    loss_cfg: LossConfig,
    *,
    seed: int | None = 0,
    batch_size: int = 64,
) -> dict[str, float | None]:
    """The training loss on held-out images at random noise levels (no parameter update).

    Args:
        model: the model.
        x: clean images (N, C, H, W) in [0, 1].
        noise_cfg: distribution of t (log-uniform on [t_min, t_max]).
        loss_cfg: weights of the loss terms.
        seed: seed of t and the noise.
        batch_size: images per autograd call.

    Returns:
        {"loss", "space_loss", "time_loss"}: means over images (time_loss is None without a time
        term: single score matching, or a score model).
    """
    device = model_device(model, None)
    generator = _generator(seed, device)
    totals = {"loss": 0.0, "space_loss": 0.0, "time_loss": 0.0}
    has_time = False
    for start in range(0, x.shape[0], batch_size):
        xb = x[start : start + batch_size].to(device)
        t = sample_t(xb.shape[0], noise_cfg, generator=generator, device=device)  # (B,)
        z = torch.randn(xb.shape, generator=generator, device=device, dtype=xb.dtype)
        with torch.enable_grad():
            terms = score_matching_terms(model, xb, add_noise(xb, t, z), t, loss_cfg)
        totals["loss"] += terms.total(loss_cfg).detach().double().sum().item()
        totals["space_loss"] += terms.space.detach().double().sum().item()
        if terms.time is not None:
            has_time = True
            totals["time_loss"] += terms.time.detach().double().sum().item()
    result = {k: v / x.shape[0] for k, v in totals.items()}
    if not has_time:
        result["time_loss"] = None
    return result


@dataclass(frozen=True)
class NllEstimate:
    """Discrete NLL (bits/dim, +8) with the K it used, estimated on the same images at t_max."""

    nll_bits_per_dim: float
    log_norm_nats: float
    log_norm_stderr_nats: float


def nll_with_fresh_log_norm(
    model: BaseEnergy,
    x: torch.Tensor,
    t_max: float,
    *,
    seed: int | None = 0,
    batch_size: int = 64,
) -> NllEstimate:
    """Mean discrete NLL of images with K re-estimated on them at t_max (release's test_perf).

    Args:
        model: an energy model; its current K is ignored (not modified).
        x: clean images (N, C, H, W) in [0, 1].
        t_max: noise variance of the Gaussian reference (top of the training range).
        seed: seed of the noise draws of the K estimate.
        batch_size: images per forward pass.

    Returns:
        ``8 + mean U(x, 0) / (d ln 2)`` with the new K, and that K with its standard error.
    """
    device = model_device(model, None)
    estimate = estimate_log_norm(
        model, x.to(device), t_max, batch_size=batch_size, generator=_generator(seed, device)
    )
    raw = energy_nats(model, x, 0.0, batch_size=batch_size) - model.log_norm_nats  # (N,)
    mean_energy = raw.double().mean().item() + estimate.log_norm_nats
    return NllEstimate(
        nll_bits_per_dim=float(units.discrete_nll_bits_per_dim(mean_energy, model.d)),
        log_norm_nats=estimate.log_norm_nats,
        log_norm_stderr_nats=estimate.stderr_nats,
    )


def evaluate_during_training(
    model: DenoisingModel,
    x: torch.Tensor,
    noise_cfg: NoiseConfig,
    loss_cfg: LossConfig,
    *,
    seed: int = 0,
    batch_size: int = 64,
    psnr_grid_db: tuple[float, ...] = PSNR_GRID_DB,
) -> dict:
    """Everything the training loop logs about held-out images, as a JSON-able dict.

    Keys: ``loss``, ``space_loss``, ``time_loss`` (random t); ``psnr_out_db`` and
    ``time_loss_by_psnr`` ({input PSNR: value}) with ``time_loss_zero_by_psnr``, the same term
    for dU/dt = 0 on the same draws (above it, the model's dU/dt is worse than none at that level;
    ``DenoisingResult.time_loss_zero``); for energy models also ``nll_bits_per_dim``,
    ``log_norm_nats`` and ``log_norm_stderr_nats`` (K re-estimated at ``noise_cfg.t_max``).
    """
    was_training = model.training
    model.eval()
    try:
        result: dict = dict(
            random_t_loss(model, x, noise_cfg, loss_cfg, seed=seed, batch_size=batch_size)
        )
        levels = denoising_psnr(
            model,
            x,
            psnr_grid_db,
            time_loss=True,
            generator=torch.Generator().manual_seed(seed + 1),
            batch_size=batch_size,
        )
        result["psnr_out_db"] = levels.psnr_table()
        if levels.time_loss is not None:
            result["time_loss_by_psnr"] = levels.time_loss_table()
            result["time_loss_zero_by_psnr"] = levels.time_loss_zero_table()
        if isinstance(model, BaseEnergy):
            nll = nll_with_fresh_log_norm(
                model, x, noise_cfg.t_max, seed=seed + 2, batch_size=batch_size
            )
            result["nll_bits_per_dim"] = nll.nll_bits_per_dim
            result["log_norm_nats"] = nll.log_norm_nats
            result["log_norm_stderr_nats"] = nll.log_norm_stderr_nats
    finally:
        model.train(was_training)
    return result


@dataclass(frozen=True)
class ModelEvaluation:
    """A model's log p of a set of images and its summary numbers (units in the names).

    Attributes:
        logp_db: log p(x) in dB/dim per image (N,), with the model's own K.
        indices: dataset index of each image (N,).
        nll_bits_per_dim: discrete NLL, ``8 - mean log p`` in bits/dim.
        entropy_db: ``-mean log p`` in dB/dim (the cross-entropy estimate of the entropy).
        gumbel: Gumbel fit of logp_db (``dsm_core.analysis.fit_gumbel``), or None for < 2 images.
        levels: denoising PSNR and time-score term per input PSNR (``denoising_psnr``), or None
            when skipped.
        log_norm_nats: the model's K.
        nll_bits_per_dim_dequantized: mean uniform-dequantization bound on the 8-bit NLL
            (``dequantized_nll_bits_per_dim``, one draw per image), or None when the images are
            not on the 8-bit grid k / 255.
    """

    logp_db: np.ndarray
    indices: np.ndarray
    nll_bits_per_dim: float
    entropy_db: float
    gumbel: GumbelFit | None
    levels: DenoisingResult | None
    log_norm_nats: float
    nll_bits_per_dim_dequantized: float | None = None
    extra: dict = field(default_factory=dict)

    def metrics(self) -> dict:
        """The ``metrics.json`` document of API.md plus summary statistics (JSON-able)."""
        logp = self.logp_db.astype(np.float64)
        out = {
            "nll_bits_per_dim": self.nll_bits_per_dim,
            "entropy_db": self.entropy_db,
            "gumbel_loc_db": self.gumbel.loc if self.gumbel else None,
            "gumbel_scale_db": self.gumbel.scale if self.gumbel else None,
            "num_images": int(logp.size),
            "psnr_db": self.levels.psnr_table() if self.levels else {},
            "logp_db_mean": float(logp.mean()),
            "logp_db_std": float(logp.std()),
            "logp_db_min": float(logp.min()),
            "logp_db_max": float(logp.max()),
            "log_norm_nats": self.log_norm_nats,
        }
        if self.nll_bits_per_dim_dequantized is not None:
            out["nll_bits_per_dim_dequantized"] = self.nll_bits_per_dim_dequantized
        if self.gumbel is not None:
            out["gumbel_ks_statistic"] = self.gumbel.ks_statistic
            out["frechet_shape"] = self.gumbel.frechet_shape
            out["frechet_scale"] = self.gumbel.frechet_scale
        if self.levels is not None and self.levels.time_loss is not None:
            out["time_loss_by_psnr"] = self.levels.time_loss_table()
            out["time_loss_zero_by_psnr"] = self.levels.time_loss_zero_table()
        out.update(self.extra)
        return out


class ImageSource(Protocol):
    """Anything that reads images by index, like ``dsm_core.data.ImageDataset``."""

    def __len__(self) -> int: ...

    def batch(self, indices: np.ndarray) -> torch.Tensor: ...


def _read(images: torch.Tensor | ImageSource, indices: np.ndarray) -> torch.Tensor:
    if isinstance(images, torch.Tensor):
        return images[torch.as_tensor(indices, dtype=torch.long)]
    return images.batch(indices)


def evaluate_model(
    model: DenoisingModel,
    images: torch.Tensor | ImageSource,
    indices: np.ndarray | None = None,
    *,
    psnr_grid_db: tuple[float, ...] | None = PSNR_GRID_DB,
    psnr_num_images: int | None = None,
    seed: int = 0,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> ModelEvaluation:
    """log p of every image at t = 0 (with the model's K), NLL, entropy, Gumbel fit, PSNR table.

    Images are read ``batch_size`` at a time, so a large test set need not fit in memory.

    Args:
        model: a normalised energy model (``log_norm_nats`` set), or a score model (PSNR only;
            log p entries are NaN).
        images: clean images (N, C, H, W) in [0, 1], or a dataset with ``batch(indices)``.
        indices: which images (N,); defaults to all of them in order.
        psnr_grid_db: input PSNRs for the denoising table, or None to skip it.
        psnr_num_images: use only the first images for the (costlier) PSNR table; None: all.
        seed: seed of the noise draws.
        batch_size: images per forward pass.
        progress: ``progress(done, total)`` after each batch of log p.

    Returns:
        A :class:`ModelEvaluation`.
    """
    total = images.shape[0] if isinstance(images, torch.Tensor) else len(images)
    indices = np.arange(total) if indices is None else np.asarray(indices, dtype=np.int64)
    indices = indices.reshape(-1)
    n = len(indices)
    if n == 0:
        raise ValueError("no images to evaluate")
    levels = None
    if psnr_grid_db is not None:
        first = indices if psnr_num_images is None else indices[:psnr_num_images]
        x = _read(images, first)
        levels = denoising_psnr(
            model,
            x,
            psnr_grid_db,
            time_loss=True,
            generator=torch.Generator().manual_seed(seed),
            batch_size=batch_size,
        )
    if not isinstance(model, BaseEnergy):
        nan = np.full(n, np.nan)
        return ModelEvaluation(nan, indices, math.nan, math.nan, None, levels, math.nan)
    energies, bounds = [], []
    generator = torch.Generator().manual_seed(seed)
    for start in range(0, n, batch_size):
        x = _read(images, indices[start : start + batch_size])
        energies.append(energy_nats(model, x, 0.0, batch_size=batch_size).double())
        pixels = (x * 255).round()  # (B, C, H, W)
        if bounds is not None and (pixels / 255 - x).abs().max() <= 1e-6:
            bounds.append(
                dequantized_nll_bits_per_dim(
                    model, pixels.long(), num_draws=1, generator=generator, batch_size=batch_size
                )
            )
        else:
            bounds = None
        if progress is not None:
            progress(min(start + batch_size, n), n)
    energy = torch.cat(energies)  # (N,)
    logp_db = units.energy_nats_to_logp_db(energy, model.d).numpy()  # (N,)
    nll = float(units.discrete_nll_bits_per_dim(energy.mean().item(), model.d))
    gumbel = fit_gumbel(logp_db) if n >= 2 else None
    return ModelEvaluation(
        logp_db=logp_db,
        indices=indices,
        nll_bits_per_dim=nll,
        entropy_db=float(-logp_db.mean()),
        gumbel=gumbel,
        levels=levels,
        log_norm_nats=model.log_norm_nats,
        nll_bits_per_dim_dequantized=None if bounds is None else torch.cat(bounds).mean().item(),
    )
