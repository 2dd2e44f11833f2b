"""Figure 1: dual score matching recovers the mixture's energy, single score matching does not."""

from dataclasses import replace

import pytest
import torch

from dsm_core.config import LossConfig
from dsm_core.toy import RadialMixtureEnergy, ScaleMixture, ToyTraining, evaluate_toy, train_toy

FULL_RUN = ToyTraining()


def fit_and_evaluate(
    time_weight: float, mixture: ScaleMixture, data: torch.Tensor, cfg: ToyTraining = FULL_RUN
):
    torch.manual_seed(0)
    model = RadialMixtureEnergy(mixture.d)
    generator = torch.Generator().manual_seed(1)
    train_toy(model, data, LossConfig(time_weight), cfg, generator=generator)
    return evaluate_toy(model, mixture, data, generator=torch.Generator().manual_seed(2))


def test_true_energy_closed_form():
    mixture = ScaleMixture(d=10, sigmas=(2.0,), weights=(1.0,))
    y = torch.randn(5, 10, dtype=torch.float64)
    var = 4.0 + 0.5
    expected = y.square().sum(1) / (2 * var) + 5 * torch.log(torch.tensor(2 * torch.pi * var))
    assert torch.allclose(mixture.energy(y, 0.5), expected.double())


def test_short_run_separates_dual_from_single():
    """1,500 steps on 20,000 samples (~1 min): looser bars than Figure 1's, same separation.

    Measured (1,500 steps, model seeds 0-3): dual entropy error 0.16 / 1.67 / 0.78 / 0.10 and max
    error 0.71 / 4.44 / 1.26 / 0.51 dB/dim (seed 1 had not split the two modes yet); single
    6.51 and 7.21 with seed 0. The single model's offset is free at every t (its loss sees
    only grad_y U), so its log p at t ~ 0 drifts by dB/dim after normalisation at t_max.
    """
    mixture = ScaleMixture()
    data = mixture.sample(20_000, torch.Generator().manual_seed(0))
    cfg = replace(ToyTraining(), num_steps=1_500)
    dual = fit_and_evaluate(1.0, mixture, data, cfg)
    single = fit_and_evaluate(0.0, mixture, data, cfg)
    assert dual.entropy_err_db <= 1.0 and dual.max_abs_err_db <= 1.5, dual
    assert single.entropy_err_db >= max(4.0, 5 * dual.entropy_err_db), single
    assert single.max_abs_err_db >= max(4.0, 3 * dual.max_abs_err_db), single


@pytest.mark.slow  # the full run, ~15 min on one core; runs of a few thousand steps can stall
def test_dual_meets_figure1_bars_single_does_not():
    mixture = ScaleMixture()
    data = mixture.sample(100_000, torch.Generator().manual_seed(0))
    dual = fit_and_evaluate(1.0, mixture, data)
    single = fit_and_evaluate(0.0, mixture, data)
    # reference-spec §5.5 bars
    assert dual.max_abs_err_db <= 0.15 and dual.entropy_err_db <= 0.1
    assert dual.mode_gap_rel_err <= 0.02
    assert single.adjusted_mode_err_db >= max(0.5, 5 * dual.adjusted_mode_err_db)
