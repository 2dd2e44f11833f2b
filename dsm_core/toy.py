"""Figure 1's toy: a Gaussian scale mixture in d dimensions, its exact energy, and a radial model.

Data: ``sum_i w_i N(0, sigma_i^2 I_d)`` (paper: 0.5 N(0, I) + 0.5 N(0, 16 I), d = 1000). At noise
variance t each component is ``N(0, (sigma_i^2 + t) I)`` (paper eq. 43), so the true energy is
known in closed form at every t. The model sees y only through ``r = |y|`` (reference-spec §4.10).
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from dsm_core import units
from dsm_core.config import LossConfig, NoiseConfig
from dsm_core.energy import BaseEnergy
from dsm_core.losses import score_matching_terms
from dsm_core.noise import add_noise, sample_t
from dsm_core.normalization import estimate_log_norm


@dataclass(frozen=True)
class ScaleMixture:
    """Zero-mean isotropic Gaussian scale mixture in ``d`` dimensions."""

    d: int = 1000
    sigmas: tuple[float, ...] = (1.0, 4.0)
    weights: tuple[float, ...] = (0.5, 0.5)

    def energy(self, y: torch.Tensor, t: torch.Tensor | float = 0.0) -> torch.Tensor:
        """Exact energy in nats of the noisy mixture at variance t; y (B, d) -> (B,)."""
        r2 = y.double().square().sum(dim=1, keepdim=True)  # (B, 1)
        t = torch.as_tensor(t, dtype=torch.float64, device=y.device).reshape(-1, 1)
        var = torch.tensor(self.sigmas, dtype=torch.float64, device=y.device) ** 2 + t  # (B|1, K)
        log_w = torch.log(torch.tensor(self.weights, dtype=torch.float64, device=y.device))
        log_components = -r2 / (2 * var) - 0.5 * self.d * torch.log(2 * math.pi * var) + log_w
        return -torch.logsumexp(log_components, dim=1)  # (B,)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n samples (n, d), float32."""
        probs = torch.tensor(self.weights)
        which = torch.multinomial(probs, n, replacement=True, generator=generator)  # (n,)
        sigma = torch.tensor(self.sigmas)[which]
        return sigma[:, None] * torch.randn(n, self.d, generator=generator)


class RadialMixtureEnergy(BaseEnergy):
    """U(y, t) = -logsumexp_i(-(a_i(t) r^2 + b_i(t))), r = |y|, (a, b/d) = MLP(ln(t + 0.01)).

    The release scales b by d (not in paper eq. 44); the MLP is 1-256-256-256-256-4 with GELU.
    """

    def __init__(self, d: int, num_components: int = 2, hidden: int = 256, num_hidden: int = 3):
        super().__init__((d,))
        layers: list[nn.Module] = [nn.Linear(1, hidden), nn.GELU()]
        for _ in range(num_hidden):
            layers += [nn.Linear(hidden, hidden), nn.GELU()]
        layers.append(nn.Linear(hidden, 2 * num_components))
        self.mlp = nn.Sequential(*layers)
        self.num_components = num_components

    def raw_energy(self, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        coeffs = self.mlp(torch.log(t + 0.01)[:, None])  # (B, 2K)
        a, b = coeffs[:, : self.num_components], self.d * coeffs[:, self.num_components :]
        r2 = y.square().sum(dim=1, keepdim=True)  # (B, 1)
        return -torch.logsumexp(-(a * r2 + b), dim=1)  # (B,)


@dataclass(frozen=True)
class ToyTraining:
    """Reference-spec §4.10 (20,000 steps, batch 512, Adam halved every 2,000 steps), lr 1e-3."""

    num_steps: int = 20_000
    batch_size: int = 512
    # release: 1e-4. Measured here (seed 0, 20k steps): 1e-4 left dual SM in a local minimum
    # (mode gap 774 vs 1,385 nats); 1e-3 reached a gap error of 0.07 %.
    lr: float = 1e-3
    lr_halve_every_steps: int = 2_000
    noise: NoiseConfig = NoiseConfig(t_min=1e-2, t_max=1e2)  # input PSNR 20 .. -20 dB


def train_toy(
    model: RadialMixtureEnergy,
    data: torch.Tensor,
    loss: LossConfig,
    cfg: ToyTraining,
    *,
    generator: torch.Generator,
    progress: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Fit the radial model to fixed samples (N, d) by single (time_weight 0) or dual SM.

    Batches are drawn from fresh random permutations of ``data``; ``progress(step, loss)`` is
    called every step. The model's floor ``t_min`` becomes the training range's, so it is flat
    in t below what it was trained on. Returns the loss curve.
    """
    model.t_min = cfg.noise.t_min
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, cfg.lr_halve_every_steps, gamma=0.5)
    order = torch.randperm(data.shape[0], generator=generator)
    position, losses = 0, []
    model.train()
    for step in range(cfg.num_steps):
        if position + cfg.batch_size > data.shape[0]:
            order, position = torch.randperm(data.shape[0], generator=generator), 0
        x = data[order[position : position + cfg.batch_size]]  # (B, d)
        position += cfg.batch_size
        t = sample_t(x.shape[0], cfg.noise, generator=generator)
        y = add_noise(x, t, torch.randn(x.shape, generator=generator))
        value = score_matching_terms(model, x, y, t, loss).total(loss).mean()
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        schedule.step()
        losses.append(value.item())
        if progress is not None:
            progress(step, losses[-1])
    model.eval()
    return losses


@dataclass(frozen=True)
class ToyEvaluation:
    """Figure 1's numbers for one model, log p in dB/dim, energies in nats."""

    radii: torch.Tensor  # (G,) grid of r / sqrt(d)
    true_logp_db: torch.Tensor  # (G,) at t = 0
    model_logp_db: torch.Tensor  # (G,) at t = eval_t
    log_norm_nats: float
    max_abs_err_db: float  # on r / sqrt(d) in [0.5, 5]
    entropy_err_db: float  # |mean log p model - mean log p true| over the data
    mode_gap_true_nats: float
    mode_gap_model_nats: float
    mode_gap_rel_err: float
    adjusted_mode_err_db: float  # after the best global shift: max over the two modes


def evaluate_toy(
    model: RadialMixtureEnergy,
    mixture: ScaleMixture,
    data: torch.Tensor,
    *,
    t_max: float = 1e2,
    eval_t: float = 1e-2,
    num_grid: int = 500,
    data_var: float | None = None,
    generator: torch.Generator | None = None,
) -> ToyEvaluation:
    """Normalise at t_max on the data (eq. 9), then compare log p with the truth (Fig. 1 left).

    As in the release, the model is evaluated at ``eval_t`` = the smallest trained t, the truth
    at t = 0 (their difference is below 0.005 dB/dim on the modes).

    Not as in the release: the reference entropy at t_max is that of N(0, (t_max + data_var) I),
    with ``data_var`` the per-dimension variance of ``data`` unless given (0 is the release's
    choice). Here data_var = 8.5 is not small against t_max = 100: ignoring it offsets every
    log p by (1/2) ln(1 + 8.5/100) nats/dim = 0.177 dB/dim, while the true mean energy at
    t_max is within 0.7 nats (0.003 dB/dim) of the corrected Gaussian value.
    """
    d = mixture.d
    data_var = data.var().item() if data_var is None else data_var
    model.log_norm_nats = estimate_log_norm(
        model, data, t_max, data_var=data_var, batch_size=4096, generator=generator
    ).log_norm_nats
    radii = torch.linspace(0, 5, num_grid)
    grid = torch.zeros(num_grid, d)
    grid[:, 0] = radii * math.sqrt(d)  # the energies are radial
    with torch.no_grad():
        true_grid = mixture.energy(grid)
        model_grid = model.energy(grid, eval_t).double()
        true_data = mixture.energy(data)
        model_data = torch.cat([model.energy(b, eval_t) for b in data.split(4096)]).double()
    to_db = units.energy_nats_to_logp_db
    err = to_db(model_grid, d) - to_db(true_grid, d)
    window = radii >= 0.5
    inner = true_data <= true_data.median()  # the two modes, split at the median energy
    gap_true = (true_data[~inner].mean() - true_data[inner].mean()).item()
    gap_model = (model_data[~inner].mean() - model_data[inner].mean()).item()
    shift = (true_data - model_data).mean()
    mode_errs = [
        abs(to_db((model_data[m] + shift - true_data[m]).mean(), d).item()) for m in (inner, ~inner)
    ]
    return ToyEvaluation(
        radii=radii,
        true_logp_db=to_db(true_grid, d).float(),
        model_logp_db=to_db(model_grid, d).float(),
        log_norm_nats=model.log_norm_nats,
        max_abs_err_db=err[window].abs().max().item(),
        entropy_err_db=abs(to_db((model_data - true_data).mean(), d).item()),
        mode_gap_true_nats=gap_true,
        mode_gap_model_nats=gap_model,
        mode_gap_rel_err=abs(gap_model - gap_true) / abs(gap_true),
        adjusted_mode_err_db=max(mode_errs),
    )
