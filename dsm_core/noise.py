"""Noise levels: log-uniform sampling of the variance t, and y = x + sqrt(t) z."""

import math

import torch

from dsm_core.config import NoiseConfig


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


def add_noise(x: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """y = x + sqrt(t) z; x, z (B, ...), t (B,) -> y (B, ...)."""
    return x + t.sqrt().view(-1, *([1] * (x.ndim - 1))) * z
