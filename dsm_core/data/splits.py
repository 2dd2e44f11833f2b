"""The images a run trains and evaluates on: the configured split at the model's resolution, the
generalization subsets A and B (spec §2.6), and the held-out evaluation images.
"""

from typing import Any

import numpy as np
import torch

from dsm_core.data import ImageDataset, load_dataset
from dsm_core.train_config import DataConfig, Subset


class SubsetDataset:
    """A fixed selection of a dataset's images, read through the same ``batch()`` interface."""

    def __init__(self, dataset: ImageDataset, indices: np.ndarray, name: str = ""):
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)  # (N,) indices into dataset
        self.name = name or f"{dataset.name}[{len(self.indices)} images]"

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.dataset.image_shape

    def batch(self, indices, flips=None, device=None) -> torch.Tensor:
        """float32 (B, C, H, W) in [0, 1] of subset items ``indices``."""
        return self.dataset.batch(self.indices[np.asarray(indices)], flips, device=device)


def generalization_image_indices(
    num_images: int, subset_size: int, subset: Subset, max_images: int | None = None
) -> np.ndarray:
    """Training images on which two subset models are compared (spec §4.3), (n,) int64.

    "A": the first ``n = min(subset_size, max_images)`` images in order; "B": the last n in
    reverse order (index 0 is the very last image), as in the release's notebook.
    """
    n = subset_size if max_images is None else min(subset_size, max_images)
    n = min(n, num_images)
    if subset == "A":
        return np.arange(n, dtype=np.int64)
    if subset == "B":
        return np.arange(num_images - 1, num_images - 1 - n, -1, dtype=np.int64)
    raise ValueError(f"subset must be 'A' or 'B', got {subset!r}")


def subset_indices(num_images: int, subset: Subset, subset_size: int | None) -> np.ndarray:
    """Dataset indices of a generalization subset (spec §2.6), in stored order.

    "A": the first ``subset_size`` images; "B": the last ``subset_size``; "all": every image.
    A and B do not overlap as long as ``2 * subset_size <= num_images``.
    """
    if subset == "all":
        return np.arange(num_images, dtype=np.int64)
    if subset_size is None or not 1 <= subset_size <= num_images:
        raise ValueError(f"subset_size must be in [1, {num_images}], got {subset_size}")
    if subset == "A":
        return np.arange(subset_size, dtype=np.int64)
    if subset == "B":
        return np.arange(num_images - subset_size, num_images, dtype=np.int64)
    raise ValueError(f"subset must be 'all', 'A' or 'B', got {subset!r}")


def load_split(
    cfg: DataConfig, image_size: int, split: str, num_crops: int | None = None
) -> ImageDataset:
    """One split of the configured dataset, at the model's resolution, before any subset.

    ``num_crops`` overrides ``cfg.num_crops`` for crop datasets ("natural", "natural:<folder>").
    """
    resolution = cfg.resolution if cfg.resolution is not None else image_size
    return load_dataset(
        cfg.name,
        split,
        resolution,
        cfg.grayscale,
        num_crops=cfg.num_crops if num_crops is None else num_crops,
        seed=cfg.crop_seed,
    )


def load_training_data(cfg: DataConfig, image_size: int) -> ImageDataset | SubsetDataset:
    """The training images: the configured split, restricted to the configured subset."""
    dataset = load_split(cfg, image_size, cfg.split)
    if cfg.subset == "all":
        return dataset
    indices = subset_indices(len(dataset), cfg.subset, cfg.subset_size)
    return SubsetDataset(dataset, indices, f"{dataset.name}[{cfg.subset}:{len(indices)}]")


def load_heldout_images(cfg: DataConfig, image_size: int, num_images: int) -> torch.Tensor:
    """The first ``num_images`` images of the evaluation split, unflipped, (N, C, H, W).

    Crop datasets cut just ``num_images`` crops of the split (not ``cfg.num_crops``).
    """
    dataset = load_split(cfg, image_size, cfg.eval_split, num_crops=max(num_images, 1))
    return dataset.batch(np.arange(min(num_images, len(dataset))))


def describe_data(cfg: DataConfig, dataset: ImageDataset | SubsetDataset) -> dict[str, Any]:
    """JSON-able facts about the training data for model metadata."""
    c, h, w = dataset.image_shape
    return {
        "name": cfg.name,
        "description": getattr(dataset, "name", ""),
        "split": cfg.split,
        "eval_split": cfg.eval_split,
        "subset": cfg.subset,
        "subset_size": cfg.subset_size,
        "num_images": len(dataset),
        "image_shape": [c, h, w],
        "grayscale": cfg.grayscale,
        "flip": cfg.flip,
        # crop datasets: the photographs the crops come from (what "train" meant for this model)
        "photographs": list(dataset.label_names)
        if cfg.name.startswith("natural") and getattr(dataset, "label_names", None)
        else None,
    }
