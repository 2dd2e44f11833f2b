"""The log p map of a large upload: native-resolution tiles from the upload's decode path, scored
tile by tile; the oversized-image message quotes the app's limit."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dsm_core as dc
from dsm_core.analysis import logp_map, tile_tensor
from dsm_core.data.dataset import rgb_to_gray
from dsm_core.images import (
    DEFAULT_MAX_DECODED_PIXELS,
    DEFAULT_MAX_PIXELS,
    ImageLoadError,
    decode_image,
    decode_tiles,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import upload_samples as samples  # noqa: E402

GRAY16 = (1, 16, 16)


def _png(array: np.ndarray) -> bytes:
    return samples.encode(Image.fromarray(array), "PNG")


def test_tiles_are_native_pixels_in_the_models_channels():
    rgb = samples.smooth_rgb(70, 100, seed=1)  # (H, W, 3)
    tiled = decode_tiles(_png(rgb), "photo.png", GRAY16)
    assert tiled.grid_shape == (4, 6) and tiled.tiles.shape == (24, 1, 16, 16)
    assert (tiled.height, tiled.width, tiled.stride) == (70, 100, 16)
    gray = rgb_to_gray(rgb.transpose(2, 0, 1))  # (1, H, W), PIL-exact luma
    for k in (0, 7, 23):
        top, left = tiled.tops[k], tiled.lefts[k]
        np.testing.assert_array_equal(tiled.tiles[k], gray[:, top : top + 16, left : left + 16])
    assert tiled.tops.tolist()[:7] == [0, 0, 0, 0, 0, 0, 16]
    rgb_tiles = decode_tiles(_png(rgb), "photo.png", (3, 16, 16))
    np.testing.assert_array_equal(rgb_tiles.tiles[0], rgb.transpose(2, 0, 1)[:, :16, :16])


def test_a_large_image_is_tiled_at_native_resolution_not_from_the_reduced_decode():
    side = 2400  # above the 2048 x 2048 decode cap of decode_upload
    assert side * side > DEFAULT_MAX_DECODED_PIXELS
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (side, side), dtype=np.uint8)
    data = _png(gray)
    assert decode_image(data).width < side  # the ordinary decode is reduced
    tiled = decode_tiles(data, "big.png", GRAY16, max_tiles=100)
    assert tiled.tiles.shape[0] <= 100 and tiled.stride % 16 == 0 and tiled.stride > 16
    k = len(tiled.tiles) - 1
    top, left = tiled.tops[k], tiled.lefts[k]
    np.testing.assert_array_equal(tiled.tiles[k, 0], gray[top : top + 16, left : left + 16])
    assert max(tiled.preview.shape[1:]) <= 768
    assert any("tiles of 16x16 native pixels" in note for note in tiled.notes)


def test_too_small_for_one_tile_and_arrays():
    with pytest.raises(ImageLoadError, match="smaller than one 16x16 tile"):
        decode_tiles(_png(samples.smooth_rgb(10, 40)), "small.png", GRAY16)
    array = np.arange(48 * 32, dtype=np.uint8).reshape(48, 32) % 251
    tiled = decode_tiles(samples.npy(array), "a.npy", GRAY16)
    assert tiled.grid_shape == (3, 2)
    np.testing.assert_array_equal(tiled.tiles[5, 0], array[32:48, 16:32])


def test_oversized_image_message_quotes_the_apps_limit(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", DEFAULT_MAX_PIXELS)  # as app/main.py sets it
    with pytest.raises(ImageLoadError) as info:
        decode_image(samples.png_bomb())  # 10^10 pixels: Pillow refuses it first
    message = str(info.value)
    assert f"{DEFAULT_MAX_PIXELS / 1e6:.0f} megapixels" in message
    assert f"{2 * DEFAULT_MAX_PIXELS}" not in message and "80" not in message


def test_logp_map_scores_every_tile(tiny_model):
    tiled = decode_tiles(_png(samples.smooth_rgb(40, 60, seed=2)), "p.png", GRAY16)
    calls = []
    result = logp_map(tiny_model, tiled, batch_size=4, progress=lambda d, t: calls.append((d, t)))
    expected = dc.logp_db(tiny_model, torch.cat([tile_tensor(tiled, k) for k in range(6)]))
    assert result.logp_db.shape == tiled.grid_shape == (2, 3)
    np.testing.assert_allclose(result.logp_db.ravel(), expected.numpy(), rtol=1e-6)
    assert result.logp_db.ravel()[result.order[0]] == result.logp_db.max()
    assert calls[-1] == (6, 6)
