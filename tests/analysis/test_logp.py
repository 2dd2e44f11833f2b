"""log p in every unit, log p at any t, and percentiles within a reference set (§3.1-3.2)."""

import pytest
import torch
from scipy import stats

import dsm_core as dc
from dsm_core import units
from dsm_core.analysis import logp_db_curve, percentile_of

from .closed_forms import exact_energy_nats


def test_logp_db_matches_closed_form_at_several_t(gaussian_oracle, oracle_images):
    ts = [0.0, 1e-3, 0.5, 100.0]
    curve = logp_db_curve(gaussian_oracle, oracle_images, ts)
    assert curve.shape == (6, 4)
    for j, t in enumerate(ts):
        expected = units.energy_nats_to_logp_db(
            exact_energy_nats(gaussian_oracle, oracle_images, t), gaussian_oracle.d
        )
        torch.testing.assert_close(curve[:, j].double(), expected, rtol=0, atol=1e-9)
        torch.testing.assert_close(
            dc.logp_db(gaussian_oracle, oracle_images, t).double(), expected, rtol=0, atol=1e-9
        )


def test_logp_db_is_minus_ten_energy_over_d_ln10(gaussian_oracle, oracle_images):
    energy = dc.energy_nats(gaussian_oracle, oracle_images)
    logp = dc.logp_db(gaussian_oracle, oracle_images)
    torch.testing.assert_close(logp, -10 * energy / (16 * units.LN10))
    bits = dc.nll_bits_per_dim(gaussian_oracle, oracle_images, discrete=True)
    torch.testing.assert_close(bits, 8 + energy / (16 * units.LN2))


def test_logp_db_batched_equals_unbatched_on_unet(tiny_model, tiny_images):
    whole = dc.logp_db(tiny_model, tiny_images, 0.01, batch_size=64, device="cpu")
    pieces = dc.logp_db(tiny_model, tiny_images, 0.01, batch_size=3)
    one_by_one = torch.cat([dc.logp_db(tiny_model, tiny_images[i : i + 1], 0.01) for i in range(8)])
    assert whole.shape == (8,)
    torch.testing.assert_close(whole, pieces, rtol=0, atol=1e-5)
    torch.testing.assert_close(whole, one_by_one, rtol=0, atol=1e-5)
    per_image_t = dc.logp_db(tiny_model, tiny_images, torch.full((8,), 0.01), batch_size=5)
    torch.testing.assert_close(whole, per_image_t, rtol=0, atol=1e-5)


def test_logp_db_curve_reports_progress(tiny_model, tiny_images):
    calls = []
    curve = logp_db_curve(
        tiny_model, tiny_images[:2], [0.0, 0.1, 1.0], progress=lambda *a: calls.append(a)
    )
    assert curve.shape == (2, 3)
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_percentile_of_matches_scipy_mean_convention(generator):
    reference = torch.randn(500, generator=generator).round(decimals=1)  # with ties
    values = torch.tensor([-10.0, -0.5, 0.0, 0.3, 10.0, reference[7].item()])
    result = percentile_of(values, reference)
    expected = [stats.percentileofscore(reference.numpy(), v, kind="mean") for v in values]
    torch.testing.assert_close(result, torch.tensor(expected, dtype=torch.float64))
    assert result[0] == 0 and result[4] == 100


def test_percentile_of_keeps_shape_and_rejects_empty_reference():
    result = percentile_of(torch.zeros(2, 3), [1.0, -1.0])
    assert result.shape == (2, 3) and torch.all(result == 50)
    assert percentile_of(5.0, [1.0, 2.0, 3.0, 4.0]).item() == 100
    with pytest.raises(ValueError):
        percentile_of(1.0, [])


def test_dequantized_nll_bounds_the_exact_discrete_nll_of_a_gaussian():
    """Isotropic Gaussian: the 8-bit probability of an image is a product of normal CDF steps."""
    mean, std = 0.4, 0.05  # 13 bins per standard deviation
    oracle = dc.GaussianEnergy.isotropic(torch.full((1, 2, 2), mean, dtype=torch.float64), std**2)
    pixels = torch.tensor([[[[95, 100], [105, 110]]], [[[100, 101], [102, 103]]]])  # (2,1,2,2)
    normal = stats.norm(mean, std)
    levels = pixels.double().numpy()
    probs = normal.cdf((levels + 1) / 256) - normal.cdf(levels / 256)
    exact = -torch.tensor(probs).log2().flatten(1).mean(1)  # bits/dim of each image
    bound = dc.analysis.dequantized_nll_bits_per_dim(
        oracle, pixels, num_draws=4000, generator=torch.Generator().manual_seed(0)
    )
    # Jensen's gap is ~ ((k/256 - mean)^2 / std^4) (1/256)^2 / 24 nats per pixel, < 1e-4
    # bits/dim within a standard deviation of the mean; 4,000 draws leave a Monte Carlo error
    # of ~5e-5 there
    difference = bound - exact
    assert (difference > -1.5e-4).all() and (difference < 3e-4).all(), difference


def test_dequantized_nll_refuses_float_images_and_out_of_range_levels(gaussian_oracle):
    with pytest.raises(TypeError, match="integer levels"):
        dc.analysis.dequantized_nll_bits_per_dim(gaussian_oracle, torch.rand(1, 1, 4, 4))
    with pytest.raises(ValueError, match=r"\[0, 256\)"):
        dc.analysis.dequantized_nll_bits_per_dim(
            gaussian_oracle, torch.full((1, 1, 4, 4), 256, dtype=torch.int64)
        )


def test_default_batch_holds_a_fixed_number_of_values(tiny_model, tiny_images, monkeypatch):
    from dsm_core.analysis import _common

    assert _common.batch_size_for(32 * 32, None) == 64  # the measured best at 32x32
    assert _common.batch_size_for(64 * 64, None) == 16 and _common.batch_size_for(10**6, None) == 1
    assert _common.batch_size_for(64 * 64, 5) == 5
    calls = []
    forward = tiny_model.energy
    monkeypatch.setattr(tiny_model, "energy", lambda y, t: calls.append(len(y)) or forward(y, t))
    monkeypatch.setattr(_common, "VALUES_PER_BATCH", 3 * tiny_model.d)
    whole = dc.logp_db(tiny_model, tiny_images, batch_size=8)
    assert calls == [8]
    calls.clear()
    torch.testing.assert_close(dc.logp_db(tiny_model, tiny_images), whole)  # same numbers
    assert calls == [3, 3, 2]
