"""The noise process: grids, t batching, y = x + sqrt(t) z, the Tweedie denoiser, dequantization."""

import math

import numpy as np
import pytest
import torch

from dsm_core import noise


def test_psnr_grid_is_table_1():
    grid = noise.PSNR_GRID_DB
    assert len(grid) == 17 and grid[0] == -30 and grid[-1] == 90 and grid[1] == -22.5


def test_noise_schedule_is_geometric_and_checked():
    np.testing.assert_allclose(noise.noise_schedule(100, 1, 3), [100, 10, 1])
    with pytest.raises(ValueError, match="t_min < t_max"):
        noise.noise_schedule(1, 10, 3)
    with pytest.raises(ValueError, match="2 levels"):
        noise.noise_schedule(10, 1, 1)


def test_batch_t_broadcasts_and_refuses_bad_values():
    y = torch.zeros(3, 1, 2, 2, dtype=torch.float64)
    t = noise.batch_t(0.5, y)
    assert t.shape == (3,) and t.dtype == torch.float64 and (t == 0.5).all()
    with pytest.raises(ValueError, match="shape"):
        noise.batch_t(torch.ones(2), y)
    with pytest.raises(ValueError, match="finite"):
        noise.batch_t(-1.0, y)
    with pytest.raises(TypeError):
        noise.batch_t("big", y)
    with pytest.raises(TypeError):
        noise.batch_t(True, y)


def test_batch_t_rounds_a_number_once_like_torch_full():
    for dtype in (torch.float64, torch.float32, torch.float16, torch.bfloat16):
        y = torch.zeros(3, 1, 2, 2, dtype=dtype)
        for value in (0.1, 1e-9, 3.7e2, 7):
            expected = torch.full((3,), value, dtype=dtype)
            assert torch.equal(noise.batch_t(value, y), expected), (dtype, value)


def test_add_noise_and_the_denoiser_invert_each_other():
    x = torch.rand(4, 1, 3, 3, generator=torch.Generator().manual_seed(0))
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0.0, 0.01, 1.0, 4.0])
    y = noise.add_noise(x, t, z)
    torch.testing.assert_close(y, x + t.sqrt().view(-1, 1, 1, 1) * z)
    torch.testing.assert_close(noise.add_noise(x, 4.0, z), x + 2.0 * z)
    # the exact score of a point mass at x is (y - x) / t, so D(y, t) gives x back
    grad_y = (y[1:] - x[1:]) / t[1:].view(-1, 1, 1, 1)
    torch.testing.assert_close(noise.tweedie_denoise(y[1:], t[1:], grad_y), x[1:])
    torch.testing.assert_close(noise.tweedie_denoise(y, 0.5, grad_y.new_zeros(y.shape)), y)


def test_sample_t_is_log_uniform_in_range():
    from dsm_core.config import NoiseConfig

    cfg = NoiseConfig(t_min=1e-4, t_max=1e2)
    t = noise.sample_t(20_000, cfg, generator=torch.Generator().manual_seed(0))
    assert t.min() >= 1e-4 and t.max() <= 1e2
    assert abs(t.log().mean().item() - 0.5 * (math.log(1e-4) + math.log(1e2))) < 0.1


def test_dequantize_fills_each_level_bin_uniformly():
    levels = torch.tensor([0, 1, 127, 255]).repeat(20_000, 1)  # (20000, 4)
    x = noise.dequantize(levels, torch.Generator().manual_seed(0))
    assert x.dtype == torch.float32 and x.shape == levels.shape
    assert (x >= levels / 256).all() and (x < (levels + 1) / 256).all()
    within = x * 256 - levels  # u, uniform on [0, 1)
    torch.testing.assert_close(within.mean(0), torch.full((4,), 0.5), rtol=0, atol=0.01)
    torch.testing.assert_close(within.var(0), torch.full((4,), 1 / 12), rtol=0, atol=0.003)
