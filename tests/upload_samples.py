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


# ------------------------------------------------------------------ kinds from issue 14 (uploads)


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def jpeg_exif(orientation: int, height: int = 24, width: int = 40) -> bytes:
    """A JPEG with the given EXIF orientation tag (valid: 1-8)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(Image.fromarray(smooth_rgb(height, width)), "JPEG", exif=exif.tobytes())


def npz_with_zip_field(offset_local: int, offset_central: int, value: int, width: int) -> bytes:
    """An .npz whose zip headers have one field overwritten (flags: encryption; method: 99)."""
    buffer = io.BytesIO()
    np.savez(buffer, images=np.zeros((2, 8, 8), dtype=np.uint8))
    data = bytearray(buffer.getvalue())
    fmt = "<H" if width == 2 else "<I"
    for signature, offset in ((b"PK\x03\x04", offset_local), (b"PK\x01\x02", offset_central)):
        start = data.index(signature)
        data[start + offset : start + offset + width] = struct.pack(fmt, value)
    return bytes(data)


def npz_encrypted_flag() -> bytes:
    """General-purpose flag bit 0 (encrypted) set, as an encrypting zip tool writes it."""
    return npz_with_zip_field(6, 8, 0x0001, 2)


def npz_unsupported_compression() -> bytes:
    """Compression method 99 (AES), which Python's zipfile cannot read."""
    return npz_with_zip_field(8, 10, 99, 2)


def icc_swapped_red_green() -> bytes:
    """An RGB ICC profile: Pillow's sRGB with the red and green colorant tags swapped, so a pure
    red value in it is sRGB's green."""
    from PIL import ImageCms

    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    count = struct.unpack(">I", profile[128:132])[0]
    tags = {}
    for i in range(count):
        signature, offset, size = struct.unpack(">4sII", profile[132 + 12 * i : 144 + 12 * i])
        tags[signature] = (132 + 12 * i, offset, size)
    (red_entry, *red), (green_entry, *green) = tags[b"rXYZ"], tags[b"gXYZ"]
    profile[red_entry + 4 : red_entry + 12] = struct.pack(">II", *green)
    profile[green_entry + 4 : green_entry + 12] = struct.pack(">II", *red)
    return bytes(profile)


def png_with_icc(pixels: np.ndarray, icc: bytes) -> bytes:
    return encode(Image.fromarray(pixels), "PNG", icc_profile=icc)


def png_large(side: int, seed: int = 0) -> bytes:
    """A side x side RGBA PNG that compresses well (a few KB per megapixel): flat colour with a
    seed-dependent corner patch, so each seed is a distinct file."""
    rgba = np.full((side, side, 4), 200, dtype=np.uint8)
    rgba[:16, :16] = np.random.default_rng(seed).integers(0, 256, (16, 16, 4), dtype=np.uint8)
    return encode(Image.fromarray(rgba, mode="RGBA"), "PNG", compress_level=1)
