"""Denoising PSNR per noise level (Table 1)."""

import math

import pytest
import torch

import dsm_core as dc
from dsm_core import units
from dsm_core.analysis import denoise


def test_optimal_denoiser_mse_matches_closed_form(gaussian_oracle, generator):
    x = gaussian_oracle.sample(400, generator=generator)
    psnr = torch.tensor([-10.0, 0.0, 10.0, 20.0, 40.0], dtype=torch.float64)
    result = dc.denoising_psnr(gaussian_oracle, x, psnr, generator=generator, batch_size=128)
    t = 10 ** (-psnr / 10)
    torch.testing.assert_close(result.t, t)
    assert result.mse_per_image.shape == (5, 400)
    for j in range(5):
        # E_z of the per-pixel MSE of the optimal denoiser: d_eff(x, t) t / d (paper eq. 11)
        expected = gaussian_oracle.effective_dimensionality(x, t[j]).double() * t[j] / 16
        residual = result.mse_per_image[j] - expected
        assert residual.mean().abs() < 5 * residual.std() / math.sqrt(400)
        assert abs(result.mse[j] / expected.mean() - 1) < 0.1
    torch.testing.assert_close(result.mse, result.mse_per_image.mean(dim=1))
    torch.testing.assert_close(result.psnr_out_db, -10 * torch.log10(result.mse))
    # the denoiser gains PSNR where the noise is not negligible against the data variance
    assert torch.all(result.psnr_out_db[:3] > psnr[:3] + 0.5)


def test_unet_batched_equals_unbatched(tiny_model, tiny_images):
    psnr = [0.0, 30.0]
    runs = [
        dc.denoising_psnr(
            tiny_model, tiny_images, psnr, generator=torch.Generator().manual_seed(1), batch_size=b
        )
        for b in (8, 3)
    ]
    torch.testing.assert_close(runs[0].mse_per_image, runs[1].mse_per_image, rtol=1e-4, atol=0)
    y = tiny_images + 0.1 * torch.randn(tiny_images.shape, generator=torch.Generator())
    torch.testing.assert_close(
        denoise(tiny_model, y, 0.01, batch_size=3), tiny_model.denoise(y, 0.01).detach()
    )


def test_score_model_and_progress(tiny_images):
    torch.manual_seed(0)
    score_model = dc.build_energy_model("tiny", head="score").eval()
    calls = []
    result = dc.denoising_psnr(
        score_model, tiny_images[:2], [10.0, 20.0], progress=lambda *c: calls.append(c)
    )
    assert result.psnr_out_db.shape == (2,) and torch.isfinite(result.psnr_out_db).all()
    assert calls == [(1, 2), (2, 2)]


def test_time_score_term_and_psnr_table_of_the_exact_gaussian(gaussian_oracle, generator):
    """With the exact time score the time term is the conditional variance of (1 - |z|^2/d)/2
    given y, at most its unconditional variance 1/(2d); the table is keyed by input PSNR."""
    x = gaussian_oracle.sample(2000, generator).float()
    result = dc.denoising_psnr(
        gaussian_oracle.float(),
        x,
        (0.0, 10.0, 20.0),
        time_loss=True,
        generator=torch.Generator().manual_seed(0),
        batch_size=1000,
    )
    assert result.psnr_table()["10"] == pytest.approx(units.mse_to_psnr_db(result.mse[1]).item())
    assert list(result.time_loss_table()) == ["0", "10", "20"]
    assert ((result.time_loss > 0) & (result.time_loss < 0.6 / gaussian_oracle.d)).all()
    # dU/dt = 0 on the same draws: the mean of (1 - chi2_d / d)^2 / 4, 1/(2d) in expectation
    # (d = 16, 2000 images: standard error 3.7 %); the exact time score, the target's
    # conditional mean, beats it at every level, by most where y says most about |z|^2 (large t)
    assert list(result.time_loss_zero_table()) == ["0", "10", "20"]
    assert result.time_loss_zero.numpy() == pytest.approx(1 / (2 * gaussian_oracle.d), rel=0.15)
    assert (result.time_loss < result.time_loss_zero).all()
    assert result.time_loss[0] < 0.7 * result.time_loss_zero[0]
    no_time = dc.denoising_psnr(gaussian_oracle.float(), x[:4], (0.0,), generator=generator)
    assert no_time.time_loss is None and no_time.time_loss_table() is None
    assert no_time.time_loss_zero is None and no_time.time_loss_zero_table() is None
