"""The paper's probes of a learned density; pure functions of a model and images."""

from dsm_core.analysis.affine import affine_logp_db, affine_logp_db_grid, contrast_slice_logp_db
from dsm_core.analysis.ascent import (
    AscentResult,
    AscentStep,
    ascend_logp,
    default_step_size,
    iter_logp_ascent,
)
from dsm_core.analysis.denoising import (
    DenoisingResult,
    default_psnr_grid,
    denoise,
    denoising_psnr,
)
from dsm_core.analysis.dimensionality import (
    DimensionalityCurves,
    dimensionality_curves,
    effective_dimensionality,
    effective_energy_nats,
)
from dsm_core.analysis.estimators import NLLEstimate, mse_nll_nats, ode_nll_nats, sde_nll_nats
from dsm_core.analysis.generalization import (
    GeneralizationResult,
    GeneralizationSummary,
    compare_models,
    generalization_summary,
)
from dsm_core.analysis.gumbel import GumbelFit, fit_gumbel, frechet_parameters
from dsm_core.analysis.interpolation import Interpolation, interpolation_logp_db
from dsm_core.analysis.logp import (
    dequantized_nll_bits_per_dim,
    energy_nats,
    logp_db,
    logp_db_curve,
    nll_bits_per_dim,
    percentile_of,
)
from dsm_core.analysis.sampling import SamplingStep, iter_samples, noise_schedule, sample
from dsm_core.analysis.sparsity import haar_coefficients, participation_ratio

__all__ = [
    "AscentResult",
    "AscentStep",
    "DenoisingResult",
    "DimensionalityCurves",
    "GeneralizationResult",
    "GeneralizationSummary",
    "GumbelFit",
    "Interpolation",
    "NLLEstimate",
    "SamplingStep",
    "affine_logp_db",
    "affine_logp_db_grid",
    "ascend_logp",
    "compare_models",
    "contrast_slice_logp_db",
    "default_psnr_grid",
    "default_step_size",
    "denoise",
    "dequantized_nll_bits_per_dim",
    "denoising_psnr",
    "dimensionality_curves",
    "effective_dimensionality",
    "effective_energy_nats",
    "energy_nats",
    "fit_gumbel",
    "frechet_parameters",
    "generalization_summary",
    "haar_coefficients",
    "interpolation_logp_db",
    "iter_logp_ascent",
    "iter_samples",
    "logp_db",
    "logp_db_curve",
    "mse_nll_nats",
    "nll_bits_per_dim",
    "noise_schedule",
    "ode_nll_nats",
    "participation_ratio",
    "percentile_of",
    "sample",
    "sde_nll_nats",
]
