"""Figure 1: dual score matching recovers the mixture's energy, single score matching does not."""

from dataclasses import replace

import pytest
import torch

from dsm_core import units
from dsm_core.analysis import ode_nll_nats
from dsm_core.config import LossConfig
from dsm_core.toy import RadialMixtureEnergy, ScaleMixture, ToyTraining, evaluate_toy, train_toy

FULL_RUN = ToyTraining()
SHORT_RUN = replace(FULL_RUN, num_steps=1_500)


def fit(time_weight: float, mixture: ScaleMixture, data: torch.Tensor, cfg: ToyTraining):
    torch.manual_seed(0)
    model = RadialMixtureEnergy(mixture.d)
    generator = torch.Generator().manual_seed(1)
    train_toy(model, data, LossConfig(time_weight), cfg, generator=generator)
    evaluation = evaluate_toy(model, mixture, data, generator=torch.Generator().manual_seed(2))
    return model, evaluation


@pytest.fixture(scope="module")
def short_runs() -> dict:
    """Dual and single models after 1,500 steps on 20,000 samples (~1 min), with their
    evaluations: ``{"dual": (model, evaluation), "single": (...), "mixture": ...}``."""
    mixture = ScaleMixture()
    data = mixture.sample(20_000, torch.Generator().manual_seed(0))
    return {
        "mixture": mixture,
        "dual": fit(1.0, mixture, data, SHORT_RUN),
        "single": fit(0.0, mixture, data, SHORT_RUN),
    }


def test_true_energy_closed_form():
    mixture = ScaleMixture(d=10, sigmas=(2.0,), weights=(1.0,))
    y = torch.randn(5, 10, dtype=torch.float64)
    var = 4.0 + 0.5
    expected = y.square().sum(1) / (2 * var) + 5 * torch.log(torch.tensor(2 * torch.pi * var))
    assert torch.allclose(mixture.energy(y, 0.5), expected.double())


def test_short_run_separates_dual_from_single(short_runs):
    """Looser bars than Figure 1's, same separation.

    Measured (1,500 steps, model seeds 0-3): dual entropy error 0.16 / 1.67 / 0.78 / 0.10 and max
    error 0.71 / 4.44 / 1.26 / 0.51 dB/dim (seed 1 had not split the two modes yet); single
    6.51 and 7.21 with seed 0. The single model's offset is free at every t (its loss sees
    only grad_y U), so its log p at t ~ 0 drifts by dB/dim after normalisation at t_max.
    """
    dual, single = short_runs["dual"][1], short_runs["single"][1]
    assert dual.entropy_err_db <= 1.0 and dual.max_abs_err_db <= 1.5, dual
    assert single.entropy_err_db >= max(4.0, 5 * dual.entropy_err_db), single
    assert single.max_abs_err_db >= max(4.0, 3 * dual.max_abs_err_db), single


def test_one_shot_log_p_agrees_with_the_ode_only_after_dual_training(short_runs):
    """A trained model: one forward pass vs the probability-flow ODE (paper §A.2, eq. 14).

    The ODE uses only grad_y U, which both losses learn; the one-shot log p also needs the
    energy's values across t, which only dual score matching learns. Measured (16 samples, RK4
    50 steps, 1 probe, prior = the model at t_max): dual |one-shot - ODE| 0.27 dB/dim on
    average, ODE vs truth 0.05; single: the one-shot is off by its entropy error.
    """
    mixture = short_runs["mixture"]
    x = mixture.sample(16, torch.Generator().manual_seed(5))  # (16, 1000)
    truth = units.energy_nats_to_logp_db(mixture.energy(x), mixture.d)
    gaps = {}
    for name in ("dual", "single"):
        model = short_runs[name][0]
        with torch.no_grad():
            one_shot = units.energy_nats_to_logp_db(model.energy(x, 0.01).double(), mixture.d)
        ode = ode_nll_nats(
            model, x, t_min=0.01, t_max=100.0, prior="model", generator=torch.Generator()
        ).logp_db
        assert (ode - truth).abs().mean() <= 0.15, (name, ode - truth)  # scores are right
        gaps[name] = (one_shot - ode).abs().mean().item()
    assert gaps["dual"] <= 0.5 and gaps["single"] >= max(4.0, 8 * gaps["dual"]), gaps


@pytest.mark.slow  # the full run, ~15 min on one core; runs of a few thousand steps can stall
def test_dual_meets_figure1_bars_single_does_not():
    mixture = ScaleMixture()
    data = mixture.sample(100_000, torch.Generator().manual_seed(0))
    dual = fit(1.0, mixture, data, FULL_RUN)[1]
    single = fit(0.0, mixture, data, FULL_RUN)[1]
    # reference-spec §5.5 bars
    assert dual.max_abs_err_db <= 0.15 and dual.entropy_err_db <= 0.1
    assert dual.mode_gap_rel_err <= 0.02
    assert single.adjusted_mode_err_db >= max(0.5, 5 * dual.adjusted_mode_err_db)
