"""log p of a large image tile by tile at native resolution: a map instead of one number for a
photo averaged down to the model's size (``dsm_core.images.decode_tiles`` makes the tiles)."""

from dataclasses import dataclass

import numpy as np
import torch

from dsm_core.analysis._common import Progress, batch_size_for, chunks
from dsm_core.analysis.logp import logp_db
from dsm_core.energy import BaseEnergy
from dsm_core.images import TiledImage, pixels_to_tensor


@dataclass(frozen=True)
class LogpMap:
    """log p in dB/dim of each tile of a ``TiledImage``.

    Attributes:
        logp_db: (rows, columns), the grid of ``TiledImage.grid_shape``.
        tiled: the tiles and where they are.
    """

    logp_db: np.ndarray
    tiled: TiledImage

    @property
    def order(self) -> np.ndarray:
        """Tile indices (into ``tiled.tiles``) from the most to the least probable."""
        return np.argsort(-self.logp_db.ravel(), kind="stable")

    @property
    def median_db(self) -> float:
        return float(np.median(self.logp_db))


def logp_map(
    model: BaseEnergy,
    tiled: TiledImage,
    *,
    batch_size: int | None = None,
    progress: Progress | None = None,
) -> LogpMap:
    """One-shot log p (dB/dim) of every tile, batch by batch (``progress(done, total)`` tiles)."""
    total = tiled.tiles.shape[0]
    values = np.empty(total, dtype=np.float64)
    for rows in chunks(total, batch_size_for(model.d, batch_size)):
        x = pixels_to_tensor(tiled.tiles[rows])  # (n, C, R, R)
        values[rows] = logp_db(model, x).double().numpy()
        if progress is not None:
            progress(rows.stop, total)
    return LogpMap(values.reshape(tiled.grid_shape), tiled)


def tile_tensor(tiled: TiledImage, index: int) -> torch.Tensor:
    """Tile ``index`` as the model's input (1, C, R, R) in [0, 1]."""
    return pixels_to_tensor(tiled.tiles[index : index + 1])
