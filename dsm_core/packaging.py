"""A model folder's companion files: held-out log p, a sample of held-out images, metrics, card.

A packaged model folder (API.md, "Files") holds, beside ``model.safetensors`` + ``config.json``:

- ``test_logp_db.npz``: ``logp_db`` (N,) float64, log p in dB/dim of every held-out image, and
  ``indices`` (N,) int64, each image's index in the held-out dataset;
- ``test_images.npz``: ``images`` uint8 (M, C, H, W), a sample of those images spread over the
  range of log p (extremes included), with their ``indices`` (M,) and ``logp_db`` (M,); for
  crops of photographs, also ``labels`` (M,) int64, each image's source photograph, indexing
  ``label_names`` (P,) str, the names of the photographs the held-out images were cut from;
- ``metrics.json``: ``nll_bits_per_dim``, ``entropy_db``, ``gumbel_loc_db``,
  ``gumbel_scale_db``, ``num_images``, ``psnr_db`` (as ``train/evaluate.py`` writes it), and
  ``nll_bits_per_dim_dequantized`` (the dequantization bound on the 8-bit NLL);
- ``README.md``: the model card.

``package_model`` writes them (never overwriting an existing card or metrics file unless told
to); the readers refuse malformed files with a message naming the file and the problem.
"""

import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from dsm_core import units
from dsm_core.analysis.denoising import denoising_psnr
from dsm_core.analysis.gumbel import fit_gumbel
from dsm_core.analysis.logp import dequantized_nll_bits_per_dim
from dsm_core.analysis.logp import logp_db as model_logp_db
from dsm_core.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    read_json_object,
    training_data_name,
    write_atomic,
    write_json,
)
from dsm_core.data.natural import LOMIRI_MAX_SIDE, LOMIRI_PHOTOS, training_data_terms
from dsm_core.energy import BaseEnergy
from dsm_core.noise import PSNR_GRID_DB

log = logging.getLogger(__name__)

TEST_LOGP_FILE = "test_logp_db.npz"
TEST_IMAGES_FILE = "test_images.npz"
METRICS_FILE = "metrics.json"
CARD_FILE = "README.md"
DEFAULT_NUM_SAMPLE_IMAGES = 512
# every other level of the one grid, from -30 to 60 dB
PACKAGE_PSNR_GRID_DB = PSNR_GRID_DB[:13:2]
RankKind = Literal["highest", "lowest", "even"]


class CompanionFileError(ValueError):
    """A companion file that exists but cannot be used; the message names it and says why."""


@dataclass(frozen=True)
class HeldoutSet:
    """The held-out images of a model folder and their log p.

    Attributes:
        logp_db: (N,) log p in dB/dim of every held-out image (float64).
        indices: (N,) their indices in the held-out dataset.
        images: uint8 (M, C, H, W), a sample of the held-out images, or None.
        image_indices: (M,) dataset index of each sample image, or None.
        image_logp_db: (M,) log p of each sample image in dB/dim, or None.
    """

    logp_db: np.ndarray
    indices: np.ndarray
    images: np.ndarray | None = None
    image_indices: np.ndarray | None = None
    image_logp_db: np.ndarray | None = None

    @property
    def num_images(self) -> int:
        return 0 if self.images is None else int(self.images.shape[0])


# ------------------------------------------------------------------------------------- reading


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except Exception as exc:  # zip errors, object arrays (pickle refused), truncation
        raise CompanionFileError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from exc


def read_test_logp(folder: str | Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(logp_db (N,) float64, indices (N,) int64) from ``test_logp_db.npz``, None if absent.

    Raises:
        CompanionFileError: missing keys, wrong shapes, fewer than 2 or non-finite values.
    """
    path = Path(folder) / TEST_LOGP_FILE
    if not path.is_file():
        return None
    arrays = _load_npz(path)
    if "logp_db" not in arrays:
        raise CompanionFileError(f"{path}: no 'logp_db' array (found {sorted(arrays)})")
    logp = np.asarray(arrays["logp_db"], dtype=np.float64).reshape(-1)
    indices = np.asarray(arrays.get("indices", np.arange(logp.size)), dtype=np.int64).reshape(-1)
    if indices.shape != logp.shape:
        raise CompanionFileError(f"{path}: {logp.size} log p values but {indices.size} indices")
    if logp.size < 2 or not np.isfinite(logp).all():
        raise CompanionFileError(f"{path}: need at least 2 finite log p values, got {logp.size}")
    return logp, indices


def read_test_images(
    folder: str | Path, image_shape: tuple[int, ...] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
    """(images uint8 (M, C, H, W), indices (M,), logp_db (M,) or None) from ``test_images.npz``.

    Args:
        folder: the model folder.
        image_shape: the model's (C, H, W); the images must match it.

    Returns:
        The arrays, or None if the file is absent.

    Raises:
        CompanionFileError: missing ``images``, wrong dtype or shape.
    """
    path = Path(folder) / TEST_IMAGES_FILE
    if not path.is_file():
        return None
    arrays = _load_npz(path)
    if "images" not in arrays:
        raise CompanionFileError(f"{path}: no 'images' array (found {sorted(arrays)})")
    images = arrays["images"]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[0] < 1:
        raise CompanionFileError(
            f"{path}: 'images' must be uint8 (M, C, H, W), got {images.dtype} {images.shape}"
        )
    if image_shape is not None and tuple(images.shape[1:]) != tuple(image_shape):
        raise CompanionFileError(
            f"{path}: images are {tuple(images.shape[1:])}, the model needs {tuple(image_shape)}"
        )
    m = images.shape[0]
    indices = np.asarray(arrays.get("indices", np.arange(m)), dtype=np.int64).reshape(-1)
    logp = arrays.get("logp_db")
    if logp is not None:
        logp = np.asarray(logp, dtype=np.float64).reshape(-1)
    if indices.size != m or (logp is not None and logp.size != m):
        raise CompanionFileError(f"{path}: {m} images but indices/logp_db of other lengths")
    return np.ascontiguousarray(images), indices, logp


def read_metrics(folder: str | Path) -> dict[str, Any] | None:
    """``metrics.json`` as a dict, None if absent."""
    path = Path(folder) / METRICS_FILE
    if not path.is_file():
        return None
    return read_json_object(path, CompanionFileError)


def read_card(folder: str | Path) -> str | None:
    """The model card (``README.md``) text, None if absent."""
    path = Path(folder) / CARD_FILE
    return path.read_text(errors="replace") if path.is_file() else None


def load_heldout(folder: str | Path, image_shape: tuple[int, ...] | None = None) -> HeldoutSet:
    """The test set of a model folder from its npz files (no model needed).

    When ``test_logp_db.npz`` is absent but ``test_images.npz`` carries ``logp_db``, that is used;
    when the images carry no ``logp_db``, theirs are looked up by index in ``test_logp_db.npz``
    (``image_logp_db`` stays None if some are not there: compute them with the model).

    Raises:
        CompanionFileError: the files are malformed, or neither gives log p values.
    """
    folder = Path(folder)
    sample = read_test_images(folder, image_shape)
    values = read_test_logp(folder)
    if values is None:
        if sample is None or sample[2] is None:
            raise CompanionFileError(
                f"{folder}: no {TEST_LOGP_FILE} (and no log p in {TEST_IMAGES_FILE}); package the "
                "model with train/package_model.py, or compute log p from its images"
            )
        values = (sample[2], sample[1])
    logp, indices = values
    if sample is None:
        return HeldoutSet(logp, indices)
    images, image_indices, image_logp = sample
    if image_logp is None:  # look the sample images up by dataset index
        position = {int(k): i for i, k in enumerate(indices.tolist())}
        if all(int(k) in position for k in image_indices.tolist()):
            image_logp = logp[[position[int(k)] for k in image_indices.tolist()]]
    return HeldoutSet(logp, indices, images, image_indices, image_logp)


def heldout_from_images(model: BaseEnergy, images: np.ndarray, batch_size: int = 64) -> HeldoutSet:
    """A ``HeldoutSet`` computed by the model from uint8 images (M, C, H, W) (no npz log p)."""
    logp = logp_db_of_pixels(model, images, batch_size=batch_size)
    indices = np.arange(images.shape[0])
    return HeldoutSet(logp, indices, images, indices, logp)


def logp_db_of_pixels(model: BaseEnergy, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """log p in dB/dim (M,) float64 of uint8 images (M, C, H, W) (value / 255 in [0, 1])."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32).div_(255.0)
    return model_logp_db(model, x, batch_size=batch_size).double().numpy()


def rank_indices(logp_db: np.ndarray, num: int, kind: RankKind) -> np.ndarray:
    """Positions of ``num`` values: the highest (descending), lowest (ascending) or evenly
    spaced in rank from lowest to highest (both extremes included)."""
    logp = np.asarray(logp_db, dtype=np.float64).reshape(-1)
    order = np.argsort(logp, kind="stable")  # ascending
    num = max(0, min(int(num), logp.size))
    if kind == "highest":
        return order[::-1][:num]
    if kind == "lowest":
        return order[:num]
    if kind == "even":
        if num == 0:
            return order[:0]
        ranks = np.unique(np.round(np.linspace(0, logp.size - 1, num)).astype(np.int64))
        return order[ranks]
    raise ValueError(f"kind must be 'highest', 'lowest' or 'even', got {kind!r}")


# ------------------------------------------------------------------------------------- writing


def summary_metrics(logp_db: np.ndarray, d: int) -> dict[str, Any]:
    """The log p part of ``metrics.json`` from held-out log p values (dB/dim) of dimension d.

    ``nll_bits_per_dim`` is the discrete NLL (+8 bits, paper A.1), ``entropy_db = -mean log p``.
    """
    logp = np.asarray(logp_db, dtype=np.float64).reshape(-1)
    mean_energy_nats = float(units.logp_db_to_energy_nats(float(logp.mean()), d))
    gumbel = fit_gumbel(logp)
    return {
        "nll_bits_per_dim": float(units.discrete_nll_bits_per_dim(mean_energy_nats, d)),
        "entropy_db": float(-logp.mean()),
        "gumbel_loc_db": gumbel.loc,
        "gumbel_scale_db": gumbel.scale,
        "num_images": int(logp.size),
        "logp_db_mean": float(logp.mean()),
        "logp_db_std": float(logp.std()),
        "logp_db_min": float(logp.min()),
        "logp_db_max": float(logp.max()),
        "gumbel_ks_statistic": gumbel.ks_statistic,
    }


def _training_data_rows(metadata: dict[str, Any]) -> list[str]:
    """Card rows naming the training data recorded in a model's metadata, and its terms."""
    name = training_data_name(metadata)
    if name is None:
        return []
    photographs = (metadata.get("data") or {}).get("photographs")
    shown = f"`{name}`" + (f", crops of {len(photographs)} photographs" if photographs else "")
    rows = [f"| training data | {shown} |"]
    terms = training_data_terms(name)
    if terms is not None:
        rows.append(f"| **licence of the training data** | {terms} |")
    return rows


def _test_photograph_rows(names: Sequence[str]) -> list[str]:
    """The card row naming the photographs of the held-out crops, or [] when there are none."""
    if not names:
        return []
    credited = sum(name in LOMIRI_PHOTOS for name in names)
    note = f"; {credited} from Debian's lomiri-wallpapers, credited below" if credited else ""
    return [f"| test photographs | {len(names)}{note}: {', '.join(names)} |"]


def _photograph_credits(names: Sequence[str]) -> list[str]:
    """A card section crediting the held-out photographs that need it (LOMIRI_PHOTOS), or []."""
    credited = [name for name in names if name in LOMIRI_PHOTOS]
    if not credited:
        return []
    lines = [
        "## Test photographs credited",
        "",
        "The held-out images include crops of these photographs of Debian's lomiri-wallpapers "
        "packages (`/usr/share/backgrounds/<photograph>`), modified: reduced to "
        f"{LOMIRI_MAX_SIDE} px on the long side, cropped and downsampled.",
        "",
        "| photograph | author | licence | package |",
        "|---|---|---|---|",
    ]
    for name in credited:
        credit = LOMIRI_PHOTOS[name]
        lines.append(
            f"| {name}.jpg | © {credit.year} {credit.author} | "
            f"[{credit.licence}]({credit.licence_url}) | {credit.package} |"
        )
    return [*lines, ""]


def model_card(
    model: BaseEnergy,
    metrics: dict[str, Any],
    data_description: str,
    provisional: bool,
    test_photographs: Sequence[str] = (),
) -> str:
    """A short model card (README.md) in markdown from the model and its metrics.

    ``test_photographs`` names the photographs the held-out images were cut from (none: not
    crops); those of Debian's lomiri-wallpapers are credited (author, licence, package).
    """
    c, h, w = model.image_shape
    num_params = sum(p.numel() for p in model.parameters())
    steps = (model.metadata or {}).get("steps")
    lines = [
        "# Dual score matching energy model",
        "",
        "A normalised energy U(x) = -log p(x) learned by dual score matching "
        "(Guth, Kadkhodaie, Simoncelli 2025).",
        "",
    ]
    if provisional:
        lines += [
            "> **Provisional model.** This folder was packaged before training finished (or from "
            "random weights); its numbers are placeholders.",
            "",
        ]
    lines += [
        "| | |",
        "|---|---|",
        f"| data | {data_description} |",
        *_test_photograph_rows(test_photographs),
        *_training_data_rows(model.metadata or {}),
        f"| images | {c} x {h} x {w} ({'grayscale' if c == 1 else 'colour'}) |",
        f"| parameters | {num_params:,} |",
        f"| training steps | {steps if steps is not None else 'unknown'} |",
        f"| log normalisation K | {model.log_norm_nats:.2f} nats |",
    ]
    for key, label, unit in (
        ("nll_bits_per_dim", "test NLL (discrete, +8)", "bits/dim"),
        ("nll_bits_per_dim_dequantized", "test NLL bound (dequantized)", "bits/dim"),
        ("entropy_db", "entropy estimate -E[log p]", "dB/dim"),
        ("gumbel_loc_db", "Gumbel location", "dB/dim"),
        ("gumbel_scale_db", "Gumbel scale", "dB/dim"),
        ("num_images", "held-out images", ""),
    ):
        value = metrics.get(key)
        if value is not None:
            shown = f"{value:.3f}" if isinstance(value, float) else str(value)
            lines.append(f"| {label} | {shown} {unit} |")
    lines += [
        "",
        "Files: `model.safetensors` + `config.json` (weights and architecture), "
        f"`{TEST_LOGP_FILE}` (log p of the held-out images), `{TEST_IMAGES_FILE}` (a sample of "
        f"them), `{METRICS_FILE}`.",
        "",
        *_photograph_credits(test_photographs),
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class PackageResult:
    """What ``package_model`` wrote: paths, and whether metrics/card were (re)written."""

    folder: Path
    logp_db: np.ndarray
    metrics: dict[str, Any]
    wrote_metrics: bool
    wrote_card: bool


def package_model(
    model: BaseEnergy,
    images: np.ndarray,
    out: str | Path,
    *,
    source_folder: str | Path | None = None,
    indices: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    label_names: Sequence[str] | None = None,
    num_sample_images: int = DEFAULT_NUM_SAMPLE_IMAGES,
    data_description: str = "",
    psnr_num_images: int = 0,
    provisional: bool = False,
    force: bool = False,
    seed: int = 0,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> PackageResult:
    """Write a model folder's companion files (and copy its weights) into ``out``.

    Computes log p (dB/dim) of every held-out image with ``dsm_core.logp_db`` and writes
    ``test_logp_db.npz``; stores a sample of ``num_sample_images`` images spread evenly in log p
    rank (extremes included) in ``test_images.npz``; writes ``metrics.json`` and ``README.md``
    only if absent (or ``force``).

    Args:
        model: the normalised energy model.
        images: held-out images, uint8 (N, C, H, W) of the model's shape.
        out: the destination folder (created if needed).
        source_folder: the model folder whose ``model.safetensors`` + ``config.json`` are copied
            into ``out`` (skipped when it is ``out``); None: nothing is copied (write the weights
            with ``save_model`` first).
        indices: (N,) dataset indices of the images (default 0..N-1).
        labels: (N,) int scene (source photograph) or class of each image, kept with the
            sample in ``test_images.npz`` so statistics can be counted per scene; None: none.
        label_names: the source photographs that ``labels`` index (a crop dataset's
            ``label_names``): kept in ``test_images.npz``; the card lists those with crops among
            the images and credits the lomiri-wallpapers ones; None: not crops of photographs.
        num_sample_images: images kept in ``test_images.npz``.
        data_description: a line for the model card ("natural test crops ...").
        psnr_num_images: images for the denoising table ``psnr_db`` of metrics.json (0: skip).
        provisional: say so in the model card.
        force: overwrite an existing ``metrics.json`` / ``README.md``.
        seed: seed of the denoising noise.
        batch_size: images per forward pass.
        progress: ``progress(done, total)`` over batches of log p.

    Returns:
        A ``PackageResult``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {images.shape}")
    if tuple(images.shape[1:]) != tuple(model.image_shape):
        raise ValueError(f"images are {images.shape[1:]}, the model needs {model.image_shape}")
    n = images.shape[0]
    if n < 2:
        raise ValueError(f"need at least 2 held-out images, got {n}")
    indices = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
    if source_folder is not None and Path(source_folder).resolve() != out.resolve():
        for name in (WEIGHTS_FILE, CONFIG_FILE):
            src = Path(source_folder) / name
            write_atomic(out / name, lambda p, src=src: shutil.copyfile(src, p))
    logp_parts = []
    for start in range(0, n, batch_size):
        logp_parts.append(logp_db_of_pixels(model, images[start : start + batch_size], batch_size))
        if progress is not None:
            progress(min(start + batch_size, n), n)
    logp = np.concatenate(logp_parts)  # (N,)

    def save_npz(path: Path, **arrays: np.ndarray) -> None:
        def write(p: Path) -> None:
            with open(p, "wb") as file:
                np.savez(file, **arrays)

        write_atomic(path, write)

    save_npz(out / TEST_LOGP_FILE, logp_db=logp, indices=indices)
    keep = np.sort(rank_indices(logp, num_sample_images, "even"))
    sample = {"images": np.ascontiguousarray(images[keep]), "indices": indices[keep]}
    if labels is not None:
        sample["labels"] = np.asarray(labels, dtype=np.int64)[keep]
    if label_names is not None:
        sample["label_names"] = np.asarray(label_names, dtype=str)
    save_npz(out / TEST_IMAGES_FILE, **sample, logp_db=logp[keep])
    metrics = summary_metrics(logp, model.d)
    metrics["nll_bits_per_dim_dequantized"] = (
        dequantized_nll_bits_per_dim(
            model,
            torch.from_numpy(images),
            num_draws=1,
            generator=torch.Generator().manual_seed(seed),
            batch_size=batch_size,
        )
        .mean()
        .item()
    )
    metrics["log_norm_nats"] = model.log_norm_nats
    metrics["psnr_db"] = {}
    if psnr_num_images > 0:
        x = torch.from_numpy(images[: min(psnr_num_images, n)]).to(torch.float32).div_(255.0)
        generator = torch.Generator().manual_seed(seed)
        table = denoising_psnr(
            model, x, list(PACKAGE_PSNR_GRID_DB), generator=generator, batch_size=batch_size
        )
        metrics["psnr_db"] = table.psnr_table()
    if provisional:
        metrics["provisional"] = True
    wrote_metrics = force or not (out / METRICS_FILE).exists()
    if wrote_metrics:
        write_json(out / METRICS_FILE, metrics)
    else:
        log.info("%s exists; not overwritten (use force)", out / METRICS_FILE)
    wrote_card = force or not (out / CARD_FILE).exists()
    if wrote_card:
        photographs = []  # those with crops among the held-out images (a superset of the sample's)
        if label_names is not None:
            used = np.arange(len(label_names)) if labels is None else np.unique(labels)
            photographs = [label_names[int(k)] for k in used]
        card = model_card(model, metrics, data_description, provisional, photographs)
        write_atomic(out / CARD_FILE, lambda p: p.write_text(card))
    return PackageResult(out, logp, metrics, wrote_metrics, wrote_card)
