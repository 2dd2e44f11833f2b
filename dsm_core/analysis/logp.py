"""Log probability of images from a normalised energy model, in every unit (paper §3.1-3.2)."""

import torch

from dsm_core import units
from dsm_core.analysis._common import (
    Progress,
    batch_size_for,
    check_images,
    model_device,
)
from dsm_core.energy import BaseEnergy
from dsm_core.noise import as_t_grid, batch_t, dequantize


def energy_nats(
    model: BaseEnergy,
    x: torch.Tensor,
    t: float | torch.Tensor = 0.0,
    *,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Normalised energy U(x, t) in nats of images x (B, *image_shape), batched -> (B,) on CPU.

    The one-shot estimate of ``-log p(x)`` (paper eq. 9 normalisation, §3.1). No graph is built
    (``torch.inference_mode``); ``t`` is a float or (B,). ``device`` defaults to the model's.
    """
    x = check_images(model, x)
    device = model_device(model, device)
    t = batch_t(t, x)  # (B,), checked
    out = []
    with torch.inference_mode():
        batch_size = batch_size_for(model.d, batch_size)
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size].to(device)
            tb = t[start : start + batch_size].to(device)
            out.append(model.energy(xb, tb).cpu())
    return torch.cat(out) if out else torch.empty(0)


def logp_db(
    model: BaseEnergy,
    x: torch.Tensor,
    t: float | torch.Tensor = 0.0,
    *,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """log p(x) in dB/dim, ``-10 U(x, t) / (d ln 10)`` (B,) (paper §3.2, Fig. 3).

    With ``t > 0`` this is the log density of the noisy distribution p_t evaluated at x itself
    (no noise is added; for the average over noisy y see ``effective_energy_nats``).
    """
    energy = energy_nats(model, x, t, batch_size=batch_size, device=device)
    return units.energy_nats_to_logp_db(energy, model.d)


def nll_bits_per_dim(
    model: BaseEnergy,
    x: torch.Tensor,
    discrete: bool = True,
    *,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Negative log-likelihood in bits/dim (B,); ``discrete`` adds the 8 bits of 256-level data."""
    energy = energy_nats(model, x, 0.0, batch_size=batch_size, device=device)
    if discrete:
        return units.discrete_nll_bits_per_dim(energy, model.d)
    return units.nats_to_bits_per_dim(energy, model.d)


def dequantized_nll_bits_per_dim(
    model: BaseEnergy,
    pixels: torch.Tensor,
    *,
    bits: int = units.QUANTIZATION_BITS,
    num_draws: int = 4,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Upper bound on the NLL of quantized images in bits/dim, by uniform dequantization (B,).

    Pixel level k of ``2**bits`` owns the bin ``[k, k + 1) / 2**bits`` of [0, 1]; the model's
    probability of the quantized image is the integral of p over its bins, and by Jensen
    ``-log2 P(k) <= bits * d + E_u[U((k + u) / 2**bits)] / ln 2`` with u uniform on [0, 1)^d.
    The mean over ``num_draws`` draws of u is an unbiased estimate of that bound.

    Unlike ``nll_bits_per_dim`` (density at the pixel values + 8, the release's "Continuous"
    convention), this cannot be lowered by a density that spikes on the exact pixel values,
    e.g. the many exact zeros of Fashion-MNIST's background.

    Args:
        model: a normalised energy model.
        pixels: integer pixel levels (B, *image_shape), any integer dtype, in [0, 2**bits).
        bits: bits per pixel of the data.
        num_draws: dequantization draws per image.
        generator: random generator of u.
        batch_size: images per forward pass (default:
            ``VALUES_PER_BATCH`` / d, 64 images of 32x32).
        device: compute device (default: the model's).

    Returns:
        bits/dim per image, (B,) float64 on the CPU.
    """
    if pixels.dtype.is_floating_point or pixels.dtype == torch.bool:
        raise TypeError(f"pixels must hold integer levels, got {pixels.dtype}")
    levels = 2**bits
    if pixels.numel() and (int(pixels.min()) < 0 or int(pixels.max()) >= levels):
        raise ValueError(f"pixel levels must lie in [0, {levels}) for bits={bits}")
    if num_draws < 1:
        raise ValueError("num_draws must be >= 1")
    total = torch.zeros(pixels.shape[0], dtype=torch.float64)
    for _ in range(num_draws):
        x = dequantize(pixels, generator, bits)  # (B, *image_shape)
        total += energy_nats(model, x, batch_size=batch_size, device=device)
    return bits + units.nats_to_bits_per_dim(total / num_draws, model.d)


def logp_db_curve(
    model: BaseEnergy,
    x: torch.Tensor,
    ts: torch.Tensor | list[float],
    *,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
) -> torch.Tensor:
    """log p_t(x) in dB/dim at each noise variance of ``ts``, without adding noise (B, T).

    ``-10 U(x, t) / (d ln 10)`` for every t: the model's noisy density at the clean image. Compare
    the effective energy ``E_y[U(y, t) | x]`` of paper Fig. 5 (``effective_energy_nats``), which
    averages over noisy y instead.

    Args:
        model: a normalised energy model.
        x: images (B, *image_shape) in [0, 1].
        ts: noise variances per pixel (T,).
        batch_size: images per forward pass (default:
            ``VALUES_PER_BATCH`` / d, 64 images of 32x32).
        device: compute device (default: the model's).
        progress: ``progress(done, total)`` after each t.

    Returns:
        log p in dB/dim, (B, T) on the CPU.
    """
    ts = as_t_grid(ts)
    columns = []
    for j, t in enumerate(ts.tolist()):
        columns.append(logp_db(model, x, t, batch_size=batch_size, device=device))
        if progress is not None:
            progress(j + 1, len(ts))
    return torch.stack(columns, dim=1) if columns else torch.empty(x.shape[0], 0)


def percentile_of(
    logp_db: torch.Tensor | list[float] | float, reference_logp_db: torch.Tensor | list[float]
) -> torch.Tensor:
    """Percentile (0-100) of each value within a reference set, e.g. a test set (Fig. 3 arrows).

    The "mean" convention of ``scipy.stats.percentileofscore``: the percentage of reference
    values strictly below, plus half of those equal. A value above every reference gives 100,
    below every reference 0.

    Args:
        logp_db: values (any shape), e.g. log p in dB/dim of a few images.
        reference_logp_db: reference values (N,), N >= 1, same unit.

    Returns:
        Percentiles in [0, 100], same shape as ``logp_db``, float64.
    """
    values = torch.as_tensor(logp_db, dtype=torch.float64)
    reference = torch.as_tensor(reference_logp_db, dtype=torch.float64).reshape(-1)
    if reference.numel() == 0:
        raise ValueError("reference_logp_db is empty")
    if torch.isnan(reference).any():
        raise ValueError("reference_logp_db contains NaN")
    reference = reference.sort().values
    flat = values.reshape(-1).contiguous()
    below = torch.searchsorted(reference, flat, right=False)
    at_or_below = torch.searchsorted(reference, flat, right=True)
    pct = 50.0 * (below + at_or_below).double() / reference.numel()
    pct[torch.isnan(flat)] = float("nan")
    return pct.reshape(values.shape)
