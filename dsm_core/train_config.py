"""A training run's configuration: DataConfig and TrainConfig, and their one way in from a preset
JSON document plus command-line overrides (``resolve_config``), strict and validated.
"""

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dsm_core.checkpoint import json_text
from dsm_core.config import (
    EnergyConfig,
    LossConfig,
    NoiseConfig,
    apply_overrides,
    from_dict,
    to_dict,
)
from dsm_core.presets import preset_config

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
    # Parts of the model whose weights stay as they start (from init_from): any of "unet",
    # "time_term", "mean_term", "mean_embedding". Not in the release (issue 12): fine-tuned with
    # the heat-equation term, the time term took up a uniform rise of the network's energy at
    # small t on the data, so flat images (network energy 0) gained up to 9.4 dB/dim and K ran
    # from -284 to -881 nats; with ("time_term", "mean_term") frozen K stayed within 4 nats.
    frozen_modules: tuple[str, ...] = ()
    device: str = "auto"  # "auto": CUDA when available, else CPU; "cpu", "cuda", "cuda:1", ...
    # Off by default (full float32). tf32 (CUDA only): TF32 matmuls and convolutions (the switch
    # is applied by train/train.py); bf16: autocast the network to bfloat16, float32 weights (on
    # CUDA experimental with double backprop; on a CPU only where it has native bf16, see
    # dsm_core.precision). train(precision=...) and train.py --precision override it per run.
    tf32: bool = False
    bf16: bool = False


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
    return json_text(to_dict(cfg)) + "\n"


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
    loss = cfg.loss
    if loss.heat_weight < 0 or loss.time_weight < 0:
        raise ValueError(f"loss weights must be >= 0, got {loss}")
    if loss.heat_weight > 0:
        if cfg.model.head == "score":
            raise ValueError("loss.heat_weight > 0 needs an energy model (dU/dt); head is 'score'")
        if loss.heat_images < 1 or loss.heat_decades < 0 or loss.heat_chains < 1:
            raise ValueError(f"need heat_images >= 1, heat_decades >= 0, heat_chains >= 1: {loss}")
        if not cfg.noise.t_min < loss.heat_max_var:
            raise ValueError(
                f"loss.heat_max_var {loss.heat_max_var} must exceed noise.t_min {cfg.noise.t_min}"
            )
        if loss.heat_ascent_steps < 0 or not 0 <= loss.heat_restart <= 1:
            raise ValueError(f"need heat_ascent_steps >= 0 and 0 <= heat_restart <= 1: {loss}")
    resolution = cfg.data.resolution
    if resolution is not None and resolution != cfg.model.image_size:
        raise ValueError(
            f"data.resolution {resolution} differs from model.image_size {cfg.model.image_size}"
        )
    if cfg.data.subset != "all" and (cfg.data.subset_size is None or cfg.data.subset_size < 1):
        raise ValueError(f"data.subset={cfg.data.subset!r} needs data.subset_size >= 1")
