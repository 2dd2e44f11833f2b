"""The noise process y = x + sqrt(t) z (paper §2.1): noise levels, grids, batching, the denoiser.

``t`` is the noise variance per pixel everywhere. This module is the one owner of adding noise,
of turning a noise level into a checked (B,) batch and broadcasting it over images, of the grids
of noise levels the analyses walk, of uniform dequantization, and of the Miyasawa-Tweedie
denoiser ``D(y, t) = y - t grad_y U(y, t)`` (paper eq. 37).
"""

import math

import numpy as np
import torch

from dsm_core.config import NoiseConfig

# Table 1's input PSNRs (dB): linspace(-30, 90, 17) = -30, -22.5, ..., 90 (t = 1e3 ... 1e-9),
# the release's evaluation grid. Every other one is shown in the paper's table.
PSNR_GRID_DB: tuple[float, ...] = tuple(float(v) for v in np.linspace(-30.0, 90.0, 17))


def sample_t(
    batch_size: int,
    cfg: NoiseConfig,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """One noise variance per image, log t ~ U(log t_min, log t_max) (density ~ 1/t) -> (B,)."""
    u = torch.rand(batch_size, generator=generator, device=device)
    log_t = math.log(cfg.t_min) + u * (math.log(cfg.t_max) - math.log(cfg.t_min))
    return torch.exp(log_t)


def batch_t(t: torch.Tensor | float, y: torch.Tensor) -> torch.Tensor:
    """Noise variance t as a (B,) tensor of y's dtype and device, checked.

    Every entry point that takes a noise level goes through here.

    Args:
        t: noise variance per pixel: a number, a 0-d or (B,) tensor, numpy array or list.
        y: the (already checked) images (B, ...) whose dtype and device t takes.

    Returns:
        t (B,), y's dtype and device (a (B,) tensor keeps its autograd graph).

    Raises:
        TypeError: t is not numeric.
        ValueError: wrong shape, or a value that is negative, NaN or infinite.
    """
    batch = y.shape[0]
    if isinstance(t, (int, float)) and not isinstance(t, bool):
        # a Python number is rounded once, to y's dtype (as torch.full would): through the
        # default float32 a float64 batch would get t = 0.1 as 0.10000000149
        t = torch.tensor(float(t), dtype=torch.float64, device=y.device)
    try:
        t = torch.as_tensor(t, device=y.device)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(
            f"t: expected a number or a ({batch},) tensor, got {type(t).__name__}"
        ) from exc
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"t: expected real noise variances, got {t.dtype}")
    t = t.to(y.dtype)
    if t.ndim == 0:
        t = t.expand(batch)
    elif t.shape != (batch,):
        raise ValueError(f"t must be a scalar or have shape ({batch},), got {tuple(t.shape)}")
    bad = ~torch.isfinite(t.detach()) | (t.detach() < 0)  # (B,)
    if bad.any():
        raise ValueError(
            f"t (noise variance) must be finite and >= 0, got {t.detach()[bad][:3].tolist()}"
        )
    return t


def per_image(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """t (B,) viewed as (B, 1, ..., 1) to broadcast over images x (B, ...)."""
    return t.view(-1, *([1] * (x.ndim - 1)))


def add_noise(x: torch.Tensor, t: torch.Tensor | float, z: torch.Tensor) -> torch.Tensor:
    """y = x + sqrt(t) z (paper §2.1; written out under eq. 42).

    Args:
        x: clean images (B, ...).
        t: noise variance per pixel: one number for all images, or (B,) one per image.
        z: unit Gaussian noise, x's shape.

    Returns:
        y (B, ...).
    """
    if isinstance(t, torch.Tensor):
        return x + per_image(t.sqrt(), x) * z
    return x + math.sqrt(t) * z


def tweedie_denoise(y: torch.Tensor, t: torch.Tensor | float, grad_y: torch.Tensor) -> torch.Tensor:
    """The Miyasawa-Tweedie denoiser ``D(y, t) = y - t grad_y U(y, t)`` (paper eq. 37).

    Args:
        y: noisy images (B, ...).
        t: noise variance per pixel, a number or (B,).
        grad_y: dU/dy at (y, t), y's shape.

    Returns:
        D(y, t), the estimate of E[x | y] (B, ...).
    """
    if isinstance(t, torch.Tensor):
        return y - per_image(t, y) * grad_y
    return y - t * grad_y


def as_t_grid(ts: torch.Tensor | list[float] | float) -> torch.Tensor:
    """Noise variances as a 1-D float64 CPU tensor (T,); ValueError unless all finite and >= 0."""
    ts = torch.as_tensor(ts, dtype=torch.float64).reshape(-1).cpu()
    if not (torch.isfinite(ts) & (ts >= 0)).all():
        raise ValueError(f"noise variances t must be finite and >= 0, got {ts.tolist()[:5]}")
    return ts


def noise_schedule(t_max: float, t_min: float, num_levels: int) -> np.ndarray:
    """Geometric noise variances from t_max down to t_min, (num_levels,) float64 (the log-uniform
    training range of paper C.2, walked downward).

    Raises:
        ValueError: unless 0 < t_min < t_max and num_levels >= 2.
    """
    if not 0.0 < t_min < t_max:
        raise ValueError(f"need 0 < t_min < t_max, got t_min={t_min}, t_max={t_max}")
    if num_levels < 2:
        raise ValueError(f"need at least 2 levels, got {num_levels}")
    return np.geomspace(t_max, t_min, num_levels)


def dequantize(
    levels: torch.Tensor, generator: torch.Generator | None = None, bits: int = 8
) -> torch.Tensor:
    """Uniform dequantization: level k becomes ``(k + u) / 2**bits``, u ~ U[0, 1) per value.

    Level k owns the bin ``[k, k + 1) / 2**bits`` of [0, 1]; a density trained on such values
    gives every bin a probability, so its likelihood of the quantized data is well defined
    (``dsm_core.analysis.dequantized_nll_bits_per_dim``).

    Args:
        levels: integer levels in [0, 2**bits) of any shape, integer or float dtype.
        generator: the source of u, on the device of ``levels`` (None: torch's global one).
        bits: bits per value.

    Returns:
        float32 values in [0, 1), same shape and device.
    """
    u = torch.rand(levels.shape, generator=generator, device=levels.device)
    return (levels.to(torch.float32) + u) / 2**bits
