"""Readers for ImageNet64, CIFAR-10, image folders, arrays, idx files and digits -> ImageDataset."""

import gzip
import logging
import math
import re
import shutil
import struct
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageOps, features

from dsm_core.data.dataset import ImageDataset, center_crop_box, rgb_to_gray
from dsm_core.safe_pickle import safe_unpickle

logger = logging.getLogger(__name__)

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_LABEL_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# The image formats read here (uploads and training folders alike), and every file suffix Pillow
# registers for them (lower case; compare with ``suffix.lower()``). Files are opened with
# ``formats=IMAGE_FORMATS`` so no other Pillow plugin (EPS runs Ghostscript) sees a file.
IMAGE_FORMATS = tuple(
    name
    for name in ("PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF")
    if name != "WEBP" or features.check("webp")
)
IMAGE_EXTENSIONS = frozenset(
    suffix.lower()
    for suffix, image_format in Image.registered_extensions().items()
    if image_format in IMAGE_FORMATS
)
DIGITS_NUM_TRAIN = 1500  # sklearn digits: the first 1,500 of 1,797 are "train", the rest "test"

_IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
_IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension


def normalize_split(split: str) -> str:
    """Map a split name to "train" or "test" ("val" and "validation" mean "test").

    ImageNet64 has no labelled test set; as in the paper its validation set is the test set.
    """
    key = split.lower()
    if key == "train":
        return "train"
    if key in ("test", "val", "validation"):
        return "test"
    raise ValueError(
        f"unknown split {split!r}; use 'train' or 'test' ('val' is an alias of 'test')"
    )


def _get_key(mapping: Mapping[Any, Any], key: str, source: Path) -> Any:
    """mapping[key] for a str or bytes key (pickles from Python 2 have bytes keys)."""
    for candidate in (key, key.encode()):
        if candidate in mapping:
            return mapping[candidate]
    raise ValueError(f"{source}: no {key!r} entry (found {sorted(map(str, mapping))})")


def _planar_rows_to_images(data: np.ndarray, source: Path) -> np.ndarray:
    """uint8 rows (N, 3*R*R), R plane then G plane then B plane, as (N, 3, R, R) (a view)."""
    if data.dtype != np.uint8 or data.ndim != 2:
        raise ValueError(
            f"{source}: expected uint8 rows (N, 3*R*R), got {data.dtype} {tuple(data.shape)}"
        )
    side = math.isqrt(data.shape[1] // 3)
    if 3 * side * side != data.shape[1]:
        raise ValueError(
            f"{source}: row length {data.shape[1]} is not 3*R*R for any R "
            "(expected channel-planar RGB rows, e.g. 12288 for 64x64)"
        )
    return data.reshape(len(data), 3, side, side)


def _check_pickled_batch(batch: Any, source: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(images (N, 3, R, R) uint8, labels (N,) int64 or None) of a pickled CIFAR/ImageNet batch."""
    if not isinstance(batch, dict):
        raise ValueError(f"{source}: expected a pickled dict, got {type(batch).__name__}")
    data = _get_key(batch, "data", source)
    if not isinstance(data, np.ndarray):
        raise ValueError(f"{source}: 'data' is a {type(data).__name__}, not a numpy array")
    images = _planar_rows_to_images(data, source)
    labels = None
    for key in ("labels", "fine_labels"):
        if key in batch or key.encode() in batch:
            labels = np.asarray(_get_key(batch, key, source), dtype=np.int64)
            break
    if labels is not None and labels.shape != (len(images),):
        raise ValueError(f"{source}: {len(images)} images but labels of shape {labels.shape}")
    return images, labels


# ---------------------------------------------------------------------------------------------
# ImageNet64


def read_npy_header(file: BinaryIO) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of the .npy array whose header starts at ``file``'s
    position (format 1.0 or 2.0); leaves the file at the first data byte. Reads no data.

    Raises:
        ValueError: if the bytes there are not an .npy header.
    """
    version = np.lib.format.read_magic(file)
    if version == (1, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(file)
    else:
        shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(file)
    return tuple(shape), fortran_order, dtype


def npz_member_memmap(path: str | Path, member: str) -> np.memmap | None:
    """Memory-map one array of an uncompressed .npz (np.savez), or None if it is compressed.

    ``np.load`` cannot memory-map .npz members; an uncompressed (ZIP_STORED) member is a plain
    .npy file at a fixed offset inside the zip, which ``np.memmap`` can map directly.

    Raises:
        KeyError: if the archive has no such member.
        ValueError: for object (pickled) arrays or a malformed archive.
    """
    path = Path(path)
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member + ".npy")
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with open(path, "rb") as file:
        file.seek(info.header_offset)
        local_header = file.read(30)
        if local_header[:4] != b"PK\x03\x04":
            raise ValueError(f"{path}: bad zip local header for {member}")
        name_length, extra_length = struct.unpack("<HH", local_header[26:30])
        file.seek(info.header_offset + 30 + name_length + extra_length)
        shape, fortran_order, dtype = read_npy_header(file)
        offset = file.tell()
    if dtype.hasobject:
        raise ValueError(f"{path}: member {member} is an object array; refusing (no pickles)")
    order = "F" if fortran_order else "C"
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order=order)


def npz_member_shape(path: str | Path, member: str) -> tuple[int, ...] | None:
    """The shape of an .npz member read from its .npy header (no data read), None if absent."""
    with zipfile.ZipFile(path) as archive:
        if member + ".npy" not in archive.namelist():
            return None
        with archive.open(member + ".npy") as file:
            shape, _, _ = read_npy_header(file)
    return shape


def _load_npz_member(path: Path, member: str, extract_dir: Path | None) -> np.ndarray:
    """An .npz member, memory-mapped when possible (see :func:`read_imagenet64`)."""
    try:
        mapped = npz_member_memmap(path, member)
    except KeyError:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
        raise ValueError(f"{path}: no array {member!r} (found {names})") from None
    if mapped is not None:
        return mapped
    if extract_dir is not None:
        extract_dir.mkdir(parents=True, exist_ok=True)
        target = extract_dir / f"{path.stem}.{member}.npy"
        if not target.exists():
            logger.info("decompressing %s[%s] to %s (once)", path, member, target)
            with zipfile.ZipFile(path) as archive, archive.open(member + ".npy") as source:
                with tempfile.NamedTemporaryFile(dir=extract_dir, delete=False) as tmp:
                    shutil.copyfileobj(source, tmp, length=1 << 24)
            Path(tmp.name).replace(target)
        return np.load(target, mmap_mode="r", allow_pickle=False)
    logger.warning(
        "%s is compressed and cannot be memory-mapped; loading %s into memory "
        "(pass extract_dir to decompress it once to a memory-mappable .npy)",
        path,
        member,
    )
    with np.load(path, allow_pickle=False) as archive:
        return archive[member]


IMAGENET64_TRAIN_BATCHES = 10  # train_data_batch_1..10 in the official download


def _imagenet64_files(folder: Path, split: str) -> list[Path]:
    """The batch files of a split, in order: train_data_batch_1..10 or val_data (.npz or pickle).

    Found in ``folder`` itself or, as the official download extracts them, in its immediate
    subfolders (Imagenet64_train_part1/, Imagenet64_train_part2/, Imagenet64_val/).
    """
    places = [folder, *sorted(p for p in folder.iterdir() if p.is_dir())]
    if split == "train":
        pattern = re.compile(r"train_data_batch_(\d+)(\.npz)?$")
        by_number: dict[int, Path] = {}
        for place in places:
            found = [(int(m.group(1)), p) for p in place.iterdir() if (m := pattern.match(p.name))]
            for number, candidate in sorted(found):
                # prefer the .npz when both forms are present
                if number not in by_number or candidate.suffix == ".npz":
                    by_number[number] = candidate
        return [by_number[number] for number in sorted(by_number)]
    for place in places:
        found = [p for p in (place / "val_data.npz", place / "val_data") if p.exists()]
        if found:
            return found[:1]
    return []


def _warn_missing_batches(folder: Path, files: list[Path]) -> None:
    """Log a warning naming the train batches of the official 1..10 that were not found."""
    numbers = {int(re.search(r"_(\d+)", f.name).group(1)) for f in files}
    missing = sorted(set(range(1, IMAGENET64_TRAIN_BATCHES + 1)) - numbers)
    if missing:
        logger.warning(
            "ImageNet64 train in %s: batch(es) %s of train_data_batch_1..%d not found; training "
            "on %d of %d (pass the folder holding all extracted parts)",
            folder,
            missing,
            IMAGENET64_TRAIN_BATCHES,
            len(numbers),
            IMAGENET64_TRAIN_BATCHES,
        )


def is_imagenet64_folder(folder: str | Path) -> bool:
    """Whether a folder (or one of its subfolders) holds ImageNet64 batches."""
    folder = Path(folder)
    return folder.is_dir() and bool(
        _imagenet64_files(folder, "train") or _imagenet64_files(folder, "test")
    )


def read_imagenet64(
    path: str | Path,
    split: str = "train",
    *,
    grayscale: bool = False,
    extract_dir: str | Path | None = None,
) -> ImageDataset:
    """Downsampled ImageNet (Chrabaszcz et al. 2017) in its .npz (or pickled) batch form.

    Each file holds ``data``: uint8 (N, 3*R*R) channel-planar rows (R plane, G plane, B plane; R is
    inferred, 64 for ImageNet64) and ``labels`` (1..1000 as in the files). A folder holds
    ``train_data_batch_1..10.npz`` and ``val_data.npz``.

    Memory: .npz files are opened with ``allow_pickle=False``. Uncompressed members are
    memory-mapped in place (nothing is read until a batch needs it). Compressed members cannot
    be; with ``extract_dir`` each is decompressed once to a .npy there and memory-mapped,
    otherwise it is loaded into memory (1.5 GB per ImageNet64 training batch; a warning says so).
    The pickled (non-npz) batches are read with a restricted unpickler, into memory.

    Args:
        path: the folder, or a single batch file.
        split: "train" (all train_data_batch_k) or "test"/"val" (val_data); ignored for a file.
        grayscale: convert to luma (PIL-exact) when reading, giving (N, 1, R, R).
        extract_dir: where to decompress compressed members, or None.

    Returns:
        an ImageDataset of uint8 (N, 3 or 1, R, R) images, labels from the files.
    """
    path = Path(path)
    extract_dir = Path(extract_dir) if extract_dir is not None else None
    if path.is_dir():
        files = _imagenet64_files(path, normalize_split(split))
        if not files:
            raise FileNotFoundError(
                f"no ImageNet64 {split} files in {path} or its subfolders (expected "
                "train_data_batch_<k>[.npz] or val_data[.npz])"
            )
        if normalize_split(split) == "train":
            _warn_missing_batches(path, files)
    elif path.is_file():
        files = [path]
    else:
        raise FileNotFoundError(f"ImageNet64 path {path} does not exist")
    chunks, labels = [], []
    for file in files:
        if file.suffix == ".npz":
            images = _planar_rows_to_images(_load_npz_member(file, "data", extract_dir), file)
            with np.load(file, allow_pickle=False) as archive:
                file_labels = archive["labels"] if "labels" in archive.files else None
        else:
            images, file_labels = _check_pickled_batch(safe_unpickle(file), file)
        chunks.append(images)
        labels.append(None if file_labels is None else np.asarray(file_labels, dtype=np.int64))
    sides = {chunk.shape[2] for chunk in chunks}
    if len(sides) > 1:
        raise ValueError(f"ImageNet64 files of different resolutions {sorted(sides)}: {files}")
    all_labels = None if any(x is None for x in labels) else np.concatenate(labels)
    dataset = ImageDataset(
        chunks,
        grayscale=grayscale,
        name=f"imagenet{chunks[0].shape[2]}:{path.name}:{split}",
        labels=all_labels,
    )
    logger.info(
        "ImageNet%d %s: %d images from %d file(s)%s",
        chunks[0].shape[2],
        split,
        len(dataset),
        len(files),
        " (memory-mapped)" if dataset.is_memory_mapped else "",
    )
    return dataset


# ---------------------------------------------------------------------------------------------
# CIFAR-10


def _cifar_root(folder: Path) -> Path:
    nested = folder / "cifar-10-batches-py"
    return nested if nested.is_dir() and not (folder / "data_batch_1").exists() else folder


def is_cifar_folder(folder: str | Path) -> bool:
    """Whether a folder holds CIFAR-10 python batches (data_batch_1 or test_batch)."""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    root = _cifar_root(folder)
    return (root / "data_batch_1").is_file() or (root / "test_batch").is_file()


def read_cifar10(
    folder: str | Path, split: str = "train", *, grayscale: bool = False
) -> ImageDataset:
    """CIFAR-10 "python version" batches, read with a restricted unpickler (no code can run).

    Each of ``data_batch_1..5`` (train) and ``test_batch`` (test) is a pickled dict with
    ``b"data"``: uint8 (N, 3072) channel-planar rows and ``b"labels"``: a list of N ints.

    Args:
        folder: the ``cifar-10-batches-py`` folder (or its parent).
        split: "train" or "test".
        grayscale: convert to luma (PIL-exact).

    Returns:
        an ImageDataset of uint8 (N, 3 or 1, 32, 32), labels 0..9 with their names when
        ``batches.meta`` is present.
    """
    folder = Path(folder)
    if folder.is_file():
        raise ValueError(
            f"{folder} is a file, not the CIFAR-10 folder: extract the archive first "
            f"(tar -xzf {folder.name}) and pass the cifar-10-batches-py folder"
        )
    if not folder.is_dir():
        raise FileNotFoundError(f"CIFAR-10 folder {folder} does not exist")
    root = _cifar_root(folder)
    if normalize_split(split) == "train":
        pattern = re.compile(r"data_batch_(\d+)$")
        numbered = [(int(m.group(1)), p) for p in root.iterdir() if (m := pattern.match(p.name))]
        files = [p for _, p in sorted(numbered)]
    else:
        files = [root / "test_batch"] if (root / "test_batch").is_file() else []
    if not files:
        raise FileNotFoundError(f"no CIFAR-10 {split} batches in {root}")
    images, labels = [], []
    for file in files:
        file_images, file_labels = _check_pickled_batch(safe_unpickle(file), file)
        images.append(file_images)
        labels.append(file_labels)
    label_names = None
    meta_file = root / "batches.meta"
    if meta_file.is_file():
        meta = safe_unpickle(meta_file)
        if isinstance(meta, dict) and ("label_names" in meta or b"label_names" in meta):
            names = _get_key(meta, "label_names", meta_file)
            label_names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    all_labels = None if any(x is None for x in labels) else np.concatenate(labels)
    dataset = ImageDataset(
        np.concatenate(images),
        grayscale=grayscale,
        name=f"cifar10:{split}",
        labels=all_labels,
        label_names=label_names,
    )
    logger.info("CIFAR-10 %s: %d images from %d batch file(s)", split, len(dataset), len(files))
    return dataset


# ---------------------------------------------------------------------------------------------
# Image folders


def to_8bit_gray_or_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL image to mode "L" or "RGB" (8 bits per channel).

    Transparency (RGBA, LA, PA, palette or gray/RGB with a transparent colour) is composited on
    white; palette, CMYK, YCbCr, LAB and HSV become RGB; 16-bit gray ("I;16", "I") is rescaled
    to 8 bits (x * 255 / 65535, rounded); float ("F") images must lie in [0, 1].
    """
    mode = image.mode
    if "transparency" in image.info or mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        composited = Image.alpha_composite(white, rgba).convert("RGB")
        return composited.convert("L") if mode in ("L", "LA", "La") else composited
    if mode in ("L", "RGB"):
        return image
    if mode == "1":
        return image.convert("L")
    if mode.startswith("I"):
        values = np.asarray(image).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ValueError(f"integer image values outside [0, 65535] (mode {mode})")
        return Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8), mode="L")
    if mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if values.size and not (
            np.isfinite(values).all() and 0 <= values.min() <= values.max() <= 1
        ):
            raise ValueError("float image values outside [0, 1]")
        return Image.fromarray(np.round(values * 255).astype(np.uint8), mode="L")
    return image.convert("RGB")


def load_image_file(
    path: str | Path, resolution: int, *, mode: str = "resize", grayscale: bool = False
) -> np.ndarray:
    """Read one image file as a square uint8 array.

    The first frame is used (GIF, multi-page TIFF), the EXIF orientation applied, the pixels
    converted by :func:`to_8bit_gray_or_rgb`. ``mode="resize"``: centre-crop to a square of the
    short side, then resize to R x R with Lanczos antialiasing; ``mode="crop"``: the central
    R x R pixels (the image must be at least that large).

    Args:
        path: the file.
        resolution: R.
        mode: "resize" or "crop".
        grayscale: True for (1, R, R) luma (PIL-exact), False for (3, R, R) RGB (gray images
            are replicated to three channels).

    Returns:
        uint8 (1 or 3, R, R).
    """
    if mode not in ("resize", "crop"):
        raise ValueError(f"unknown mode {mode!r}; use 'resize' or 'crop'")
    with Image.open(path, formats=IMAGE_FORMATS) as opened:
        opened.seek(0)
        image = to_8bit_gray_or_rgb(ImageOps.exif_transpose(opened))
        image.load()
    width, height = image.size
    if mode == "resize":
        box = center_crop_box(width, height, min(width, height))
        # crop first: resize(box=...) would let the filter read pixels outside the square
        image = image.crop(box).resize((resolution, resolution), Image.Resampling.LANCZOS)
    else:
        if min(width, height) < resolution:
            raise ValueError(f"{width}x{height} is smaller than the {resolution}x{resolution} crop")
        image = image.crop(center_crop_box(width, height, resolution))
    pixels = np.asarray(image)
    pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)  # (C, R, R)
    if grayscale and pixels.shape[0] == 3:
        return rgb_to_gray(pixels)
    if not grayscale and pixels.shape[0] == 1:
        return np.repeat(pixels, 3, axis=0)
    return np.ascontiguousarray(pixels)


def read_image_folder(
    folder: str | Path, resolution: int, *, mode: str = "resize", grayscale: bool = False
) -> ImageDataset:
    """All images under a folder (recursively), as R x R uint8 images in memory.

    Files with extensions PNG, JPEG, WebP, TIFF, BMP or GIF are read in sorted path order (see
    :func:`load_image_file`). Unreadable files are skipped and listed in one logged warning.

    Args:
        folder: the root folder.
        resolution: R.
        mode: "resize" (centre square, antialiased resize) or "crop" (central R x R pixels).
        grayscale: 1-channel luma instead of 3-channel RGB.

    Returns:
        an ImageDataset of uint8 (N, 1 or 3, R, R).

    Raises:
        ValueError: if no file could be read.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    paths = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    images, skipped = [], []
    for path in paths:
        try:
            images.append(load_image_file(path, resolution, mode=mode, grayscale=grayscale))
        # Corrupt or odd files make PIL plugins raise many exception types (OSError,
        # SyntaxError, ValueError, struct.error, DecompressionBombError, ...): skip them all.
        except Exception as error:
            skipped.append(f"{path.relative_to(folder)} ({type(error).__name__}: {error})")
    if skipped:
        shown = skipped[:20] + ([f"... and {len(skipped) - 20} more"] if len(skipped) > 20 else [])
        logger.warning(
            "skipped %d unreadable image file(s) in %s: %s", len(skipped), folder, "; ".join(shown)
        )
    if not images:
        raise ValueError(
            f"no readable images in {folder} ({len(paths)} candidate file(s) with extensions "
            f"{sorted(IMAGE_EXTENSIONS)})"
        )
    logger.info("image folder %s: %d images at %dx%d", folder, len(images), resolution, resolution)
    return ImageDataset(np.stack(images), name=f"folder:{folder.name}")


# ---------------------------------------------------------------------------------------------
# Plain arrays


def _array_to_nchw(array: np.ndarray, source: str, layout: str | None) -> np.ndarray:
    """(N, H, W), (N, H, W, C) or (N, C, H, W) with C in {1, 3} as (N, C, H, W) (a view)."""
    if array.ndim == 3:
        return array[:, None]
    if array.ndim != 4:
        raise ValueError(
            f"{source}: expected images (N, H, W), (N, H, W, C) or (N, C, H, W) with C = 1 or 3, "
            f"got shape {array.shape}"
        )
    if layout is None:
        first, last = array.shape[1] in (1, 3), array.shape[3] in (1, 3)
        if first == last:
            raise ValueError(
                f"{source}: cannot tell channels-first from channels-last for shape "
                f"{array.shape}; pass layout='NCHW' or 'NHWC' (C must be 1 or 3)"
            )
        layout = "NCHW" if first else "NHWC"
    layout = layout.upper()
    if layout not in ("NCHW", "NHWC"):
        raise ValueError(f"unknown layout {layout!r}; use 'NCHW' or 'NHWC'")
    nchw = array if layout == "NCHW" else array.transpose(0, 3, 1, 2)
    if nchw.shape[1] not in (1, 3):
        raise ValueError(f"{source}: expected 1 or 3 channels, got {nchw.shape[1]} ({layout})")
    return nchw


def to_uint8(array: np.ndarray, source: str) -> np.ndarray:
    """uint8 as is; bool as 0/255; other integers within [0, 255] cast; floats within [0, 1]
    scaled by 255 and rounded (the dataset stores 8-bit images)."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:  # a mask: black and white, as Pillow reads 1-bit images
        return array.astype(np.uint8) * np.uint8(255)
    if np.issubdtype(array.dtype, np.integer):
        low, high = (int(array.min()), int(array.max())) if array.size else (0, 0)
        if low < 0 or high > 255:
            raise ValueError(f"{source}: integer values in [{low}, {high}], expected [0, 255]")
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        values = np.asarray(array, dtype=np.float64)
        if values.size and not np.isfinite(values).all():
            raise ValueError(f"{source}: non-finite values")
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if low < 0 or high > 1:
            raise ValueError(
                f"{source}: float values in [{low:.4g}, {high:.4g}], expected [0, 1] "
                "(or pass uint8 images in [0, 255])"
            )
        return np.round(values * 255).astype(np.uint8)
    raise ValueError(f"{source}: unsupported dtype {array.dtype}; use uint8 or float in [0, 1]")


def read_array(
    path: str | Path,
    *,
    key: str | None = None,
    layout: str | None = None,
    grayscale: bool = False,
) -> ImageDataset:
    """Images from a .npy file or one array of a .npz file (``allow_pickle=False``).

    Accepted: uint8 (or integer in [0, 255]) or float in [0, 1]; shapes (N, H, W), (N, H, W, C)
    or (N, C, H, W) with C = 1 or 3. Floats are quantized to 8 bits. A uint8 (N, C, H, W) .npy
    (or uncompressed .npz member) is memory-mapped.

    Args:
        path: the .npy or .npz file.
        key: the .npz member; default: the only member, else the first of "images", "x",
            "data", "arr_0" present.
        layout: "NCHW" or "NHWC" for 4-D arrays whose layout is ambiguous (e.g. (N, 3, 3, 3)).
        grayscale: convert RGB to luma (PIL-exact).

    Returns:
        an ImageDataset of uint8 (N, C, H, W).
    """
    path = Path(path)
    source = str(path)
    try:
        if path.suffix == ".npy":
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                members = list(archive.files)
            if key is None:
                preferred = [k for k in ("images", "x", "data", "arr_0") if k in members]
                if len(members) != 1 and not preferred:
                    raise ValueError(f"{path}: several arrays {members}; choose one with key=")
                key = members[0] if len(members) == 1 else preferred[0]
            if key not in members:
                raise ValueError(f"{path}: no array {key!r} (found {members})")
            source = f"{path}[{key}]"
            array = npz_member_memmap(path, key)
            if array is None:
                with np.load(path, allow_pickle=False) as archive:
                    array = archive[key]
        else:
            raise ValueError(f"{path}: expected a .npy or .npz file")
    except ValueError as error:
        if "allow_pickle" in str(error) or "Python objects" in str(error):
            raise ValueError(f"{path}: object arrays need pickle, which is refused") from error
        raise
    if array.dtype.hasobject:
        raise ValueError(f"{source}: object arrays are refused (no pickles)")
    images = to_uint8(_array_to_nchw(array, source, layout), source)
    if not isinstance(images, np.memmap) or not images.flags.c_contiguous:
        images = np.ascontiguousarray(images)
    return ImageDataset(images, grayscale=grayscale, name=f"array:{path.name}")


# ---------------------------------------------------------------------------------------------
# idx files (Fashion-MNIST, MNIST)


def read_idx(path: str | Path, expected_magic: int | None = None) -> np.ndarray:
    """Parse an idx file of unsigned bytes (raw or .gz).

    Header: 2 zero bytes, a type byte (0x08 = unsigned byte), a dimension count k, then k
    big-endian uint32 sizes; the magic number is the first 4 bytes read as big-endian
    (2051 for 3-D image files, 2049 for 1-D label files).

    Args:
        path: the file.
        expected_magic: if given, the header's magic number must equal it.

    Returns:
        uint8 array of the header's shape.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as file:
        raw = file.read()
    if len(raw) < 4:
        raise ValueError(f"{path}: too short for an idx header ({len(raw)} bytes)")
    magic = int.from_bytes(raw[:4], "big")
    if raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"{path}: not an idx file of unsigned bytes (magic {magic:#010x})")
    if expected_magic is not None and magic != expected_magic:
        raise ValueError(f"{path}: idx magic {magic}, expected {expected_magic}")
    ndim = raw[3]
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise ValueError(f"{path}: truncated idx header")
    shape = struct.unpack(f">{ndim}I", raw[4:header_size])
    expected_size = header_size + math.prod(shape)
    if len(raw) != expected_size:
        raise ValueError(
            f"{path}: header says shape {shape} ({expected_size} bytes), file has {len(raw)} bytes"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def read_fashion_mnist(
    folder: str | Path = FASHION_MNIST_DIR, split: str = "train"
) -> ImageDataset:
    """Fashion-MNIST (or MNIST) from idx files, raw or gzipped.

    Train: ``train-images-idx3-ubyte`` (60,000) and ``train-labels-idx1-ubyte``; test:
    ``t10k-images-idx3-ubyte`` (10,000) and ``t10k-labels-idx1-ubyte``, each optionally ``.gz``.
    The default folder is where Debian's ``dataset-fashion-mnist`` package installs them.

    Args:
        folder: the folder holding the files.
        split: "train" or "test".

    Returns:
        an ImageDataset of uint8 (N, 1, 28, 28) with labels (when the label file is present).
    """
    folder = Path(folder)
    prefix = "train" if normalize_split(split) == "train" else "t10k"
    images_path = _find_idx(folder, f"{prefix}-images-idx3-ubyte")
    if images_path is None:
        raise FileNotFoundError(
            f"Fashion-MNIST {split} images ({prefix}-images-idx3-ubyte[.gz]) not found in "
            f"{folder}; on Debian/Ubuntu install them with `apt-get install dataset-fashion-mnist` "
            f"(files go to {FASHION_MNIST_DIR}), or pass the folder that holds them"
        )
    images = read_idx(images_path, _IDX_IMAGES_MAGIC)  # (N, H, W)
    labels = None
    labels_path = _find_idx(folder, f"{prefix}-labels-idx1-ubyte")
    if labels_path is not None:
        labels = read_idx(labels_path, _IDX_LABELS_MAGIC).astype(np.int64)  # (N,)
        if labels.shape != (len(images),):
            raise ValueError(
                f"{labels_path}: {len(labels)} labels for {len(images)} images in {images_path}"
            )
    return ImageDataset(
        np.ascontiguousarray(images[:, None]),  # (N, 1, 28, 28)
        name=f"fashion-mnist:{split}",
        labels=labels,
        label_names=FASHION_MNIST_LABEL_NAMES if labels is not None else None,
    )


# ---------------------------------------------------------------------------------------------
# scikit-learn digits


def read_digits(split: str = "train") -> ImageDataset:
    """scikit-learn's 1,797 handwritten digits: 8x8, 17 gray levels (0..16), bundled offline.

    Stored as the original integers with ``max_value=16``, so batches are exactly value / 16.
    The first ``DIGITS_NUM_TRAIN`` (1,500) images are "train", the remaining 297 "test".

    Returns:
        an ImageDataset of (N, 1, 8, 8) with labels 0..9.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.uint8)[:, None]  # (1797, 1, 8, 8), values 0..16
    labels = bunch.target.astype(np.int64)
    part = (
        slice(0, DIGITS_NUM_TRAIN)
        if normalize_split(split) == "train"
        else slice(DIGITS_NUM_TRAIN, None)
    )
    return ImageDataset(
        np.ascontiguousarray(images[part]),
        max_value=16,
        name=f"digits:{split}",
        labels=labels[part],
        label_names=[str(k) for k in range(10)],
    )
