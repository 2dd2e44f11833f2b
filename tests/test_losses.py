"""Dual score matching on Gaussian data, where the optimal energy and its loss are known exactly."""

import math
from dataclasses import replace

import pytest
import torch

import dsm_core as dc
from dsm_core.config import LossConfig, NoiseConfig
from dsm_core.energy import BaseEnergy
from dsm_core.losses import (
    AscentChains,
    DualScoreLoss,
    heat_residual,
    off_data_points,
    score_matching_terms,
)
from dsm_core.noise import add_noise
from dsm_core.training import train_step


def expected_terms(s2: float, t: float, d: int) -> tuple[float, float]:
    """E[space], E[time] of the exact energy of N(mu, s2 I) at noise variance t (derived by hand).

    With a = s2/(s2+t), b = t/(s2+t): E[space] = a and
    E[time] = (a^2 (1+b)^2 + a^2 b^2 + 2 a b^3) / (2d).
    """
    a, b = s2 / (s2 + t), t / (s2 + t)
    return a, (a * a * (1 + b) ** 2 + a * a * b * b + 2 * a * b**3) / (2 * d)


def mean_terms(model, x, t, generator):
    tt = torch.full((x.shape[0],), t, dtype=x.dtype)
    y = add_noise(x, tt, torch.randn(x.shape, generator=generator, dtype=x.dtype))
    terms = score_matching_terms(model, x, y, tt, LossConfig())
    return terms.space.mean().item(), terms.time.mean().item()


@pytest.mark.parametrize("t", [1e-4, 0.05, 1.0, 100.0])
def test_oracle_attains_known_minimum(t, generator):
    d, s2, n = 16, 0.3, 40_000
    oracle = dc.GaussianEnergy.isotropic(torch.full((1, 4, 4), 0.5, dtype=torch.float64), s2)
    x = oracle.sample(n, generator)
    space, time = mean_terms(oracle, x, t, generator)
    want_space, want_time = expected_terms(s2, t, d)
    # Monte Carlo: 40k samples; the per-sample terms have O(1) relative spread
    assert space == pytest.approx(want_space, rel=0.02)
    assert time == pytest.approx(want_time, rel=0.05)


def test_wrong_energies_have_higher_loss(gaussian_oracle, generator):
    x = gaussian_oracle.sample(20_000, generator)
    wrong_var = dc.GaussianEnergy(
        gaussian_oracle.mean, gaussian_oracle.eigenvalues * 1.5, gaussian_oracle.eigenvectors
    )

    class WrongTime(BaseEnergy):  # exact scores in y, wrong t-dependence (extra 10 d log(1+t))
        def __init__(self):
            super().__init__(gaussian_oracle.image_shape)

        def raw_energy(self, y, t):
            return gaussian_oracle.raw_energy(y, t) + 10 * self.d * torch.log1p(t)

    for t in (0.01, 0.3):
        seed = torch.Generator().manual_seed(5)
        best = mean_terms(gaussian_oracle, x, t, seed)
        off_space = mean_terms(wrong_var, x, t, torch.Generator().manual_seed(5))
        off_time = mean_terms(WrongTime(), x, t, torch.Generator().manual_seed(5))
        assert off_space[0] > best[0] * 1.002 and off_time[1] > best[1] * 1.2
        assert off_time[0] == pytest.approx(best[0], rel=1e-6)  # grad_y untouched


def test_single_score_matching_has_no_time_term(gaussian_oracle, generator):
    x = gaussian_oracle.sample(4, generator)
    t = torch.full((4,), 0.1, dtype=torch.float64)
    terms = score_matching_terms(gaussian_oracle, x, x, t, LossConfig(time_weight=0.0))
    assert terms.time is None and torch.equal(terms.total(LossConfig(0.0)), terms.space)


def test_normalization_recovers_offset(generator):
    s2, offset = 0.2, 57.0
    oracle = dc.GaussianEnergy.isotropic(torch.full((1, 8, 8), 0.4, dtype=torch.float64), s2)

    class Shifted(BaseEnergy):
        def __init__(self):
            super().__init__(oracle.image_shape)

        def raw_energy(self, y, t):
            return oracle.raw_energy(y, t) + offset

    x = oracle.sample(20_000, generator)
    est = dc.estimate_log_norm(Shifted(), x, 1e3, data_var=s2, generator=generator)
    assert est.num_samples == 20_000
    assert abs(est.log_norm_nats + offset) < 4 * est.stderr_nats
    assert est.stderr_nats < 0.1
    # the release convention (data_var = 0) is off by (d/2) ln(1 + s2/t_max) = 0.0064 nats here
    release = dc.estimate_log_norm(Shifted(), x, 1e3, generator=torch.Generator().manual_seed(9))
    assert abs(release.log_norm_nats + offset) < 4 * release.stderr_nats + 0.01


def test_no_time_term_is_none_everywhere(tiny_model, tiny_images, generator):
    """Single score matching has no time term: None in the terms, the loss module and the
    training step's statistics (and null in the logs), never 0 or NaN."""
    cfg = LossConfig(time_weight=0.0)
    t = torch.full((tiny_images.shape[0],), 0.1)
    y = add_noise(tiny_images, t, torch.randn(tiny_images.shape, generator=generator))
    assert score_matching_terms(tiny_model, tiny_images, y, t, cfg).time is None
    assert DualScoreLoss(tiny_model)(tiny_images, y, t, cfg)[2] is None
    optimizer = torch.optim.Adam(tiny_model.parameters())
    stats = train_step(tiny_model, tiny_images, NoiseConfig(), cfg, optimizer, generator)
    assert stats["time"] is None and math.isfinite(stats["loss"])


def rademacher(num: int, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    bits = torch.randint(0, 2, (num, *shape), generator=generator)
    return (2 * bits - 1).double()


@pytest.mark.parametrize("t", [1e-4, 0.05, 3.0])
def test_heat_residual_of_exact_gaussian_energies_is_the_probes_trace_error(
    t, gaussian_oracle, generator
):
    """U of N(mu, Sigma) convolved with N(0, t I) solves the heat equation at every y, so the
    residual is exactly the Hutchinson error -(t / 2d)(v^T H v - tr H), H = (Sigma + t I)^-1;
    for an isotropic Gaussian (H diagonal, v_i^2 = 1) it is 0. Points far off the data."""
    d = gaussian_oracle.d
    y = 3.0 + 2.0 * torch.randn(5, 1, 4, 4, generator=generator, dtype=torch.float64)
    tt = torch.full((5,), t, dtype=torch.float64)
    probes = rademacher(3, (5, 1, 4, 4), generator)
    residual = heat_residual(gaussian_oracle, y, tt, probes)  # (3, 5)
    vecs, lam = gaussian_oracle.eigenvectors, gaussian_oracle.eigenvalues
    hessian = vecs @ torch.diag(1 / (lam + t)) @ vecs.T  # (d, d)
    v = probes.flatten(2)  # (3, 5, d)
    quad = torch.einsum("pbi,ij,pbj->pb", v, hessian, v)
    want = -t / (2 * d) * (quad - hessian.trace())
    assert residual.abs().max() > 1e-4  # the probes' error is there to be matched
    torch.testing.assert_close(residual, want, rtol=1e-9, atol=1e-12)
    iso = dc.GaussianEnergy.isotropic(torch.full((1, 4, 4), 0.5, dtype=torch.float64), 0.2)
    assert heat_residual(iso, y, tt, probes).abs().max() < 1e-12


def test_heat_residual_sees_a_wrong_time_dependence(generator):
    """An energy with exact scores but an extra 10 d ln(1 + t) breaks the heat equation by
    exactly (t/d) * 10 d / (1 + t); the denoising term cannot see this, the residual does."""
    iso = dc.GaussianEnergy.isotropic(torch.full((1, 4, 4), 0.5, dtype=torch.float64), 0.2)

    class WrongTime(BaseEnergy):
        def __init__(self):
            super().__init__(iso.image_shape)

        def raw_energy(self, y, t):
            return iso.raw_energy(y, t) + 10 * self.d * torch.log1p(t)

    y = torch.rand(4, 1, 4, 4, generator=generator, dtype=torch.float64)
    t = torch.tensor([1e-5, 1e-2, 1.0, 50.0], dtype=torch.float64)
    residual = heat_residual(WrongTime(), y, t, rademacher(2, (4, 1, 4, 4), generator))
    torch.testing.assert_close(residual, (10 * t / (1 + t)).expand(2, 4), rtol=1e-9, atol=1e-12)


def test_heat_term_parameter_gradient_matches_finite_differences(generator):
    """The heat term trains through third-order autograd: the loss module's derivative in one
    of the network's weights matches a central difference (float64 tiny UNet). The fast
    layers' double backwards are first order, so the module must not use them here."""
    torch.manual_seed(0)
    model = dc.build_energy_model("tiny").double().eval()
    x = torch.rand(2, 1, 16, 16, generator=generator, dtype=torch.float64)
    t = torch.tensor([1e-3, 0.1], dtype=torch.float64)
    points = (x, t, rademacher(2, (2, 1, 16, 16), generator))
    weight = next(p for name, p in model.named_parameters() if p.dim() == 4)
    loss_module = DualScoreLoss(model)

    def heat() -> torch.Tensor:
        return loss_module(x, x, t, LossConfig(), points)[3].sum()

    (grad,) = torch.autograd.grad(heat(), weight)
    index = grad.abs().argmax()
    step = 1e-6
    with torch.no_grad():
        weight.view(-1)[index] += step
        up = heat().item()
        weight.view(-1)[index] -= 2 * step
        down = heat().item()
        weight.view(-1)[index] += step
    assert grad.view(-1)[index].item() == pytest.approx((up - down) / (2 * step), rel=1e-5)


def test_off_data_points_are_scored_below_their_noise(generator):
    x = torch.full((16, 1, 8, 8), 0.5)
    cfg = LossConfig(heat_weight=1.0, heat_images=6, heat_decades=2.0, heat_max_var=0.1)
    noise_cfg = NoiseConfig(t_min=1e-6, t_max=1e3)
    y, t, probes = off_data_points(x, noise_cfg, cfg, generator)
    assert y.shape == (6, 1, 8, 8) and t.shape == (6,) and probes.shape == (2, 6, 1, 8, 8)
    assert set(probes.unique().tolist()) == {-1.0, 1.0}
    noise_var = (y - 0.5).square().flatten(1).mean(dim=1)  # about s, 64 pixels per image
    assert (t >= 1e-6).all() and (noise_var < 0.1 * 1.6).all()
    assert (t < noise_var).sum() >= 5  # below the noise they carry, up to 64-pixel spread
    again = off_data_points(x, noise_cfg, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(again[0], y) and torch.equal(again[1], t)


def test_textured_heat_starts_pick_the_highest_participation_ratio(generator):
    """heat_starts="textured": the points come from the batch's most textured images (highest
    Haar participation ratio, as the quality bench's ascent starts), whatever their order."""
    flat = torch.full((5, 1, 8, 8), 0.5)
    for k in range(5):
        flat[k, :, :4] = 0.1 * k  # one edge, 0.1 k against 0.5: sparse in the Haar basis
    textured = torch.rand((3, 1, 8, 8), generator=generator)  # white noise: dense
    x = torch.cat([flat[:2], textured[:1], flat[2:], textured[1:]])  # textured at 2, 6, 7
    noise_cfg = NoiseConfig(t_min=1e-6, t_max=1e3)
    cfg = LossConfig(heat_weight=1.0, heat_images=3, heat_max_var=1e-6 * 1.0001)

    def picked(loss_cfg: LossConfig) -> set[int]:  # rows of x the points were made from
        y = off_data_points(x, noise_cfg, loss_cfg, generator)[0]
        return {i for i in range(len(x)) for row in y if (row - x[i]).abs().max() < 0.02}

    assert picked(replace(cfg, heat_starts="textured")) == {2, 6, 7}
    assert picked(cfg) == {0, 1, 2}  # "batch": the first three


def test_training_step_with_the_heat_term(tiny_images, generator):
    """heat_weight > 0: the step reports the heat term, and the term trains the network only:
    every network weight gets a gradient from it, the analytic time and mean terms none (their
    values and t-derivatives still enter the residual unchanged)."""
    torch.manual_seed(0)
    model = dc.build_energy_model(
        "tiny", time_term="gaussian_log_t", mean_term="gaussian", head="squared_norm"
    ).eval()
    with torch.no_grad():  # make the zero-initialised time-term MLPs non-trivial
        for p in model.time_term.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=generator))
    cfg = LossConfig(heat_weight=1.0, heat_images=3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    stats = train_step(model, tiny_images, NoiseConfig(), cfg, optimizer, generator)
    assert math.isfinite(stats["heat"]) and stats["heat"] != 0.0
    plain = train_step(model, tiny_images, NoiseConfig(), LossConfig(), optimizer, generator)
    assert plain["heat"] is None
    y, t, probes = off_data_points(tiny_images, NoiseConfig(), cfg, generator)
    t_batch = torch.full((tiny_images.shape[0],), 0.1)
    loss_module = DualScoreLoss(model)
    heat = loss_module(tiny_images, tiny_images, t_batch, cfg, (y, t, probes))[3]
    assert heat.shape == (3,)  # one per off-data point
    direct = heat_residual(model, y, t, probes)
    torch.testing.assert_close(heat, direct[0] * direct[1], rtol=1e-4, atol=1e-7)
    names, params = zip(*model.named_parameters(), strict=True)
    grads = torch.autograd.grad(heat.sum(), params, allow_unused=True)
    reached = {n for n, g in zip(names, grads, strict=True) if g is not None and g.abs().sum() > 0}
    network = [n for n in names if n.startswith("unet.")]
    analytic = [n for n in names if n.startswith(("time_term.", "mean_term."))]
    assert analytic and not reached & set(analytic)
    assert len(reached & set(network)) >= 0.9 * len(network)


def test_ascent_chains_persist_climb_and_restart(generator):
    """Chains fill from the batch, advance round robin with the paper's ascent step (energy
    falls, images stay in [0, 1]), carry on from where they stopped, and restart from the batch
    when told to."""
    oracle = dc.GaussianEnergy.isotropic(torch.full((1, 4, 4), 0.5, dtype=torch.float64), 0.3)
    chains = AscentChains(num_chains=4, steps=50, restart=0.0)
    x = torch.rand(2, 1, 4, 4, generator=generator, dtype=torch.float64)
    first = chains.visit(oracle, x, generator)  # chains 0, 1
    assert (oracle.energy(first, 0.0) < oracle.energy(x, 0.0)).all()
    assert first.min() >= 0 and first.max() <= 1 and chains.filled == 2
    chains.visit(oracle, x, generator)  # chains 2, 3 start from x too
    again = chains.visit(oracle, x.flip(0), generator)  # chains 0, 1 again: carry on
    assert (oracle.energy(again, 0.0) < oracle.energy(first, 0.0)).all()
    # restart=1: every visit starts from the batch, so one visit is 50 steps from x
    fresh = AscentChains(num_chains=4, steps=50, restart=1.0)
    fresh.visit(oracle, x, generator)
    fresh.visit(oracle, x, generator)
    torch.testing.assert_close(fresh.visit(oracle, x, generator), first)
    with pytest.raises(ValueError, match="num_chains"):
        AscentChains(num_chains=0, steps=1, restart=0.1)
