"""log p(a x + b) over contrast and brightness (Fig. 4 left/middle)."""

import torch

from dsm_core import units
from dsm_core.analysis import (
    affine_in_range,
    affine_logp_db,
    affine_logp_db_grid,
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
