"""Shared plumbing of the analyses: device choice, shape checks, noise draws, progress callbacks."""

from collections.abc import Callable, Iterator

import torch

from dsm_core.energy import BaseEnergy, DenoisingModel

Progress = Callable[[int, int], None]
"""``progress(done, total)``; called after each unit of work. Raising inside it aborts the call."""


def model_device(model: torch.nn.Module, device: str | torch.device | None) -> torch.device:
    """The device to compute on: ``device`` if given, else that of the model's first parameter or
    buffer (CPU for a model with neither)."""
    if device is not None:
        return torch.device(device)
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def check_images(model: DenoisingModel, x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """``model.check_images`` without moving: x as a (B, *model.image_shape) tensor of the
    model's dtype, on x's device (analyses move each batch); raises TypeError / ValueError
    naming what is expected (see ``DenoisingModel.check_images``)."""
    return model.check_images(x, name, move=False)


def require_energy(model: DenoisingModel, what: str) -> BaseEnergy:
    """The model, if it has an energy; otherwise a TypeError naming the analysis."""
    if not isinstance(model, BaseEnergy):
        raise TypeError(f"{what} needs an energy model (BaseEnergy), got {type(model).__name__}")
    return model


def lowest_t(model: DenoisingModel, t_min: float | None, default: float) -> float:
    """The lowest noise variance an analysis goes to: ``t_min`` if given, else the model's trained
    floor (``model.t_min``, below which it is flat), else ``default``."""
    if t_min is not None:
        return t_min
    return model.t_min if model.t_min > 0 else default


def randn(
    shape: tuple[int, ...], generator: torch.Generator | None, dtype: torch.dtype
) -> torch.Tensor:
    """Standard normal draws on the CPU (so results do not depend on the compute device)."""
    return torch.randn(shape, generator=generator, dtype=dtype)


# Images per forward pass when the caller gives none: a budget in values (C*H*W per image).
# bench/inference_throughput.py on 2 CPU cores: 64 images of 32x32 was the fastest batch for the
# default model (energy and scores); at 64x64, 16 images beat 64 by 16 % on the scores path and
# took a quarter of the memory (132 vs 527 MiB per call).
VALUES_PER_BATCH = 65_536


def batch_size_for(d: int, batch_size: int | None) -> int:
    """``batch_size`` if given, else ``VALUES_PER_BATCH // d`` images of dimension d (>= 1)."""
    return batch_size if batch_size is not None else max(1, VALUES_PER_BATCH // d)


def chunks(n: int, batch_size: int) -> Iterator[slice]:
    """Consecutive slices of ``range(n)`` of at most ``batch_size`` items."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))
