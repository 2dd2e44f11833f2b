"""The one ODE integrator: orders of accuracy on dx/ds = -x, the adaptive solver, joint states."""

import math

import pytest
import torch

from dsm_core.flow import in_log_t, integrate_adaptive, ode_step


def decay(state, s):
    return tuple(-part for part in state)


@pytest.mark.parametrize(("solver", "order"), [("heun", 2), ("rk4", 4)])
def test_fixed_steps_converge_at_their_order(solver, order):
    errors = []
    for num_steps in (10, 20):
        state = (torch.ones(3, dtype=torch.float64), torch.zeros(2, dtype=torch.float64))
        h = 1.0 / num_steps
        for k in range(num_steps):
            state = ode_step(decay, state, k * h, (k + 1) * h, solver)
        errors.append(abs(state[0][0].item() - math.exp(-1.0)))
        assert state[1].abs().max() == 0  # a zero part stays zero
    assert errors[0] / errors[1] == pytest.approx(2**order, rel=0.1)


def test_backward_steps_and_the_adaptive_solver():
    (x,) = ode_step(decay, (torch.ones(1, dtype=torch.float64),), 1.0, 0.0, "rk4")
    assert x.item() == pytest.approx(math.e, rel=1e-2)  # one step backward in s
    state = (torch.ones(2, 2), torch.ones(3, dtype=torch.float64))
    end = integrate_adaptive(decay, state, 0.0, 2.0, 1e-8, 1e-10)
    assert end[0].dtype == torch.float32 and end[0].shape == (2, 2)
    torch.testing.assert_close(end[1], torch.full((3,), math.exp(-2.0), dtype=torch.float64))
    with pytest.raises(ValueError, match="solver"):
        ode_step(decay, state, 0.0, 1.0, "euler")


def test_in_log_t_scales_by_t():
    field = in_log_t(lambda state, t: (torch.full_like(state[0], t),))
    (derivative,) = field((torch.zeros(1, dtype=torch.float64),), math.log(3.0))
    assert derivative.item() == pytest.approx(9.0)
