"""The probability-flow ODE (paper eq. 13) and the reverse dynamics: the one ODE integrator, for
likelihood and sampling, and the reverse-SDE and Langevin update steps of the sampler.

The probability-flow ODE of the variance-exploding process ``dx = dw`` is
``dx/dt = grad_y U(x, t) / 2``. ``analysis.estimators.ode_nll_nats`` integrates it forward from an
image jointly with the log-determinant (paper eq. 14), in ``s = ln t``; ``analysis.sampling``
integrates it backward from noise, in t. Both step with ``ode_step`` (or ``integrate_adaptive``),
as score_sde's likelihood and sampler share ``sde.reverse`` and flow_matching has one ODESolver.

A state is a tuple of tensors (e.g. ``(x,)`` or ``(x, log_det)``), and a field
``f(state, s) -> d state / ds`` returns a tuple of the same shapes.

The stochastic samplers take one step at a time from ``grad_y U`` and a unit Gaussian draw (the
caller draws it, so the order of draws is the caller's): ``reverse_sde_step`` (Euler-Maruyama of
the reverse of ``dx = dw``), ``ancestral_step`` (the same drift with the noise of the exact
Gaussian transition) and ``langevin_step`` (one update of annealed Langevin dynamics).
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


def reverse_sde_step(
    x: torch.Tensor, grad_y: torch.Tensor, dt: float, noise: torch.Tensor
) -> torch.Tensor:
    """One Euler-Maruyama step of the reverse VE diffusion from t down to t - dt.

    ``x - dt grad_y U(x, t) + sqrt(dt) xi``, with ``grad_y`` at (x, t) and ``noise`` = xi ~ N(0, I)
    of x's shape.
    """
    return x - dt * grad_y + math.sqrt(dt) * noise


def ancestral_step(
    x: torch.Tensor, grad_y: torch.Tensor, t_hi: float, t_lo: float, noise: torch.Tensor
) -> torch.Tensor:
    """One ancestral step of the reverse VE diffusion from t_hi down to t_lo < t_hi.

    ``x - (t_hi - t_lo) grad_y U(x, t_hi) + sqrt((t_hi - t_lo) t_lo / t_hi) xi``: a draw from
    p(x_lo | x_hi, x_0 = D(x_hi, t_hi)), the Gaussian bridge between the Tweedie estimate
    ``D = x - t_hi grad_y U`` and x (the ancestral sampler of Ho et al. 2020 for the
    variance-exploding process, Song et al. 2021 §4.2). Same drift as Euler-Maruyama, with the
    noise variance scaled by t_lo / t_hi. Along a Gaussian direction of variance lambda,
    Euler-Maruyama adds ``(t_hi - t_lo)^2 / (lambda + t_hi)`` too much variance per step; this
    step is exact for lambda = 0 and adds ``(t_hi - t_lo) (t_lo / t_hi - (lambda + t_lo) /
    (lambda + t_hi))`` (<= 0) otherwise. ``noise`` = xi ~ N(0, I) of x's shape.
    """
    dt = t_hi - t_lo
    return x - dt * grad_y + math.sqrt(dt * t_lo / t_hi) * noise


def langevin_step(
    x: torch.Tensor, grad_y: torch.Tensor, eta: float, noise: torch.Tensor
) -> torch.Tensor:
    """One Langevin update ``x - eta grad_y U(x, t) + sqrt(2 eta) xi`` at a fixed level t.

    ``grad_y`` at (x, t), ``eta`` the step, ``noise`` = xi ~ N(0, I) of x's shape.
    """
    return x - eta * grad_y + math.sqrt(2.0 * eta) * noise


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
