"""Training by dual score matching: TrainConfig, train_step(), the lr schedule and the loop.

The loop runs the same way on a CPU, one GPU or under torchrun (one process per GPU, DDP):
rank 0 alone logs (``log.jsonl``, a tqdm bar) and saves. A run folder holds ``config.json`` (the
resolved TrainConfig, written before step 0), ``log.jsonl``, ``checkpoint.safetensors`` (the whole
training state, replaced atomically) and ``model/`` (the exported, normalised model).
"""

import copy
import dataclasses
import json
import logging
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from dsm_core import distributed
from dsm_core.checkpoint import load_model, save_model, write_atomic
from dsm_core.config import (
    EnergyConfig,
    LossConfig,
    NoiseConfig,
    apply_overrides,
    from_dict,
    to_dict,
)
from dsm_core.data import ImageDataset, iterate_batches, load_dataset
from dsm_core.energy import BaseEnergy, DenoisingModel, model_from_config
from dsm_core.evaluation import evaluate_during_training
from dsm_core.losses import score_matching_terms
from dsm_core.noise import add_noise, dequantize, sample_t
from dsm_core.normalization import LogNormEstimate, estimate_log_norm
from dsm_core.precision import resolve_precision
from dsm_core.presets import preset_config

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
LOG_FILE = "log.jsonl"
CHECKPOINT_FILE = "checkpoint.safetensors"
MODEL_DIR = "model"
CHECKPOINT_FORMAT = "dsm-explorer-train/1"

Subset = Literal["all", "A", "B"]


@dataclass(frozen=True)
class DataConfig:
    """Which images to train and evaluate on (see ``dsm_core.data.load_dataset``)."""

    # "natural", "fashion-mnist", "digits", "imagenet64:<folder>", "cifar10:<folder>" or a path.
    name: str = "natural"
    split: str = "train"
    eval_split: str = "test"  # held-out images for evaluation and the normalisation constant
    resolution: int | None = None  # None: the model's image_size
    grayscale: bool = True
    flip: bool = True  # random horizontal flips, as in the release
    # Generalization experiments (spec §2.6): "A" = the first subset_size training images in
    # stored order, "B" = the last subset_size; "all" = every image.
    subset: Subset = "all"
    subset_size: int | None = None
    # Train on (k + u) / 256, u ~ U[0, 1) fresh every step, instead of the 8-bit values k / 255:
    # a density of 8-bit data with exact repeats (Fashion-MNIST's zero background) can
    # otherwise spike on the grid; off as released.
    dequantize: bool = False
    num_crops: int = 20_000  # "natural" only: number of random crops
    crop_seed: int = 0  # "natural" only: seed of the crops (a property of the dataset)


@dataclass(frozen=True)
class TrainConfig:
    """A complete training run; the defaults are the release's ImageNet64 recipe (spec §2.5).

    ``batch_size`` is the total over all processes (each of W processes takes batch_size / W).
    The learning rate at (0-based) step s is ``lr / 2**floor(s / lr_halve_every_steps)``, times
    ``(s + 1) / warmup_steps`` during the warm-up.
    """

    model: EnergyConfig = field(default_factory=EnergyConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    batch_size: int = 128
    num_steps: int = 1_000_000
    lr: float = 5e-4  # Adam, PyTorch's default betas and eps
    lr_halve_every_steps: int | None = 100_000  # None: constant
    warmup_steps: int = 0  # linear warm-up; 0 as released
    grad_clip: float | None = None  # max global gradient norm; None as released
    ema_decay: float | None = None  # exponential moving average of the weights; None as released
    log_every_steps: int = 100
    eval_every_steps: int = 1000
    eval_num_images: int = 3200  # the release: 100 batches x 32 test images
    eval_batch_size: int = 32
    checkpoint_every_steps: int = 1000
    seed: int = 0  # model initialisation, data order and noise
    # A model folder (or Hub id) whose weights start the run instead of a random initialisation,
    # e.g. to continue a shipped model whose run folder is gone (fresh optimizer state; the
    # architecture must equal ``model``). Ignored when resuming from a checkpoint.
    init_from: str | None = None
    device: str = "auto"  # "auto": CUDA when available, else CPU; "cpu", "cuda", "cuda:1", ...
    # Off by default (full float32). tf32 (CUDA only): TF32 matmuls and convolutions (the switch
    # is applied by train/train.py); bf16: autocast the network to bfloat16, float32 weights (on
    # CUDA experimental with double backprop; on a CPU only where it has native bf16, see
    # dsm_core.precision). train(precision=...) and train.py --precision override it per run.
    tf32: bool = False
    bf16: bool = False


# --------------------------------------------------------------------------------------------
# Configuration


def _flatten(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(_flatten(f"{prefix}.{key}" if prefix else key, sub))
        return out
    return {prefix: value}


def resolve_config(document: dict, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """A TrainConfig from a preset document and dotted overrides, strictly.

    The document is a (partial) TrainConfig as nested dicts; missing fields take their defaults
    and unknown fields raise. ``model`` may name an architecture preset instead of spelling it
    out: ``{"preset": "natural32", "unet": {"base_width": 16}}`` becomes that preset's
    EnergyConfig with the given fields replaced and ``unet.channels`` set from
    ``data.grayscale`` (1 or 3) unless given.

    Args:
        document: the preset, e.g. parsed from ``train/configs/*.json``.
        overrides: ``{"lr": 2e-4, "data.subset": "A", "model.unet.base_width": 16}``.

    Returns:
        The resolved, validated config.

    Raises:
        ValueError: an unknown field (named) or an inconsistent value.
    """
    document = copy.deepcopy(document)
    model = document.get("model")
    if isinstance(model, dict) and "preset" in model:
        name = model.pop("preset")
        data = document.get("data", {})
        grayscale = data.get("grayscale", DataConfig.grayscale) if isinstance(data, dict) else True
        fields = _flatten("", model)
        channels = fields.pop("unet.channels", 1 if grayscale else 3)
        try:
            document["model"] = to_dict(preset_config(name, channels, **fields))
        except KeyError as exc:
            raise ValueError(f"model: unknown field ({exc.args[0]})") from exc
    cfg = from_dict(TrainConfig, document)
    if overrides:
        try:
            cfg = apply_overrides(cfg, overrides)
        except KeyError as exc:
            raise ValueError(f"override: unknown field ({exc.args[0]})") from exc
    if cfg.model.t_min not in (0.0, cfg.noise.t_min):
        raise ValueError(
            f"model.t_min {cfg.model.t_min} differs from noise.t_min {cfg.noise.t_min}: the "
            "model's floor is the smallest trained noise variance (leave model.t_min unset)"
        )
    # The model is flat in t below the range it is trained on (EnergyConfig.t_min).
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, t_min=cfg.noise.t_min))
    validate_config(cfg)
    return cfg


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Command-line ``key=value`` items -> {key: value}; values parsed as JSON, else strings.

    ``["lr=2e-4", "data.name=digits", "grad_clip=null"]`` -> ``{"lr": 0.0002,
    "data.name": "digits", "grad_clip": None}``.

    Raises:
        ValueError: an item without ``=``.
    """
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"override {item!r} is not of the form key=value")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        overrides[key.strip()] = value
    return overrides


def find_config(name: str | Path, config_dir: str | Path) -> Path:
    """A JSON path, or a preset name looked up as ``config_dir/NAME.json``.

    Raises:
        FileNotFoundError: naming the available presets.
    """
    path = Path(name)
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} not found")
        return path
    preset = Path(config_dir) / f"{name}.json"
    if not preset.is_file():
        names = ", ".join(sorted(p.stem for p in Path(config_dir).glob("*.json")))
        raise FileNotFoundError(f"unknown preset {str(name)!r}; presets: {names}")
    return preset


def load_config_file(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """:func:`resolve_config` of a JSON file."""
    return resolve_config(json.loads(Path(path).read_text()), overrides)


def config_to_json(cfg: TrainConfig) -> str:
    """The resolved config as the JSON text written to ``config.json``."""
    return json.dumps(to_dict(cfg), indent=2) + "\n"


def validate_config(cfg: TrainConfig) -> None:
    """Raise ValueError naming the first inconsistent field of a TrainConfig."""
    positive = {
        "batch_size": cfg.batch_size,
        "log_every_steps": cfg.log_every_steps,
        "eval_every_steps": cfg.eval_every_steps,
        "eval_batch_size": cfg.eval_batch_size,
        "checkpoint_every_steps": cfg.checkpoint_every_steps,
    }
    for name, value in positive.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if cfg.num_steps < 0 or cfg.warmup_steps < 0 or cfg.eval_num_images < 0 or cfg.seed < 0:
        raise ValueError("num_steps, warmup_steps, eval_num_images and seed must be >= 0")
    if not cfg.lr > 0:
        raise ValueError(f"lr must be > 0, got {cfg.lr}")
    if cfg.lr_halve_every_steps is not None and cfg.lr_halve_every_steps < 1:
        raise ValueError(
            f"lr_halve_every_steps must be >= 1 or null, got {cfg.lr_halve_every_steps}"
        )
    if cfg.grad_clip is not None and not cfg.grad_clip > 0:
        raise ValueError(f"grad_clip must be > 0 or null, got {cfg.grad_clip}")
    if cfg.ema_decay is not None and not 0 < cfg.ema_decay < 1:
        raise ValueError(f"ema_decay must be in (0, 1) or null, got {cfg.ema_decay}")
    if not 0 < cfg.noise.t_min < cfg.noise.t_max:
        raise ValueError(f"need 0 < noise.t_min < noise.t_max, got {cfg.noise}")
    resolution = cfg.data.resolution
    if resolution is not None and resolution != cfg.model.image_size:
        raise ValueError(
            f"data.resolution {resolution} differs from model.image_size {cfg.model.image_size}"
        )
    if cfg.data.subset != "all" and (cfg.data.subset_size is None or cfg.data.subset_size < 1):
        raise ValueError(f"data.subset={cfg.data.subset!r} needs data.subset_size >= 1")


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """The lr of (0-based) step ``step``: step decay by halving, times the linear warm-up.

    ``lr * 2**-floor(step / lr_halve_every_steps) * min(1, (step + 1) / warmup_steps)``; the
    release is ``5e-4 / 2**floor(step / 100000)`` without warm-up (spec §2.5).
    """
    lr = cfg.lr
    if cfg.lr_halve_every_steps is not None:
        lr = lr / 2 ** (step // cfg.lr_halve_every_steps)
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        lr = lr * (step + 1) / cfg.warmup_steps
    return lr


# --------------------------------------------------------------------------------------------
# Data


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


# --------------------------------------------------------------------------------------------
# One step


class NonFiniteLossError(RuntimeError):
    """The loss or the gradient norm was NaN/inf; the weights were not updated."""

    def __init__(self, message: str, step: int | None = None):
        super().__init__(message)
        self.step = step


class DualScoreLoss(nn.Module):
    """Per-sample loss terms of a model as a module, so DDP sees one forward per step.

    The inner ``torch.autograd.grad`` of dual score matching (w.r.t. y and t, ``create_graph``)
    runs inside this forward; DDP's gradient hooks then fire once, in the outer backward.
    """

    def __init__(self, model: DenoisingModel):
        super().__init__()
        self.model = model

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor, cfg: LossConfig
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x, y (B, C, H, W), t (B,) -> (total, space, time), each (B,); time is 0 if absent."""
        terms = score_matching_terms(self.model, x, y, t, cfg)
        time_term = terms.time if terms.time is not None else torch.zeros_like(terms.space)
        return terms.total(cfg), terms.space, time_term


def train_step(
    model: nn.Module,
    x: torch.Tensor,
    noise_cfg: NoiseConfig,
    loss_cfg: LossConfig,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator | None,
    *,
    grad_clip: float | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """One optimisation step of (dual) score matching on a batch of clean images.

    Draws one t (log-uniform, ``noise_cfg``) and one z per image from ``generator``, forms
    ``y = x + sqrt(t) z``, computes the per-sample terms by double backprop, and takes an
    optimizer step on their batch mean. The step is skipped, and NonFiniteLossError raised, if
    the loss or the gradient norm is not finite, so weights never become NaN.

    Args:
        model: an EnergyModel / ScoreModel, a :class:`DualScoreLoss`, or a DDP-wrapped one.
        x: clean images (B, C, H, W) in [0, 1] on the model's device (this process's shard).
        noise_cfg: range of t.
        loss_cfg: weights of the terms.
        optimizer: over the model's parameters; its lr is set by the caller.
        generator: source of t and z (on x's device).
        grad_clip: max global gradient norm, or None.
        autocast_dtype: torch.bfloat16 to autocast the forward (and with it the scores and the
            double backward) on CUDA or on a CPU with native bf16 (``dsm_core.precision``), or
            None for float32. Weights, gradients, optimizer state and the loss stay float32.

    Returns:
        {"loss", "space", "time", "grad_norm"}: batch means (over all processes under DDP) and the
        global gradient norm before clipping.
    """
    loss_module = (
        model
        if isinstance(model, DualScoreLoss | nn.parallel.DistributedDataParallel)
        else DualScoreLoss(model)
    )
    batch = x.shape[0]
    t = sample_t(batch, noise_cfg, generator=generator, device=x.device)  # (B,)
    z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    y = add_noise(x, t, z)  # (B, C, H, W)
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(
        device_type=x.device.type,
        dtype=autocast_dtype or torch.bfloat16,
        enabled=autocast_dtype is not None,
    ):
        total, space, time_term = loss_module(x, y, t, loss_cfg)  # (B,) each
    loss = total.float().mean()
    loss.backward()
    params = [p for p in loss_module.parameters() if p.grad is not None]
    grad_norm = torch.nn.utils.get_total_norm([p.grad for p in params])
    stats = torch.stack(
        [loss.detach(), space.detach().float().mean(), time_term.detach().float().mean()]
    )
    stats = distributed.all_reduce_mean(stats)
    values = stats.tolist()
    grad_norm_value = float(grad_norm)
    if not (all(math.isfinite(v) for v in values) and math.isfinite(grad_norm_value)):
        optimizer.zero_grad(set_to_none=True)
        raise NonFiniteLossError(
            f"non-finite training loss {values[0]} (space {values[1]}, time {values[2]}, "
            f"gradient norm {grad_norm_value})"
        )
    if grad_clip is not None:
        torch.nn.utils.clip_grads_with_norm_(params, grad_clip, grad_norm)
    optimizer.step()
    return {"loss": values[0], "space": values[1], "time": values[2], "grad_norm": grad_norm_value}


def update_ema(ema_model: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, parameter by parameter (buffers copied)."""
    with torch.no_grad():
        for ema_p, p in zip(ema_model.parameters(), model.parameters(), strict=True):
            ema_p.lerp_(p, 1.0 - decay)
        for ema_b, b in zip(ema_model.buffers(), model.buffers(), strict=True):
            ema_b.copy_(b)


# --------------------------------------------------------------------------------------------
# Training state on disk: safetensors for tensors, JSON (in the file's metadata) for the rest.


def _optimizer_to_flat(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for index, param_state in state_dict["state"].items():
        for key, value in param_state.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _optimizer_from_flat(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    for index, values in meta["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    groups = []
    for group in meta["param_groups"]:
        group = dict(group)
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    return {"state": state, "param_groups": groups}


@dataclass
class TrainingState:
    """Everything a resumed run needs, as read from a checkpoint file."""

    step: int
    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor] | None
    optimizer: dict
    # The only random state of a run: the noise generator of each rank (t and z). The data
    # stream is a pure function of (seed, epoch) and needs only its position (``data``); model
    # initialisation is seeded; the global torch/numpy generators are never used.
    noise_rng: list[torch.Tensor]  # one generator state per rank
    data: dict
    wall_time_s: float
    config: dict
    # the history of an ``init_from`` model: {"source", "steps", "wall_time_s"} (None: none)
    init_from: dict | None = None


def save_training_state(path: Path, state: TrainingState) -> None:
    """Write a checkpoint file atomically (temp file + rename): a kill never leaves half a file.

    Tensors go into a safetensors file; everything else is JSON in its metadata, so loading
    never unpickles anything.
    """
    tensors: dict[str, torch.Tensor] = {}
    tensors.update({f"model.{k}": v for k, v in state.model.items()})
    if state.ema is not None:
        tensors.update({f"ema.{k}": v for k, v in state.ema.items()})
    optim_tensors, optim_meta = _optimizer_to_flat(state.optimizer)
    tensors.update(optim_tensors)
    for rank, rng in enumerate(state.noise_rng):
        tensors[f"rng.noise.{rank}"] = rng
    meta = {
        "format": CHECKPOINT_FORMAT,
        "step": state.step,
        "optimizer": optim_meta,
        "num_ranks": len(state.noise_rng),
        "has_ema": state.ema is not None,
        "data": state.data,
        "wall_time_s": state.wall_time_s,
        "config": state.config,
        "init_from": state.init_from,
    }
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    metadata = {"state": json.dumps(meta)}
    write_atomic(path, lambda p: save_file(tensors, str(p), metadata=metadata))


def load_training_state(path: Path) -> TrainingState:
    """Read a checkpoint written by :func:`save_training_state` (safetensors + JSON only)."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if "state" not in metadata:
        raise ValueError(f"{path}: not a training checkpoint (no 'state' metadata)")
    meta = json.loads(metadata["state"])
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: format {meta.get('format')!r}, expected {CHECKPOINT_FORMAT!r}")
    tensors = load_file(str(path))

    def prefixed(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

    return TrainingState(
        step=int(meta["step"]),
        model=prefixed("model."),
        ema=prefixed("ema.") if meta["has_ema"] else None,
        optimizer=_optimizer_from_flat(tensors, meta["optimizer"]),
        noise_rng=[tensors[f"rng.noise.{r}"] for r in range(meta["num_ranks"])],
        data=meta["data"],
        wall_time_s=float(meta["wall_time_s"]),
        config=meta["config"],
        init_from=meta.get("init_from"),  # absent in checkpoints of older runs
    )


def export_model(
    model: BaseEnergy | DenoisingModel,
    folder: Path,
    heldout: torch.Tensor,
    *,
    t_max: float,
    seed: int,
    batch_size: int,
    metadata: dict[str, Any],
) -> LogNormEstimate | None:
    """Normalise a copy of the model on held-out images at t_max and save it as a model folder.

    K (and its standard error, in ``metadata``) is estimated with ``estimate_log_norm`` at
    ``t_max`` on ``heldout`` (N, C, H, W); score models are saved without K.

    Returns:
        The K estimate, or None for a score model.
    """
    device = next(iter(model.parameters())).device  # (an EnergyModel or ScoreModel)
    metadata = dict(metadata)
    estimate = None
    exported = copy.deepcopy(model).eval()
    if isinstance(exported, BaseEnergy) and heldout.shape[0] > 0:
        generator = torch.Generator(device=device).manual_seed(seed)
        estimate = estimate_log_norm(
            exported, heldout.to(device), t_max, batch_size=batch_size, generator=generator
        )
        exported.log_norm_nats = estimate.log_norm_nats
        metadata.update(
            log_norm_stderr_nats=estimate.stderr_nats,
            log_norm_num_images=estimate.num_samples,
            log_norm_t_max=t_max,
        )
    save_model(exported, folder, metadata=metadata)
    return estimate


# --------------------------------------------------------------------------------------------
# The loop


@dataclass(frozen=True)
class TrainResult:
    """How a call to :func:`train` ended."""

    step: int  # steps completed in total (including before a resume)
    interrupted_by: int | None  # signal number if stopped by SIGTERM/SIGINT, else None
    last_loss: float | None
    wall_time_s: float
    run_dir: Path


class _StopRequest:
    """Set by the signal handlers; the loop saves and exits at the end of the current step."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.signum = signum
        log.warning("received signal %d: stopping after the current step", signum)


def _install_handlers(stop: _StopRequest) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, stop)
    return previous


def _restore_handlers(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def _noise_seed(seed: int, rank: int, step: int = 0) -> int:
    """A seed of the noise generator that differs per rank (and per resume step if needed)."""
    return int(np.random.SeedSequence([seed, rank, step, 7]).generate_state(1)[0])


def _append_log(path: Path, record: dict) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def _truncate_log(path: Path, step: int) -> None:
    """Drop records logged after ``step`` (by a run killed after its last checkpoint)."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines()
    keep = [line for line in lines if line.strip() and json.loads(line).get("step", 0) <= step]
    if len(keep) != len(lines):
        write_atomic(path, lambda p: p.write_text("".join(line + "\n" for line in keep)))


def _config_differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
    diffs = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key, "<missing>"), current.get(key, "<missing>")
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += _config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            diffs.append(f"{prefix}{key}: saved {a!r}, now {b!r}")
    return diffs


def load_initial_weights(model: nn.Module, source: str, config: EnergyConfig) -> dict:
    """Copy the weights of the model folder (or Hub id) ``source`` into ``model`` (strict).

    Returns:
        the source's history, ``{"source", "steps", "wall_time_s"}`` from its metadata (0 where
        it records none), so that the run's exports count every step the weights have seen.

    Raises:
        ValueError: the source's architecture differs from ``config`` (names the fields).
        ModelLoadError: the source cannot be loaded.
    """
    initial = load_model(source)
    # t_min is the training range's floor, not architecture: a run may train on another range
    source_config = dataclasses.replace(initial.config, t_min=config.t_min)
    diffs = _config_differences(to_dict(source_config), to_dict(config))
    if diffs:
        raise ValueError(
            f"init_from={source!r} has another architecture than the run: " + "; ".join(diffs)
        )
    model.load_state_dict(initial.state_dict(), strict=True)
    log.info("initial weights from %s", source)
    metadata = getattr(initial, "metadata", {})
    return {
        "source": source,
        "steps": int(metadata.get("steps", 0)),
        "wall_time_s": float(metadata.get("wall_time_s", 0.0)),
    }


def prepare_run_dir(cfg: TrainConfig, run_dir: Path, resume: bool) -> None:
    """Create the run folder with ``config.json``, or check it against ``cfg`` when resuming.

    Raises:
        FileExistsError: starting afresh in a folder that already holds a run.
        ValueError: resuming with a config that differs from the saved one (names the fields).
    """
    config_path = run_dir / CONFIG_FILE
    if resume:
        if not config_path.is_file():
            raise FileNotFoundError(f"cannot resume: {config_path} does not exist")
        # fields added to TrainConfig after the run started take their defaults (the behaviour
        # the run was trained with); unknown fields still raise
        saved = to_dict(resolve_config(json.loads(config_path.read_text())))
        diffs = _config_differences(saved, to_dict(cfg))
        if diffs:
            raise ValueError(
                f"cannot resume {run_dir}: the config differs from the saved one: "
                + "; ".join(diffs)
            )
        return
    if config_path.exists() or (run_dir / CHECKPOINT_FILE).exists():
        raise FileExistsError(
            f"{run_dir} already holds a run; pass resume=True (--resume) or choose a new folder"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(config_path, lambda p: p.write_text(config_to_json(cfg)))


def _find_unused_parameters(model: nn.Module, loss_cfg: LossConfig) -> bool:
    """Whether some parameters get no gradient: the y-independent time term without TSM."""
    return getattr(model, "time_term", None) is not None and loss_cfg.time_weight == 0


def train(
    cfg: TrainConfig,
    run_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    *,
    on_log: Callable[[dict], None] | None = None,
    precision: str | None = None,
) -> TrainResult:
    """Train a model as ``cfg`` says, in ``run_dir``; on every process under torchrun.

    Writes (rank 0 only) ``config.json`` before step 0, ``log.jsonl`` (records ``kind`` "train"
    every ``log_every_steps``, "eval" every ``eval_every_steps`` and at the end),
    ``checkpoint.safetensors`` every ``checkpoint_every_steps``, at the end and on SIGTERM /
    SIGINT, and the normalised model folder ``model/`` with each checkpoint.

    Args:
        cfg: the run.
        run_dir: the run folder.
        resume: continue from ``run_dir``'s checkpoint (the config must be identical).
        progress: show a tqdm bar with the running loss (rank 0).
        on_log: called with every log record (rank 0), e.g. to print it.
        precision: "fp32", "bf16" or "auto" (``dsm_core.precision.resolve_precision``: bf16 on a
            CPU with native bf16); None: the config's ``bf16`` switch. Not part of the config: a
            checkpoint written in one precision resumes in the other (float32 weights and
            optimizer state either way). Every "train" log record names it.

    Returns:
        A :class:`TrainResult`; ``interrupted_by`` is set when a signal stopped the run.

    Raises:
        NonFiniteLossError: the loss became NaN/inf; the message names the step and the last
            good checkpoint, which is left untouched.
        ValueError: bf16 requested on a device without native bf16 (the message says why).
    """
    validate_config(cfg)
    run_dir = Path(run_dir)
    device = distributed.resolve_device(cfg.device)
    if precision is None:
        precision = "bf16" if cfg.bf16 else "fp32"
    choice = resolve_precision(precision, device, config_bf16=cfg.bf16)
    log.info("precision %s: %s", choice.name, choice.reason)
    info = distributed.init_process_group(device)
    if cfg.batch_size % info.world_size:
        raise ValueError(
            f"batch_size {cfg.batch_size} is not divisible by the {info.world_size} processes"
        )
    failure = None
    if info.is_main:
        try:
            prepare_run_dir(cfg, run_dir, resume)
        except (OSError, ValueError) as exc:
            failure = exc
    # Every rank learns whether rank 0 could set up the folder (nobody waits forever).
    if distributed.any_process(failure is not None, device):
        if failure is not None:
            raise failure
        raise RuntimeError(f"rank 0 could not prepare {run_dir}; see its error")
    log_path = run_dir / LOG_FILE
    checkpoint_path = run_dir / CHECKPOINT_FILE

    # Data: every rank builds the same stream and takes its share of each batch.
    train_data = load_training_data(cfg.data, cfg.model.image_size)
    heldout = load_heldout_images(cfg.data, cfg.model.image_size, cfg.eval_num_images)
    if tuple(train_data.image_shape) != cfg.model.image_shape:
        raise ValueError(
            f"data images are {tuple(train_data.image_shape)}, the model expects "
            f"{cfg.model.image_shape}; set model.unet.channels / data.grayscale / data.resolution"
        )
    per_rank_batch = cfg.batch_size // info.world_size
    batches = iterate_batches(
        train_data,
        per_rank_batch,
        cfg.seed,
        flip=cfg.data.flip,
        device=device,
        rank=info.rank,
        world_size=info.world_size,
    )

    # Model (identical on every rank: same seed; DDP also broadcasts rank 0's weights).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = model_from_config(cfg.model).to(device)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    noise_gen = torch.Generator(device=device).manual_seed(_noise_seed(cfg.seed, info.rank))
    step, wall_before = 0, 0.0
    history = None  # of the init_from model

    if cfg.init_from is not None and not (resume and checkpoint_path.is_file()):
        history = load_initial_weights(model, cfg.init_from, cfg.model)
    # The average starts at the weights training starts from (init_from's, not the random ones).
    ema_model = copy.deepcopy(model).requires_grad_(False) if cfg.ema_decay else None
    if resume and checkpoint_path.is_file():
        state = load_training_state(checkpoint_path)
        model.load_state_dict(state.model, strict=True)
        optimizer.load_state_dict(state.optimizer)
        if ema_model is not None:
            if state.ema is None:
                raise ValueError(f"{checkpoint_path} holds no EMA weights but ema_decay is set")
            ema_model.load_state_dict(state.ema, strict=True)
        batches.load_state_dict(state.data)
        if len(state.noise_rng) == info.world_size:
            noise_gen.set_state(state.noise_rng[info.rank])
        else:
            log.warning(
                "checkpoint has %d noise streams, running on %d processes: reseeding the noise",
                len(state.noise_rng),
                info.world_size,
            )
            noise_gen.manual_seed(_noise_seed(cfg.seed, info.rank, state.step))
        step, wall_before, history = state.step, state.wall_time_s, state.init_from
        if info.is_main:
            _truncate_log(log_path, step)
        log.info("resumed %s at step %d", run_dir, step)
    elif resume:
        log.warning("no checkpoint in %s: starting from step 0", run_dir)
        if info.is_main:
            _truncate_log(log_path, 0)

    loss_module = distributed.wrap_ddp(
        DualScoreLoss(model), device, _find_unused_parameters(model, cfg.loss)
    )
    autocast_dtype = choice.autocast_dtype
    data_meta = describe_data(cfg.data, train_data)
    last_good_step = step if checkpoint_path.is_file() else None

    def eval_model() -> DenoisingModel:
        return ema_model if ema_model is not None else model

    def record(entry: dict) -> None:
        if info.is_main:
            _append_log(log_path, entry)
            if on_log is not None:
                on_log(entry)

    def save(current_step: int, wall_time_s: float) -> None:
        noise_states = distributed.all_gather_bytes(noise_gen.get_state())
        if not info.is_main:
            return
        state = TrainingState(
            step=current_step,
            model=model.state_dict(),
            ema=ema_model.state_dict() if ema_model is not None else None,
            optimizer=optimizer.state_dict(),
            noise_rng=noise_states,
            data=batches.state_dict(),
            wall_time_s=wall_time_s,
            config=to_dict(cfg),
            init_from=history,
        )
        save_training_state(checkpoint_path, state)
        estimate = export_model(
            eval_model(),
            run_dir / MODEL_DIR,
            heldout,
            t_max=cfg.noise.t_max,
            seed=cfg.seed + 12345,
            batch_size=cfg.eval_batch_size,
            metadata={
                "data": data_meta,
                "resolution": cfg.model.image_size,
                # every step the weights have seen, an init_from model's included
                "steps": current_step + (history["steps"] if history else 0),
                "wall_time_s": wall_time_s + (history["wall_time_s"] if history else 0.0),
                "init_from": history,
                "ema": ema_model is not None,
                "train_config": to_dict(cfg),
            },
        )
        record(
            {
                "kind": "checkpoint",
                "step": current_step,
                "log_norm_nats": estimate.log_norm_nats if estimate else None,
                "log_norm_stderr_nats": estimate.stderr_nats if estimate else None,
            }
        )

    def evaluate(current_step: int, wall_time_s: float) -> None:
        if not info.is_main or heldout.shape[0] == 0:
            return
        metrics = evaluate_during_training(
            eval_model(),
            heldout,
            cfg.noise,
            cfg.loss,
            seed=cfg.seed + 1000,
            batch_size=cfg.eval_batch_size,
        )
        record({"kind": "eval", "step": current_step, "wall_time_s": wall_time_s, **metrics})

    stop = _StopRequest()
    previous_handlers = _install_handlers(stop)
    bar = None
    if progress and info.is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.num_steps, initial=step, desc="train", dynamic_ncols=True)
    start = time.perf_counter()
    window: dict[str, list[float]] = {"loss": [], "space": [], "time": [], "grad_norm": []}
    window_start, window_step = start, step
    running_loss = None
    last_loss = None
    try:
        while step < cfg.num_steps:
            lr = learning_rate(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x = next(batches)  # (B / W, C, H, W)
            if cfg.data.dequantize:
                x = dequantize((x * 255).round(), noise_gen)
            try:
                stats = train_step(
                    loss_module,
                    x,
                    cfg.noise,
                    cfg.loss,
                    optimizer,
                    noise_gen,
                    grad_clip=cfg.grad_clip,
                    autocast_dtype=autocast_dtype,
                )
            except NonFiniteLossError as exc:
                where = (
                    f"the last good checkpoint {checkpoint_path} (step {last_good_step}) was kept"
                    if last_good_step is not None
                    else "no checkpoint had been written yet"
                )
                message = f"training stopped at step {step + 1} of {cfg.num_steps}: {exc}; {where}"
                record({"kind": "error", "step": step + 1, "message": message})
                raise NonFiniteLossError(message, step + 1) from exc
            if ema_model is not None:
                update_ema(ema_model, model, cfg.ema_decay)
            step += 1
            last_loss = stats["loss"]
            for key in window:
                window[key].append(stats[key])
            running_loss = (
                stats["loss"]
                if running_loss is None
                else 0.98 * running_loss + 0.02 * stats["loss"]
            )
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{running_loss:.4f}", lr=f"{lr:.2e}", refresh=False)
            wall = wall_before + time.perf_counter() - start
            if step % cfg.log_every_steps == 0 or step == cfg.num_steps:
                now = time.perf_counter()
                steps_per_s = (step - window_step) / max(now - window_start, 1e-9)
                data_state = batches.state_dict()
                record(
                    {
                        "kind": "train",
                        "step": step,
                        "loss": float(np.mean(window["loss"])),
                        "space_loss": float(np.mean(window["space"])),
                        "time_loss": float(np.mean(window["time"])),
                        "grad_norm": float(np.mean(window["grad_norm"])),
                        "lr": lr,
                        "steps_per_s": steps_per_s,
                        "images_per_s": steps_per_s * cfg.batch_size,
                        "precision": choice.name,
                        "epoch": data_state["epoch"],
                        "data_position": data_state["position"],
                        "wall_time_s": wall,
                    }
                )
                window = {key: [] for key in window}
                window_start, window_step = now, step
            stop_now = distributed.any_process(stop.signum is not None, device)
            if step % cfg.eval_every_steps == 0 or step == cfg.num_steps:
                evaluate(step, wall)
            if step % cfg.checkpoint_every_steps == 0 or step == cfg.num_steps or stop_now:
                save(step, wall_before + time.perf_counter() - start)
                last_good_step = step
            if stop_now:
                break
    finally:
        if bar is not None:
            bar.close()
        _restore_handlers(previous_handlers)
    wall = wall_before + time.perf_counter() - start
    if step == cfg.num_steps and last_good_step != step:
        # num_steps already reached before this call (e.g. resuming a finished run).
        save(step, wall)
    interrupted = stop.signum if step < cfg.num_steps else None
    distributed.barrier()
    return TrainResult(step, interrupted, last_loss, wall, run_dir)


def rebuild_config(document: dict) -> TrainConfig:
    """A TrainConfig from a resolved ``config.json`` document (strict)."""
    return from_dict(TrainConfig, document)


def replace(cfg: TrainConfig, **changes: Any) -> TrainConfig:
    """``dataclasses.replace`` with validation."""
    cfg = dataclasses.replace(cfg, **changes)
    validate_config(cfg)
    return cfg
