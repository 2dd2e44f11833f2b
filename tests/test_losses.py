"""Dual score matching on Gaussian data, where the optimal energy and its loss are known exactly."""

import math

import pytest
import torch

import dsm_core as dc
from dsm_core.config import LossConfig, NoiseConfig
from dsm_core.energy import BaseEnergy
from dsm_core.losses import DualScoreLoss, score_matching_terms
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
