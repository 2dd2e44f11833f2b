"""A training run on disk: the run folder and its ``config.json``, the JSON-lines log, the
checkpoint file (model, EMA, optimizer, noise streams, data position; safetensors + JSON, never
pickle), initial weights from another model, and the exported, normalised model folder.
"""

import copy
import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from dsm_core.checkpoint import json_text, load_model, save_model, write_atomic
from dsm_core.config import EnergyConfig, to_dict
from dsm_core.energy import BaseEnergy, DenoisingModel
from dsm_core.normalization import LogNormEstimate, estimate_log_norm
from dsm_core.train_config import TrainConfig, config_to_json, resolve_config

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
LOG_FILE = "log.jsonl"
CHECKPOINT_FILE = "checkpoint.safetensors"
MODEL_DIR = "model"
CHECKPOINT_FORMAT = "dsm-explorer-train/1"


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
    metadata = {"state": json_text(meta, indent=None)}
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


def append_log(path: Path, record: dict) -> None:
    """Append one record to a run's JSON-lines log."""
    with path.open("a") as handle:
        handle.write(json_text(record, indent=None) + "\n")


def truncate_log(path: Path, step: int) -> None:
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
    # t_min is the training range's floor and image_size the crop size, not architecture: a run
    # may train on another range, or fine-tune the fully convolutional network at another size
    # (e.g. 32x32 weights at 64x64, issue 12). The norm's eps may change (the weights mean the
    # same; issue 12 lowered it to 1e-9), a "gaussian" time term may become "gaussian_log_t" and
    # mean_embedding may be switched on: the added weights start at zero, so the model starts as
    # the source's function. The box term (no weights) may be switched on or off.
    log_t_upgrade = initial.config.time_term == "gaussian" and config.time_term == "gaussian_log_t"
    mean_upgrade = not initial.config.mean_embedding and config.mean_embedding
    source_config = dataclasses.replace(
        initial.config,
        t_min=config.t_min,
        image_size=config.image_size,
        time_term=config.time_term if log_t_upgrade else initial.config.time_term,
        mean_embedding=config.mean_embedding if mean_upgrade else initial.config.mean_embedding,
        box_term=config.box_term,
        box_margin=config.box_margin,
        box_var=config.box_var,
        unet=dataclasses.replace(initial.config.unet, norm_eps=config.unet.norm_eps),
    )
    diffs = _config_differences(to_dict(source_config), to_dict(config))
    if diffs:
        raise ValueError(
            f"init_from={source!r} has another architecture than the run: " + "; ".join(diffs)
        )
    added = ("time_term.log_t_correction.",) * log_t_upgrade + ("mean_embedding.",) * mean_upgrade
    missing, unexpected = model.load_state_dict(initial.state_dict(), strict=not added)
    if unexpected or any(not k.startswith(added) for k in missing):
        raise ValueError(f"init_from={source!r}: missing {missing}, unexpected {unexpected}")
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
