"""Figure 1 in miniature: dual score matching recovers the mixture's energy, single does not."""

import pytest
import torch

from dsm_core.config import LossConfig
from dsm_core.toy import RadialMixtureEnergy, ScaleMixture, ToyTraining, evaluate_toy, train_toy

SHORT = ToyTraining(num_steps=1500, lr=1e-3, lr_halve_every_steps=1000)


def fit_and_evaluate(time_weight: float, mixture: ScaleMixture, data: torch.Tensor):
    torch.manual_seed(0)
    model = RadialMixtureEnergy(mixture.d)
    train_toy(
        model, data, LossConfig(time_weight), SHORT, generator=torch.Generator().manual_seed(1)
    )
    return evaluate_toy(model, mixture, data, generator=torch.Generator().manual_seed(2))


def test_true_energy_closed_form():
    mixture = ScaleMixture(d=10, sigmas=(2.0,), weights=(1.0,))
    y = torch.randn(5, 10, dtype=torch.float64)
    var = 4.0 + 0.5
    expected = y.square().sum(1) / (2 * var) + 5 * torch.log(torch.tensor(2 * torch.pi * var))
    assert torch.allclose(mixture.energy(y, 0.5), expected.double())


@pytest.mark.slow  # ~1-3 min; and see the note: some seeds end in a local minimum (gap error 40%)
def test_dual_recovers_mode_gap_single_does_not():
    mixture = ScaleMixture()
    data = mixture.sample(20_000, torch.Generator().manual_seed(0))
    dual = fit_and_evaluate(1.0, mixture, data)
    single = fit_and_evaluate(0.0, mixture, data)
    # the full run (train/toy_gsm.py) meets 0.15 dB/dim and 2%; this 1,500-step run is looser
    assert dual.max_abs_err_db < 0.5 and dual.entropy_err_db < 0.3
    assert dual.mode_gap_rel_err < 0.05
    assert single.mode_gap_rel_err > 2 * dual.mode_gap_rel_err
