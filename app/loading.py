"""Cached wrappers around dsm_core loaders: the model (once per source), its test set, uploads.

Models are shared by every session (``st.cache_resource``), in eval mode with frozen parameters;
all input gradients go through dsm_core (``torch.autograd.grad``), so sessions never share
state. Arrays are cached with ``st.cache_data``. Results that take seconds and come with a
progress bar (the brightness/contrast grid) live in a small shared LRU store; decoded uploads in
one bounded in bytes.
"""

import dataclasses
import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st
import torch

import dsm_core as dc
from dsm_core.checkpoint import (
    COMPANION_FILES,
    CONFIG_FILE,
    WEIGHTS_FILE,
    ModelSource,
    load_model_folder,
    resolve_source,
    source_key,
)
from dsm_core.images import DecodedImage, TiledImage, decode_upload, pixels_to_tensor
from dsm_core.images import decode_tiles as dsm_decode_tiles
from dsm_core.packaging import (
    CompanionFileError,
    HeldoutSet,
    heldout_from_images,
    load_heldout,
    logp_db_of_pixels,
    read_card,
    read_metrics,
    read_test_images,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS_DIR = REPO_ROOT / "checkpoints"
DEFAULT_MODEL_DIR = CHECKPOINTS_DIR / "default"
MODEL_ENV, REVISION_ENV = "DSM_MODEL", "DSM_MODEL_REVISION"


@dataclass(frozen=True)
class ModelChoice:
    """Where a model comes from: a local folder or a Hub repo id (+ revision)."""

    source: str
    revision: str | None = None

    @property
    def key(self) -> str:
        return source_key(self.source, self.revision)

    @property
    def is_default(self) -> bool:
        return Path(self.source).expanduser().resolve() == DEFAULT_MODEL_DIR.resolve()


def bundled_models() -> list[Path]:
    """The model folders shipped in checkpoints/ (those with a config.json), default first."""
    folders = sorted(p.parent for p in CHECKPOINTS_DIR.glob("*/config.json"))
    return sorted(folders, key=lambda p: p.name != DEFAULT_MODEL_DIR.name)


def initial_choice() -> ModelChoice:
    """The model named by DSM_MODEL (+ DSM_MODEL_REVISION), else the bundled default."""
    source = os.environ.get(MODEL_ENV, "").strip() or str(DEFAULT_MODEL_DIR)
    revision = os.environ.get(REVISION_ENV, "").strip() or None
    return ModelChoice(source, revision)


@dataclass
class ModelBundle:
    """A loaded model with its folder and companion files (shared, read-only)."""

    model: Any  # dsm_core EnergyModel (or ScoreModel)
    choice: ModelChoice
    folder: Path
    kind: str
    metrics: dict | None
    card: str | None
    stamp: tuple
    problems: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.choice.key}|{hash(self.stamp)}"

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def is_energy(self) -> bool:
        return isinstance(self.model, dc.BaseEnergy)


def _folder_stamp(folder: Path) -> tuple:
    """(name, size, mtime) of the files that matter, so a re-packaged folder is reloaded."""
    stamp = []
    for name in (WEIGHTS_FILE, CONFIG_FILE, *COMPANION_FILES):
        path = folder / name
        if path.is_file():
            info = path.stat()
            stamp.append((name, info.st_size, info.st_mtime_ns))
    return tuple(stamp)


def source_kind(resolved: ModelSource, choice: ModelChoice) -> str:
    """How the sidebar names where a model came from: bundled, a local folder or the Hub."""
    if resolved.from_hub:
        return "Hugging Face Hub"
    if choice.is_default:
        return "bundled default"
    bundled = resolved.folder.resolve().parent == CHECKPOINTS_DIR.resolve()
    return f"bundled {resolved.folder.resolve().name}" if bundled else "local folder"


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def _load_bundle(source: str, revision: str | None, stamp: tuple) -> ModelBundle:
    choice = ModelChoice(source, revision)
    resolved = resolve_source(source, revision)
    folder, kind = resolved.folder, source_kind(resolved, choice)
    model = load_model_folder(folder, source=choice.key)
    problems = []
    try:
        metrics = read_metrics(folder)
    except CompanionFileError as exc:
        metrics, problems = None, [str(exc)]
    return ModelBundle(model, choice, folder, kind, metrics, read_card(folder), stamp, problems)


def get_bundle(choice: ModelChoice) -> ModelBundle:
    """The model of a choice, loaded once per (source, revision, files on disk).

    Raises:
        dsm_core.ModelLoadError: with a message for the user.
    """
    path = Path(choice.source).expanduser()
    stamp = _folder_stamp(path) if path.is_dir() else ()
    return _load_bundle(choice.source, choice.revision, stamp)


def forget_model(choice: ModelChoice) -> None:
    """Drop every cached copy of the model (e.g. after its files changed)."""
    _load_bundle.clear()
    _read_heldout.clear()


@st.cache_data(show_spinner="Reading the test set…", max_entries=8)
def _read_heldout(folder: str, image_shape: tuple[int, ...], stamp: tuple) -> HeldoutSet:
    return load_heldout(folder, image_shape)


@st.cache_resource(show_spinner="Computing log p of the bundled test images…", max_entries=4)
def _computed_heldout(_bundle: ModelBundle, key: str) -> HeldoutSet:
    sample = read_test_images(_bundle.folder, _bundle.model.image_shape)
    if sample is None:
        raise CompanionFileError(f"{_bundle.folder}: no test images to compute log p from")
    return heldout_from_images(_bundle.model, sample[0])


def get_heldout(bundle: ModelBundle) -> tuple[HeldoutSet | None, str | None]:
    """(the held-out set, None) or (None, why not).

    Reads ``test_logp_db.npz`` / ``test_images.npz``; log p the files do not give (for the sample
    images, or for all when only images are there) is computed once with the model.
    """
    shape = tuple(bundle.model.image_shape)
    try:
        heldout = _read_heldout(str(bundle.folder), shape, bundle.stamp)
    except CompanionFileError as exc:
        if bundle.is_energy:
            try:
                return _computed_heldout(bundle, bundle.key), None
            except CompanionFileError:
                pass
        return None, str(exc)
    if heldout.images is not None and heldout.image_logp_db is None and bundle.is_energy:
        heldout = _with_image_logp(bundle, heldout, bundle.key)
    return heldout, None


@st.cache_resource(show_spinner="Computing log p of the test images…", max_entries=4)
def _with_image_logp(_bundle: ModelBundle, _heldout: HeldoutSet, key: str) -> HeldoutSet:
    image_logp = logp_db_of_pixels(_bundle.model, _heldout.images)
    return dataclasses.replace(_heldout, image_logp_db=image_logp)


@st.cache_data(show_spinner=False, max_entries=64)
def gumbel_finding(logp_db: np.ndarray) -> dc.analysis.GumbelFinding:
    """The KS / Gumbel-vs-Normal test of the paper's Gumbel finding (cached by value)."""
    return dc.analysis.gumbel_finding(gumbel_fit(logp_db))


@st.cache_resource(show_spinner="Scoring the reference images…", max_entries=4)
def reference_images(_bundle: ModelBundle, key: str) -> dc.analysis.ReferenceImages:
    """Fig. 3's constant and uniform-noise images and their log p (seeded, once per model)."""
    return dc.analysis.reference_images(_bundle.model, generator=torch.Generator().manual_seed(0))


@st.cache_resource(show_spinner="Participation ratio of the test images…", max_entries=4)
def participation_ratios(_heldout: HeldoutSet, key: str) -> np.ndarray:
    """Wavelet participation ratio of each sample test image (M,) (paper Fig. 4 right)."""
    return dc.participation_ratio(pixels_to_tensor(_heldout.images)).double().numpy()


# The one-shot vs ODE disagreement on test images: on this many of the sample images, with the
# check's own ODE settings (so its discretisation error is part of the tolerance).
SPREAD_NUM_IMAGES = 6


def one_shot_spread(bundle: ModelBundle, heldout: HeldoutSet | None, progress=None) -> float:
    """The largest |one-shot - ODE| log p on a few test images, computed once per model (kept in
    the shared store, not st.cache: its progress bar must not be replayed); 0 without test
    images (then only the ODE's standard error is tolerated)."""
    if heldout is None or heldout.images is None:
        return 0.0
    store = result_store()
    key = ("one_shot_spread", bundle.key, SPREAD_NUM_IMAGES)
    spread = store.get(key)
    if spread is None:
        spread = dc.analysis.one_shot_spread(
            bundle.model,
            pixels_to_tensor(heldout.images[:SPREAD_NUM_IMAGES]),
            generator=torch.Generator().manual_seed(0),
            progress=progress,
        )
        store.put(key, spread)
    return spread


@st.cache_resource(show_spinner=False, max_entries=16)
def _seconds_per_score_evaluation(_bundle: ModelBundle, key: str, num_images: int) -> float:
    return dc.analysis.seconds_per_score_evaluation(
        _bundle.model, num_images, generator=torch.Generator().manual_seed(0)
    )


def seconds_per_score_evaluation(bundle: ModelBundle, num_images: int) -> float:
    """Wall time of one score evaluation of ``num_images`` images, timed once per model."""
    return _seconds_per_score_evaluation(bundle, bundle.key, num_images)


@st.cache_data(show_spinner=False, max_entries=64)
def gumbel_fit(logp_db: np.ndarray) -> dc.analysis.GumbelFit:
    """Maximum-likelihood Gumbel fit of log p values (cached by value)."""
    return dc.fit_gumbel(logp_db)


# Uploads, decoded: shared by all sessions but keyed by the file's content hash, so a session only
# finds what it uploaded itself. Bounded in bytes: a decoded image is at most
# DEFAULT_MAX_DECODED_PIXELS x 3 bytes (12.6 MB), so at least five of the largest stay cached.
UPLOAD_CACHE_BYTES = 64 * 2**20
# One decode at a time: a non-JPEG file is decoded once at full size (up to 40 megapixels x 4
# bytes) before it is reduced, and this keeps that peak to one upload per process.
_DECODE_LOCK = threading.Lock()


def decode(data: bytes, name: str, index: int) -> DecodedImage:
    """``dsm_core.images.decode_upload``, cached by content; raises ImageLoadError."""
    key = (hashlib.blake2b(data, digest_size=16).hexdigest(), Path(name).suffix.lower(), index)
    store = upload_cache()
    decoded = store.get(key)
    if decoded is None:
        with _DECODE_LOCK:
            decoded = decode_upload(data, name, index=index)
        store.put(key, decoded, decoded.pixels.nbytes)
    return decoded


def decode_tiles(data: bytes, name: str, index: int, image_shape: tuple) -> TiledImage:
    """``dsm_core.images.decode_tiles`` (one decode at a time), cached by content and shape in
    the shared store (only the tiles and a preview are kept, about 3 MB at most)."""
    key = (
        "tiles",
        hashlib.blake2b(data, digest_size=16).hexdigest(),
        Path(name).suffix.lower(),
        index,
        tuple(image_shape),
    )
    store = result_store()
    tiled = store.get(key)
    if tiled is None:
        with _DECODE_LOCK:
            tiled = dsm_decode_tiles(data, name, tuple(image_shape), index=index)
        store.put(key, tiled)
    return tiled


def digest(pixels: np.ndarray) -> str:
    """A short content hash of an image array (keys for cached results)."""
    h = hashlib.blake2b(digest_size=10)
    h.update(str((pixels.dtype.str, pixels.shape)).encode())
    h.update(np.ascontiguousarray(pixels).tobytes())
    return h.hexdigest()


class ResultStore:
    """A thread-safe LRU map shared by all sessions, bounded in entries and optionally in bytes.

    For results computed with a progress bar, and for decoded uploads. Values are treated as
    read-only by every reader.
    """

    def __init__(self, max_entries: int = 128, max_bytes: int | None = None) -> None:
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0

    @property
    def nbytes(self) -> int:
        """The sizes given to ``put`` of the entries held now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key][0]

    def put(self, key: Hashable, value: Any, nbytes: int = 0) -> None:
        """Store ``value`` (``nbytes`` its size), evicting the least recently used beyond the
        bounds; a value larger than ``max_bytes`` alone is not stored."""
        with self._lock:
            if key in self._items:
                self._bytes -= self._items.pop(key)[1]
            if self._max_bytes is not None and nbytes > self._max_bytes:
                return
            self._items[key] = (value, nbytes)
            self._bytes += nbytes
            while len(self._items) > self._max_entries or (
                self._max_bytes is not None and self._bytes > self._max_bytes
            ):
                self._bytes -= self._items.popitem(last=False)[1][1]


@st.cache_resource
def result_store() -> ResultStore:
    return ResultStore()


@st.cache_resource
def upload_cache() -> ResultStore:
    """Decoded uploads, at most ``UPLOAD_CACHE_BYTES`` of pixels in all."""
    return ResultStore(max_entries=64, max_bytes=UPLOAD_CACHE_BYTES)
