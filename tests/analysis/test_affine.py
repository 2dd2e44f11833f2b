"""log p(a x + b) over contrast and brightness (Fig. 4 left/middle)."""

import pytest
import torch

import dsm_core as dc
from dsm_core import units
from dsm_core.analysis import (
    affine_in_range,
    affine_logp_db,
    affine_logp_db_grid,
    brightness_logp_change_db,
    contrast_logp_db,
    contrast_slice_logp_db,
)

from .closed_forms import exact_energy_nats


def _closed_form(oracle, image, a, b, clip=False):
    out = torch.empty(len(a), len(b), dtype=torch.float64)
    for i, ai in enumerate(a.tolist()):
        y = ai * image[None] + b.view(-1, 1, 1, 1)  # (Bg, 1, 4, 4)
        if clip:
            y = y.clamp(0, 1)
        out[i] = units.energy_nats_to_logp_db(exact_energy_nats(oracle, y, 0.0), oracle.d)
    return out


def test_grid_of_one_image_matches_closed_form(gaussian_oracle, oracle_images):
    a = torch.linspace(0, 1.5, 7, dtype=torch.float64)
    b = torch.linspace(-0.5, 1, 5, dtype=torch.float64)
    grid = affine_logp_db_grid(gaussian_oracle, oracle_images[0], a, b, batch_size=4)
    assert grid.shape == (7, 5)
    expected = _closed_form(gaussian_oracle, oracle_images[0], a, b)
    torch.testing.assert_close(grid, expected, rtol=0, atol=1e-9)


def test_clip_flag_clips_before_evaluating(gaussian_oracle, oracle_images):
    a = torch.tensor([0.5, 3.0], dtype=torch.float64)
    b = torch.tensor([-1.0, 0.2], dtype=torch.float64)
    clipped = affine_logp_db_grid(gaussian_oracle, oracle_images[1:2], a, b, clip=True)
    plain = affine_logp_db_grid(gaussian_oracle, oracle_images[1:2], a, b)
    torch.testing.assert_close(clipped, _closed_form(gaussian_oracle, oracle_images[1], a, b, True))
    assert not torch.allclose(clipped, plain)


def test_many_images_and_slices(gaussian_oracle, oracle_images):
    a = torch.linspace(0, 0.5, 6, dtype=torch.float64)
    b = torch.tensor([0.0, 0.5], dtype=torch.float64)
    calls = []
    cube = affine_logp_db(
        gaussian_oracle, oracle_images, a, b, batch_size=5, progress=lambda *c: calls.append(c)
    )
    assert cube.shape == (6, 6, 2)
    assert calls[-1] == (36, 36) and len(calls) == 36
    for i in range(6):
        torch.testing.assert_close(cube[i], _closed_form(gaussian_oracle, oracle_images[i], a, b))
    sliced = contrast_slice_logp_db(gaussian_oracle, oracle_images, a, 0.5)
    torch.testing.assert_close(sliced, cube[:, :, 1])
    # a = 0 gives the constant image b, whatever the image
    torch.testing.assert_close(cube[:, 0, 1], cube[0, 0, 1].expand(6))


def test_unet_grid_shape_and_batch_invariance(tiny_model, tiny_images):
    a, b = torch.linspace(0, 1, 3), torch.linspace(0, 1, 4)
    big = affine_logp_db(tiny_model, tiny_images[:2], a, b, batch_size=64)
    small = affine_logp_db(tiny_model, tiny_images[:2], a, b, batch_size=5)
    assert big.shape == (2, 3, 4)
    torch.testing.assert_close(big, small, rtol=0, atol=1e-5)


def test_affine_in_range_matches_the_transformed_pixels():
    generator = torch.Generator().manual_seed(0)
    x = 0.2 + 0.6 * torch.rand(3, 1, 4, 4, generator=generator, dtype=torch.float64)
    a = torch.linspace(-0.5, 2.0, 11, dtype=torch.float64)
    b = torch.linspace(-0.5, 1.0, 13, dtype=torch.float64)
    mask = affine_in_range(x, a, b)
    y = a[None, :, None, None, None, None] * x[:, None, None] + b[None, None, :, None, None, None]
    expected = ((y >= 0) & (y <= 1)).flatten(3).all(dim=3)
    assert mask.shape == (3, 11, 13)
    assert torch.equal(mask, expected)
    assert mask[:, 2, :].any() and not mask.all()  # a = 0: the constant image b is inside


def test_brightness_change_matches_isotropic_gaussian(generator, smooth_images):
    mean = torch.full((1, 16, 16), 0.5, dtype=torch.float64)
    variance = 0.04
    energy = dc.GaussianEnergy.isotropic(mean, variance)
    x = smooth_images(3)  # in [0.2, 0.8]
    x[0, 0, 0, 0] = 0.95  # image 0 cannot be brightened by 0.1
    offsets = [-0.1, 0.1]
    change = brightness_logp_change_db(energy, x, offsets)
    assert change.shape == (3, 2)
    assert torch.isnan(change[0, 1]) and not torch.isnan(change[1:]).any()
    for i in (1, 2):
        for j, b in enumerate(offsets):
            delta_nats = ((x[i] - mean).square().sum() - (x[i] + b - mean).square().sum()) / (
                2 * variance
            )
            expected = units.nats_to_db_per_dim(delta_nats.item(), 256)
            assert change[i, j].item() == pytest.approx(expected, rel=1e-9)


def test_brightness_change_at_reduced_contrast_stays_in_range(generator, smooth_images):
    mean = torch.full((1, 16, 16), 0.5, dtype=torch.float64)
    energy = dc.GaussianEnergy.isotropic(mean, 0.04)
    x = smooth_images(3)
    x[:, :, 0, 0], x[:, :, 0, 1] = 0.0, 1.0  # images that span [0, 1]
    assert torch.isnan(brightness_logp_change_db(energy, x, [0.1])).all()
    offsets = [0.0, 0.2]
    change = brightness_logp_change_db(energy, x, offsets, contrast=0.8, reference_offset=0.1)
    expected = dc.logp_db(energy, 0.8 * x + 0.2) - dc.logp_db(energy, 0.8 * x + 0.1)
    assert not torch.isnan(change).any()
    assert torch.allclose(change[:, 1], expected.double())


def test_contrast_about_the_mean(generator, smooth_images):
    energy = dc.GaussianEnergy.isotropic(torch.full((1, 16, 16), 0.5, dtype=torch.float64), 0.04)
    x = smooth_images(3)
    values = contrast_logp_db(energy, x, [1.0, 0.5, 0.0])
    assert values.shape == (3, 3)
    assert torch.allclose(values[:, 0], dc.logp_db(energy, x).double())
    mean = x.flatten(1).mean(dim=1).view(-1, 1, 1, 1)
    assert torch.allclose(values[:, 1], dc.logp_db(energy, 0.5 * (x - mean) + mean).double())
    # a Gaussian centred on flat gray prefers lower contrast
    assert (values[:, 2] > values[:, 1]).all() and (values[:, 1] > values[:, 0]).all()
