"""Sampling by reverse diffusion, annealed Langevin and the flow ODE (seeds 002-004, eq. 13)."""

import math

import pytest
import torch

import dsm_core as dc
from dsm_core.analysis import iter_samples
from dsm_core.noise import noise_schedule

from .closed_forms import eigen_coords

N = 4000


def _predicted(
    oracle, method, init_mean, t_max, t_min, num_steps, steps_per_level, step_scale, denoise_final
):
    """Exact mean offset and variance per eigendirection of the (linear) discrete sampler."""
    lam = oracle.eigenvalues.double()
    m = eigen_coords(oracle, torch.full((1, *oracle.image_shape), init_mean))[0]
    v = torch.full_like(lam, t_max)
    ts = noise_schedule(t_max, t_min, num_steps + 1)
    if method == "langevin":
        for t in ts:
            eta, a = step_scale * t, 1 / (lam + t)
            for _ in range(steps_per_level):
                m, v = m * (1 - eta * a), v * (1 - eta * a) ** 2 + 2 * eta
    else:
        for t_hi, t_lo in zip(ts[:-1], ts[1:], strict=True):
            dt, a_hi, a_lo = t_hi - t_lo, 1 / (lam + t_hi), 1 / (lam + t_lo)
            if method == "reverse_sde":
                m, v = m * (1 - dt * a_hi), v * (1 - dt * a_hi) ** 2 + dt
            elif method == "ancestral":
                m, v = m * (1 - dt * a_hi), v * (1 - dt * a_hi) ** 2 + dt * t_lo / t_hi
            else:
                f = 1 - dt / 4 * (a_hi + a_lo * (1 - dt * a_hi / 2))
                m, v = m * f, v * f**2
    if denoise_final:
        f = lam / (lam + t_min)
        m, v = m * f, v * f**2
    return m, v


@pytest.mark.parametrize(
    "method, kwargs",
    [
        ("reverse_sde", dict(num_steps=100)),
        ("ancestral", dict(num_steps=100)),
        ("ode", dict(num_steps=50)),
        ("langevin", dict(num_steps=20, steps_per_level=5, step_scale=0.1)),
    ],
)
@pytest.mark.parametrize("denoise_final", [False, True])
def test_samplers_follow_their_exact_linear_recursion(
    gaussian_oracle, generator, method, kwargs, denoise_final
):
    settings = dict(t_max=100.0, t_min=1e-2, init_mean=0.3, denoise_final=denoise_final)
    samples = dc.sample(
        gaussian_oracle,
        N,
        method=method,
        generator=generator,
        dtype=torch.float64,
        batch_size=N,
        **settings,
        **kwargs,
    )
    m, v = _predicted(
        gaussian_oracle,
        method,
        steps_per_level=kwargs.get("steps_per_level", 1),
        step_scale=kwargs.get("step_scale", 0.0),
        num_steps=kwargs["num_steps"],
        **settings,
    )
    c = eigen_coords(gaussian_oracle, samples)
    assert torch.all((c.mean(0) - m).abs() < 5 * (v / N).sqrt())
    assert torch.all((c.var(0) / v - 1).abs() < 5 * math.sqrt(2 / N))


def test_ancestral_steps_are_exact_where_the_data_has_no_variance():
    """Along a direction of data variance lambda, 100 levels from 1e3 to 1e-6 (the app's
    default): with lambda = 0 the ancestral recursion ends at exactly t_min, Euler-Maruyama at
    ~1.2 t_min; for every lambda the ancestral variance is closer to lambda + t_min."""
    lam = torch.tensor([0.0, 1e-6, 1e-4, 1e-3, 1e-2, 0.05, 0.1, 1.0], dtype=torch.float64)
    oracle = dc.GaussianEnergy(torch.zeros(1, 1, 8), lam, torch.eye(8, dtype=torch.float64))
    settings = dict(t_max=1e3, t_min=1e-6, num_steps=100, steps_per_level=1, step_scale=0.0)
    ratios = {}
    for method in ("ancestral", "reverse_sde"):
        _, v = _predicted(oracle, method, 0.0, denoise_final=False, **settings)
        ratios[method] = v / (lam + 1e-6)
    assert ratios["ancestral"][0].item() == pytest.approx(1.0, rel=1e-9)
    assert ratios["reverse_sde"][0].item() > 1.15
    assert torch.all((ratios["ancestral"] - 1).abs() < (ratios["reverse_sde"] - 1).abs())


@pytest.mark.parametrize("method", ["reverse_sde", "ancestral", "ode"])
def test_samples_reproduce_mean_and_covariance(gaussian_oracle, generator, method):
    t_min = 1e-3
    samples = dc.sample(
        gaussian_oracle,
        N,
        method=method,
        num_steps=400,
        t_max=1e3,
        t_min=t_min,
        denoise_final=False,
        init_mean=0.5,
        generator=generator,
        dtype=torch.float64,
        batch_size=N,
    )
    lam = gaussian_oracle.eigenvalues.double()
    c = eigen_coords(gaussian_oracle, samples)
    # MC error plus the residual offset of the prior's mean: ~0.1 sqrt(lam / t_max) for the ODE
    assert torch.all(c.mean(0).abs() < 5 * ((lam + t_min) / N).sqrt() + 0.01)
    assert torch.all((c.var(0) / (lam + t_min) - 1).abs() < 5 * math.sqrt(2 / N) + 0.02)


def test_iterator_reports_progress_and_can_stop(gaussian_oracle):
    gen = torch.Generator().manual_seed(0)
    steps = list(
        iter_samples(
            gaussian_oracle, 3, num_steps=10, yield_every=4, generator=gen, dtype=torch.float64
        )
    )
    assert [s.step for s in steps] == [0, 4, 8, 11]  # the last item is the denoised sample
    assert all(s.total == 11 for s in steps)
    assert steps[0].t == pytest.approx(1e3) and steps[-1].t == 0.0
    assert steps[2].t == pytest.approx(1e3 * 1e-9 ** (8 / 10))
    assert steps[-1].images.shape == (3, 1, 4, 4)
    again = dc.sample(
        gaussian_oracle,
        3,
        num_steps=10,
        generator=torch.Generator().manual_seed(0),
        dtype=torch.float64,
    )
    torch.testing.assert_close(again, steps[-1].images)
    it = iter_samples(gaussian_oracle, 3, num_steps=1000)
    assert next(it).step == 0
    it.close()


def test_unet_sampling_shapes_and_batching(tiny_model):
    calls = []
    runs = [
        dc.sample(
            tiny_model,
            3,
            num_steps=3,
            generator=torch.Generator().manual_seed(0),
            batch_size=b,
            progress=lambda *c: calls.append(c),
        )
        for b in (3, 2)
    ]
    assert runs[0].shape == (3, 1, 16, 16) and torch.isfinite(runs[0]).all()
    torch.testing.assert_close(runs[0], runs[1], rtol=1e-4, atol=1e-4)
    assert calls[:4] == [(1, 4), (2, 4), (3, 4), (4, 4)]
