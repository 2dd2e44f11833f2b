"""Uploads, by kind: array layouts read as the docstring says, every failure one line, ICC
profiles honoured, suffixes matching the decoder, honest notes, and bounded memory."""

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import upload_samples as samples
from PIL import Image, ImageCms

from dsm_core.data import read_image_folder
from dsm_core.images import (
    DEFAULT_MAX_DECODED_PIXELS,
    IMAGE_SUFFIXES,
    ImageLoadError,
    decode_array,
    decode_image,
    decode_upload,
)

RNG = np.random.default_rng(0)


# ------------------------------------------------------------------------------ array layouts


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_a_chw_array_is_one_image(channels, dtype):
    pixels = RNG.integers(0, 256, (channels, 40, 30), dtype=np.uint8)
    array = pixels if dtype == np.uint8 else (pixels / 255).astype(dtype)
    decoded = decode_upload(samples.npy(array), "t.npy")
    assert decoded.num_frames == 1 and np.array_equal(decoded.pixels, pixels)
    assert "(C, H, W)" in decoded.notes[0]


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_an_hwc_rgba_array_is_composited_like_a_png(dtype):
    rgba = RNG.integers(0, 256, (40, 30, 4), dtype=np.uint8)
    array = rgba if dtype == np.uint8 else (rgba / 255).astype(dtype)  # as plt.imread gives
    decoded = decode_upload(samples.npy(array), "rgba.npy")
    as_png = decode_upload(samples.encode(Image.fromarray(rgba, mode="RGBA"), "PNG"), "r.png")
    assert decoded.pixels.shape == (3, 40, 30)
    assert np.abs(decoded.pixels.astype(int) - as_png.pixels).max() <= 1
    assert any("composited on a white background" in n for n in decoded.notes)


def test_a_boolean_mask_is_black_and_white():
    mask = RNG.random((20, 24)) > 0.5
    decoded = decode_upload(samples.npy(mask), "mask.npy")
    assert np.array_equal(decoded.pixels[0], mask * np.uint8(255))
    assert any("False and True as black (0) and white (255)" in n for n in decoded.notes)
    stack = decode_upload(samples.npy(np.stack([mask] * 5)), "masks.npy", index=4)
    assert np.array_equal(stack.pixels[0], mask * np.uint8(255))


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((3, 40, 4), "cannot tell \\(C, H, W\\) from \\(H, W, C\\)"),
        ((4, 40, 40, 4), "C must be 1 or 3"),
        ((40, 40, 2), "neither a channel count \\(1, 3 or 4\\) nor an image width"),
        ((0, 40), "has no pixels"),
        ((40, 0, 3), "has no pixels"),
        ((2, 32, 0), "has no pixels"),
        ((2, 3, 4, 5, 6), "expected images"),
    ],
)
def test_layouts_it_cannot_read_are_refused_in_one_line(shape, message):
    with pytest.raises(ImageLoadError, match=message) as info:
        decode_upload(samples.npy(np.zeros(shape, dtype=np.uint8)), "a.npy")
    assert "\n" not in str(info.value) and "dsm_upload_" not in str(info.value)


# ------------------------------------------------------------------ every failure is one line


def _corruptions(data: bytes, seed: int) -> list[bytes]:
    """Truncations and byte flips of a valid file, spread over its length."""
    rng = np.random.default_rng(seed)
    out = [data[: len(data) * k // 8] for k in range(1, 8)]
    for _ in range(12):
        flipped = bytearray(data)
        for position in rng.integers(0, len(data), 3):
            flipped[position] ^= int(rng.integers(1, 256))
        out.append(bytes(flipped))
    return out


def _zip_variants() -> list[bytes]:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:  # np.savez_compressed
        archive.writestr("images.npy", samples.npy(np.zeros((2, 8, 8), dtype=np.uint8)))
    return [
        samples.npz_encrypted_flag(),
        samples.npz_unsupported_compression(),
        buffer.getvalue(),
    ]


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("a.png", samples.png_rgb()),
        ("a.jpg", samples.jpeg_rgb()),
        ("a.gif", samples.gif_animated()),
        ("a.npy", samples.npy(np.zeros((5, 8, 8), dtype=np.float32))),
        ("a.npz", _zip_variants()[2]),
    ],
)
def test_damaged_files_give_one_line_errors_only(name, data):
    for seed, damaged in enumerate(_corruptions(data, seed=len(name))):
        try:
            decode_upload(damaged, name)
        except ImageLoadError as exc:
            message = str(exc)
            assert message and "\n" not in message, (seed, message)
            assert "dsm_upload_" not in message and "/tmp" not in message, message
            assert "upload.np" not in message, message  # the server's copy of the file


def _npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


ARRAY_FAULTS = {
    "object": (samples.npz_object(), "object array"),
    "several arrays": (_npz(a=np.zeros((2, 8, 8)), b=np.zeros((2, 8, 8))), "several arrays"),
    "floats above 1": (samples.npy(np.full((5, 8, 8), 7.5)), "float values in"),
    "non-finite": (samples.npy(np.full((5, 8, 8), np.nan)), "non-finite values"),
    "1-d": (samples.npy(np.zeros(10)), "expected images"),
    "complex": (samples.npy(np.zeros((5, 8, 8), complex)), "unsupported dtype"),
}


@pytest.mark.parametrize("name", ["holiday.NPY", "my_upload.npz"])
@pytest.mark.parametrize("fault", ARRAY_FAULTS)
def test_array_errors_name_the_users_file_not_the_servers_copy(fault, name):
    """The readers name the file they read, which is a temporary copy ("upload.npy")."""
    data, message = ARRAY_FAULTS[fault]
    suffix = ".npz" if data[:2] == b"PK" else ".npy"
    name = Path(name).stem + suffix
    with pytest.raises(ImageLoadError, match=message) as info:
        decode_upload(data, name)
    text = str(info.value)
    assert f"{name}:" in text and text.count(name) == 1, text  # "my_upload" not replaced again
    assert "dsm_upload_" not in text and "/tmp" not in text and "\n" not in text, text
    assert text.replace(name, "").count("upload.") == 0, text


def test_unnamed_array_errors_say_the_file_and_stacks_keep_the_users_name():
    with pytest.raises(ImageLoadError, match=r"\(ValueError: the file: non-finite values\)"):
        decode_array(ARRAY_FAULTS["non-finite"][0], ".npy")
    decoded = decode_upload(samples.npz_stack(5), "scans.npz")
    assert decoded.num_frames == 5 and decoded.source_mode == "array:scans.npz"


@pytest.mark.parametrize("data", _zip_variants()[:2], ids=["encrypted", "compression-99"])
def test_unreadable_archives_say_so(data):
    with pytest.raises(ImageLoadError, match="not a readable .npz file") as info:
        decode_upload(data, "x.npz")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["empty.png", "empty.JPG", "empty.npy", "empty.npz"])
def test_empty_files_say_so(name):
    with pytest.raises(ImageLoadError, match="the file is empty"):
        decode_upload(b"", name)


def test_streamlit_deployments_hide_error_details():
    import tomllib

    config = tomllib.loads((Path(__file__).parents[1] / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showErrorDetails"] in ("none", False)


# ----------------------------------------------------------------------------------- ICC


def test_an_embedded_profile_is_converted_to_srgb():
    pure = np.zeros((8, 8, 3), dtype=np.uint8)
    pure[..., 0] = 255  # pure red in the file's space: sRGB's green under the swapped profile
    decoded = decode_upload(samples.png_with_icc(pure, samples.icc_swapped_red_green()), "c.png")
    assert decoded.pixels[:, 0, 0].tolist() == [0, 255, 0]
    assert any("converted from the embedded ICC profile" in n for n in decoded.notes)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    colours = RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    same = decode_upload(samples.png_with_icc(colours, srgb), "s.png")
    assert np.abs(same.pixels.astype(int) - colours.transpose(2, 0, 1)).max() <= 1


def test_an_unreadable_profile_falls_back_with_a_note():
    colours = RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    decoded = decode_upload(samples.png_with_icc(colours, b"not a profile" * 20), "b.png")
    assert np.array_equal(decoded.pixels, colours.transpose(2, 0, 1))
    assert any("ICC profile unreadable" in n and "values used as sRGB" in n for n in decoded.notes)


# -------------------------------------------------------------------------- suffixes and notes


def _format_of(suffix: str) -> str:
    return Image.registered_extensions()[suffix]


@pytest.mark.parametrize("suffix", IMAGE_SUFFIXES)
def test_every_accepted_suffix_decodes_in_any_case(suffix, tmp_path):
    pixels = samples.smooth_rgb(20, 24)
    data = samples.encode(Image.fromarray(pixels), _format_of(suffix))
    for name in (f"a{suffix}", f"a{suffix.upper()}", f"a{suffix[:2].upper()}{suffix[2:]}"):
        assert decode_upload(data, name).pixels.shape == (3, 20, 24)
        (tmp_path / name).write_bytes(data)
    assert len(read_image_folder(tmp_path, resolution=16)) == 3  # the folder reader agrees


@pytest.mark.parametrize("name", ["a.eps", "a.ico", "a.pdf", "a.PSD", "noext"])
def test_other_suffixes_are_refused_naming_the_accepted_ones(name):
    data = samples.encode(Image.fromarray(samples.smooth_rgb(16, 16)), "PNG")
    with pytest.raises(ImageLoadError, match="unsupported file type .*accepted: .*\\.png"):
        decode_upload(data, name)


def test_only_the_listed_formats_are_opened():
    """A file in a format outside the list is refused even under an accepted name."""
    data = samples.encode(Image.fromarray(samples.smooth_rgb(16, 16)), "ICO")
    with pytest.raises(ImageLoadError, match="not an image file this app reads"):
        decode_upload(data, "disguised.png")


@pytest.mark.parametrize("orientation", [0, 9, 255])
def test_invalid_exif_orientations_rotate_nothing_and_say_so(orientation):
    data = samples.jpeg_exif(orientation)
    plain = decode_upload(samples.jpeg_exif(1), "p.jpg")
    decoded = decode_upload(data, "x.jpg")
    assert np.array_equal(decoded.pixels, plain.pixels)
    assert not any("rotated" in n and "not" not in n for n in decoded.notes), decoded.notes
    assert any(f"orientation {orientation} is not a valid value" in n for n in decoded.notes)


@pytest.mark.parametrize("orientation", range(2, 9))
def test_valid_exif_orientations_are_applied(orientation):
    decoded = decode_upload(samples.jpeg_exif(orientation), "x.jpg")
    portrait = orientation in (5, 6, 7, 8)
    assert decoded.pixels.shape[1:] == ((40, 24) if portrait else (24, 40))
    assert any(f"EXIF orientation {orientation}: rotated" in n for n in decoded.notes)


# ----------------------------------------------------------------------------------- memory


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_large_images_are_downscaled_while_decoding(fmt):
    image = Image.new("RGB", (3000, 2000), (10, 200, 30))
    data = samples.encode(image, fmt)
    decoded = decode_image(data, max_decoded_pixels=250_000)
    _, h, w = decoded.pixels.shape
    assert h * w <= 250_000 and abs(w / h - 1.5) < 0.02
    assert any("downscaled from 3000x2000" in n for n in decoded.notes)
    assert np.abs(decoded.pixels[:, h // 2, w // 2].astype(int) - [10, 200, 30]).max() <= 3


DECODE_MANY = """
import json, resource, sys
from pathlib import Path
from dsm_core.images import decode_upload
files = [Path(p).read_bytes() for p in sys.argv[1:]]
def rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
before = rss_mib()
kept = [decode_upload(data, "big.png") for data in files]  # the results are all kept
print(json.dumps({"before": before, "after": rss_mib(),
                  "kept_bytes": sum(d.pixels.nbytes for d in kept)}))
"""


def test_peak_memory_of_large_uploads_is_bounded(tmp_path):
    """N distinct 4000x4000 RGBA PNGs (61 MiB each decoded): the process's peak grows by one
    full-size decode plus bounded working copies, whatever N (~7 full sizes per image before)."""
    side, num = 4000, 4
    paths = []
    for seed in range(num):
        paths.append(tmp_path / f"big{seed}.png")
        paths[-1].write_bytes(samples.png_large(side, seed))
    result = subprocess.run(
        [sys.executable, "-c", DECODE_MANY, *map(str, paths)],
        capture_output=True,
        text=True,
        check=True,
    )
    rss = json.loads(result.stdout)
    assert rss["kept_bytes"] <= num * DEFAULT_MAX_DECODED_PIXELS * 3
    # one full-size decode at a time, plus working copies at the capped size (RGBA strips,
    # premultiplied copies, compositing: six 4-byte images of DEFAULT_MAX_DECODED_PIXELS), plus
    # what is kept
    bound = side * side * 4 + 6 * DEFAULT_MAX_DECODED_PIXELS * 4 + rss["kept_bytes"]
    assert (rss["after"] - rss["before"]) * 2**20 < bound, (rss, bound / 2**20)
