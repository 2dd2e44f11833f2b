"""Gradient ascent and descent of log p in image space, clipped to [0, 1] (paper Fig. 13, §D.4)."""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch

from dsm_core import units
from dsm_core.analysis._common import (
    Progress,
    batch_size_for,
    check_images,
    chunks,
    model_device,
    require_energy,
)
from dsm_core.energy import BaseEnergy
from dsm_core.noise import per_image

Direction = Literal["ascent", "descent"]
GradUnit = Literal["nats", "db"]


@dataclass(frozen=True)
class AscentStep:
    """One iterate: ``step`` updates applied, the images (B, *image_shape) and their log p (B,)
    in dB/dim; CPU tensors."""

    step: int
    image: torch.Tensor
    logp_db: torch.Tensor


@dataclass(frozen=True)
class AscentResult:
    """Best iterate per image and the whole log p curve.

    Attributes:
        best_image: (B, *image_shape), the iterate with the highest (ascent) or lowest (descent)
            log p, per image.
        best_logp_db: (B,) its log p in dB/dim.
        best_step: (B,) the step at which it occurred (0 = the input).
        logp_db_curve: (num_steps + 1, B) log p in dB/dim of every iterate, step 0 first.
    """

    best_image: torch.Tensor
    best_logp_db: torch.Tensor
    best_step: torch.Tensor
    logp_db_curve: torch.Tensor


def default_step_size(model: BaseEnergy) -> float:
    """The paper's fixed step ``1e-2 / d`` (reference-spec §4.9), for grad log p in nats."""
    return 1e-2 / model.d


def max_curvature(
    model: BaseEnergy,
    x: torch.Tensor,
    *,
    t: float = 0.0,
    num_iters: int = 30,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """The dominant eigenvalue of the Hessian of the energy U(., t) at each image (power iteration).

    A step of ascent on log p, ``y <- y - step_size * grad_y U``, shrinks the distance to a
    maximum along a Hessian eigenvector of eigenvalue lam > 0 only while ``step_size * lam < 2``;
    beyond it every step multiplies that component by ``|1 - step_size * lam| > 1``, and the
    iterates oscillate with growing amplitude, held in only by the clip to [0, 1]: the
    "numerical instabilities around high-probability images" of paper §D.4 (Fig. 13). For an
    exact p_t, lam <= 1/t, since ``grad_y^2 U = (I - Cov[x | y] / t) / t``.

    Args:
        model: a normalised energy model.
        x: images (B, *image_shape).
        t: noise variance (0: the model's clean-image level, as ``iter_logp_ascent``).
        num_iters: Hessian-vector products per image (each one backward pass through the graph
            of grad_y U); the error falls as ``|lam_2 / lam_1| ** num_iters``.
        generator: source of the starting vectors (on the CPU).
        batch_size: images per pass (default: ``VALUES_PER_BATCH`` / d).
        device: compute device (default: the model's).

    Returns:
        (B,) float64 CPU tensor: the Rayleigh quotient ``v^T (grad_y^2 U) v`` of the final unit
        vector v, the eigenvalue of largest magnitude with its sign, in nats per squared unit of
        intensity (so ``step_size * lam`` is dimensionless for a step in nats).

    Raises:
        ValueError: num_iters < 1; TypeError / ValueError for images of the wrong shape.
    """
    require_energy(model, "the curvature of the energy")
    x = check_images(model, x)
    if num_iters < 1:
        raise ValueError(f"num_iters must be >= 1, got {num_iters}")
    device = model_device(model, device)
    start = torch.randn(x.shape, generator=generator, dtype=x.dtype)  # (B, *image_shape)
    eigenvalue = torch.empty(x.shape[0], dtype=torch.float64)
    for rows in chunks(x.shape[0], batch_size_for(model.d, batch_size)):
        y = x[rows].detach().to(device).requires_grad_(True)
        v = start[rows].to(device)
        with torch.enable_grad():
            _, grad_y, _ = model.energy_and_scores(y, t, create_graph=True)
            for _ in range(num_iters):
                v = v / per_image(v.flatten(1).norm(dim=1), v)  # unit rows
                (hessian_v,) = torch.autograd.grad((grad_y * v).sum(), y, retain_graph=True)
                quotient = (hessian_v * v).flatten(1).sum(dim=1)  # (b,) v^T H v
                v = hessian_v.detach()
        eigenvalue[rows] = quotient.detach().double().cpu()
    return eigenvalue


def iter_logp_ascent(
    model: BaseEnergy,
    x: torch.Tensor,
    *,
    num_steps: int = 1000,
    step_size: float | None = None,
    unit: GradUnit = "nats",
    direction: Direction = "ascent",
    t: float = 0.0,
    clip: bool = True,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
) -> Iterator[AscentStep]:
    """Projected gradient ascent (or descent) on log p, one ``AscentStep`` per iterate (Fig. 13).

    ``x <- clip(x ± step_size * grad_x log p(x), 0, 1)``, with log p in nats (``unit="nats"``,
    gradient ``-grad_y U``) or in dB/dim (``unit="db"``, gradient ``-10 grad_y U / (d ln 10)``).
    The paper gives 1000 steps of size 1e-2/d at t = 0 but not the unit; nats is the natural
    reading (reference-spec §4.9). Yields the input (step 0) and then every update, so
    ``num_steps + 1`` items; close the generator to stop early.

    Args:
        model: a normalised energy model.
        x: starting images (B, *image_shape) in [0, 1].
        num_steps: number of updates.
        step_size: step (default ``1e-2 / d``), applied to the gradient in ``unit``.
        unit: "nats" or "db", the unit of the log p whose gradient is followed.
        direction: "ascent" (raise log p) or "descent" (lower it).
        t: noise variance at which log p is taken (0: the clean density).
        clip: clip to [0, 1] after every step (as the paper).
        batch_size: images per forward/backward pass (default:
            ``VALUES_PER_BATCH`` / d, 64 images of 32x32).
        device: compute device (default: the model's).

    Yields:
        ``AscentStep(step, image, logp_db)`` with CPU tensors.
    """
    require_energy(model, "gradient ascent on log p")
    x = check_images(model, x)
    if unit not in ("nats", "db"):
        raise ValueError(f"unit must be 'nats' or 'db', got {unit!r}")
    if direction not in ("ascent", "descent"):
        raise ValueError(f"direction must be 'ascent' or 'descent', got {direction!r}")
    device = model_device(model, device)
    step_size = default_step_size(model) if step_size is None else float(step_size)
    scale = 1.0 if unit == "nats" else 10.0 / (model.d * units.LN10)  # d(log p unit)/d(nats)
    sign = 1.0 if direction == "ascent" else -1.0
    image = x.detach().to(device).clone()
    for step in range(num_steps + 1):
        energy = torch.empty(image.shape[0], dtype=torch.float64)
        grad_logp = torch.empty_like(image)
        for rows in chunks(image.shape[0], batch_size_for(model.d, batch_size)):
            e, grad_y, _ = model.energy_and_scores(image[rows], t)
            energy[rows] = e.double().cpu()
            grad_logp[rows] = -scale * grad_y  # gradient of log p in the chosen unit
        yield AscentStep(step, image.cpu().clone(), units.energy_nats_to_logp_db(energy, model.d))
        if step < num_steps:
            image = image + sign * step_size * grad_logp
            if clip:
                image = image.clamp(0.0, 1.0)


def ascend_logp(
    model: BaseEnergy,
    x: torch.Tensor,
    *,
    num_steps: int = 1000,
    step_size: float | None = None,
    unit: GradUnit = "nats",
    direction: Direction = "ascent",
    t: float = 0.0,
    clip: bool = True,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
) -> AscentResult:
    """Run ``iter_logp_ascent`` to the end and keep the best iterate per image (paper Fig. 13).

    Arguments as ``iter_logp_ascent``; ``progress(done, num_steps)`` after each update.
    """
    best_image = best_logp = best_step = None
    curve = []
    better = torch.gt if direction == "ascent" else torch.lt
    for item in iter_logp_ascent(
        model,
        x,
        num_steps=num_steps,
        step_size=step_size,
        unit=unit,
        direction=direction,
        t=t,
        clip=clip,
        batch_size=batch_size,
        device=device,
    ):
        curve.append(item.logp_db)
        if best_image is None:
            best_image, best_logp = item.image.clone(), item.logp_db.clone()
            best_step = torch.zeros(item.logp_db.shape[0], dtype=torch.long)
        else:
            improved = better(item.logp_db, best_logp)  # (B,)
            best_image[improved] = item.image[improved]
            best_logp[improved] = item.logp_db[improved]
            best_step[improved] = item.step
        if progress is not None and item.step > 0:
            progress(item.step, num_steps)
    return AscentResult(best_image, best_logp, best_step, torch.stack(curve))
