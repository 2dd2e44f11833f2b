"""Infinite, seeded, resumable batch sampling over fresh random permutations (with flips)."""

import logging
from collections.abc import Mapping

import numpy as np
import torch

from dsm_core.data.dataset import ImageDataset

logger = logging.getLogger(__name__)


class BatchSampler:
    """An endless stream of index batches: epoch after epoch of fresh random permutations.

    The permutation of epoch ``e`` and its flip decisions are a pure function of ``(seed, e)``
    (numpy ``default_rng([seed, e])``), so the whole stream is determined by the seed and the
    position in it is three integers: ``seed``, ``epoch`` and ``position`` within the epoch's
    permutation. :meth:`state_dict` returns them (JSON-able) and :meth:`load_state_dict` puts a
    new sampler at the same place, so a resumed training run sees exactly the batches the
    interrupted one would have seen. Batches run on across epoch boundaries (no dropped or short
    batches), like an infinite sampler feeding a DataLoader.

    With ``world_size > 1`` every rank builds the same stream; each step consumes
    ``batch_size * world_size`` items and rank ``r`` takes every ``world_size``-th one from
    ``r``, so ranks see disjoint images and the union is the single-process batch.
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        seed: int = 0,
        *,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        """Start at epoch 0, position 0.

        Args:
            num_items: N, the dataset size.
            batch_size: images per batch on this rank.
            seed: non-negative integer seed of the stream.
            rank: this process's rank in [0, world_size).
            world_size: number of processes sharing the stream.
        """
        if num_items < 1:
            raise ValueError(f"num_items must be >= 1, got {num_items}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        if not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world={world_size}")
        self.num_items = int(num_items)
        self.batch_size = int(batch_size)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self._seed = int(seed)
        self._epoch = 0
        self._position = 0
        self._permutation: np.ndarray | None = None  # (N,) int64, for self._epoch
        self._flips: np.ndarray | None = None  # (N,) bool, for self._epoch

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def epoch(self) -> int:
        """Number of completed passes over the data."""
        return self._epoch

    @property
    def position(self) -> int:
        """Items of the current epoch's permutation already consumed (all ranks together)."""
        return self._position

    def epoch_order(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """The permutation and flip decisions of one epoch.

        Returns:
            permutation int64 (N,), flips bool (N,): item ``i`` of the epoch is image
            ``permutation[i]``, mirrored if ``flips[i]``.
        """
        rng = np.random.default_rng([self._seed, int(epoch)])
        permutation = rng.permutation(self.num_items).astype(np.int64)  # (N,)
        flips = rng.random(self.num_items) < 0.5  # (N,)
        return permutation, flips

    def __iter__(self) -> "BatchSampler":
        return self

    def __next__(self) -> tuple[np.ndarray, np.ndarray]:
        """The next batch: indices int64 (B,) and flip decisions bool (B,)."""
        need = self.batch_size * self.world_size
        index_parts, flip_parts = [], []
        while need > 0:
            if self._permutation is None:
                self._permutation, self._flips = self.epoch_order(self._epoch)
            stop = min(self.num_items, self._position + need)
            index_parts.append(self._permutation[self._position : stop])
            flip_parts.append(self._flips[self._position : stop])
            need -= stop - self._position
            self._position = stop
            if self._position == self.num_items:
                self._epoch += 1
                self._position = 0
                self._permutation = self._flips = None
        indices = np.concatenate(index_parts)[self.rank :: self.world_size]  # (B,)
        flips = np.concatenate(flip_parts)[self.rank :: self.world_size]  # (B,)
        return indices, flips

    def state_dict(self) -> dict[str, int]:
        """Where the stream is: plain ints, safe to store as JSON in a checkpoint."""
        return {
            "seed": self._seed,
            "epoch": self._epoch,
            "position": self._position,
            "num_items": self.num_items,
        }

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Continue the stream of a saved :meth:`state_dict` (the saved seed wins).

        Raises:
            ValueError: if the state belongs to a dataset of another size (the stream would
                silently differ) or is malformed.
        """
        missing = {"seed", "epoch", "position", "num_items"} - set(state)
        if missing:
            raise ValueError(f"sampler state lacks {sorted(missing)}: {dict(state)}")
        if int(state["num_items"]) != self.num_items:
            raise ValueError(
                f"sampler state is for {state['num_items']} images, this dataset has "
                f"{self.num_items}; resuming would not reproduce the data stream"
            )
        seed, epoch, position = int(state["seed"]), int(state["epoch"]), int(state["position"])
        if seed < 0 or epoch < 0 or not 0 <= position < self.num_items:
            raise ValueError(f"invalid sampler state {dict(state)}")
        if seed != self._seed:
            logger.info("sampler seed %d replaced by the saved seed %d", self._seed, seed)
        self._seed, self._epoch, self._position = seed, epoch, position
        self._permutation = self._flips = None


class BatchIterator:
    """Endless float batches (B, C, H, W) from an :class:`ImageDataset`, resumable.

    Use ``next(batches)`` in the training loop and store ``batches.state_dict()`` in the
    checkpoint; ``iterate_batches(..., state=saved)`` continues with the same batches.
    """

    def __init__(
        self,
        dataset: ImageDataset,
        batch_size: int,
        seed: int = 0,
        *,
        flip: bool = True,
        device: torch.device | str | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        """See :func:`iterate_batches`."""
        self.dataset = dataset
        self.flip = flip
        self.device = device
        self.sampler = BatchSampler(
            len(dataset), batch_size, seed, rank=rank, world_size=world_size
        )

    def __iter__(self) -> "BatchIterator":
        return self

    def __next__(self) -> torch.Tensor:
        """The next batch x: float32 (B, C, H, W) in [0, 1]."""
        indices, flips = next(self.sampler)
        return self.dataset.batch(indices, flips if self.flip else None, device=self.device)

    def state_dict(self) -> dict[str, int]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        self.sampler.load_state_dict(state)


def iterate_batches(
    dataset: ImageDataset,
    batch_size: int,
    seed: int = 0,
    *,
    flip: bool = True,
    state: Mapping[str, int] | None = None,
    device: torch.device | str | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> BatchIterator:
    """An endless, seeded, resumable stream of training batches.

    Args:
        dataset: the images.
        batch_size: B, images per batch (per rank).
        seed: non-negative seed of the permutations and flips.
        flip: mirror each image left-right with probability 1/2 (the released training and
            evaluation both did).
        state: a saved ``state_dict()`` to resume from, or None to start at the beginning.
        device: where batches are put.
        rank: this process's rank (distributed training).
        world_size: number of processes.

    Returns:
        a :class:`BatchIterator`; ``next()`` gives float32 (B, C, H, W) in [0, 1].
    """
    batches = BatchIterator(
        dataset, batch_size, seed, flip=flip, device=device, rank=rank, world_size=world_size
    )
    if state is not None:
        batches.load_state_dict(state)
    return batches
