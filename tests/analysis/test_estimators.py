"""Alternatives to the one-shot energy: probability-flow ODE, denoising bound, Itô SDE (§A.2)."""

import math

import pytest
import torch

import dsm_core as dc
from dsm_core.analysis import mse_nll_nats, ode_gap_profile, ode_nll_nats, sde_nll_nats


@pytest.fixture
def exact_nll(gaussian_oracle, oracle_images):
    return gaussian_oracle.energy(oracle_images, 0.0).detach().double()


def _hutchinson_sd(oracle, t_max, num_probes, probe):
    """SD of the Hutchinson error (1/2) mean_p (v^T L v - tr L), L = int_0^T (Sigma + t)^-1."""
    v = oracle.eigenvectors.double()
    lam = oracle.eigenvalues.double()
    big_l = v @ torch.diag(torch.log((lam + t_max) / lam)) @ v.T
    off = big_l.square().sum() - (big_l.diagonal().square().sum() if probe == "rademacher" else 0)
    return 0.5 * math.sqrt(2 * off.item() / num_probes)


def test_ode_exact_trace_matches_exact_logp(gaussian_oracle, oracle_images, exact_nll):
    rk4 = ode_nll_nats(gaussian_oracle, oracle_images, trace="exact", prior="model")
    assert (rk4.nll_nats - exact_nll).abs().max() < 0.005  # measured 0.0017
    assert rk4.num_score_evals == 2 + 4 * 50 + 1 and rk4.num_hvp_evals == 202 * 16
    heun = ode_nll_nats(
        gaussian_oracle, oracle_images, trace="exact", prior="model", solver="heun", num_steps=200
    )
    assert (heun.nll_nats - exact_nll).abs().max() < 0.05  # measured 0.037
    adaptive = ode_nll_nats(
        gaussian_oracle, oracle_images, trace="exact", prior="model", solver="adaptive"
    )
    assert (adaptive.nll_nats - exact_nll).abs().max() < 1e-3
    assert adaptive.method == "ode" and torch.all(adaptive.stderr_nats == 0)
    expected_db = dc.logp_db(gaussian_oracle, oracle_images).double()
    torch.testing.assert_close(adaptive.logp_db, expected_db, rtol=0, atol=1e-3)


def test_ode_with_the_papers_gaussian_prior(gaussian_oracle, oracle_images, exact_nll):
    # eq. 14's N(0, t_max I) ignores the data mean: error ~ <x_T, mu> / t_max ~ 1/sqrt(t_max)
    result = ode_nll_nats(gaussian_oracle, oracle_images, trace="exact", t_max=1e4, num_steps=60)
    assert (result.nll_nats - exact_nll).abs().max() < 0.1  # measured 0.03


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_ode_hutchinson_within_its_predicted_spread(
    gaussian_oracle, oracle_images, exact_nll, generator, probe
):
    result = ode_nll_nats(
        gaussian_oracle,
        oracle_images,
        prior="model",
        num_probes=32,
        probe=probe,
        generator=generator,
    )
    sd = _hutchinson_sd(gaussian_oracle, 1e3, 32, probe)
    assert (result.nll_nats - exact_nll).abs().max() < 4 * sd + 0.005
    assert result.num_hvp_evals == 202 * 32
    # the reported spread over probes estimates that standard deviation
    assert torch.all((result.stderr_nats > 0.5 * sd) & (result.stderr_nats < 2 * sd))


def test_mse_bound_matches_exact_logp(gaussian_oracle, oracle_images, exact_nll, generator):
    for prior, t_max in [("model", 1e3), ("gaussian", 1e4)]:
        result = mse_nll_nats(
            gaussian_oracle,
            oracle_images,
            num_noise=256,
            prior=prior,
            t_max=t_max,
            generator=generator,
            batch_size=4096,
        )
        assert result.method == "mse" and result.num_score_evals == 65 * 256
        assert torch.all((result.nll_nats - exact_nll).abs() < 5 * result.stderr_nats + 0.05)
        assert torch.all(result.stderr_nats < 0.3)


def test_sde_estimator_matches_exact_logp(gaussian_oracle, oracle_images, exact_nll, generator):
    result = sde_nll_nats(
        gaussian_oracle,
        oracle_images,
        num_steps=1000,
        num_paths=48,
        prior="model",
        generator=generator,
        batch_size=1000,
    )
    assert result.num_score_evals == 48 * 1001
    assert torch.all((result.nll_nats - exact_nll).abs() < 5 * result.stderr_nats + 0.1)
    # without Richardson extrapolation the Riemann-sum bias is O(h): ~3 nats at 250 steps
    plain = sde_nll_nats(
        gaussian_oracle,
        oracle_images[:2],
        num_steps=250,
        num_paths=32,
        prior="model",
        richardson=False,
        generator=generator,
        batch_size=1000,
    )
    assert torch.all(plain.nll_nats - exact_nll[:2] > 1.0)


def test_sde_noise_does_not_depend_on_batch_size(gaussian_oracle, oracle_images):
    runs = [
        sde_nll_nats(
            gaussian_oracle,
            oracle_images[:2],
            num_steps=20,
            num_paths=3,
            generator=torch.Generator().manual_seed(5),
            batch_size=b,
        ).nll_nats
        for b in (1, 4, 64)
    ]
    torch.testing.assert_close(runs[0], runs[1])
    torch.testing.assert_close(runs[0], runs[2])


def test_estimators_on_the_unet(tiny_model, tiny_images):
    x = tiny_images[:3]
    runs = [
        ode_nll_nats(
            tiny_model, x, num_steps=3, generator=torch.Generator().manual_seed(0), batch_size=b
        )
        for b in (3, 2)
    ]
    assert runs[0].nll_nats.shape == (3,) and torch.isfinite(runs[0].nll_nats).all()
    torch.testing.assert_close(runs[0].nll_nats, runs[1].nll_nats, rtol=0, atol=1e-3)
    assert runs[0].num_score_evals == 2 + 4 * 3 and runs[0].num_hvp_evals == 14
    mse = mse_nll_nats(tiny_model, x, num_points=4, num_noise=2, prior="model")
    sde = sde_nll_nats(tiny_model, x, num_steps=4, num_paths=2)
    for result in (mse, sde):
        assert result.nll_nats.shape == (3,) and torch.isfinite(result.nll_nats).all()
        assert result.bits_per_dim.shape == (3,)


def test_score_model_supports_the_denoising_estimators(tiny_images):
    torch.manual_seed(0)
    score_model = dc.build_energy_model("tiny", head="score").eval()
    mse = mse_nll_nats(score_model, tiny_images[:2], num_points=3, num_noise=2)
    assert torch.isfinite(mse.nll_nats).all()
    with pytest.raises(TypeError):
        ode_nll_nats(score_model, tiny_images[:2])
    with pytest.raises(TypeError):
        mse_nll_nats(score_model, tiny_images[:2], prior="model")


def test_ode_gap_profile_is_flat_for_an_exact_energy(gaussian_oracle, oracle_images):
    """Exact Gaussian energy: one-shot and ODE agree at every point of the path (closed form
    both); row 0's ODE value is ode_nll_nats's; a mis-scaled time dependence shows up as a gap
    that grows toward small t."""
    args = dict(t_min=1e-6, t_max=1e3, num_probes=64, prior="model")
    calls = []
    profile = ode_gap_profile(
        gaussian_oracle,
        oracle_images,
        generator=torch.Generator().manual_seed(0),
        progress=lambda done, total: calls.append((done, total)),
        **args,
    )
    assert calls[-1] == (102, 102)  # 50 ODE steps, then 52 rows
    k, b = profile.one_shot_db.shape
    assert (k, b) == (52, oracle_images.shape[0]) and profile.t[0] == 0.0
    assert profile.t[1] == pytest.approx(1e-6)
    assert profile.t[-1] == pytest.approx(1e3)
    assert profile.gap_db.abs().max() < 4 * profile.ode_stderr_db.max() + 1e-3
    assert profile.gap_db[-1].abs().max() < 1e-9  # nothing left to integrate at t_max
    ode = ode_nll_nats(
        gaussian_oracle, oracle_images, generator=torch.Generator().manual_seed(0), **args
    )
    torch.testing.assert_close(profile.ode_db[0], ode.logp_db.double(), rtol=0, atol=1e-9)

    class Hotter(type(gaussian_oracle)):
        """The oracle's energy read at 2t: each U(., t) a normalised density, but dU/dt twice
        what the heat equation asks."""

        def raw_energy(self, y, t):
            return super().raw_energy(y, 2 * t)

    hotter = Hotter(gaussian_oracle.mean, gaussian_oracle.eigenvalues, gaussian_oracle.eigenvectors)
    off = ode_gap_profile(hotter, oracle_images, generator=torch.Generator().manual_seed(0), **args)
    assert off.gap_db[0].abs().mean() > 10 * profile.gap_db[0].abs().mean() + 0.05
    torch.testing.assert_close(off.gap_at(0.0), off.gap_db[0])
    torch.testing.assert_close(off.gap_at(1.1e-6), off.gap_db[1])  # nearest in ln t
    torch.testing.assert_close(off.gap_at(2e3), off.gap_db[-1])
