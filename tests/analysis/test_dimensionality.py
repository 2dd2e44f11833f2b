"""Effective dimensionality (eqs. 11, 12) and effective energy (Fig. 5)."""

import math

import pytest
import torch

import dsm_core as dc
from dsm_core.analysis import dimensionality_curves, effective_energy_nats

from .closed_forms import eigen_coords

TS = [0.0, 1e-4, 1e-2, 0.1, 1.0, 10.0, 1e3]


def _exact_d_eff(oracle, x, ts):
    return torch.stack([oracle.effective_dimensionality(x, t) for t in ts], dim=1).double()


def _exact_effective_energy(oracle, x, ts):
    """E_y[U(y, t) | x] = sum (m^2 + t) / (2 (lam + t)) + (1/2) sum ln(2 pi (lam + t))."""
    m, lam = eigen_coords(oracle, x), oracle.eigenvalues.double()
    cols = [
        0.5 * ((m**2 + t) / (lam + t)).sum(1) + 0.5 * torch.log(2 * math.pi * (lam + t)).sum()
        for t in ts
    ]
    return torch.stack(cols, dim=1)


def test_both_forms_match_the_closed_form(gaussian_oracle, oracle_images, generator):
    curves = dimensionality_curves(
        gaussian_oracle, oracle_images, TS, num_noise=2000, generator=generator, batch_size=4000
    )
    exact = _exact_d_eff(gaussian_oracle, oracle_images, TS)
    assert curves.d_eff_denoiser.shape == curves.d_eff_energy.shape == (6, len(TS))
    # Monte Carlo tolerance: 5 standard errors (plus float slack where the error is ~0)
    assert torch.all(
        (curves.d_eff_denoiser - exact).abs() < 5 * curves.d_eff_denoiser_stderr + 1e-9
    )
    assert torch.all((curves.d_eff_energy - exact).abs() < 5 * curves.d_eff_energy_stderr + 1e-9)
    # the closed form goes from d (t -> 0) to 0 (t -> infinity)
    assert torch.all(exact[:, 0] == 16) and torch.all(exact[:, -1] < 0.1)
    effective = _exact_effective_energy(gaussian_oracle, oracle_images, TS)
    assert torch.all(
        (curves.effective_energy_nats - effective).abs()
        < 5 * curves.effective_energy_stderr_nats + 1e-9
    )
    torch.testing.assert_close(
        curves.effective_logp_db, -10 * curves.effective_energy_nats / (16 * math.log(10))
    )


def test_energy_form_uses_the_time_score(gaussian_oracle, oracle_images, generator):
    """Dropping the grad_t term (or the <grad_y, z> term) of eq. 12 would miss by far more."""
    curves = dimensionality_curves(
        gaussian_oracle, oracle_images[:2], [0.3], num_noise=4000, generator=generator
    )
    exact = _exact_d_eff(gaussian_oracle, oracle_images[:2], [0.3])
    assert torch.all((curves.d_eff_energy - exact).abs() < 0.2)
    assert torch.all(exact > 2) and torch.all(exact < 14)


def test_control_variate_keeps_the_mean_and_cuts_the_noise(
    gaussian_oracle, oracle_images, generator
):
    ts = [1e-6, 1e-2, 1.0]
    kwargs = dict(num_noise=500, batch_size=1000)
    plain = dimensionality_curves(gaussian_oracle, oracle_images, ts, generator=generator, **kwargs)
    cv = dimensionality_curves(
        gaussian_oracle, oracle_images, ts, generator=generator, control_variate=True, **kwargs
    )
    exact = _exact_d_eff(gaussian_oracle, oracle_images, ts)
    assert torch.all((cv.d_eff_denoiser - exact).abs() < 5 * cv.d_eff_denoiser_stderr + 1e-9)
    assert torch.all(cv.d_eff_denoiser_stderr[:, 0] < 0.05 * plain.d_eff_denoiser_stderr[:, 0])


def test_noise_draws_do_not_depend_on_batch_size(gaussian_oracle, oracle_images):
    runs = [
        dimensionality_curves(
            gaussian_oracle,
            oracle_images,
            [0.01, 1.0],
            num_noise=7,
            generator=torch.Generator().manual_seed(3),
            batch_size=b,
        )
        for b in (1, 5, 100)
    ]
    for other in runs[1:]:
        torch.testing.assert_close(other.d_eff_denoiser, runs[0].d_eff_denoiser)
        torch.testing.assert_close(other.d_eff_energy, runs[0].d_eff_energy)
    forward_only = effective_energy_nats(
        gaussian_oracle,
        oracle_images,
        [0.01, 1.0],
        num_noise=7,
        generator=torch.Generator().manual_seed(3),
        batch_size=4,
    )
    torch.testing.assert_close(forward_only, runs[0].effective_energy_nats)


def test_api_function_and_unet(tiny_model, tiny_images):
    calls = []
    d_eff = dc.effective_dimensionality(
        tiny_model,
        tiny_images[:3],
        [1e-3, 1.0],
        num_noise=2,
        batch_size=4,
        generator=torch.Generator().manual_seed(0),
        progress=lambda *c: calls.append(c),
    )
    assert d_eff.shape == (3, 2) and torch.isfinite(d_eff).all()
    assert calls == [(1, 2), (2, 2)]
    again = dc.effective_dimensionality(
        tiny_model,
        tiny_images[:3],
        [1e-3, 1.0],
        num_noise=2,
        batch_size=6,
        generator=torch.Generator().manual_seed(0),
    )
    torch.testing.assert_close(d_eff, again, rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError):
        dc.effective_dimensionality(tiny_model, tiny_images[:1], [1.0], method="bogus")


def test_score_model_gets_the_denoiser_form_only(tiny_images):
    torch.manual_seed(0)
    score_model = dc.build_energy_model("tiny", head="score").eval()
    curves = dimensionality_curves(score_model, tiny_images[:2], [0.1], num_noise=2)
    assert torch.isfinite(curves.d_eff_denoiser).all()
    assert (
        torch.isnan(curves.d_eff_energy).all() and torch.isnan(curves.effective_energy_nats).all()
    )
