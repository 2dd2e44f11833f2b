"""dsm_core: normalised image energies learned by dual score matching (Guth et al. 2025)."""

from dsm_core.analysis import (
    ascend_logp,
    compare_models,
    denoising_psnr,
    dimensionality_curves,
    effective_dimensionality,
    energy_nats,
    fit_gumbel,
    logp_db,
    mse_nll_nats,
    nll_bits_per_dim,
    ode_nll_nats,
    participation_ratio,
    percentile_of,
    sample,
    sde_nll_nats,
)
from dsm_core.checkpoint import ModelLoadError, load_model, save_model
from dsm_core.config import EnergyConfig, LossConfig, NoiseConfig, UNetConfig
from dsm_core.energy import BaseEnergy, EnergyModel, ScoreModel
from dsm_core.explore import logp_report
from dsm_core.gaussian import GaussianEnergy
from dsm_core.images import ImageLoadError, fit_to_model, prepare_upload
from dsm_core.normalization import estimate_log_norm
from dsm_core.packaging import load_heldout, package_model
from dsm_core.presets import PRESETS, build_energy_model

__all__ = [
    "PRESETS",
    "BaseEnergy",
    "EnergyConfig",
    "EnergyModel",
    "GaussianEnergy",
    "ImageLoadError",
    "LossConfig",
    "ModelLoadError",
    "NoiseConfig",
    "ScoreModel",
    "UNetConfig",
    "ascend_logp",
    "build_energy_model",
    "compare_models",
    "denoising_psnr",
    "dimensionality_curves",
    "effective_dimensionality",
    "energy_nats",
    "estimate_log_norm",
    "fit_gumbel",
    "fit_to_model",
    "load_heldout",
    "load_model",
    "logp_db",
    "logp_report",
    "mse_nll_nats",
    "nll_bits_per_dim",
    "ode_nll_nats",
    "package_model",
    "participation_ratio",
    "percentile_of",
    "prepare_upload",
    "sample",
    "save_model",
    "sde_nll_nats",
]
