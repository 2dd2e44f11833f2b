"""The in-memory / memory-mapped uint8 image dataset, PIL-exact grayscale, flips and resizing."""

import logging
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

logger = logging.getLogger(__name__)

# ITU-R 601 luma in PIL's 16-bit fixed point: 299/1000, 587/1000, 114/1000 scaled by 2**16.
# The three weights sum to exactly 2**16, and 0x8000 rounds to nearest; this is what
# PIL's convert("L") computes, bit for bit (checked on all 2**24 colours in the tests).
_LUMA_WEIGHTS = (19595, 38470, 7471)


def rgb_to_gray(images: np.ndarray, channel_axis: int = -3) -> np.ndarray:
    """Convert 8-bit RGB to 8-bit luma exactly as PIL's ``Image.convert("L")`` does.

    ``L = R * 299/1000 + G * 587/1000 + B * 114/1000`` (ITU-R 601), rounded to 8 bits with PIL's
    fixed-point arithmetic, so the result is identical to PIL's, not merely close.

    Args:
        images: uint8 array with 3 channels along ``channel_axis``, e.g. (N, 3, H, W) or (3, H, W)
            (default, channel-first) or (H, W, 3) with ``channel_axis=-1``.
        channel_axis: axis holding R, G, B.

    Returns:
        uint8 array of the same shape with that axis of size 1.
    """
    if images.dtype != np.uint8:
        raise TypeError(f"rgb_to_gray expects uint8 images, got dtype {images.dtype}")
    if images.shape[channel_axis] != 3:
        raise ValueError(
            f"rgb_to_gray expects 3 channels on axis {channel_axis}, got shape {images.shape}"
        )
    rgb = np.moveaxis(images, channel_axis, 0)  # (3, ...)
    wr, wg, wb = _LUMA_WEIGHTS
    luma = rgb[0].astype(np.uint32) * wr
    luma += rgb[1].astype(np.uint32) * wg
    luma += rgb[2].astype(np.uint32) * wb
    luma += 0x8000
    luma >>= 16
    return np.expand_dims(luma.astype(np.uint8), channel_axis)


def random_flips(batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """Draw horizontal-flip decisions, each True with probability 1/2.

    Args:
        batch_size: number of decisions B.
        generator: the source of randomness (CPU torch.Generator).

    Returns:
        bool tensor (B,).
    """
    return torch.rand(batch_size, generator=generator) < 0.5


def random_horizontal_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2 (RandomHorizontalFlip(p=0.5)).

    Args:
        x: images (B, C, H, W).
        generator: the source of randomness (CPU torch.Generator).

    Returns:
        a new tensor (B, C, H, W) in which the chosen images are flipped along W.
    """
    if x.ndim != 4:
        raise ValueError(f"expected images (B, C, H, W), got shape {tuple(x.shape)}")
    flips = random_flips(x.shape[0], generator).to(x.device)  # (B,)
    return torch.where(flips[:, None, None, None], x.flip(-1), x)


def center_crop_box(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """The (left, upper, right, lower) box of a centred ``size`` x ``size`` square."""
    left = (width - size) // 2
    upper = (height - size) // 2
    return left, upper, left + size, upper + size


def resize_images(images: np.ndarray, resolution: int) -> np.ndarray:
    """Centre-crop to a square and resize with antialiasing (PIL Lanczos on 8-bit images).

    Args:
        images: uint8 (N, C, H, W).
        resolution: output side R.

    Returns:
        uint8 (N, C, R, R). Unchanged (the same array) when H == W == R.
    """
    n, c, h, w = images.shape
    if h == w == resolution:
        return images
    side = min(h, w)
    box = center_crop_box(w, h, side)
    out = np.empty((n, c, resolution, resolution), dtype=np.uint8)
    for i in range(n):
        for j in range(c):
            plane = Image.fromarray(np.ascontiguousarray(images[i, j]), mode="L")
            # crop first: resize(box=...) would let the filter read pixels outside the square
            resized = plane.crop(box).resize((resolution, resolution), Image.Resampling.LANCZOS)
            out[i, j] = np.asarray(resized)
    logger.info("resized %d images from %dx%d to %dx%d", n, h, w, resolution, resolution)
    return out


class ImageDataset:
    """Images stored as uint8 (N, C, H, W), in memory or memory-mapped, read as floats in [0, 1].

    The storage is a list of chunks (one per file for ImageNet64's ten training batches) that are
    concatenated logically, never copied. With ``grayscale=True`` RGB chunks are converted to luma
    when read (:func:`rgb_to_gray`, PIL-exact), so a memory-mapped colour dataset can be used as
    grayscale without converting it on disk.

    Attributes:
        name: a short description for logs and the app.
        labels: int64 (N,) class or source-photograph index, or None.
        label_names: names of the label values (e.g. the source photographs), or None.
        max_value: the stored value that means 1.0 (255 for 8-bit images, 16 for sklearn digits).
    """

    def __init__(
        self,
        chunks: np.ndarray | Sequence[np.ndarray],
        *,
        grayscale: bool = False,
        max_value: int = 255,
        name: str = "",
        labels: np.ndarray | None = None,
        label_names: Sequence[str] | None = None,
    ) -> None:
        """Wrap uint8 arrays.

        Args:
            chunks: one uint8 array (N, C, H, W) or a list of them with equal (C, H, W);
                C is 1 or 3.
            grayscale: convert 3-channel chunks to 1-channel luma when reading.
            max_value: the stored value that maps to 1.0.
            name: description.
            labels: optional int (N,) labels.
            label_names: optional names of the label values.
        """
        if isinstance(chunks, np.ndarray):
            chunks = [chunks]
        chunks = list(chunks)
        if not chunks:
            raise ValueError("ImageDataset needs at least one array")
        stored_shape = chunks[0].shape[1:]
        for chunk in chunks:
            if chunk.dtype != np.uint8:
                raise TypeError(f"images must be stored as uint8, got dtype {chunk.dtype}")
            if chunk.ndim != 4 or chunk.shape[1:] != stored_shape:
                raise ValueError(
                    f"expected chunks of shape (N, C, H, W) with equal (C, H, W) = {stored_shape}, "
                    f"got {chunk.shape}"
                )
        if stored_shape[0] not in (1, 3):
            raise ValueError(
                f"expected 1 or 3 channels, got shape (N, C, H, W) = {chunks[0].shape}"
            )
        if not 1 <= max_value <= 255:
            raise ValueError(f"max_value must be in [1, 255], got {max_value}")
        self._chunks = chunks
        self._offsets = np.cumsum([0] + [len(chunk) for chunk in chunks])  # (K + 1,)
        self._convert_gray = grayscale and stored_shape[0] == 3
        self.max_value = int(max_value)
        self.name = name
        if labels is not None:
            labels = np.asarray(labels, dtype=np.int64)
            if labels.shape != (len(self),):
                raise ValueError(f"expected labels of shape ({len(self)},), got {labels.shape}")
        self.labels = labels
        self.label_names = tuple(label_names) if label_names is not None else None

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __repr__(self) -> str:
        c, h, w = self.image_shape
        return f"ImageDataset({self.name!r}, N={len(self)}, C={c}, H={h}, W={w})"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images as read (after any grayscale conversion)."""
        c, h, w = self._chunks[0].shape[1:]
        return (1 if self._convert_gray else c), h, w

    @property
    def num_channels(self) -> int:
        return self.image_shape[0]

    @property
    def resolution(self) -> int:
        """Image side H (datasets here are square; W for non-square ones is in image_shape)."""
        return self.image_shape[1]

    @property
    def dim(self) -> int:
        """d = C * H * W, the dimension of one image."""
        c, h, w = self.image_shape
        return c * h * w

    @property
    def is_memory_mapped(self) -> bool:
        return any(isinstance(chunk, np.memmap) for chunk in self._chunks)

    def __getitem__(self, index: int) -> np.ndarray:
        """One image as stored: uint8 (C, H, W), values in [0, max_value]."""
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        k = int(np.searchsorted(self._offsets, index, side="right")) - 1
        image = np.array(self._chunks[k][index - self._offsets[k]])  # (C, H, W), a copy
        return rgb_to_gray(image) if self._convert_gray else image

    def images(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Gather images as stored: uint8 (B, C, H, W), in the order of ``indices``."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)  # (B,)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"indices out of range for {len(self)} images")
        stored_c, h, w = self._chunks[0].shape[1:]
        out = np.empty((len(indices), stored_c, h, w), dtype=np.uint8)
        chunk_of = np.searchsorted(self._offsets, indices, side="right") - 1  # (B,)
        for k in np.unique(chunk_of):
            where = np.flatnonzero(chunk_of == k)
            local = indices[where] - self._offsets[k]
            # Sorted reads are sequential on a memory map; undo the sort when placing.
            order = np.argsort(local, kind="stable")
            out[where[order]] = self._chunks[k][local[order]]
        return rgb_to_gray(out) if self._convert_gray else out

    def batch(
        self,
        indices: Sequence[int] | np.ndarray,
        flips: np.ndarray | torch.Tensor | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """A float batch ``x`` for training or evaluation.

        Args:
            indices: B image indices.
            flips: optional bool (B,): mirror these images left-right (see :func:`random_flips`).
            device: where to put the result.

        Returns:
            float32 tensor (B, C, H, W) with values in [0, 1] (stored value / max_value).
        """
        images = self.images(indices)  # (B, C, H, W) uint8
        if flips is not None:
            flips = np.asarray(torch.as_tensor(flips).cpu(), dtype=bool).reshape(-1)
            if flips.shape != (len(images),):
                raise ValueError(f"expected flips of shape ({len(images)},), got {flips.shape}")
            images[flips] = images[flips][..., ::-1]
        x = torch.from_numpy(images).to(device=device, dtype=torch.float32)
        return x.div_(self.max_value)

    def to_numpy(self) -> np.ndarray:
        """All images as stored, uint8 (N, C, H, W) (a copy; mind the size of large datasets)."""
        return self.images(np.arange(len(self)))
