"""The samplers' announced cost is what they do."""

import pytest
import torch

import dsm_core as dc
from dsm_core.analysis import iter_samples, sampling_score_evaluations, seconds_per_score_evaluation


class _Counting(dc.GaussianEnergy):
    calls = 0

    def grad_y(self, y, t):
        type(self).calls += 1
        return super().grad_y(y, t)


@pytest.mark.parametrize("method", ["ancestral", "reverse_sde", "ode", "langevin"])
@pytest.mark.parametrize("denoise_final", [True, False])
def test_sampling_score_evaluations_counts_the_gradient_calls(method, denoise_final):
    oracle = _Counting.isotropic(torch.full((1, 2, 2), 0.5, dtype=torch.float64), 0.1)
    _Counting.calls = 0
    for _ in iter_samples(
        oracle,
        3,
        method=method,
        num_steps=4,
        steps_per_level=2,
        denoise_final=denoise_final,
        dtype=torch.float64,
        generator=torch.Generator().manual_seed(0),
    ):
        pass
    expected = sampling_score_evaluations(method, 4, steps_per_level=2, denoise_final=denoise_final)
    assert _Counting.calls == expected
    with pytest.raises(ValueError, match="method"):
        sampling_score_evaluations("euler", 4)


def test_seconds_per_score_evaluation_is_positive(tiny_model):
    seconds = seconds_per_score_evaluation(tiny_model, 2, repeats=1)
    assert 0 < seconds < 60
