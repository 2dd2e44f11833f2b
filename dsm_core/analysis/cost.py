"""What an analysis will cost before it runs: score evaluations of the samplers, and the time of
one evaluation on this machine (so an interface can warn before a long run)."""

import time

import torch

from dsm_core.analysis._common import randn
from dsm_core.energy import DenoisingModel


def sampling_score_evaluations(
    method: str, num_steps: int, *, steps_per_level: int = 10, denoise_final: bool = True
) -> int:
    """Gradient evaluations grad_y U of the whole batch that ``iter_samples`` makes.

    "ancestral", "reverse_sde": one per level; "ode": two (Heun); "langevin":
    ``steps_per_level`` on each of ``num_steps + 1`` levels; plus one for the final denoising
    step.
    """
    if method in ("ancestral", "reverse_sde"):
        count = num_steps
    elif method == "ode":
        count = 2 * num_steps
    elif method == "langevin":
        count = (num_steps + 1) * steps_per_level
    else:
        raise ValueError(
            f"method must be 'ancestral', 'reverse_sde', 'langevin' or 'ode', got {method!r}"
        )
    return count + (1 if denoise_final else 0)


def seconds_per_score_evaluation(
    model: DenoisingModel,
    num_images: int,
    *,
    t: float = 1.0,
    repeats: int = 3,
    generator: torch.Generator | None = None,
) -> float:
    """Median wall time of one grad_y U of ``num_images`` noisy images on the model's device."""
    device = next(iter(model.parameters()), torch.empty(0)).device
    y = randn((num_images, *model.image_shape), generator, torch.float32).to(device)
    t_b = torch.full((num_images,), t, device=device)
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        model.grad_y(y, t_b)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]
