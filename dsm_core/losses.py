"""Per-sample terms of (dual) score matching, unreduced, and the loss module training steps with;
no optimiser, no loop (paper eq. 8, 42)."""

import copy
from dataclasses import dataclass

import torch
from torch import nn

from dsm_core.analysis.ascent import default_step_size
from dsm_core.analysis.sparsity import participation_ratio
from dsm_core.config import LossConfig, NoiseConfig
from dsm_core.energy import BaseEnergy, DenoisingModel, ScoreModel
from dsm_core.layers import use_plain_layers
from dsm_core.noise import add_noise, batch_t, per_image, sample_t


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


def heat_residual(
    model: BaseEnergy, y: torch.Tensor, t: torch.Tensor, probes: torch.Tensor
) -> torch.Tensor:
    """The heat equation's residual, ``(t/d) (dU/dt - v^T (grad_y^2 U) v / 2 + |grad_y U|^2 / 2)``.

    The energy ``U = -ln p_t`` of any family ``p_t = p_0 * N(0, t I)`` obeys
    ``dU/dt = (Laplacian U - |grad U|^2) / 2`` at every y, on the data or off it; this is the
    equation that makes one-shot log p (U at one t) and the probability-flow ODE (paper eq. 13,
    which integrates the Laplacian) agree. With a Rademacher probe v, ``v^T H v`` is an unbiased
    estimate of the Laplacian, so each probe's residual is unbiased; the product of two probes'
    residuals is an unbiased estimate of the squared residual. Differentiable w.r.t. the model's
    parameters (third-order autograd through the network).

    Args:
        model: an energy model.
        y: images (B, *image_shape), anywhere.
        t: noise variance per image (B,), inside the model's trained range (dU/dt is 0 below it).
        probes: Rademacher (+-1) probes (P, B, *image_shape).

    Returns:
        (P, B) residual per probe and image, dimensionless (the time score term's units).
    """
    y = y.detach().requires_grad_(True)
    d = y[0].numel()
    with torch.enable_grad():  # also under a caller's no_grad (diagnostics, finite differences)
        _, grad_y, grad_t = model._energy_and_grads(y, t, create_graph=True, with_grad_t=True)
        # grad_y: (B, *image_shape); grad_t: (B,)
        squared_score = grad_y.square().flatten(1).sum(dim=1)  # (B,)
        rows = []
        for v in probes:
            hessian_v = torch.autograd.grad((grad_y * v).sum(), y, create_graph=True)[0]
            laplacian = (hessian_v * v).flatten(1).sum(dim=1)  # (B,) estimate
            rows.append(t * (grad_t - 0.5 * laplacian + 0.5 * squared_score) / d)
    return torch.stack(rows)  # (P, B)


class AscentChains:
    """Persistent gradient-ascent chains on log p at the trained floor: the model's own modes.

    Gradient ascent (paper Fig. 13) climbs to images the model rates far above what the heat
    equation allows (issue 12); noisy images drawn at random rarely land there. Each chain is an
    image that moves ``steps`` projected ascent steps ``y <- clip(y - (1e-2/d) grad_y U(y,
    t_min), 0, 1)`` per visit, with the current weights, so over a chain's life (on average
    ``steps / restart`` steps, 1,000 by default as the analysis runs) it follows the model's
    spurious modes as training moves them. A visited chain restarts from a batch image with
    probability ``restart``. Chains start empty and fill from the first batches; they are not
    checkpointed (a resumed run starts them afresh).

    Args:
        num_chains: chains kept (per process).
        steps: ascent steps per visit.
        restart: probability that a visited chain restarts from a batch image.
    """

    def __init__(self, num_chains: int, steps: int, restart: float):
        if num_chains < 1 or steps < 0 or not 0.0 <= restart <= 1.0:
            raise ValueError(
                f"need num_chains >= 1, steps >= 0, 0 <= restart <= 1; got {num_chains}, "
                f"{steps}, {restart}"
            )
        self.num_chains, self.steps, self.restart = num_chains, steps, restart
        self.images: torch.Tensor | None = None  # (num_chains, C, H, W) once filled
        self.filled = 0
        self.cursor = 0

    def visit(
        self, model: BaseEnergy, x: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """Advance the next ``len(x)`` chains (round robin) and return their images.

        Args:
            model: the energy being trained (its weights are not changed or given gradients).
            x: batch images (n, C, H, W) in [0, 1]: starts of empty or restarting chains.
            generator: source of the restarts (on x's device).

        Returns:
            The visited chains' images after the steps, (n, C, H, W), detached.
        """
        n = x.shape[0]
        if self.images is None:
            self.images = x.new_empty((self.num_chains, *x.shape[1:]))
        rows = (self.cursor + torch.arange(n, device=x.device)) % self.num_chains
        self.cursor = (self.cursor + n) % self.num_chains
        start = torch.rand(n, generator=generator, device=x.device) < self.restart
        start |= rows >= self.filled
        self.filled = max(self.filled, int(rows.max()) + 1)
        image = torch.where(per_image(start, x), x, self.images[rows])  # (n, C, H, W)
        t_floor = torch.full((n,), model.t_min, dtype=x.dtype, device=x.device)
        step_size = default_step_size(model)  # the paper's 1e-2 / d, as the analysis
        for _ in range(self.steps):
            grad_y = model._energy_and_grads(image, t_floor, False, False)[1]
            image = (image - step_size * grad_y).clamp(0.0, 1.0).detach()
        self.images[rows] = image
        return image


def off_data_points(
    x: torch.Tensor,
    noise_cfg: NoiseConfig,
    loss_cfg: LossConfig,
    generator: torch.Generator | None,
    chains: tuple[AscentChains, BaseEnergy] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where the heat-equation term is evaluated: noisy images scored below their noise level.

    The first ``loss_cfg.heat_images`` images of x (with ``heat_starts="textured"`` the ones of
    highest Haar participation ratio; with ``chains``, the ascent chains they feed:
    ``AscentChains.visit``) get noise of variance s (log-uniform on
    [t_min, heat_max_var]) and are scored at ``t = max(s 10^-u, t_min)``,
    ``u ~ U(0, heat_decades)``: images noisier than p_t puts mass on, as gradient ascent's
    textured results are.

    Args:
        x: clean images (B, C, H, W).
        noise_cfg: the training floor of t.
        loss_cfg: ``heat_images``, ``heat_starts``, ``heat_decades`` and ``heat_max_var``.
        generator: source of s, u, the noise and the two probes (on x's device).
        chains: the chains and the model that moves them, for ``heat_points="ascent"``.

    Returns:
        y (n, C, H, W), t (n,), probes (2, n, C, H, W), with n = min(heat_images, B).
    """
    if loss_cfg.heat_starts == "textured":
        pr = participation_ratio(x).nan_to_num(0.0)  # (B,); an all-zero image counts as flat
        x = x[pr.argsort(descending=True)[: loss_cfg.heat_images].to(x.device)]
    else:
        x = x[: loss_cfg.heat_images]
    if chains is not None:
        x = chains[0].visit(chains[1], x, generator)
    n = x.shape[0]
    s_range = NoiseConfig(t_min=noise_cfg.t_min, t_max=loss_cfg.heat_max_var)
    s = sample_t(n, s_range, generator=generator, device=x.device)  # (n,)
    u = torch.rand(n, generator=generator, device=x.device) * loss_cfg.heat_decades
    t = (s * torch.pow(10.0, -u)).clamp_min(noise_cfg.t_min)  # (n,)
    z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    bits = torch.randint(0, 2, (2, *x.shape), generator=generator, device=x.device)
    probes = (2 * bits - 1).to(x.dtype)  # (2, n, C, H, W)
    return add_noise(x, s, z), t, probes


class DualScoreLoss(nn.Module):
    """Per-sample loss terms of a model as a module, so DDP sees one forward per step.

    The inner ``torch.autograd.grad`` of dual score matching (w.r.t. y and t, ``create_graph``)
    runs inside this forward; DDP's gradient hooks then fire once, in the outer backward.
    """

    def __init__(self, model: DenoisingModel):
        super().__init__()
        self.model = model
        self._third_order: tuple[DenoisingModel, ...] = ()  # built on first use, not a submodule

    def forward(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        t: torch.Tensor,
        cfg: LossConfig,
        heat_points: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """x, y (B, C, H, W), t (B,) -> (total, space, time), each (B,), and the heat term (n,).

        time is None without a time term (single score matching, or a score model); heat is
        None without ``heat_points`` (``off_data_points``), else the product of the two probes'
        heat-equation residuals (an unbiased estimate of the squared residual), not in total.
        """
        terms = score_matching_terms(self.model, x, y, t, cfg)
        heat = None
        if heat_points is not None:
            y_heat, t_heat, probes = heat_points
            residual = heat_residual(self._third_order_twin(), y_heat, t_heat, probes)  # (2, n)
            heat = residual[0] * residual[1]
        return terms.total(cfg), terms.space, terms.time, heat

    def _third_order_twin(self) -> BaseEnergy:
        """The model with autograd's plain layers, sharing its parameters and buffers, whose
        analytic terms (time term, image-mean term) the heat term does not train.

        The heat term differentiates the score twice more; the fast layers' written-out double
        backwards are first order only (``layers``), so through them its parameter gradient
        was 0.5-30 % off (finite differences, tiny UNet; 2-5 % on most weights).
        The analytic terms are y-independent (time term) or score one coordinate per channel
        (mean term); left trainable, the heat term moved the time term instead of the network
        (issue 12: after 10,500 steps the flat image's one-shot log p fell 21.8 -> 17.0 dB/dim
        and smooth held-out crops sat 1-3 dB/dim below the ODE).
        """
        if not isinstance(self.model, BaseEnergy):
            raise ValueError("the heat-equation term needs an energy model (dU/dt)")
        if not self._third_order:
            tensors = (*self.model.parameters(), *self.model.buffers())
            shared = {id(tensor): tensor for tensor in tensors}
            twin = use_plain_layers(copy.deepcopy(self.model, memo=shared))
            for name in ("time_term", "mean_term"):
                if getattr(twin, name, None) is not None:
                    setattr(twin, name, _FixedWeights(getattr(twin, name)))
            self._third_order = (twin,)
        return self._third_order[0]


class _FixedWeights(nn.Module):
    """``module`` called with its current weights detached: gradients reach its inputs only."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        weights = {name: p.detach() for name, p in self.module.named_parameters()}
        return torch.func.functional_call(self.module, weights, args)
