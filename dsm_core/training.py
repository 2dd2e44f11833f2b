"""Training by dual score matching: the lr schedule, ``train_step()`` and the loop ``train()``.

The loop runs the same way on a CPU, one GPU or under torchrun (one process per GPU, DDP):
rank 0 alone logs (``log.jsonl``, a tqdm bar) and saves. A run folder holds ``config.json`` (the
resolved TrainConfig, written before step 0), ``log.jsonl``, ``checkpoint.safetensors`` (the whole
training state, replaced atomically) and ``model/`` (the exported, normalised model); their
reading and writing is ``dsm_core.train_state``, the config ``dsm_core.train_config``, the data
``dsm_core.data.splits`` and the loss ``dsm_core.losses``.
"""

import copy
import logging
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dsm_core import distributed
from dsm_core.config import LossConfig, NoiseConfig, to_dict
from dsm_core.data import BatchIterator, iterate_batches
from dsm_core.data.splits import describe_data, load_heldout_images, load_training_data
from dsm_core.energy import DenoisingModel, model_from_config
from dsm_core.evaluation import evaluate_during_training
from dsm_core.losses import AscentChains, DualScoreLoss, off_data_points
from dsm_core.noise import add_noise, dequantize, sample_t
from dsm_core.precision import resolve_precision
from dsm_core.train_config import TrainConfig, validate_config
from dsm_core.train_state import (
    CHECKPOINT_FILE,
    LOG_FILE,
    MODEL_DIR,
    TrainingState,
    append_log,
    export_model,
    load_initial_weights,
    load_training_state,
    prepare_run_dir,
    save_training_state,
    truncate_log,
)

log = logging.getLogger(__name__)


FREEZABLE_MODULES = ("unet", "time_term", "mean_term", "mean_embedding")


def freeze_modules(model: nn.Module, names: tuple[str, ...]) -> None:
    """Stop training the named parts of a model (``TrainConfig.frozen_modules``): their weights
    get no gradient, so Adam leaves them and the EMA keeps them.

    Raises:
        ValueError: a name not in ``FREEZABLE_MODULES`` or a part this model lacks.
    """
    for name in names:
        part = getattr(model, name, None) if name in FREEZABLE_MODULES else None
        if not isinstance(part, nn.Module):
            raise ValueError(
                f"frozen_modules: the model has no {name!r} to freeze (freezable parts: "
                f"{', '.join(FREEZABLE_MODULES)}, where the config builds them)"
            )
        part.requires_grad_(False)


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


class NonFiniteLossError(RuntimeError):
    """The loss or the gradient norm was NaN/inf; the weights were not updated."""

    def __init__(self, message: str, step: int | None = None):
        super().__init__(message)
        self.step = step


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
    chains: AscentChains | None = None,
) -> dict[str, float | None]:
    """One optimisation step of (dual) score matching on a batch of clean images.

    Draws one t (log-uniform, ``noise_cfg``) and one z per image from ``generator``, forms
    ``y = x + sqrt(t) z`` (and, with ``loss_cfg.heat_weight`` > 0, the off-data points of
    ``losses.off_data_points``), computes the per-sample terms by double backprop, and takes an
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
        chains: where the heat term's points come from when ``loss_cfg.heat_points`` is
            "ascent" (kept by the caller across steps); None for "noise".

    Returns:
        {"loss", "space", "time", "heat", "grad_norm"}: batch means (over all processes under
        DDP) and the global gradient norm before clipping; "time" is None without a time term,
        "heat" None without the heat-equation term (``loss_cfg.heat_weight`` 0).
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
    heat_points = None
    if loss_cfg.heat_weight > 0:
        energy = loss_module.module.model if hasattr(loss_module, "module") else loss_module.model
        source = None if chains is None else (chains, energy)
        heat_points = off_data_points(x, noise_cfg, loss_cfg, generator, source)
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(
        device_type=x.device.type,
        dtype=autocast_dtype or torch.bfloat16,
        enabled=autocast_dtype is not None,
    ):
        total, space, time_term, heat = loss_module(x, y, t, loss_cfg, heat_points)
    # total, space, time_term: (B,); heat: (heat_images,) or None
    loss = total.float().mean()
    if heat is not None:
        loss = loss + loss_cfg.heat_weight * heat.float().mean()
    loss.backward()
    params = [p for p in loss_module.parameters() if p.grad is not None]
    grad_norm = torch.nn.utils.get_total_norm([p.grad for p in params])
    # a missing term's slot holds 0, so every rank reduces the same vector
    time_mean = time_term.detach().float().mean() if time_term is not None else loss.new_zeros(())
    heat_mean = heat.detach().float().mean() if heat is not None else loss.new_zeros(())
    stats = torch.stack([loss.detach(), space.detach().float().mean(), time_mean, heat_mean])
    stats = distributed.all_reduce_mean(stats)
    values = stats.tolist()
    grad_norm_value = float(grad_norm)
    if not (all(math.isfinite(v) for v in values) and math.isfinite(grad_norm_value)):
        optimizer.zero_grad(set_to_none=True)
        raise NonFiniteLossError(
            f"non-finite training loss {values[0]} (space {values[1]}, time {values[2]}, "
            f"heat {values[3]}, gradient norm {grad_norm_value})"
        )
    if grad_clip is not None:
        torch.nn.utils.clip_grads_with_norm_(params, grad_clip, grad_norm)
    optimizer.step()
    return {
        "loss": values[0],
        "space": values[1],
        "time": values[2] if time_term is not None else None,
        "heat": values[3] if heat is not None else None,
        "grad_norm": grad_norm_value,
    }


def update_ema(ema_model: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, parameter by parameter (buffers copied)."""
    with torch.no_grad():
        for ema_p, p in zip(ema_model.parameters(), model.parameters(), strict=True):
            ema_p.lerp_(p, 1.0 - decay)
        for ema_b, b in zip(ema_model.buffers(), model.buffers(), strict=True):
            ema_b.copy_(b)


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


def find_unused_parameters(model: nn.Module, loss_cfg: LossConfig) -> bool:
    """Whether some parameters get no gradient: the y-independent time term without TSM."""
    return getattr(model, "time_term", None) is not None and loss_cfg.time_weight == 0


# --------------------------------------------------------------------------------------------
# The loop: setup, resume, step, log, evaluate, save


@dataclass
class _Run:
    """One process's view of a run: what the loop reads and updates (rank 0 writes the files)."""

    cfg: TrainConfig
    run_dir: Path
    info: distributed.DistInfo
    model: nn.Module
    optimizer: torch.optim.Optimizer
    batches: BatchIterator
    noise_gen: torch.Generator
    heldout: torch.Tensor  # (N, C, H, W) evaluation images
    data_meta: dict
    on_log: Callable[[dict], None] | None
    ema_model: nn.Module | None = None
    step: int = 0
    wall_before: float = 0.0  # wall time of the run before this call (resumes)
    history: dict | None = None  # of the init_from model
    last_good_step: int | None = None  # of the last checkpoint written

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT_FILE

    def eval_model(self) -> DenoisingModel:
        return self.ema_model if self.ema_model is not None else self.model

    def record(self, entry: dict) -> None:
        if self.info.is_main:
            append_log(self.run_dir / LOG_FILE, entry)
            if self.on_log is not None:
                self.on_log(entry)

    def start(self, resume: bool) -> None:
        """Initial weights (``init_from``), the weight average, and the state of a resumed run."""
        cfg, checkpoint_path = self.cfg, self.checkpoint_path
        if cfg.init_from is not None and not (resume and checkpoint_path.is_file()):
            self.history = load_initial_weights(self.model, cfg.init_from, cfg.model)
        # The average starts at the weights training starts from (init_from's, not the random ones).
        if cfg.ema_decay:
            self.ema_model = copy.deepcopy(self.model).requires_grad_(False)
        if resume and checkpoint_path.is_file():
            self._load(load_training_state(checkpoint_path))
            log.info("resumed %s at step %d", self.run_dir, self.step)
        elif resume:
            log.warning("no checkpoint in %s: starting from step 0", self.run_dir)
            if self.info.is_main:
                truncate_log(self.run_dir / LOG_FILE, 0)
        self.last_good_step = self.step if checkpoint_path.is_file() else None

    def _load(self, state: TrainingState) -> None:
        self.model.load_state_dict(state.model, strict=True)
        self.optimizer.load_state_dict(state.optimizer)
        if self.ema_model is not None:
            if state.ema is None:
                raise ValueError(
                    f"{self.checkpoint_path} holds no EMA weights but ema_decay is set"
                )
            self.ema_model.load_state_dict(state.ema, strict=True)
        self.batches.load_state_dict(state.data)
        rank, world_size = self.info.rank, self.info.world_size
        if len(state.noise_rng) == world_size:
            self.noise_gen.set_state(state.noise_rng[rank])
        else:
            log.warning(
                "checkpoint has %d noise streams, running on %d processes: reseeding the noise",
                len(state.noise_rng),
                world_size,
            )
            self.noise_gen.manual_seed(_noise_seed(self.cfg.seed, rank, state.step))
        self.step, self.wall_before, self.history = state.step, state.wall_time_s, state.init_from
        if self.info.is_main:
            truncate_log(self.run_dir / LOG_FILE, self.step)

    def save(self, current_step: int, wall_time_s: float) -> None:
        """The checkpoint file and the exported, normalised model (rank 0), then a log record."""
        cfg, history = self.cfg, self.history
        noise_states = distributed.all_gather_bytes(self.noise_gen.get_state())
        if not self.info.is_main:
            return
        state = TrainingState(
            step=current_step,
            model=self.model.state_dict(),
            ema=self.ema_model.state_dict() if self.ema_model is not None else None,
            optimizer=self.optimizer.state_dict(),
            noise_rng=noise_states,
            data=self.batches.state_dict(),
            wall_time_s=wall_time_s,
            config=to_dict(cfg),
            init_from=history,
        )
        save_training_state(self.checkpoint_path, state)
        estimate = export_model(
            self.eval_model(),
            self.run_dir / MODEL_DIR,
            self.heldout,
            t_max=cfg.noise.t_max,
            seed=cfg.seed + 12345,
            batch_size=cfg.eval_batch_size,
            metadata={
                "data": self.data_meta,
                "resolution": cfg.model.image_size,
                # every step the weights have seen, an init_from model's included
                "steps": current_step + (history["steps"] if history else 0),
                "wall_time_s": wall_time_s + (history["wall_time_s"] if history else 0.0),
                "init_from": history,
                "ema": self.ema_model is not None,
                "train_config": to_dict(cfg),
            },
        )
        self.record(
            {
                "kind": "checkpoint",
                "step": current_step,
                "log_norm_nats": estimate.log_norm_nats if estimate else None,
                "log_norm_stderr_nats": estimate.stderr_nats if estimate else None,
            }
        )
        self.last_good_step = current_step

    def evaluate(self, current_step: int, wall_time_s: float) -> None:
        """Held-out losses, PSNR table and NLL (rank 0), as an "eval" log record."""
        if not self.info.is_main or self.heldout.shape[0] == 0:
            return
        metrics = evaluate_during_training(
            self.eval_model(),
            self.heldout,
            self.cfg.noise,
            self.cfg.loss,
            seed=self.cfg.seed + 1000,
            batch_size=self.cfg.eval_batch_size,
        )
        self.record({"kind": "eval", "step": current_step, "wall_time_s": wall_time_s, **metrics})

    def failed(self, exc: NonFiniteLossError, step: int) -> NonFiniteLossError:
        """The error that ends a run whose loss became non-finite, logged with where it stopped."""
        where = (
            f"the last good checkpoint {self.checkpoint_path} (step {self.last_good_step}) was kept"
            if self.last_good_step is not None
            else "no checkpoint had been written yet"
        )
        message = f"training stopped at step {step} of {self.cfg.num_steps}: {exc}; {where}"
        self.record({"kind": "error", "step": step, "message": message})
        return NonFiniteLossError(message, step)


def _prepare_run_dir_on_rank_0(
    cfg: TrainConfig, run_dir: Path, resume: bool, info: distributed.DistInfo, device
) -> None:
    """Rank 0 creates (or checks) the run folder; every rank learns whether it could, so nobody
    waits forever."""
    failure = None
    if info.is_main:
        try:
            prepare_run_dir(cfg, run_dir, resume)
        except (OSError, ValueError) as exc:
            failure = exc
    if distributed.any_process(failure is not None, device):
        if failure is not None:
            raise failure
        raise RuntimeError(f"rank 0 could not prepare {run_dir}; see its error")


def _setup(
    cfg: TrainConfig,
    run_dir: Path,
    info: distributed.DistInfo,
    device: torch.device,
    on_log: Callable[[dict], None] | None,
) -> _Run:
    """Data, model, optimizer and noise stream of a run at step 0."""
    # Data: every rank builds the same stream and takes its share of each batch.
    train_data = load_training_data(cfg.data, cfg.model.image_size)
    heldout = load_heldout_images(cfg.data, cfg.model.image_size, cfg.eval_num_images)
    if tuple(train_data.image_shape) != cfg.model.image_shape:
        raise ValueError(
            f"data images are {tuple(train_data.image_shape)}, the model expects "
            f"{cfg.model.image_shape}; set model.unet.channels / data.grayscale / data.resolution"
        )
    batches = iterate_batches(
        train_data,
        cfg.batch_size // info.world_size,
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
    freeze_modules(model, cfg.frozen_modules)
    model.train()
    return _Run(
        cfg=cfg,
        run_dir=run_dir,
        info=info,
        model=model,
        optimizer=torch.optim.Adam(model.parameters(), lr=cfg.lr),
        batches=batches,
        noise_gen=torch.Generator(device=device).manual_seed(_noise_seed(cfg.seed, info.rank)),
        heldout=heldout,
        data_meta=describe_data(cfg.data, train_data),
        on_log=on_log,
    )


def _mean_or_none(values: list[float | None]) -> float | None:
    """The mean of a window's values; None (no time term) when they are None."""
    return None if None in values else float(np.mean(values))


class _LossWindow:
    """Training statistics since the last "train" log record, and the running loss of the bar."""

    KEYS = ("loss", "space", "time", "heat", "grad_norm")

    def __init__(self, step: int):
        self.values: dict[str, list[float]] = {key: [] for key in self.KEYS}
        self.start_time, self.start_step = time.perf_counter(), step
        self.running_loss: float | None = None

    def add(self, stats: dict[str, float | None]) -> None:
        for key in self.KEYS:
            self.values[key].append(stats[key])
        loss = stats["loss"]
        self.running_loss = (
            loss if self.running_loss is None else 0.98 * self.running_loss + 0.02 * loss
        )

    def record(
        self, step: int, lr: float, batch_size: int, precision: str, data_state: dict, wall: float
    ) -> dict:
        """The "train" log record of the window, which then starts afresh."""
        now = time.perf_counter()
        steps_per_s = (step - self.start_step) / max(now - self.start_time, 1e-9)
        entry = {
            "kind": "train",
            "step": step,
            "loss": float(np.mean(self.values["loss"])),
            "space_loss": float(np.mean(self.values["space"])),
            "time_loss": _mean_or_none(self.values["time"]),
            "heat_loss": _mean_or_none(self.values["heat"]),
            "grad_norm": float(np.mean(self.values["grad_norm"])),
            "lr": lr,
            "steps_per_s": steps_per_s,
            "images_per_s": steps_per_s * batch_size,
            "precision": precision,
            "epoch": data_state["epoch"],
            "data_position": data_state["position"],
            "wall_time_s": wall,
        }
        self.values = {key: [] for key in self.KEYS}
        self.start_time, self.start_step = now, step
        return entry


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
    _prepare_run_dir_on_rank_0(cfg, run_dir, resume, info, device)
    run = _setup(cfg, run_dir, info, device, on_log)
    run.start(resume)
    model, optimizer, step = run.model, run.optimizer, run.step
    loss_module = distributed.wrap_ddp(
        DualScoreLoss(model), device, find_unused_parameters(model, cfg.loss)
    )
    autocast_dtype = choice.autocast_dtype
    chains = None
    if cfg.loss.heat_weight > 0 and cfg.loss.heat_points == "ascent":
        loss = cfg.loss
        chains = AscentChains(loss.heat_chains, loss.heat_ascent_steps, loss.heat_restart)

    stop = _StopRequest()
    previous_handlers = _install_handlers(stop)
    bar = None
    if progress and info.is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.num_steps, initial=step, desc="train", dynamic_ncols=True)
    start = time.perf_counter()
    window = _LossWindow(step)
    last_loss = None
    try:
        while step < cfg.num_steps:
            lr = learning_rate(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x = next(run.batches)  # (B / W, C, H, W)
            if cfg.data.dequantize:
                x = dequantize((x * 255).round(), run.noise_gen)
            try:
                stats = train_step(
                    loss_module,
                    x,
                    cfg.noise,
                    cfg.loss,
                    optimizer,
                    run.noise_gen,
                    grad_clip=cfg.grad_clip,
                    autocast_dtype=autocast_dtype,
                    chains=chains,
                )
            except NonFiniteLossError as exc:
                raise run.failed(exc, step + 1) from exc
            if run.ema_model is not None:
                update_ema(run.ema_model, model, cfg.ema_decay)
            step += 1
            last_loss = stats["loss"]
            window.add(stats)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{window.running_loss:.4f}", lr=f"{lr:.2e}", refresh=False)
            wall = run.wall_before + time.perf_counter() - start
            if step % cfg.log_every_steps == 0 or step == cfg.num_steps:
                data_state = run.batches.state_dict()
                run.record(window.record(step, lr, cfg.batch_size, choice.name, data_state, wall))
            stop_now = distributed.any_process(stop.signum is not None, device)
            if step % cfg.eval_every_steps == 0 or step == cfg.num_steps:
                run.evaluate(step, wall)
            if step % cfg.checkpoint_every_steps == 0 or step == cfg.num_steps or stop_now:
                run.save(step, run.wall_before + time.perf_counter() - start)
            if stop_now:
                break
    finally:
        if bar is not None:
            bar.close()
        _restore_handlers(previous_handlers)
    wall = run.wall_before + time.perf_counter() - start
    if step == cfg.num_steps and run.last_good_step != step:
        # num_steps already reached before this call (e.g. resuming a finished run).
        run.save(step, wall)
    interrupted = stop.signum if step < cfg.num_steps else None
    distributed.barrier()
    return TrainResult(step, interrupted, last_loss, wall, run_dir)
