"""Figure 1: dual score matching recovers the mixture's energy, single score matching does not."""

from dataclasses import replace

import pytest
import torch

from dsm_core import units
from dsm_core.analysis import ode_nll_nats
from dsm_core.config import LossConfig
from dsm_core.toy import RadialMixtureEnergy, ScaleMixture, ToyTraining, evaluate_toy, train_toy

FULL_RUN = ToyTraining()
# A faster schedule than the full run's: 1,500 steps at 1e-3 had not split the two modes on an
# AMD EPYC CPU (entropy error 1.39, max 4.14 dB/dim, mode gap error 42 %; it had on the machine
# the bars were set on), so the short run depended on the CPU's rounding. 2e-3 halved every 500
# steps for 2,000 steps, seed 0: entropy 0.52, max 1.19 dB/dim, gap 16 % on that AMD CPU; on the
# earlier machine it gave entropy 0.56 (seed 0) and 0.97 (seed 1).
SHORT_RUN = replace(FULL_RUN, num_steps=2_000, lr=2e-3, lr_halve_every_steps=500)


def fit(time_weight: float, mixture: ScaleMixture, data: torch.Tensor, cfg: ToyTraining):
    torch.manual_seed(0)
    model = RadialMixtureEnergy(mixture.d)
    generator = torch.Generator().manual_seed(1)
    train_toy(model, data, LossConfig(time_weight), cfg, generator=generator)
    evaluation = evaluate_toy(model, mixture, data, generator=torch.Generator().manual_seed(2))
    return model, evaluation


@pytest.fixture(scope="module")
def short_runs() -> dict:
    """Dual and single models after 2,000 steps on 20,000 samples (~2 min), with their
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

    Measured with the earlier short run (1,500 steps at 1e-3, model seeds 0-3): dual entropy
    error 0.16 / 1.67 / 0.78 / 0.10 and max error 0.71 / 4.44 / 1.26 / 0.51 dB/dim (seed 1 had
    not split the two modes yet); single 6.51 and 7.21 with seed 0. SHORT_RUN says what the
    present schedule gives. The single model's offset is free at every t (its loss sees
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
        # the scores are right: measured 0.05 (1,500 steps at 1e-3, earlier machine), 0.35 for
        # the dual model with SHORT_RUN's faster schedule on an AMD EPYC CPU
        assert (ode - truth).abs().mean() <= 0.5, (name, ode - truth)
        gaps[name] = (one_shot - ode).abs().mean().item()
    assert gaps["dual"] <= 0.5 and gaps["single"] >= max(4.0, 8 * gaps["dual"]), gaps


def test_trained_toy_is_flat_below_its_trained_range_and_agrees_with_the_ode_at_t0(short_runs):
    """Below t_min (the smallest trained t) the energy is U(x, t_min): flat, continuous, with a
    zero time score; the one-shot log p at t = 0 is that trained value and the ODE agrees."""
    mixture, model = short_runs["mixture"], short_runs["dual"][0]
    assert model.t_min == SHORT_RUN.noise.t_min == 0.01
    x = mixture.sample(16, torch.Generator().manual_seed(6))  # (16, 1000)
    below = [0.0, 1e-6, 1e-3, 0.005, 0.01]
    with torch.no_grad():
        energies = torch.stack([model.energy(x, t) for t in below])  # (5, 16)
        just_above = model.energy(x, 0.01 * (1 + 1e-4))
        well_above = model.energy(x, 0.02)
    assert torch.equal(energies, energies[:1].expand_as(energies))  # flat
    step_at_floor = (just_above - energies[-1]).abs().max()
    assert step_at_floor < 1e-3 * (well_above - energies[-1]).abs().max()  # continuous
    _, _, grad_t = model.energy_and_scores(x, 0.005)
    assert torch.count_nonzero(grad_t) == 0
    one_shot = units.energy_nats_to_logp_db(energies[0].double(), mixture.d)
    ode = ode_nll_nats(model, x, t_max=100.0, prior="model", generator=torch.Generator()).logp_db
    assert (one_shot - ode).abs().mean() <= 0.5, one_shot - ode


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
