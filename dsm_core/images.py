"""User-supplied images -> the model's input shape: safe decoding, channel conversion, fitting.

An upload (PNG, JPEG, WebP, TIFF, BMP, GIF bytes, or a .npy/.npz array) is decoded to uint8
(C, H, W) with C = 1 or 3 (:func:`decode_upload`), then fitted to the model's (C, R, R)
(:func:`fit_to_model`). The pixel conversions are those of ``dsm_core.data`` (first frame, EXIF
orientation, transparency composited on white, 16-bit rescaled, CMYK/palette to RGB, PIL-exact
luma, crop-then-Lanczos resize), so an uploaded photo is prepared like the training images.
Every step that changed the image is described in plain words in ``notes``.

Limits: the pixel count is read from the file header and checked before any pixel is decoded,
so a decompression bomb (a small file claiming huge dimensions) is refused at once; arrays are
checked from their .npy header the same way. Nothing is ever unpickled.
"""

import io
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from dsm_core.data.dataset import center_crop_box, resize_images, rgb_to_gray
from dsm_core.data.readers import (
    IMAGE_EXTENSIONS,
    npz_member_shape,
    read_array,
    to_8bit_gray_or_rgb,
)

DEFAULT_MAX_PIXELS = 40_000_000  # 40 megapixels: a large photo, ~120 MB as RGB uint8
DEFAULT_MAX_ARRAY_ELEMENTS = 16_000_000  # values in an uploaded .npy/.npz array
ARRAY_SUFFIXES = (".npy", ".npz")
IMAGE_SUFFIXES: tuple[str, ...] = tuple(sorted(IMAGE_EXTENSIONS))  # what Pillow reads here
FitMode = Literal["resize", "crop"]
SmallPolicy = Literal["pad", "upscale", "refuse"]
FIT_MODES: tuple[str, ...] = ("resize", "crop")
SMALL_POLICIES: tuple[str, ...] = ("pad", "upscale", "refuse")

_EXIF_ORIENTATION = 0x0112


class ImageLoadError(ValueError):
    """An upload that cannot be used as an image; the message says why, for the user."""


@dataclass(frozen=True)
class DecodedImage:
    """A decoded upload, before fitting to the model.

    Attributes:
        pixels: uint8 (C, H, W), C = 1 (gray) or 3 (RGB).
        source_format: "PNG", "JPEG", ..., or "npy" / "npz".
        source_mode: the PIL mode as stored ("RGBA", "I;16", "P", "CMYK", ...) or the array dtype.
        num_frames: frames in the file (animations, multi-page TIFF) or images in the array.
        frame: which frame or array image was taken.
        notes: what was done to read it, in words.
    """

    pixels: np.ndarray
    source_format: str
    source_mode: str
    num_frames: int
    frame: int
    notes: tuple[str, ...]

    @property
    def height(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[2])


@dataclass(frozen=True)
class FittedImage:
    """An image in the model's shape.

    Attributes:
        pixels: uint8 (C, R, R), the model's channels and resolution.
        notes: the steps from the decoded image, in words.
        padded: whether pixels were invented by mirror padding (the image was too small).
    """

    pixels: np.ndarray
    notes: tuple[str, ...]
    padded: bool

    def tensor(self) -> torch.Tensor:
        """The image as the model's input x: float32 (1, C, R, R) in [0, 1]."""
        return pixels_to_tensor(self.pixels[None])


def pixels_to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float32 (B, C, H, W) in [0, 1] (value / 255)."""
    if pixels.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels, got {pixels.dtype}")
    return torch.from_numpy(np.ascontiguousarray(pixels)).to(torch.float32).div_(255.0)


def tensor_to_pixels(x: torch.Tensor) -> np.ndarray:
    """float (..., C, H, W) in [0, 1] -> uint8, clipped and rounded (for display and files)."""
    values = x.detach().cpu().double().clamp(0.0, 1.0).mul(255.0).round()
    return values.to(torch.uint8).numpy()


def thumbnail(pixels: np.ndarray, max_side: int) -> np.ndarray:
    """uint8 (C, H, W) -> (h, w) or (h, w, 3) no larger than ``max_side`` (for display only)."""
    image = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0))
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return np.asarray(image)


# ------------------------------------------------------------------------------------- decoding


def _pil_notes(image: Image.Image) -> list[str]:
    """Words for the conversions ``to_8bit_gray_or_rgb`` will apply to this mode."""
    mode = image.mode
    if "transparency" in image.info or mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        return [f"{mode} image with transparency: composited on a white background"]
    if mode in ("L", "RGB"):
        return []
    if mode == "1":
        return ["1-bit image: black and white as 0 and 255"]
    if mode.startswith("I"):
        return [f"{mode} (16/32-bit) image: rescaled to 8 bits (value * 255 / 65535)"]
    if mode == "F":
        return ["floating-point image: values in [0, 1] scaled to 8 bits"]
    if mode == "P":
        return ["palette image: expanded to RGB"]
    return [f"{mode} image: converted to RGB"]


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode image-file bytes to uint8 (C, H, W), refusing oversized or broken files.

    The first frame of an animation or multi-page file is used, the EXIF orientation applied,
    and the pixels converted by ``dsm_core.data.to_8bit_gray_or_rgb``.

    Args:
        data: the file's bytes (any format Pillow reads: PNG, JPEG, WebP, TIFF, BMP, GIF, ...).
        max_pixels: refuse images with more pixels (width * height) than this, read from the
            header before decoding.

    Returns:
        A ``DecodedImage``.

    Raises:
        ImageLoadError: not an image, truncated/corrupt, too large, or values out of range.
    """
    if not data:
        raise ImageLoadError("the file is empty")
    try:
        opened = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(
            f"refused: the image is far too large to decode safely ({exc})"
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageLoadError(
            "not an image file Pillow can read (expected PNG, JPEG, WebP, TIFF, BMP or GIF)"
        ) from exc
    except Exception as exc:  # broken headers make plugins raise many types
        raise ImageLoadError(f"cannot read the image header ({type(exc).__name__}: {exc})") from exc
    with opened:
        width, height = opened.size
        if width < 1 or height < 1:
            raise ImageLoadError(f"the image has no pixels ({width}x{height})")
        if width * height > max_pixels:
            raise ImageLoadError(
                f"refused: {width}x{height} = {width * height / 1e6:.0f} megapixels is more than "
                f"the limit of {max_pixels / 1e6:.0f} megapixels (a decompression bomb, or simply "
                "too large); downscale it first"
            )
        source_format = opened.format or "image"
        source_mode = opened.mode
        notes = [f"{source_format} {width}x{height}, mode {source_mode}"]
        try:
            num_frames = int(getattr(opened, "n_frames", 1))
            if num_frames > 1:
                opened.seek(0)
                notes.append(f"{num_frames} frames: using the first")
            orientation = opened.getexif().get(_EXIF_ORIENTATION, 1)
            image = ImageOps.exif_transpose(opened)
            if orientation not in (1, None):
                notes.append(f"EXIF orientation {orientation}: rotated/flipped upright")
            notes.extend(_pil_notes(image))
            image = to_8bit_gray_or_rgb(image)
            image.load()
            pixels = np.asarray(image)
        except Image.DecompressionBombError as exc:
            raise ImageLoadError(f"refused: the image is too large to decode ({exc})") from exc
        except ValueError as exc:
            raise ImageLoadError(f"unusable pixel values: {exc}") from exc
        except Exception as exc:  # truncated data: OSError; corrupt streams: many types
            raise ImageLoadError(
                f"the file is truncated or corrupt ({type(exc).__name__}: {exc})"
            ) from exc
    pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)  # (C, H, W)
    return DecodedImage(
        pixels=np.ascontiguousarray(pixels),
        source_format=source_format,
        source_mode=source_mode,
        num_frames=num_frames,
        frame=0,
        notes=tuple(notes),
    )


def _npy_header_shape(file: io.BufferedIOBase) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(file)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(file)
    else:
        shape, _, dtype = np.lib.format.read_array_header_2_0(file)
    return tuple(shape), dtype


def _array_member_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Shapes of the arrays in a .npy (key "") or .npz file, from headers only."""
    if path.suffix == ".npy":
        with open(path, "rb") as file:
            shape, _ = _npy_header_shape(file)
        return {"": shape}
    with zipfile.ZipFile(path) as archive:
        members = [name[:-4] for name in archive.namelist() if name.endswith(".npy")]
    return {member: npz_member_shape(path, member) or () for member in members}


def _is_single_image(shape: tuple[int, ...]) -> bool:
    """(H, W) or (H, W, C) with C = 1 or 3 (and H not 1 or 3) is one image; 3-D arrays otherwise
    are stacks of N gray images (N, H, W), as ``read_array`` reads them."""
    return len(shape) == 2 or (len(shape) == 3 and shape[2] in (1, 3) and shape[0] not in (1, 3))


def decode_array(
    data: bytes,
    suffix: str,
    *,
    index: int = 0,
    max_elements: int = DEFAULT_MAX_ARRAY_ELEMENTS,
) -> DecodedImage:
    """One image of an uploaded .npy/.npz array, read with ``dsm_core.data.read_array``.

    Accepted: (N, H, W), (N, H, W, C) or (N, C, H, W) with C = 1 or 3, or a single image
    (H, W), (H, W, C), (C, H, W); uint8, integers in [0, 255], or floats in [0, 1]. A .npz with
    several arrays uses "images", "x", "data" or "arr_0". Object (pickled) arrays are refused.

    Args:
        data: the file's bytes.
        suffix: ".npy" or ".npz".
        index: which image of the array.
        max_elements: refuse arrays with more values than this (checked from the header).

    Raises:
        ImageLoadError: with the reason.
    """
    suffix = suffix.lower()
    if suffix not in ARRAY_SUFFIXES:
        raise ImageLoadError(f"expected a .npy or .npz file, got {suffix!r}")
    with tempfile.TemporaryDirectory(prefix="dsm_upload_") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(data)
        try:
            shapes = _array_member_shapes(path)
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
            raise ImageLoadError(f"not a readable {suffix} file ({exc})") from exc
        if not shapes:
            raise ImageLoadError(f"the {suffix} file holds no arrays")
        biggest = max(int(np.prod(s)) for s in shapes.values())
        if biggest > max_elements:
            raise ImageLoadError(
                f"refused: an array of {biggest:,} values is more than the limit of "
                f"{max_elements:,}; upload fewer or smaller images"
            )
        try:
            if len(shapes) == 1 and _is_single_image(next(iter(shapes.values()))):
                # one image: give it a batch axis, then read it like a stack
                if suffix == ".npy":
                    array = np.load(path, allow_pickle=False)
                else:
                    with np.load(path, allow_pickle=False) as archive:
                        array = archive[archive.files[0]]
                path = Path(tmp) / "single.npy"
                np.save(path, array[None], allow_pickle=False)
            dataset = read_array(path)
        except ValueError as exc:
            raise ImageLoadError(str(exc).replace(f"{tmp}/", "")) from exc
        except Exception as exc:
            raise ImageLoadError(f"cannot read the array ({type(exc).__name__}: {exc})") from exc
        if not 0 <= index < len(dataset):
            raise ImageLoadError(f"image {index} does not exist; the array holds {len(dataset)}")
        pixels = dataset[index]  # (C, H, W) uint8, a copy
    c, h, w = pixels.shape
    notes = [f"array of {len(dataset)} image(s) of {c}x{h}x{w}: using image {index}"]
    return DecodedImage(
        pixels=np.ascontiguousarray(pixels),
        source_format=suffix[1:],
        source_mode=str(dataset.name),
        num_frames=len(dataset),
        frame=index,
        notes=tuple(notes),
    )


def decode_upload(
    data: bytes,
    name: str,
    *,
    index: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_elements: int = DEFAULT_MAX_ARRAY_ELEMENTS,
) -> DecodedImage:
    """Decode an uploaded file by its name: .npy/.npz arrays, anything else as an image file."""
    suffix = Path(name).suffix.lower()
    if suffix in ARRAY_SUFFIXES:
        return decode_array(data, suffix, index=index, max_elements=max_elements)
    return decode_image(data, max_pixels=max_pixels)


# -------------------------------------------------------------------------------------- fitting


def _mirror_pad(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pad (C, h, w) to at least (C, height, width), centred, by mirror reflection."""
    _, h, w = pixels.shape
    dh, dw = max(height - h, 0), max(width - w, 0)
    pad = ((0, 0), (dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2))
    return np.pad(pixels, pad, mode="symmetric")


def fit_to_model(
    pixels: np.ndarray,
    image_shape: tuple[int, int, int],
    *,
    fit: FitMode = "resize",
    small: SmallPolicy = "pad",
) -> FittedImage:
    """Bring a uint8 (C, H, W) image to the model's (C', R, R).

    ``fit="resize"``: the centred square of the short side, resized to R x R with Lanczos
    antialiasing (``dsm_core.data.resize_images``, as for the training crops). ``fit="crop"``:
    the central R x R pixels at the original scale (a detail of a large photo).

    An image whose side (the square's side for "resize") is below R is handled by ``small``:
    "pad" mirrors it outward to R (no invented detail, but the mirrored copies are repetitive
    and change log p), "upscale" enlarges it with Lanczos (smooth, so log p goes up), "refuse"
    raises.

    Channels: RGB -> luma (PIL-exact) for a grayscale model, gray -> three equal channels for a
    colour model, after resizing (as the training pipeline does).

    Raises:
        ImageLoadError: for ``small="refuse"`` on a small image, or a bad argument.
    """
    if fit not in FIT_MODES:
        raise ImageLoadError(f"unknown fit {fit!r}; use one of {FIT_MODES}")
    if small not in SMALL_POLICIES:
        raise ImageLoadError(f"unknown small-image policy {small!r}; use one of {SMALL_POLICIES}")
    channels, height, width = (int(v) for v in image_shape)
    if height != width:
        raise ImageLoadError(f"only square models are supported, got {height}x{width}")
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[0] not in (1, 3):
        raise ImageLoadError(f"expected uint8 (C, H, W) with C = 1 or 3, got {pixels.shape}")
    size = height
    _, h, w = pixels.shape
    notes: list[str] = []
    padded = False
    short = min(h, w)
    needed = (short < size) if fit == "resize" else (h < size or w < size)
    if needed:
        if small == "refuse":
            raise ImageLoadError(
                f"the image ({w}x{h}) is smaller than the model's {size}x{size}: padding or "
                "upscaling would change its statistics, so it was refused (choose 'pad' or "
                "'upscale' to use it anyway)"
            )
        if small == "pad":
            target = (short, short) if fit == "resize" else (h, w)
            if fit == "resize":  # the centred square first, then pad it to R
                left, upper, right, lower = center_crop_box(w, h, short)
                pixels = pixels[:, upper:lower, left:right]
                if short != max(h, w):
                    notes.append(f"centre square {short}x{short}")
            pixels = _mirror_pad(pixels, size, size)
            padded = True
            notes.append(
                f"smaller than {size}x{size} ({target[1]}x{target[0]}): mirror-padded to "
                f"{pixels.shape[2]}x{pixels.shape[1]} (the padding is part of what the model sees)"
            )
        else:  # upscale so the short side is R, keeping the aspect ratio
            if fit == "crop":
                scale = size / short
                new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
                planes = [
                    np.asarray(
                        Image.fromarray(np.ascontiguousarray(p), mode="L").resize(
                            (new_w, new_h), Image.Resampling.LANCZOS
                        )
                    )
                    for p in pixels
                ]
                pixels = np.stack(planes)
                notes.append(f"smaller than {size}x{size}: upscaled to {new_w}x{new_h} (Lanczos)")
            else:
                notes.append(f"smaller than {size}x{size}: upscaled (Lanczos)")
    _, h, w = pixels.shape
    if fit == "resize":
        if (h, w) != (size, size):
            if h != w:
                notes.append(f"centre square {min(h, w)}x{min(h, w)}")
            pixels = resize_images(pixels[None], size)[0]
            notes.append(f"resized to {size}x{size} (Lanczos, antialiased)")
    elif (h, w) != (size, size):
        left, upper, right, lower = center_crop_box(w, h, size)
        pixels = pixels[:, upper:lower, left:right]
        notes.append(f"central {size}x{size} crop")
    if channels == 1 and pixels.shape[0] == 3:
        pixels = rgb_to_gray(pixels)
        notes.append("RGB -> grayscale (ITU-R 601 luma, as the training data)")
    elif channels == 3 and pixels.shape[0] == 1:
        pixels = np.repeat(pixels, 3, axis=0)
        notes.append("grayscale -> three equal RGB channels")
    elif channels not in (1, 3):
        raise ImageLoadError(f"models with {channels} channels are not supported")
    return FittedImage(np.ascontiguousarray(pixels), tuple(notes), padded)


def prepare_upload(
    data: bytes,
    name: str,
    image_shape: tuple[int, int, int],
    *,
    fit: FitMode = "resize",
    small: SmallPolicy = "pad",
    index: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_elements: int = DEFAULT_MAX_ARRAY_ELEMENTS,
) -> tuple[DecodedImage, FittedImage]:
    """``decode_upload`` then ``fit_to_model``: an uploaded file as the model sees it."""
    decoded = decode_upload(
        data, name, index=index, max_pixels=max_pixels, max_elements=max_elements
    )
    return decoded, fit_to_model(decoded.pixels, image_shape, fit=fit, small=small)
