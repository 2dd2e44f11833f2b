"""One entry point, load_dataset(): a dataset name or a path -> ImageDataset."""

import logging
from pathlib import Path

import numpy as np

from dsm_core.data.dataset import ImageDataset, resize_images
from dsm_core.data.natural import natural_image_crops
from dsm_core.data.readers import (
    FASHION_MNIST_DIR,
    is_cifar_folder,
    is_imagenet64_folder,
    normalize_split,
    npz_member_shape,
    read_array,
    read_cifar10,
    read_digits,
    read_fashion_mnist,
    read_image_folder,
    read_imagenet64,
)

logger = logging.getLogger(__name__)

DATASET_NAMES = (
    "natural",
    "natural:<folder>",
    "fashion-mnist",
    "digits",
    "imagenet64:<folder>",
    "cifar10:<folder>",
)


def _is_idx_folder(folder: Path) -> bool:
    return any(
        (folder / f"{prefix}-images-idx3-ubyte{ext}").is_file()
        for prefix in ("train", "t10k")
        for ext in ("", ".gz")
    )


def _at_resolution(dataset: ImageDataset, resolution: int | None) -> ImageDataset:
    """The dataset itself if it already has R x R images, else an in-memory resized copy."""
    if resolution is None or dataset.image_shape[1:] == (resolution, resolution):
        return dataset
    images = dataset.to_numpy()  # (N, C, H, W), after any grayscale conversion
    if dataset.max_value != 255:  # e.g. digits (0..16): go to 8 bits before resampling
        scaled = np.round(images.astype(np.float64) * (255 / dataset.max_value))
        images = scaled.astype(np.uint8)
    return ImageDataset(
        resize_images(images, resolution),
        name=f"{dataset.name}@{resolution}",
        labels=dataset.labels,
        label_names=dataset.label_names,
    )


def load_dataset(
    name_or_path: str | Path,
    split: str = "train",
    resolution: int | None = None,
    grayscale: bool = False,
    *,
    num_crops: int = 20_000,
    seed: int = 0,
    mode: str = "resize",
    extract_dir: str | Path | None = None,
) -> ImageDataset:
    """Load a dataset by name or path.

    Names: "natural" (crops of the bundled photographs, :func:`natural_image_crops`),
    "natural:<folder>" (the same plus the photographs of ``<folder>/train`` or ``<folder>/test``,
    e.g. BSDS500),
    "fashion-mnist" (Debian's files in /usr/share/datasets/fashion-mnist), "digits"
    (scikit-learn), "imagenet64:<folder>", "cifar10:<folder>". A path may be an ImageNet64
    folder (train_data_batch_<k>[.npz] / val_data[.npz]), a CIFAR-10 folder (data_batch_1 /
    test_batch), a folder of idx files, any other folder (read as a folder of image files), a
    .npz or a .npy file (a .npz whose ``data`` is 2-D is read as an ImageNet64 batch).

    Args:
        name_or_path: a name above or a path.
        split: "train" or "test" ("val" is an alias of "test").
        resolution: R for square R x R images. None keeps the native size; required for
            "natural" and image folders. Other in-memory datasets are resized (centre square,
            Lanczos); ImageNet64 must match its stored size.
        grayscale: convert RGB to 1-channel luma (PIL's "L"). False keeps the source's
            channels (1 for Fashion-MNIST and digits; "natural" then uses its colour photos).
        num_crops: number of crops for "natural" and "natural:<folder>".
        seed: seed of those crops.
        mode: "resize" or "crop" for image folders.
        extract_dir: where to decompress compressed ImageNet64 .npz members for memory mapping.

    Returns:
        the ImageDataset.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones).
    """
    text = str(name_or_path)
    normalize_split(split)  # validate early
    if text == "natural" or text.startswith("natural:"):
        if resolution is None:
            raise ValueError(f"{text!r} needs a resolution (e.g. 32)")
        photo_dir = text.removeprefix("natural:") if text != "natural" else None
        return natural_image_crops(split, resolution, num_crops, seed, grayscale, photo_dir)
    if text == "fashion-mnist":
        return _at_resolution(read_fashion_mnist(FASHION_MNIST_DIR, split), resolution)
    if text == "digits":
        return _at_resolution(read_digits(split), resolution)
    if text.startswith("imagenet64:"):
        return _imagenet64(
            text.removeprefix("imagenet64:"), split, resolution, grayscale, extract_dir
        )
    if text.startswith("cifar10:"):
        cifar = read_cifar10(text.removeprefix("cifar10:"), split, grayscale=grayscale)
        return _at_resolution(cifar, resolution)

    path = Path(name_or_path)
    if path.is_dir():
        if is_imagenet64_folder(path):
            return _imagenet64(path, split, resolution, grayscale, extract_dir)
        if is_cifar_folder(path):
            return _at_resolution(read_cifar10(path, split, grayscale=grayscale), resolution)
        if _is_idx_folder(path):
            return _at_resolution(read_fashion_mnist(path, split), resolution)
        if resolution is None:
            raise ValueError(f"reading the image folder {path} needs a resolution")
        return read_image_folder(path, resolution, mode=mode, grayscale=grayscale)
    if path.is_file() and path.suffix == ".npz":
        shape = npz_member_shape(path, "data")
        if shape is not None and len(shape) == 2:
            return _imagenet64(path, split, resolution, grayscale, extract_dir)
        return _at_resolution(read_array(path, grayscale=grayscale), resolution)
    if path.is_file() and path.suffix == ".npy":
        return _at_resolution(read_array(path, grayscale=grayscale), resolution)
    raise ValueError(
        f"unknown dataset {text!r}: not one of {', '.join(DATASET_NAMES)}, and not an existing "
        "folder, .npz or .npy file"
    )


def _imagenet64(
    path: str | Path,
    split: str,
    resolution: int | None,
    grayscale: bool,
    extract_dir: str | Path | None,
) -> ImageDataset:
    dataset = read_imagenet64(path, split, grayscale=grayscale, extract_dir=extract_dir)
    if resolution is not None and dataset.resolution != resolution:
        raise ValueError(
            f"{path} holds {dataset.resolution}x{dataset.resolution} images, not "
            f"{resolution}x{resolution}; ImageNet64-style data is not resized on the fly"
        )
    return dataset
