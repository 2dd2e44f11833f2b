"""The one ODE integrator of the probability flow (paper eq. 13), for likelihood and sampling.

The probability-flow ODE of the variance-exploding process ``dx = dw`` is
``dx/dt = grad_y U(x, t) / 2``. ``analysis.estimators.ode_nll_nats`` integrates it forward from an
image jointly with the log-determinant (paper eq. 14), in ``s = ln t``; ``analysis.sampling``
integrates it backward from noise, in t. Both step with ``ode_step`` (or ``integrate_adaptive``),
as score_sde's likelihood and sampler share ``sde.reverse`` and flow_matching has one ODESolver.

A state is a tuple of tensors (e.g. ``(x,)`` or ``(x, log_det)``), and a field
``f(state, s) -> d state / ds`` returns a tuple of the same shapes.
"""

import math
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
from scipy.integrate import solve_ivp

State = tuple[torch.Tensor, ...]
Field = Callable[[State, float], State]
Solver = Literal["heun", "rk4"]


def ode_step(f: Field, state: State, s_a: float, s_b: float, solver: Solver) -> State:
    """One fixed step from s_a to s_b (either direction) of ``d state / ds = f(state, s)``.

    Args:
        f: the field.
        state: the state at s_a.
        s_a, s_b: start and end of the step.
        solver: "heun" (2 evaluations of f, second order) or "rk4" (4 evaluations, classic
            Runge-Kutta, fourth order).

    Returns:
        The state at s_b.

    Raises:
        ValueError: an unknown solver.
    """
    h = s_b - s_a
    if solver == "heun":
        k1 = f(state, s_a)
        k2 = f(tuple(x + h * k for x, k in zip(state, k1, strict=True)), s_b)
        return tuple(x + 0.5 * h * (a + b) for x, a, b in zip(state, k1, k2, strict=True))
    if solver == "rk4":
        s_m = 0.5 * (s_a + s_b)
        k1 = f(state, s_a)
        k2 = f(tuple(x + 0.5 * h * k for x, k in zip(state, k1, strict=True)), s_m)
        k3 = f(tuple(x + 0.5 * h * k for x, k in zip(state, k2, strict=True)), s_m)
        k4 = f(tuple(x + h * k for x, k in zip(state, k3, strict=True)), s_b)
        return tuple(
            x + h / 6.0 * (a + 2 * b + 2 * c + e)
            for x, a, b, c, e in zip(state, k1, k2, k3, k4, strict=True)
        )
    raise ValueError(f"solver must be 'heun' or 'rk4', got {solver!r}")


def integrate_adaptive(
    f: Field, state: State, s_a: float, s_b: float, rtol: float, atol: float
) -> State:
    """scipy's adaptive RK45 on the flattened state (float64) from s_a to s_b.

    Args:
        f: the field.
        state: the state at s_a; each part keeps its shape, dtype and device.
        s_a, s_b: the interval.
        rtol, atol: tolerances on the joint state.

    Returns:
        The state at s_b.

    Raises:
        RuntimeError: the solver failed.
    """
    sizes = [part.numel() for part in state]
    offsets = np.cumsum([0, *sizes])

    def unflatten(flat: torch.Tensor) -> State:
        return tuple(
            flat[lo:hi].reshape(part.shape).to(dtype=part.dtype, device=part.device)
            for part, lo, hi in zip(state, offsets[:-1], offsets[1:], strict=True)
        )

    def rhs(s: float, flat: np.ndarray) -> np.ndarray:
        derivative = f(unflatten(torch.as_tensor(flat)), s)
        return torch.cat([part.flatten().double().cpu() for part in derivative]).numpy()

    y0 = torch.cat([part.flatten().double().cpu() for part in state]).numpy()
    solution = solve_ivp(rhs, (s_a, s_b), y0, method="RK45", rtol=rtol, atol=atol)
    if not solution.success:
        raise RuntimeError(f"adaptive ODE solver failed: {solution.message}")
    return unflatten(torch.as_tensor(solution.y[:, -1]))


def in_log_t(f_t: Field) -> Field:
    """A field in t as a field in ``s = ln t`` (``d/ds = t d/dt``), for grids geometric in t."""

    def f_s(state: State, s: float) -> State:
        t = math.exp(s)
        return tuple(t * part for part in f_t(state, t))

    return f_s
