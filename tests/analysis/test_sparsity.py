"""Participation ratio of multi-scale Haar coefficients (Fig. 4 right, reference-spec §4.6)."""

import warnings

import numpy as np
import pytest
import pywt
import torch

import dsm_core as dc
from dsm_core.analysis import haar_coefficients
from dsm_core.analysis.sparsity import num_haar_levels, smoothness_check, total_variation


def _pywt_coefficients(image: np.ndarray) -> np.ndarray:
    """reference-spec §4.6 with pywt: details of every level then the coarsest low-pass, scaled."""
    levels = num_haar_levels(*image.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pywt warns about boundary effects on odd sizes
        coeffs = pywt.wavedec2(image, "db1", mode="symmetric", level=levels)
    parts = []
    for j, bands in enumerate(reversed(coeffs[1:])):  # finest (j = 0) first
        parts += [band.ravel() * 2.0 ** -(j + 1) for band in bands]
    parts.append(coeffs[0].ravel() * 2.0**-levels)
    return np.concatenate(parts)


def _matrix(shape, scaled):
    """The linear map image -> coefficients as an (n, H*W) matrix."""
    basis = torch.eye(shape[0] * shape[1], dtype=torch.float64).view(-1, 1, *shape)
    return haar_coefficients(basis, scaled=scaled).T


@pytest.mark.parametrize("shape", [(8, 8), (64, 64), (28, 28), (12, 20), (1, 5)])
def test_coefficients_equal_pywt(shape, generator):
    image = torch.rand(1, 1, *shape, generator=generator, dtype=torch.float64)
    ours = haar_coefficients(image)[0].numpy()
    np.testing.assert_allclose(ours, _pywt_coefficients(image[0, 0].numpy()), atol=1e-12)


def test_unscaled_transform_is_orthonormal_for_power_of_two_sides():
    m = _matrix((8, 8), scaled=False)
    torch.testing.assert_close(m @ m.T, torch.eye(64, dtype=torch.float64))
    assert haar_coefficients(torch.zeros(1, 1, 64, 64)).shape == (1, 4096)


def test_one_nonzero_coefficient_gives_one_over_n():
    constant = torch.full((2, 1, 16, 16), 0.7)
    torch.testing.assert_close(
        dc.participation_ratio(constant), torch.full((2,), 1 / 256.0, dtype=torch.float64)
    )
    # a single finest diagonal atom
    m = _matrix((16, 16), scaled=True)
    atom = torch.linalg.solve(m, torch.eye(256, dtype=torch.float64)[:, 5]).view(1, 1, 16, 16)
    assert dc.participation_ratio(atom).item() == pytest.approx(1 / 256)


def test_flat_magnitudes_give_one_and_the_ratio_is_scale_free(generator):
    m = _matrix((8, 8), scaled=True)
    signs = torch.randint(0, 2, (3, 64), generator=generator).double() * 2 - 1
    images = torch.linalg.solve(m, signs.T).T.reshape(3, 1, 8, 8)
    torch.testing.assert_close(dc.participation_ratio(images), torch.ones(3, dtype=torch.float64))
    x = torch.rand(4, 1, 8, 8, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(dc.participation_ratio(3 * x), dc.participation_ratio(x))
    pr = dc.participation_ratio(x, batch_size=3)
    assert torch.all((pr > 1 / 64) & (pr <= 1))
    c = torch.from_numpy(np.stack([_pywt_coefficients(img[0].numpy()) for img in x]))
    torch.testing.assert_close(pr, c.abs().sum(1) ** 2 / (64 * c.square().sum(1)))


def test_noise_is_less_sparse_than_a_smooth_image(generator, tiny_images):
    noise = torch.rand(8, 1, 16, 16, generator=generator)
    assert dc.participation_ratio(noise).min() > dc.participation_ratio(tiny_images).max()


def test_color_images_pool_channels(generator):
    x = torch.rand(2, 3, 8, 8, generator=generator)
    assert haar_coefficients(x).shape == (2, 192)
    assert dc.participation_ratio(x).shape == (2,)


def test_total_variation_known_values():
    flat = torch.full((1, 1, 4, 4), 0.3)
    checker = (torch.arange(4)[:, None] + torch.arange(4)[None, :]) % 2
    tv = total_variation(torch.cat([flat, checker.float().view(1, 1, 4, 4)]))
    assert tv[0] == 0.0
    assert tv[1] == pytest.approx(2 * 4 * 3 / 16)  # 12 unit steps each way over 16 pixels


def test_smoothness_check_on_synthetic_log_p(generator, smooth_images):
    x = smooth_images(20) + 0.1 * torch.rand(20, 1, 16, 16, generator=generator) * (
        torch.arange(20, dtype=torch.float64).view(-1, 1, 1, 1) / 20
    )
    logp_db = -total_variation(x)  # smoother -> more probable, exactly
    check = smoothness_check(logp_db, x, fraction=0.1)
    assert check.spearman_tv == pytest.approx(-1.0)
    assert check.low_tv_logp_db > check.high_tv_logp_db
    assert check.passes == (check.spearman_pr < 0)
    with pytest.raises(ValueError, match="log p values"):
        smoothness_check(logp_db[:5], x)
