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
import math
import re
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageCms, UnidentifiedImageError

from dsm_core.data.dataset import center_crop_box, resize_images, rgb_to_gray
from dsm_core.data.readers import (
    IMAGE_EXTENSIONS,
    IMAGE_FORMATS,
    npz_member_shape,
    read_array,
    read_npy_header,
    to_8bit_gray_or_rgb,
    to_uint8,
)

DEFAULT_MAX_PIXELS = 40_000_000  # 40 megapixels in the header: a large photo, refused above
# Larger images are downscaled while decoding: 4.2 megapixels (2048 x 2048), 12.6 MB as RGB.
DEFAULT_MAX_DECODED_PIXELS = 2048 * 2048
DEFAULT_MAX_ARRAY_ELEMENTS = 16_000_000  # values in an uploaded .npy/.npz array
ARRAY_SUFFIXES = (".npy", ".npz")
# What decode_image reads (lower case; names are compared in lower case); the same list filters
# training image folders.
IMAGE_SUFFIXES: tuple[str, ...] = tuple(sorted(IMAGE_EXTENSIONS))
FitMode = Literal["resize", "crop"]
SmallPolicy = Literal["pad", "upscale", "refuse"]
FIT_MODES: tuple[str, ...] = ("resize", "crop")
SMALL_POLICIES: tuple[str, ...] = ("pad", "upscale", "refuse")

_EXIF_ORIENTATION = 0x0112
# The valid EXIF orientations (2-8) and the transposition that makes each upright.
_EXIF_TRANSPOSES = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SRGB = ImageCms.createProfile("sRGB")
_STRIP_PIXELS = 1 << 22  # pixels per strip when reducing a large image


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
    # a float32 copy first: torch warns on a read-only array (e.g. a memory-mapped one)
    return torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)).div_(255.0)


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


def _reduce_while_decoding(
    opened: Image.Image, max_decoded_pixels: int
) -> tuple[Image.Image, list[str]]:
    """Decode the current frame no larger than ``max_decoded_pixels`` (same aspect ratio).

    JPEG is decoded at 1/2, 1/4 or 1/8 scale by the decoder itself (``Image.draft``), so the full
    image never exists in memory; other formats are decoded once at full size (at most the
    header-checked ``max_pixels``) and box-reduced by an integer factor (``Image.reduce``), then
    fitted exactly with a Lanczos thumbnail. The result is what every later step sees.
    (A later tiled reader, e.g. a log p map at native resolution, would take tiles from the
    full-size decode here, before the reduction.)
    """
    width, height = opened.size
    if width * height <= max_decoded_pixels:
        opened.load()
        return opened, []
    scale = math.sqrt(max_decoded_pixels / (width * height))
    target = (max(1, int(width * scale)), max(1, int(height * scale)))
    if opened.format == "JPEG":
        opened.draft(opened.mode, target)  # DCT scaling: decodes at most 8x smaller
    opened.load()
    image = opened
    if image.mode in ("P", "PA") or "transparency" in image.info:  # reduce needs real values
        image = image.convert("RGBA" if image.has_transparency_data else "RGB")
    elif image.mode in ("1", "I;16", "I;16B", "I;16L"):
        image = image.convert("L" if image.mode == "1" else "I")
    factor = min(image.size[0] // target[0], image.size[1] // target[1])
    if factor > 1:
        image = _box_reduce(image, factor)
    if image.size[0] * image.size[1] > max_decoded_pixels:
        image = image.copy() if image is opened else image
        image.thumbnail(target, Image.Resampling.LANCZOS)
    note = (
        f"downscaled from {width}x{height} to {image.size[0]}x{image.size[1]} while decoding "
        f"(limit {max_decoded_pixels:,} pixels; 'crop' sees this scale)"
    )
    return image, [note]


def _box_reduce(image: Image.Image, factor: int) -> Image.Image:
    """``Image.reduce(factor)`` (box average of factor x factor blocks) strip by strip.

    Pillow reduces RGBA and LA through a premultiplied full-size copy; strips of about 4
    megapixels keep that copy small. Edge rows and columns beyond a multiple of ``factor`` are
    dropped.
    """
    width, height = (v // factor * factor for v in image.size)
    out = Image.new(image.mode, (width // factor, height // factor))
    rows = max(1, _STRIP_PIXELS // (width * factor)) * factor
    for top in range(0, height, rows):
        strip = image.crop((0, top, width, min(top + rows, height))).reduce(factor)
        out.paste(strip, (0, top // factor))
    return out


def _to_srgb(image: Image.Image) -> tuple[Image.Image, list[str]]:
    """Convert through an embedded ICC profile to sRGB (Pillow's ImageCms), with a note.

    RGB(A) and CMYK images are converted (alpha kept); other modes, and profiles that cannot be
    read or applied, keep their values, with a note saying so.
    """
    icc = image.info.get("icc_profile")
    if not icc:
        return image, []
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        name = ImageCms.getProfileDescription(source).strip() or "unnamed"
    except (ImageCms.PyCMSError, OSError, TypeError, ValueError) as exc:
        return image, [f"embedded ICC profile unreadable ({exc}): values used as sRGB"]
    if image.mode not in ("RGB", "RGBA", "CMYK"):
        return image, [f"embedded ICC profile {name!r} not applied to a {image.mode} image"]
    output_mode = "RGBA" if image.mode == "RGBA" else "RGB"
    try:
        converted = ImageCms.profileToProfile(
            image, source, _SRGB, outputMode=output_mode, renderingIntent=ImageCms.Intent.PERCEPTUAL
        )
    except (ImageCms.PyCMSError, OSError, ValueError) as exc:
        return image, [
            f"embedded ICC profile {name!r} could not be applied ({exc}): values used as sRGB"
        ]
    converted.info = {k: v for k, v in image.info.items() if k != "icc_profile"}
    return converted, [f"converted from the embedded ICC profile {name!r} to sRGB"]


def decode_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_decoded_pixels: int = DEFAULT_MAX_DECODED_PIXELS,
) -> DecodedImage:
    """Decode image-file bytes to uint8 (C, H, W), refusing oversized or broken files.

    Steps: the header's size is checked against ``max_pixels``; the first frame of an
    animation or multi-page file is decoded, reduced to at most ``max_decoded_pixels`` (JPEG by
    the decoder itself); the EXIF orientation is applied (values 2-8; others leave the image as
    it is); an embedded ICC profile is converted to sRGB; the pixels are converted by
    ``dsm_core.data.to_8bit_gray_or_rgb``. Memory: about ``max_pixels`` x (bytes per pixel of
    the file's mode, at most 4) for non-JPEG files, while decoding; the result is at most
    ``max_decoded_pixels`` x 3 bytes.

    Args:
        data: the file's bytes (PNG, JPEG, WebP, TIFF, BMP or GIF: ``IMAGE_FORMATS``).
        max_pixels: refuse images with more pixels (width * height) than this, read from the
            header before decoding.
        max_decoded_pixels: downscale larger images while decoding (with a note).

    Returns:
        A ``DecodedImage``.

    Raises:
        ImageLoadError: empty, not an image, truncated/corrupt, too large, or values out of range.
    """
    if not data:
        raise ImageLoadError("the file is empty (0 bytes)")
    try:
        opened = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except Image.DecompressionBombError as exc:
        # Pillow refuses at twice its own limit before dsm_core reads the size: say ours
        raise ImageLoadError(
            f"refused: more than the limit of {max_pixels / 1e6:.0f} megapixels (a decompression "
            "bomb, or simply too large); downscale it first"
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageLoadError(
            "not an image file this app reads (expected PNG, JPEG, WebP, TIFF, BMP or GIF)"
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
            mode_notes = _pil_notes(opened)  # the mode as stored, before any conversion
            image, reduced = _reduce_while_decoding(opened, max_decoded_pixels)
            notes.extend(reduced)
            if orientation in _EXIF_TRANSPOSES:
                image = image.transpose(_EXIF_TRANSPOSES[orientation])
                notes.append(f"EXIF orientation {orientation}: rotated/flipped upright")
            elif orientation not in (1, None):
                notes.append(f"EXIF orientation {orientation} is not a valid value: not rotated")
            image, converted = _to_srgb(image)
            notes.extend(converted)
            notes.extend(mode_notes)
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


def _array_member_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Shapes of the arrays in a .npy (key "") or .npz file, from headers only."""
    if path.suffix == ".npy":
        with open(path, "rb") as file:
            shape, _, _ = read_npy_header(file)
        return {"": shape}
    with zipfile.ZipFile(path) as archive:
        members = [name[:-4] for name in archive.namelist() if name.endswith(".npy")]
    return {member: npz_member_shape(path, member) or () for member in members}


_CHANNELS = (1, 3, 4)  # gray, RGB, RGBA
_LAYOUT_WORDS = {"HW": "(H, W), gray", "CHW": "(C, H, W)", "HWC": "(H, W, C)"}


def _single_image_layout(shape: tuple[int, ...]) -> str | None:
    """ "HW", "CHW" or "HWC" for one image, None for a stack of gray images (N, H, W) or 4-D.

    A 3-D array is one image when exactly one of its first and last axes is a channel count
    (1, 3 or 4): (C, H, W) as ``np.save(tensor.numpy())`` writes it, (H, W, C) as Pillow and
    matplotlib do. Both axes channel-like (e.g. (3, 40, 4)) is ambiguous and refused.

    Raises:
        ImageLoadError: for an ambiguous 3-D shape.
    """
    if len(shape) == 2:
        return "HW"
    if len(shape) != 3:
        return None
    first, last = shape[0] in _CHANNELS, shape[2] in _CHANNELS
    if not last and shape[2] < min(_CHANNELS[-1], shape[1]):  # (H, W, 2): no stack is that narrow
        raise ImageLoadError(
            f"an array of shape {shape}: its last axis is neither a channel count (1, 3 or 4) "
            "nor an image width"
        )
    if first and last:
        raise ImageLoadError(
            f"cannot tell (C, H, W) from (H, W, C) for an array of shape {shape}; save one image "
            "as (H, W, C) with C = 1, 3 or 4, or a stack as (N, H, W, C)"
        )
    return "CHW" if first else "HWC" if last else None


def _single_image_pixels(array: np.ndarray, layout: str) -> tuple[np.ndarray, list[str]]:
    """One image array -> uint8 (C, H, W), C = 1 or 3, alpha composited on white, with notes."""
    chw = array[None] if layout == "HW" else array if layout == "CHW" else array.transpose(2, 0, 1)
    notes = [f"one image of shape {array.shape}, read as {_LAYOUT_WORDS[layout]}"]
    if array.dtype == np.bool_:
        notes.append("boolean array: False and True as black (0) and white (255)")
    pixels = to_uint8(np.asarray(chw), "the array")
    if pixels.shape[0] == 4:  # RGBA: composite on white, as for PNG uploads
        rgb, alpha = pixels[:3].astype(np.float64), pixels[3:].astype(np.float64) / 255.0
        pixels = np.round(rgb * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
        notes.append("RGBA array: composited on a white background")
    return np.ascontiguousarray(pixels), notes


def decode_array(
    data: bytes,
    suffix: str,
    *,
    name: str | None = None,
    index: int = 0,
    max_elements: int = DEFAULT_MAX_ARRAY_ELEMENTS,
) -> DecodedImage:
    """One image of an uploaded .npy/.npz array (``allow_pickle=False``).

    One image: (H, W), (C, H, W) or (H, W, C) with C = 1 (gray), 3 (RGB) or 4 (RGBA, composited
    on white); a 3-D array whose first and last axes could both be channels is refused as
    ambiguous. Stacks, read with ``dsm_core.data.read_array``: (N, H, W) with N not a channel
    count, (N, H, W, C) or (N, C, H, W) with C = 1 or 3. Values: uint8, integers in [0, 255],
    floats in [0, 1], or bool (0 and 255). A .npz with several arrays uses "images", "x",
    "data" or "arr_0". Object (pickled) arrays are refused.

    Args:
        data: the file's bytes.
        suffix: ".npy" or ".npz" (any case).
        name: the user's file name, which messages use where the readers name the server's
            temporary copy; None: "the file".
        index: which image of a stack.
        max_elements: refuse arrays with more values than this (checked from the header).

    Raises:
        ImageLoadError: with the reason, in one line.
    """
    suffix = suffix.lower()
    if suffix not in ARRAY_SUFFIXES:
        raise ImageLoadError(f"expected a .npy or .npz file, got {suffix!r}")
    if not data:
        raise ImageLoadError("the file is empty (0 bytes)")
    with tempfile.TemporaryDirectory(prefix="dsm_upload_") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(data)
        shown = "the file" if name is None else name
        try:
            shapes = _array_member_shapes(path)
        except Exception as exc:  # bad zip, bad header, encryption, unknown compression, ...
            raise ImageLoadError(
                f"not a readable {suffix} file ({_one_line(exc, path, shown)})"
            ) from exc
        if not shapes:
            raise ImageLoadError(f"the {suffix} file holds no arrays")
        for member, shape in shapes.items():
            if len(shape) and 0 in shape:
                raise ImageLoadError(
                    f"the array{f' {member!r}' if member else ''} has no pixels (shape {shape})"
                )
        biggest = max(int(np.prod(s)) for s in shapes.values())
        if biggest > max_elements:
            raise ImageLoadError(
                f"refused: an array of {biggest:,} values is more than the limit of "
                f"{max_elements:,}; upload fewer or smaller images"
            )
        try:
            layout = _single_image_layout(next(iter(shapes.values()))) if len(shapes) == 1 else None
            if layout is not None:
                if suffix == ".npy":
                    array = np.load(path, allow_pickle=False)
                else:
                    with np.load(path, allow_pickle=False) as archive:
                        array = archive[archive.files[0]]
                if index != 0:
                    raise ImageLoadError(f"image {index} does not exist; the array holds 1")
                pixels, notes = _single_image_pixels(array, layout)
                return DecodedImage(pixels, suffix[1:], str(array.dtype), 1, 0, tuple(notes))
            dataset = read_array(path)
        except ImageLoadError:
            raise
        except Exception as exc:  # ValueError for bad values; zip/zlib errors for broken data
            raise ImageLoadError(f"cannot read the array ({_one_line(exc, path, shown)})") from exc
        if not 0 <= index < len(dataset):
            raise ImageLoadError(f"image {index} does not exist; the array holds {len(dataset)}")
        pixels = dataset[index]  # (C, H, W) uint8, a copy
        source_mode = _as_user_named(str(dataset.name), path, shown)
    c, h, w = pixels.shape
    notes = [f"array of {len(dataset)} image(s) of {c}x{h}x{w}: using image {index}"]
    return DecodedImage(
        pixels=np.ascontiguousarray(pixels),
        source_format=suffix[1:],
        source_mode=source_mode,
        num_frames=len(dataset),
        frame=index,
        notes=tuple(notes),
    )


def _as_user_named(text: str, path: Path, shown: str) -> str:
    """``text`` with the temporary copy ``path`` (full, or its name) replaced by the user's file
    name ``shown``, and any other mention of its folder removed (one pass, so a ``shown`` that
    contains the temporary name is left as it is)."""
    copy = f"{re.escape(str(path))}|{re.escape(path.name)}"
    pattern = f"(?P<copy>{copy})|{re.escape(str(path.parent))}/?"
    return re.sub(pattern, lambda match: shown if match["copy"] else "", text)


def _one_line(exc: BaseException, path: Path, shown: str) -> str:
    """An exception as one line for the user: its type and first line, the temporary copy
    ``path`` named as the user's file ``shown``, no server path."""
    text = _as_user_named(str(exc), path, shown).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def decode_upload(
    data: bytes,
    name: str,
    *,
    index: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_decoded_pixels: int = DEFAULT_MAX_DECODED_PIXELS,
    max_elements: int = DEFAULT_MAX_ARRAY_ELEMENTS,
) -> DecodedImage:
    """Decode an uploaded file by its name's suffix (any letter case).

    ``.npy`` / ``.npz``: ``decode_array``; a suffix in ``IMAGE_SUFFIXES``: ``decode_image``;
    anything else is refused, naming the accepted suffixes.

    Raises:
        ImageLoadError: one line saying why, for any file that cannot be used (never another
            exception type, never a server path).
    """
    suffix = Path(name).suffix.lower()
    try:
        if suffix in ARRAY_SUFFIXES:
            return decode_array(data, suffix, name=name, index=index, max_elements=max_elements)
        if suffix not in IMAGE_SUFFIXES:
            raise ImageLoadError(
                f"unsupported file type {suffix or '(no suffix)'!r}; accepted: "
                f"{', '.join(IMAGE_SUFFIXES + ARRAY_SUFFIXES)}"
            )
        return decode_image(data, max_pixels=max_pixels, max_decoded_pixels=max_decoded_pixels)
    except ImageLoadError:
        raise
    except Exception as exc:  # a failure no step above anticipated: still one line
        raise ImageLoadError(f"cannot read the file ({type(exc).__name__})") from exc


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


# ------------------------------------------------------------------------------ tiles (log p map)

DEFAULT_MAX_TILES = 1024  # model-size tiles scored per image at most (a coarser grid beyond)
TILE_PREVIEW_SIDE = 768  # the photo kept for display under the map, at most this many pixels


@dataclass(frozen=True)
class TiledImage:
    """Model-size tiles of an upload at its native resolution, without the full image.

    Attributes:
        tiles: uint8 (N, C, R, R), in the model's channels, row-major over the grid.
        grid_shape: (rows, columns) of the grid; N = rows * columns.
        tops, lefts: pixel row / column of each tile's top-left corner in the full image (N,).
        stride: pixels between neighbouring tiles (R, or a multiple of R for large images).
        height, width: the full image's size.
        preview: uint8 (C, h, w), the whole image reduced to at most ``TILE_PREVIEW_SIDE``.
        notes: how it was read, in words.
    """

    tiles: np.ndarray
    grid_shape: tuple[int, int]
    tops: np.ndarray
    lefts: np.ndarray
    stride: int
    height: int
    width: int
    preview: np.ndarray
    notes: tuple[str, ...]


def _model_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """(…, C, h, w) uint8 to the model's channels, as ``fit_to_model`` converts them."""
    if channels == 1 and pixels.shape[-3] == 3:
        return rgb_to_gray(pixels)
    if channels == 3 and pixels.shape[-3] == 1:
        return np.repeat(pixels, 3, axis=-3)
    return pixels


def decode_tiles(
    data: bytes,
    name: str,
    image_shape: tuple[int, int, int],
    *,
    index: int = 0,
    max_tiles: int = DEFAULT_MAX_TILES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_elements: int = DEFAULT_MAX_ARRAY_ELEMENTS,
) -> TiledImage:
    """The upload's R x R tiles at native resolution (R the model's size), for a log p map.

    Decodes like ``decode_upload`` (same checks, conversions and messages) but without the
    downscaling to ``DEFAULT_MAX_DECODED_PIXELS``: the pixel cap is the header-checked
    ``max_pixels``. The tiles form a grid of non-overlapping R x R squares from the top-left
    corner (edge rows and columns beyond a multiple of R are left out); when there are more than
    ``max_tiles``, every k-th tile row and column is kept (``stride`` = k R), so the tiles stay
    native pixels. Only the tiles and a preview are returned; the full image is released here.
    Memory while decoding: the full decode (at most ``max_pixels`` x 4 bytes) and its array.

    Raises:
        ImageLoadError: as ``decode_upload``, or the image is smaller than one tile.
    """
    channels, size, width_r = (int(v) for v in image_shape)
    if size != width_r:
        raise ImageLoadError(f"only square models are supported, got {size}x{width_r}")
    decoded = decode_upload(
        data,
        name,
        index=index,
        max_pixels=max_pixels,
        max_decoded_pixels=max_pixels,
        max_elements=max_elements,
    )
    pixels = decoded.pixels  # (C, H, W), native resolution
    _, height, width = pixels.shape
    rows, cols = height // size, width // size
    if rows < 1 or cols < 1:
        raise ImageLoadError(f"the image ({width}x{height}) is smaller than one {size}x{size} tile")
    step = max(1, math.ceil(math.sqrt(rows * cols / max_tiles)))
    while math.ceil(rows / step) * math.ceil(cols / step) > max_tiles:
        step += 1
    tops = np.arange(0, rows, step) * size
    lefts = np.arange(0, cols, step) * size
    grid_tops, grid_lefts = np.meshgrid(tops, lefts, indexing="ij")
    tiles = np.stack(
        [
            _model_channels(pixels[:, top : top + size, left : left + size], channels)
            for top, left in zip(grid_tops.ravel(), grid_lefts.ravel(), strict=True)
        ]
    )  # (N, C, R, R)
    preview = thumbnail(pixels, TILE_PREVIEW_SIDE)
    preview = preview[None] if preview.ndim == 2 else preview.transpose(2, 0, 1)
    notes = list(decoded.notes)
    notes.append(
        f"{tiles.shape[0]:,} tiles of {size}x{size} native pixels"
        + (f", every {step}th tile row and column" if step > 1 else "")
    )
    return TiledImage(
        tiles=np.ascontiguousarray(tiles),
        grid_shape=(len(tops), len(lefts)),
        tops=grid_tops.ravel(),
        lefts=grid_lefts.ravel(),
        stride=step * size,
        height=height,
        width=width,
        preview=np.ascontiguousarray(preview),
        notes=tuple(notes),
    )
