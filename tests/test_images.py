"""dsm_core.images: uploads decoded safely and fitted to the model like the training data."""

import io
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import upload_samples as samples

from dsm_core.data import load_image_file
from dsm_core.images import (
    ImageLoadError,
    decode_array,
    decode_image,
    decode_upload,
    fit_to_model,
    pixels_to_tensor,
    prepare_upload,
    tensor_to_pixels,
    thumbnail,
)

GRAY32 = (1, 32, 32)


def test_rgb_png_decodes_exactly() -> None:
    decoded = decode_image(samples.png_rgb(48, 64))
    assert decoded.pixels.shape == (3, 48, 64) and decoded.pixels.dtype == np.uint8
    assert np.array_equal(decoded.pixels.transpose(1, 2, 0), samples.smooth_rgb(48, 64))
    assert decoded.source_format == "PNG" and decoded.num_frames == 1


def test_rgba_is_composited_on_white() -> None:
    decoded = decode_image(samples.png_rgba(32))
    assert decoded.pixels.shape == (3, 32, 32)
    assert (decoded.pixels[:, :, :16] == 0).all() and (decoded.pixels[:, :, 16:] == 255).all()
    assert any("composited" in note for note in decoded.notes)


def test_sixteen_bit_is_rescaled_to_eight() -> None:
    decoded = decode_image(samples.png_16bit(32))
    ramp = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.int64)
    assert decoded.pixels.shape == (1, 32, 32)
    assert np.array_equal(decoded.pixels[0], ((ramp * 255 + 32767) // 65535).astype(np.uint8))
    assert any("16" in note for note in decoded.notes)


@pytest.mark.parametrize("data", [samples.png_palette(), samples.jpeg_cmyk()], ids=["P", "CMYK"])
def test_palette_and_cmyk_become_rgb(data: bytes) -> None:
    decoded = decode_image(data)
    assert decoded.pixels.shape == (3, 32, 32)
    assert decoded.source_mode in ("P", "CMYK")
    assert any("RGB" in note for note in decoded.notes)


def test_exif_orientation_is_applied() -> None:
    decoded = decode_image(samples.jpeg_exif_rotated(24, 40))
    assert decoded.pixels.shape == (3, 40, 24)  # rotated from landscape to portrait
    assert any("EXIF" in note for note in decoded.notes)


def test_animation_uses_the_first_frame() -> None:
    decoded = decode_image(samples.gif_animated(32))
    assert decoded.num_frames == 2 and (decoded.pixels == 255).all()
    assert any("first" in note for note in decoded.notes)


@pytest.mark.parametrize(
    "data, message",
    [
        (samples.not_an_image(), "not an image"),
        (samples.png_truncated(), "truncated or corrupt"),
        (b"", "empty"),
    ],
    ids=["text", "truncated", "empty"],
)
def test_broken_files_raise_a_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(ImageLoadError, match=message):
        decode_image(data)


def test_decompression_bomb_is_refused_from_the_header() -> None:
    start = time.perf_counter()
    with pytest.raises(ImageLoadError, match="refused"):
        decode_image(samples.png_bomb())
    assert time.perf_counter() - start < 1.0
    with pytest.raises(ImageLoadError, match="megapixels"):
        decode_image(samples.png_rgb(48, 64), max_pixels=1000)


def test_resize_matches_the_dataset_reader(tmp_path: Path) -> None:
    """An upload is prepared exactly as dsm_core.data.load_image_file prepares a file."""
    data = samples.png_rgb(48, 64)
    (tmp_path / "a.png").write_bytes(data)
    expected = load_image_file(tmp_path / "a.png", 32, mode="resize", grayscale=True)
    fitted = fit_to_model(decode_image(data).pixels, GRAY32, fit="resize")
    assert np.array_equal(fitted.pixels, expected) and not fitted.padded
    expected_crop = load_image_file(tmp_path / "a.png", 32, mode="crop", grayscale=True)
    fitted_crop = fit_to_model(decode_image(data).pixels, GRAY32, fit="crop")
    assert np.array_equal(fitted_crop.pixels, expected_crop)


def test_colour_model_gets_three_equal_channels() -> None:
    fitted = fit_to_model(decode_image(samples.png_gray(40, 40)).pixels, (3, 32, 32))
    assert fitted.pixels.shape == (3, 32, 32)
    assert (fitted.pixels[0] == fitted.pixels[1]).all() and (
        fitted.pixels[1] == fitted.pixels[2]
    ).all()


def test_small_images_are_padded_upscaled_or_refused() -> None:
    small = decode_image(samples.png_gray(12, 20)).pixels  # (1, 12, 20)
    with pytest.raises(ImageLoadError, match="smaller than the model"):
        fit_to_model(small, GRAY32, small="refuse")
    padded = fit_to_model(small, GRAY32, fit="resize", small="pad")
    assert padded.pixels.shape == (1, 32, 32) and padded.padded
    square = small[:, :, 4:16]  # the centred 12 x 12 square
    assert np.array_equal(padded.pixels[:, 10:22, 10:22], square)
    assert any("mirror" in note for note in padded.notes)
    cropped = fit_to_model(small, GRAY32, fit="crop", small="pad")
    assert cropped.pixels.shape == (1, 32, 32)
    assert np.array_equal(cropped.pixels[:, 10:22, 6:26], small)
    upscaled = fit_to_model(small, GRAY32, small="upscale")
    assert upscaled.pixels.shape == (1, 32, 32) and not upscaled.padded
    up_crop = fit_to_model(small, GRAY32, fit="crop", small="upscale")
    assert up_crop.pixels.shape == (1, 32, 32)
    one_pixel = np.full((1, 1, 1), 7, dtype=np.uint8)
    assert (fit_to_model(one_pixel, GRAY32).pixels == 7).all()


def test_fit_argument_errors() -> None:
    pixels = np.zeros((1, 40, 40), dtype=np.uint8)
    with pytest.raises(ImageLoadError, match="unknown fit"):
        fit_to_model(pixels, GRAY32, fit="stretch")  # type: ignore[arg-type]
    with pytest.raises(ImageLoadError, match="policy"):
        fit_to_model(pixels, GRAY32, small="ignore")  # type: ignore[arg-type]
    with pytest.raises(ImageLoadError, match="uint8"):
        fit_to_model(pixels.astype(np.float32), GRAY32)


def _npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_arrays_of_images() -> None:
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 256, size=(5, 20, 20), dtype=np.uint8)  # 5: not a channel count
    decoded = decode_array(_npz(images=stack), ".npz", index=2)
    assert np.array_equal(decoded.pixels[0], stack[2]) and decoded.num_frames == 5
    floats = rng.random((2, 16, 16, 3))
    decoded = decode_upload(_npy(floats), "x.npy", index=1)
    assert np.array_equal(
        decoded.pixels, np.round(floats[1] * 255).astype(np.uint8).transpose(2, 0, 1)
    )
    single = rng.integers(0, 256, size=(20, 24), dtype=np.uint8)
    assert np.array_equal(decode_upload(_npz(x=single), "one.npz").pixels[0], single)
    hwc = rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)
    assert decode_upload(_npy(hwc), "one.npy").pixels.shape == (3, 20, 24)


@pytest.mark.parametrize(
    "data, suffix, message",
    [
        (samples.npz_object(), ".npz", "pickle|object"),
        (_npz(images=np.zeros((2, 8, 8), dtype=np.float64) + 2.0), ".npz", "expected \\[0, 1\\]"),
        (b"PK\x03\x04garbage", ".npz", "not a readable"),
        (_npz(images=np.zeros((2, 8, 8), dtype=np.uint8)), ".npz", "does not exist"),
    ],
    ids=["object", "out-of-range", "garbage", "index"],
)
def test_bad_arrays_raise_a_clear_error(data: bytes, suffix: str, message: str) -> None:
    with pytest.raises(ImageLoadError, match=message):
        decode_array(data, suffix, index=5 if message == "does not exist" else 0)


def test_huge_arrays_are_refused_from_the_header() -> None:
    big = _npz(images=np.zeros((64, 64, 64), dtype=np.uint8))
    with pytest.raises(ImageLoadError, match="limit"):
        decode_array(big, ".npz", max_elements=1000)


def test_prepare_upload_and_tensor_round_trip() -> None:
    decoded, fitted = prepare_upload(samples.jpeg_rgb(), "photo.JPG", GRAY32)
    assert decoded.source_format == "JPEG" and fitted.pixels.shape == GRAY32
    x = fitted.tensor()
    assert x.shape == (1, *GRAY32) and x.dtype == torch.float32 and 0 <= x.min() <= x.max() <= 1
    assert np.array_equal(tensor_to_pixels(x[0]), fitted.pixels)
    assert np.array_equal(tensor_to_pixels(pixels_to_tensor(fitted.pixels[None]))[0], fitted.pixels)
    assert thumbnail(decoded.pixels, 16).shape[:2] == (16, 16)


def test_read_only_pixels_convert_without_touching_the_source() -> None:
    pixels = np.arange(2 * 1 * 4 * 4, dtype=np.uint8).reshape(2, 1, 4, 4)
    pixels.flags.writeable = False  # as np.load(..., mmap_mode="r") gives
    before = pixels.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's non-writable-array warning would fail here
        x = pixels_to_tensor(pixels)
    assert x.dtype == torch.float32 and x.shape == (2, 1, 4, 4)
    assert torch.equal(x * 255.0, torch.from_numpy(pixels.astype(np.float32)))
    x.add_(1.0)  # the tensor owns its memory: the source is unchanged
    assert np.array_equal(pixels, before)
