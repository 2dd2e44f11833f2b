"""Image files as a user might upload them, good and bad, built in memory (shared by tests)."""

import io
import struct
import zlib

import numpy as np
from PIL import Image


def smooth_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth-ish RGB image (H, W, 3) uint8: upsampled noise, like a blurry photo."""
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(low).resize((width, height), Image.Resampling.BICUBIC))


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def png_rgb(height: int = 48, width: int = 64, seed: int = 0) -> bytes:
    return encode(Image.fromarray(smooth_rgb(height, width, seed)), "PNG")


def png_gray(height: int = 40, width: int = 40, seed: int = 0) -> bytes:
    return encode(Image.fromarray(smooth_rgb(height, width, seed)).convert("L"), "PNG")


def jpeg_rgb(height: int = 48, width: int = 48) -> bytes:
    return encode(Image.fromarray(smooth_rgb(height, width)), "JPEG", quality=95)


def png_rgba(size: int = 32) -> bytes:
    """Left half opaque black, right half fully transparent black (white after compositing)."""
    rgba = np.zeros((size, size, 4), dtype=np.uint8)
    rgba[:, : size // 2, 3] = 255
    return encode(Image.fromarray(rgba, mode="RGBA"), "PNG")


def png_palette(size: int = 32) -> bytes:
    return encode(
        Image.fromarray(smooth_rgb(size, size)).convert("P", palette=Image.ADAPTIVE), "PNG"
    )


def png_16bit(size: int = 32) -> bytes:
    """A 16-bit grayscale ramp 0..65535 (mode I;16)."""
    ramp = np.linspace(0, 65535, size * size).reshape(size, size).astype(np.uint16)
    image = Image.fromarray(ramp)  # uint16 -> mode "I;16"
    assert image.mode == "I;16", image.mode
    return encode(image, "PNG")


def jpeg_cmyk(size: int = 32) -> bytes:
    return encode(Image.fromarray(smooth_rgb(size, size)).convert("CMYK"), "JPEG", quality=95)


def jpeg_exif_rotated(height: int = 24, width: int = 40) -> bytes:
    """A landscape JPEG whose EXIF orientation (6) says to rotate it into portrait."""
    image = Image.fromarray(smooth_rgb(height, width))
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(image, "JPEG", exif=exif.tobytes(), quality=95)


def gif_animated(size: int = 32) -> bytes:
    """Two frames: white then black."""
    frames = [Image.new("L", (size, size), 255), Image.new("L", (size, size), 0)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def png_truncated() -> bytes:
    data = png_rgb(64, 64)
    return data[: len(data) // 2]


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit gray
    pixels = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def not_an_image() -> bytes:
    return b"this is a text file, not an image\n" * 10


def npz_stack(n: int = 3, size: int = 20) -> bytes:
    rng = np.random.default_rng(1)
    buffer = io.BytesIO()
    np.savez(buffer, images=rng.integers(0, 256, size=(n, size, size), dtype=np.uint8))
    return buffer.getvalue()


def npz_object() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, images=np.array([{"a": 1}, None], dtype=object))
    return buffer.getvalue()
