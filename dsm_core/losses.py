"""Per-sample terms of (dual) score matching, unreduced, and the loss module training steps with;
no optimiser, no loop (paper eq. 8, 42)."""

from dataclasses import dataclass

import torch
from torch import nn

from dsm_core.config import LossConfig
from dsm_core.energy import BaseEnergy, DenoisingModel, ScoreModel
from dsm_core.noise import batch_t, per_image


@dataclass(frozen=True)
class LossTerms:
    """space: (1/d)|sqrt(t) grad_y - (y-x)/sqrt(t)|^2 (B,); time: the time-score term (B,) or None.

    ``space`` is the t/d-weighted denoising score matching term (paper eq. 3, 7), equal to
    ``|D(y, t) - x|^2 / (d t)``; ``time`` is the (t/d)^2-weighted time score matching term
    (paper eq. 5) written as ``(target/2 - t grad_t / d)^2`` with ``target = 1 - |y-x|^2/(d t)``.
    """

    space: torch.Tensor
    time: torch.Tensor | None

    def total(self, cfg: LossConfig) -> torch.Tensor:
        """Per-sample loss (B,): space + time_weight * time (single SM when time is None)."""
        if self.time is None or cfg.time_weight == 0:
            return self.space
        return self.space + cfg.time_weight * self.time


def time_score_term(
    noise: torch.Tensor, t: torch.Tensor, grad_t: torch.Tensor, d: int
) -> torch.Tensor:
    """The (t/d)^2-weighted time score matching term per sample (paper eq. 5).

    Args:
        noise: ``y - x = sqrt(t) z`` (B, ...).
        t: noise variance per image (B,).
        grad_t: dU/dt at (y, t) (B,).
        d: dimension of one image.

    Returns:
        ``(target/2 - t grad_t / d)^2`` with ``target = 1 - |y - x|^2 / (d t)``, (B,).
    """
    target = 1.0 - noise.square().flatten(1).sum(dim=1) / (d * t)  # (B,)
    return (0.5 * target - t * grad_t / d).square()


def score_matching_terms(
    model: DenoisingModel, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor, cfg: LossConfig
) -> LossTerms:
    """The loss terms of a model on noisy images, differentiable w.r.t. the model's parameters.

    Args:
        model: an energy model (dual SM when ``cfg.time_weight > 0``) or a score model (DSM only).
        x: clean images (B, C, H, W).
        y: noisy images ``x + sqrt(t) z`` (B, C, H, W).
        t: noise variance per image (B,).
        cfg: loss weights.

    Returns:
        LossTerms with per-sample terms of shape (B,).
    """
    # The training boundary: checked once here; a non-finite batch gives a non-finite loss
    # (which train_step handles on every DDP rank alike) rather than an error on one rank.
    y = model.check_images(y, finite=False)
    t = batch_t(t, y)  # (B,)
    d = x[0].numel()
    t4 = per_image(t, x)
    noise = y - x  # sqrt(t) z, from the actual tensors
    wants_time = cfg.time_weight > 0 and isinstance(model, BaseEnergy)
    if isinstance(model, ScoreModel):
        grad_y, grad_t = model._grad_y(y, t), None
    else:
        _, grad_y, grad_t = model._energy_and_grads(y, t, create_graph=True, with_grad_t=wants_time)
    # (sqrt(t) grad_y - noise / sqrt(t)) = (t grad_y - noise) / sqrt(t) = (x - D) / sqrt(t)
    space = (t4 * grad_y - noise).square().flatten(1).sum(dim=1) / (d * t)  # (B,)
    time = time_score_term(noise, t, grad_t, d) if wants_time else None
    return LossTerms(space=space, time=time)


class DualScoreLoss(nn.Module):
    """Per-sample loss terms of a model as a module, so DDP sees one forward per step.

    The inner ``torch.autograd.grad`` of dual score matching (w.r.t. y and t, ``create_graph``)
    runs inside this forward; DDP's gradient hooks then fire once, in the outer backward.
    """

    def __init__(self, model: DenoisingModel):
        super().__init__()
        self.model = model

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor, cfg: LossConfig
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """x, y (B, C, H, W), t (B,) -> (total, space, time), each (B,); time is None without a
        time term (single score matching, or a score model)."""
        terms = score_matching_terms(self.model, x, y, t, cfg)
        return terms.total(cfg), terms.space, terms.time
