"""Baselines: PNG rate, exact Gaussian-mixture energy, classical denoisers, qualitative checks."""

import math

import numpy as np
import pytest
import torch

from dsm_core import baselines, units


def _random_mixture(generator: torch.Generator, k: int = 3, d: int = 6) -> dict:
    weights = torch.rand(k, generator=generator, dtype=torch.float64) + 0.2
    means = torch.randn(k, 1, 2, d // 2, generator=generator, dtype=torch.float64)
    eigenvalues = 0.05 + torch.rand(k, d, generator=generator, dtype=torch.float64)
    q = torch.linalg.qr(torch.randn(k, d, d, generator=generator, dtype=torch.float64)).Q
    return {"weights": weights / weights.sum(), "means": means, "eigenvalues": eigenvalues, "q": q}


# ----------------------------------------------------------------------------- PNG


def test_png_rate_constant_vs_noise():
    rng = np.random.default_rng(0)
    flat = np.full((1, 1, 32, 32), 128, dtype=np.uint8)
    noise = rng.integers(0, 256, size=(1, 1, 32, 32), dtype=np.uint8)
    rates = baselines.png_bits_per_dim(np.concatenate([flat, noise]))
    assert rates.shape == (2,)
    assert rates[0] < 1.0  # a constant image costs little more than the headers
    assert 8.0 < rates[1] < 9.5  # incompressible: 8 bits plus container overhead


def test_png_rate_matches_file_size_and_accepts_rgb():
    from io import BytesIO

    from PIL import Image

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(2, 3, 8, 8), dtype=np.uint8)
    rates = baselines.png_bits_per_dim(images)
    buffer = BytesIO()
    Image.fromarray(images[1].transpose(1, 2, 0)).save(
        buffer, format="PNG", optimize=True, compress_level=9
    )
    assert rates[1] == pytest.approx(8 * len(buffer.getvalue()) / (3 * 8 * 8))
    with pytest.raises(ValueError, match="uint8"):
        baselines.png_bits_per_dim(images.astype(np.float32))


# ----------------------------------------------------------------------------- mixture energy


def test_mixture_energy_matches_closed_form_at_every_t(generator):
    from scipy.stats import multivariate_normal

    p = _random_mixture(generator)
    energy = baselines.GaussianMixtureEnergy(p["weights"], p["means"], p["eigenvalues"], p["q"])
    y = torch.randn(4, 1, 2, 3, generator=generator, dtype=torch.float64)
    for t in (0.0, 0.3, 5.0):
        expected = []
        for row in y.flatten(1).numpy():
            density = sum(
                p["weights"][k].item()
                * multivariate_normal.pdf(
                    row,
                    mean=p["means"][k].flatten().numpy(),
                    cov=(p["q"][k] @ torch.diag(p["eigenvalues"][k] + t) @ p["q"][k].T).numpy(),
                )
                for k in range(3)
            )
            expected.append(-math.log(density))
        assert torch.allclose(energy.energy(y, t), torch.tensor(expected, dtype=torch.float64))


def test_one_component_mixture_is_the_gaussian(generator, gaussian_oracle):
    mixture = baselines.GaussianMixtureEnergy(
        torch.ones(1, dtype=torch.float64),
        gaussian_oracle.mean[None],
        gaussian_oracle.eigenvalues[None],
        gaussian_oracle.eigenvectors[None],
    )
    y = gaussian_oracle.sample(5, generator=generator)
    t = torch.tensor([0.0, 0.01, 0.1, 1.0, 10.0], dtype=torch.float64)
    assert torch.allclose(mixture.energy(y, t), gaussian_oracle.energy(y, t))
    # exact posterior mean: the Wiener filter of the Gaussian
    assert torch.allclose(mixture.denoise(y, t), gaussian_oracle.denoise(y, t))


def test_mixture_energy_checks_shapes(generator):
    p = _random_mixture(generator)
    with pytest.raises(ValueError, match="eigenvalues"):
        baselines.GaussianMixtureEnergy(p["weights"], p["means"], p["eigenvalues"][:, :2], p["q"])


def _clusters(generator: torch.Generator, n: int) -> torch.Tensor:
    """n points (n, 1, 2, 2) from three well-separated clusters of a 4-d mixture."""
    centers = torch.tensor([[0.2] * 4, [0.8] * 4, [0.2, 0.8, 0.2, 0.8]], dtype=torch.float64)
    labels = torch.randint(0, 3, (n,), generator=generator)
    x = centers[labels] + 0.03 * torch.randn(n, 4, generator=generator, dtype=torch.float64)
    return x.view(n, 1, 2, 2)


def test_fitted_mixture_matches_sklearn_and_selection_finds_three_clusters(generator):
    from sklearn.mixture import GaussianMixture

    x_fit, x_val = _clusters(generator, 600), _clusters(generator, 300)
    energy = baselines.fit_gaussian_mixture(x_fit, 3, reg_covar=1e-4, seed=0)
    reference = GaussianMixture(3, covariance_type="full", reg_covar=1e-4, random_state=0)
    reference.fit(x_fit.flatten(1).numpy())
    score = torch.from_numpy(reference.score_samples(x_val.flatten(1).numpy()))
    assert torch.allclose(energy.energy(x_val.float(), 0.0).double(), -score, atol=1e-3)
    assert energy.metadata["num_components"] == 3 and energy.metadata["converged"]

    selection = baselines.select_gaussian_mixture(x_fit, x_val, (1, 3), reg_covar=1e-4)
    assert selection.num_components == 3
    assert selection.energy.num_components == 3
    assert selection.val_nll_bits_per_dim[3] < selection.val_nll_bits_per_dim[1]
    assert [fit["num_components"] for fit in selection.fits] == [1, 3]


# ----------------------------------------------------------------------------- denoising


def test_noisy_copies_are_fixed_and_at_the_right_level(generator):
    x = torch.full((200, 1, 8, 8), 0.5, dtype=torch.float64)
    y = baselines.noisy_copies(x, [30.0, 10.0], torch.Generator().manual_seed(3))
    again = baselines.noisy_copies(x, [30.0, 10.0], torch.Generator().manual_seed(3))
    assert y.shape == (2, 200, 1, 8, 8)
    assert torch.equal(y, again)
    for j, psnr_db in enumerate((30.0, 10.0)):
        assert baselines.psnr_of_mean_mse_db(y[j], x) == pytest.approx(psnr_db, abs=0.1)


def test_psnr_of_mean_mse_is_not_mean_of_psnrs():
    x = torch.zeros(2, 1, 2, 2)
    x_hat = torch.stack([torch.full((1, 2, 2), 0.1), torch.full((1, 2, 2), 0.01)])
    mean_mse = (0.01 + 0.0001) / 2
    assert baselines.psnr_of_mean_mse_db(x_hat, x) == pytest.approx(-10 * math.log10(mean_mse))


@pytest.mark.parametrize("channels", [1, 3])
def test_classical_denoisers_improve_smooth_images(generator, channels, smooth_images):
    x = smooth_images(4, channels)
    t = units.psnr_db_to_t(20.0)
    y = baselines.noisy_copies(x, [20.0], generator)[0]
    for denoised in (baselines.wavelet_denoise(y, t), baselines.nl_means_denoise(y, t)):
        assert denoised.shape == y.shape and denoised.dtype == y.dtype
        assert baselines.psnr_of_mean_mse_db(denoised, x) > 22.0


def test_tune_denoiser_picks_the_best_value(generator, smooth_images):
    x = smooth_images(3)

    def shrink(weight: float):
        return lambda y, t: weight * y + (1 - weight) * x  # cheats: pulls towards the truth

    best, scores = baselines.tune_denoiser(shrink, [1.0, 0.2, 0.5], x, 20.0, generator)
    assert best == 0.2
    assert scores["0.2"] > scores["0.5"] > scores["1.0"] == pytest.approx(20.0, abs=1.0)
    assert baselines.psnr_of_mean_mse_db(x, x) == math.inf
