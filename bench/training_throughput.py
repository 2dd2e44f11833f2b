"""Training images/s of the default model's configuration: the plain float32 step against the
settings ``train/train.py`` picks, side by side in one run; and the studies of issue 16.

The step is the training loop's: ``dsm_core.training.train_step`` (t and z drawn, forward, inner
autograd of both scores with ``create_graph``, double backprop, Adam step) on the model, noise and
loss settings of ``--config`` (default ``train/configs/natural32_cpu.json``: natural32, dual score
matching, batch 32) at 32x32 and its 64x64 variant (``--sizes``, the same network on larger
images), at ``--threads`` torch threads (default 1). Data loading, logging, evaluation and
checkpoints are not included (data loading is timed on its own below); images are uniform random.
Variants, alternated in rounds (order rotated every round, ``--rounds`` x ``--steps`` timed steps
each after ``--warmup``):

- ``fp32 before``: the plain float32 step as it was before issue 16, the baseline: autograd's
  layers (``dsm_core.layers.use_plain_layers``: the norm's former product order
  ``gain * centered * rescale`` and autograd's double backwards of the convolutions, GELU, norm
  and skip concat);
- ``fp32``: float32 with today's code;
- ``bf16``: bf16 autocast with float32 weights (``dsm_core.precision``), where the CPU has native
  bf16 (else printed as refused).

``best`` is what ``train/train.py --precision auto`` picks on this machine
(``dsm_core.precision.resolve_precision``). The variants run with the allocator setting
``train/train.py`` applies, ``--malloc`` (default ``keep``: glibc keeps freed memory in the
process, ``dsm_core.precision.apply_malloc_setting``), except that in the main tables the baseline
``fp32 before`` runs in a process of its own with glibc's defaults (``PlainProcess``), as the step
ran before issue 16; with ``--malloc release`` or ``--threads`` other than 1 every variant runs in
this process (``--malloc release`` measures the allocator setting's own effect). The batch-size and
width studies run every variant in this process. Then, unless switched off:

- batch size: images/s of ``fp32 before`` and ``best`` at ``--batch-sizes`` (32x32);
- data loading: seconds per batch of the config's data stream against a step;
- quality: ``dsm_core.precision.compare_precisions`` (``--quality-steps`` seeded steps from the
  default model's weights in float32 and in bf16, evaluated in float32: held-out loss, K and the
  one-shot - ODE gap against ``PrecisionTolerances``);
- FLOPs: ``torch.utils.flop_counter`` counts of the forward, the scores' backward and the double
  backward of one step, against the rate each of the network's convolutions reaches alone (forward,
  same shape, float32 and bf16): how far the step is from the machine's limit;
- the heat-equation term (``loss.heat_weight``, issue 12): the best step against the same step
  with the term on ``--heat-images`` off-data points, noisy (``heat_points="noise"``) and on
  persistent ascent chains (``"ascent"``), 32x32;
- ``--study`` (needs both cores idle): one process with 2 threads vs DDP over 2 gloo ranks of 1
  thread (the config's batch split) vs 2 independent 1-thread runs, at the best precision.

The last line printed is ``speedup: X``, X = images/s of ``best`` / images/s of ``fp32 before``
at 32x32, same threads and batch, one run.

Examples:
    python bench/training_throughput.py
    python bench/training_throughput.py --sizes 32 --rounds 2 --no-quality --no-flops
    ONEDNN_MAX_CPU_ISA=AVX2 python bench/training_throughput.py   # a CPU without native bf16
    python bench/training_throughput.py --study --sizes 32 --no-quality --no-flops --no-batches
    python bench/training_throughput.py --malloc release   # glibc's allocator defaults
"""

import argparse
import dataclasses
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp
from _common import (
    add_malloc_arg,
    add_threads_arg,
    fmt_ratio,
    free_port,
    load_note,
    median,
    print_run_footer,
    set_threads,
)
from torch.utils.flop_counter import FlopCounterMode

import dsm_core
from dsm_core import distributed
from dsm_core.data.splits import load_training_data
from dsm_core.energy import model_from_config
from dsm_core.layers import use_plain_layers
from dsm_core.losses import AscentChains, DualScoreLoss
from dsm_core.noise import add_noise, batch_t
from dsm_core.precision import (
    apply_malloc_setting,
    compare_precisions,
    cpu_bf16_support,
    resolve_precision,
)
from dsm_core.train_config import TrainConfig, load_config_file
from dsm_core.training import find_unused_parameters, train_step

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "train" / "configs" / "natural32_cpu.json"
DEFAULT_MODEL = ROOT / "checkpoints" / "default"
DTYPES = {"fp32": None, "bf16": torch.bfloat16}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Training images/s of the CPU preset: plain float32 against the settings train.py "
            "picks (bf16 where the CPU has it), 32x32 and 64x64, side by side. Last line: "
            "'speedup: X' (best / plain float32 images/s at 32x32)."
        )
    )
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="training config JSON")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64], help="image sides")
    parser.add_argument("--batch-size", type=int, default=None, help="images per step (config's)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps of each (default 1)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per round (default 2)")
    parser.add_argument("--rounds", type=int, default=4, help="rounds at 32x32 (default 4)")
    parser.add_argument(
        "--batch-sizes", type=int, nargs="+", default=[16, 32, 64], help="per-sample cost study"
    )
    parser.add_argument("--no-batches", action="store_true", help="skip the batch-size study")
    parser.add_argument(
        "--widths",
        type=int,
        nargs="*",
        default=[24, 32],
        help="base widths to time in the best precision against the plain step (none: skip)",
    )
    parser.add_argument(
        "--quality-steps", type=int, default=40, help="steps of the precision check (0: skip)"
    )
    parser.add_argument("--no-quality", action="store_true", help="skip the precision check")
    parser.add_argument(
        "--heat-images",
        type=int,
        default=4,
        help="off-data points per step in the heat-term study (0: skip; default 4)",
    )
    parser.add_argument("--no-flops", action="store_true", help="skip the FLOP estimate")
    parser.add_argument("--no-data", action="store_true", help="skip timing the data stream")
    parser.add_argument(
        "--study", action="store_true", help="threads vs DDP vs independent runs on 2 cores"
    )
    parser.add_argument("--world", type=int, default=2, help="processes of the study (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the images and noise")
    add_malloc_arg(parser)
    add_threads_arg(parser)
    return parser.parse_args(argv)


def sized(cfg: TrainConfig, size: int) -> TrainConfig:
    """The config with the model's image side set to ``size`` (same network)."""
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, image_size=size))


class Trainer:
    """A model, its optimizer, a fixed batch and a noise generator, as the training loop has."""

    def __init__(
        self,
        cfg: TrainConfig,
        batch: int,
        seed: int,
        rank: int = 0,
        *,
        precision: str = "fp32",
        former: bool = False,
        ddp: bool = False,
    ):
        device = torch.device("cpu")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)  # every rank starts from the same weights
            self.model = model_from_config(cfg.model).to(device)
        if former:
            use_plain_layers(self.model)
        self.model.train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.loss_module = DualScoreLoss(self.model)
        if ddp:
            self.loss_module = distributed.wrap_ddp(
                self.loss_module, device, find_unused_parameters(self.model, cfg.loss)
            )
        data = torch.Generator().manual_seed(seed * 1000 + rank)
        self.x = torch.rand((batch, *cfg.model.image_shape), generator=data)
        self.noise = torch.Generator().manual_seed(seed * 1000 + 500 + rank)
        self.cfg = cfg
        self.batch = batch
        self.autocast_dtype = DTYPES[precision]
        self.last_loss = float("nan")
        loss = cfg.loss
        self.chains = (
            AscentChains(loss.heat_chains, loss.heat_ascent_steps, loss.heat_restart)
            if loss.heat_weight > 0 and loss.heat_points == "ascent"
            else None
        )

    def step(self) -> None:
        stats = train_step(
            self.loss_module,
            self.x,
            self.cfg.noise,
            self.cfg.loss,
            self.optimizer,
            self.noise,
            grad_clip=self.cfg.grad_clip,
            autocast_dtype=self.autocast_dtype,
            chains=self.chains,
        )
        self.last_loss = stats["loss"]

    def steps(self, n: int) -> tuple[list[float], list[float]]:
        """(wall seconds, CPU seconds of this process) of each of n training steps."""
        times, cpu_times = [], []
        for _ in range(n):
            start, cpu_start = time.perf_counter(), time.process_time()
            self.step()
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
        return times, cpu_times


def alternate(
    trainers: dict[str, Trainer], rounds: int, steps: int, warmup: int
) -> dict[str, tuple[list[float], list[float]]]:
    """Per-step (wall, CPU) seconds of each trainer, alternated, order rotated every round."""
    names = list(trainers)
    for name in names:
        trainers[name].steps(warmup)
    out: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in names}
    for i in range(rounds):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            wall, cpu = trainers[name].steps(steps)
            out[name][0].extend(wall)
            out[name][1].extend(cpu)
    return out


def variants(best: str) -> list[str]:
    names = ["fp32 before", "fp32"]
    if cpu_bf16_support().native:
        names.append("bf16")
    if best not in names:
        names.append(best)
    return names


def make_trainer(cfg: TrainConfig, name: str, batch: int, seed: int) -> Trainer:
    if name == "fp32 before":
        return Trainer(cfg, batch, seed, precision="fp32", former=True)
    return Trainer(cfg, batch, seed, precision=name)


def throughput_table(
    cfg: TrainConfig, size: int, batch: int, best: str, args: argparse.Namespace, rounds: int
) -> dict[str, float]:
    """Prints one size's table; returns images/s per variant."""
    sized_cfg = sized(cfg, size)
    names = variants(best)
    own_process = args.malloc == "release" or args.threads != 1  # (workers have 1 thread)
    trainers = {
        name: make_trainer(sized_cfg, name, batch, args.seed)
        if name != "fp32 before" or own_process
        else PlainProcess(args, size)
        for name in names
    }
    try:
        times = alternate(trainers, rounds, args.steps, args.warmup)
    finally:
        for trainer in trainers.values():
            if isinstance(trainer, PlainProcess):
                trainer.close()
    where = (
        "in this process"
        if own_process
        else "in a process of its own with glibc's allocator defaults"
    )
    print(
        f"{size}x{size}, batch {batch}, {args.threads} thread(s); {args.warmup} warm-up + "
        f"{rounds} x {args.steps} timed steps each, alternating (load now: {load_note(False)}); "
        f"'fp32 before' {where}"
    )
    header = (
        f"  {'variant':<12} {'ms/step':>8} {'min':>7} {'CPU ms':>7} {'images/s':>9} "
        f"{'x before':>8} {'loss':>8}"
    )
    print(header)
    print("  " + "-" * (len(header) - 2))
    ips = {name: batch / median(times[name][0]) for name in names}
    for name in names:
        wall, cpu = times[name]
        label = name + (" *" if name == best else "")
        print(
            f"  {label:<12} {1e3 * median(wall):>8.1f} {1e3 * min(wall):>7.1f} "
            f"{1e3 * median(cpu):>7.1f} {ips[name]:>9.1f} {ips[name] / ips['fp32 before']:>8.2f} "
            f"{trainers[name].last_loss:>8.4f}"
        )
    print()
    return ips


def batch_study(cfg: TrainConfig, best: str, args: argparse.Namespace) -> None:
    print(f"per-sample cost by batch size (32x32; {args.threads} thread(s)):")
    print(f"  {'batch':>5}  " + "  ".join(f"{n + ' ms/image':>22}" for n in ("fp32 before", best)))
    sized_cfg = sized(cfg, 32)
    for batch in args.batch_sizes:
        names = ["fp32 before", best]
        trainers = {name: make_trainer(sized_cfg, name, batch, args.seed) for name in names}
        times = alternate(trainers, 2, args.steps, args.warmup)
        cells = [f"{1e3 * median(times[n][0]) / batch:>22.2f}" for n in names]
        print(f"  {batch:>5}  " + "  ".join(cells))
    print()


def width_study(cfg: TrainConfig, best: str, args: argparse.Namespace, batch: int) -> None:
    """Wider networks in the best precision against the plain float32 step of the preset."""
    base = sized(cfg, 32)
    trainers = {"fp32 before": make_trainer(base, "fp32 before", batch, args.seed)}
    for width in args.widths:
        unet = dataclasses.replace(base.model.unet, base_width=width)
        wide = dataclasses.replace(base, model=dataclasses.replace(base.model, unet=unet))
        trainers[f"{best} width {width}"] = make_trainer(wide, best, batch, args.seed)
    times = alternate(trainers, 2, args.steps, args.warmup)
    ref = median(times["fp32 before"][0])
    print(
        f"wider networks (32x32, batch {batch}; the preset's base width is "
        f"{base.model.unet.base_width}):"
    )
    for name, trainer in trainers.items():
        n = sum(p.numel() for p in trainer.model.parameters())
        step = median(times[name][0])
        print(
            f"  {name:<16} {n:>10,} params {1e3 * step:>8.1f} ms/step  {step / ref:>5.2f}x the "
            "plain step"
        )
    print()


def heat_study(cfg: TrainConfig, best: str, args: argparse.Namespace, batch: int) -> None:
    """The best step with and without the heat-equation term (third-order autograd through the
    plain-layer twin on ``--heat-images`` points; "ascent" adds the chains' ascent steps)."""
    base = sized(cfg, 32)
    trainers = {"no heat term": make_trainer(base, best, batch, args.seed)}
    for points in ("noise", "ascent"):
        loss = dataclasses.replace(
            base.loss, heat_weight=1.0, heat_images=args.heat_images, heat_points=points
        )
        trainers[f"heat, {points}"] = make_trainer(
            dataclasses.replace(base, loss=loss), best, batch, args.seed
        )
    times = alternate(trainers, 2, args.steps, args.warmup)
    ref = median(times["no heat term"][0])
    print(
        f"heat-equation term (32x32, batch {batch}, {best}, {args.heat_images} off-data points "
        f"per step, ascent chains {base.loss.heat_ascent_steps} steps per visit):"
    )
    for name in trainers:
        step = median(times[name][0])
        print(f"  {name:<14} {1e3 * step:>8.1f} ms/step  {step / ref:>5.2f}x the step without")
    print()


def data_study(cfg: TrainConfig, batch: int, step_s: float) -> None:
    from dsm_core.data import iterate_batches

    start = time.perf_counter()
    dataset = load_training_data(cfg.data, cfg.model.image_size)
    load_s = time.perf_counter() - start
    batches = iterate_batches(dataset, batch, cfg.seed, flip=cfg.data.flip)
    next(batches)
    start = time.perf_counter()
    n = 50
    for _ in range(n):
        next(batches)
    per_batch = (time.perf_counter() - start) / n
    print(
        f"data loading ({cfg.data.name}): {load_s:.1f} s once at start ({len(dataset):,} images "
        f"in memory), then {1e3 * per_batch:.2f} ms per batch of {batch} = "
        f"{100 * per_batch / step_s:.1f}% of a best step ({1e3 * step_s:.0f} ms): not worth a "
        "loader thread or process on 2 cores"
    )
    print()


def quality_study(cfg: TrainConfig, args: argparse.Namespace) -> bool | None:
    """Prints the float32 / bf16 comparison; True when within tolerances (None: not run)."""
    if not cpu_bf16_support().native:
        print("quality: bf16 not run (no native bf16 on this CPU)")
        print()
        return None
    folder = DEFAULT_MODEL
    model = None
    if (folder / "model.safetensors").is_file():
        model = dsm_core.load_model(str(folder))
        if tuple(model.image_shape) != tuple(sized(cfg, 32).model.image_shape):
            model = None
    source = f"weights of {folder.relative_to(ROOT)}"
    if model is None:
        torch.manual_seed(args.seed)
        model = model_from_config(sized(cfg, 32).model)
        source = "random weights"
    images = dsm_core.packaging.read_test_images(folder, tuple(model.image_shape))
    if images is not None:
        x = torch.from_numpy(images[0].astype(np.float32) / 255.0)
        data = f"{images[0].shape[0]} held-out images of {folder.relative_to(ROOT)}"
    else:
        x = torch.rand((512, *model.image_shape), generator=torch.Generator().manual_seed(0))
        data = "uniform random images"
    num_eval = 16
    start = time.perf_counter()
    comparison = compare_precisions(
        model,
        x[:-num_eval],
        x[-num_eval:],
        num_steps=args.quality_steps,
        batch_size=32,
        lr=cfg.lr,
        noise_cfg=cfg.noise,
        loss_cfg=cfg.loss,
        seed=args.seed,
    )
    print(
        f"quality: {args.quality_steps} seeded Adam steps (lr {cfg.lr:g}, batch 32) from the "
        f"{source} on {data} ({num_eval} held out), float32 vs bf16 (same t and z) and "
        f"{len(comparison.references)} float32 references with other t and z draws, all "
        f"evaluated in float32 "
        f"({time.perf_counter() - start:.0f} s)"
    )
    print(
        f"  {'':<26} {'fp32':>9} {'bf16':>9} {'fp32 refs':>22} {'|bf16-fp32|':>11} "
        f"{'max |ref-fp32|':>14} {'allowed':>8}"
    )
    rows = (
        ("held-out loss (relative)", "loss", "loss_rel"),
        ("K (dB/dim)", "log_norm_db", "log_norm_db"),
        ("one-shot - ODE (dB/dim)", "ode_gap_db", "ode_gap_db"),
    )
    for label, key, diff_key in rows:
        a, b = getattr(comparison.fp32, key), getattr(comparison.bf16, key)
        refs = [getattr(run, key) for run in comparison.references]
        scale = abs(a) if key == "loss" else 1.0
        spread = max((abs(r - a) / scale for r in refs), default=0.0)
        print(
            f"  {label:<26} {a:>9.4f} {b:>9.4f} {' '.join(f'{r:.4f}' for r in refs):>22} "
            f"{getattr(comparison, diff_key):>11.4f} {spread:>14.4f} "
            f"{comparison.allowed(diff_key):>8.4f}"
        )
    tol = comparison.tolerances
    print(
        f"  allowed = max(absolute: loss {tol.loss_rel:g} relative, K {tol.log_norm_db:g}, gap "
        f"{tol.ode_gap_db:g} dB/dim; {tol.spread_factor:g} x max |ref - fp32| for K and the gap)"
    )
    last = np.mean(comparison.fp32.train_losses[-10:]), np.mean(comparison.bf16.train_losses[-10:])
    print(f"  mean training loss of the last 10 steps: fp32 {last[0]:.4f}, bf16 {last[1]:.4f}")
    failures = comparison.failures()
    print("  bf16 within every tolerance" if not failures else "  EXCEEDED: " + "; ".join(failures))
    print()
    return not failures


def _conv_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)]


def flop_study(cfg: TrainConfig, best: str, step_s: dict[str, float], batch: int) -> None:
    """FLOPs of one step by phase against the rate of the network's own convolutions."""
    trainer = make_trainer(sized(cfg, 32), "fp32", batch, 0)
    model = trainer.model
    x = trainer.x
    t = batch_t(0.01, x)
    y = add_noise(x, t, torch.randn_like(x))
    with FlopCounterMode(display=False) as counter:
        model.energy(y, t)
    forward = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        model.energy_and_scores(y, t, create_graph=True)
    scores = counter.get_total_flops() - forward
    with FlopCounterMode(display=False) as counter:
        trainer.step()
    total = counter.get_total_flops()
    double = total - forward - scores
    print(
        f"FLOPs of one step (32x32, batch {batch}; convolutions and matmuls, torch.utils."
        f"flop_counter): forward {forward / 1e9:.2f} G ({forward / batch / 1e6:.1f} M/image), "
        f"scores' backward {scores / 1e9:.2f} G, double backward {double / 1e9:.2f} G, total "
        f"{total / 1e9:.2f} G = {total / forward:.1f} forwards"
    )
    # each convolution alone, forward, its own shape: the rate this core reaches on it
    inputs: dict[torch.nn.Module, torch.Tensor] = {}

    def keep_input(module: torch.nn.Module, args: tuple, out: torch.Tensor) -> None:
        inputs.setdefault(module, args[0].detach().clone())  # (a hook's result would replace out)

    hooks = [m.register_forward_hook(keep_input) for m in _conv_modules(model)]
    with torch.no_grad():
        model.energy(y, t)
    for hook in hooks:
        hook.remove()
    bound: dict[str, float] = {}
    peak: dict[str, float] = {}
    for name, dtype in DTYPES.items():
        if dtype is not None and not cpu_bf16_support().native:
            continue
        seconds = 0.0  # the network's convolutions, forward, each at its own best rate
        rates = []
        for module, h in inputs.items():
            with FlopCounterMode(display=False) as counter, torch.no_grad():
                module(h)
            flops = counter.get_total_flops()
            enabled = dtype is not None
            with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=enabled):
                for _ in range(2):
                    module(h)
                runs = []
                for _ in range(5):
                    start = time.perf_counter()
                    module(h)
                    runs.append(time.perf_counter() - start)
            rates.append(flops / min(runs))
            seconds += min(runs)
        # the step does each convolution's work about total / forward times
        bound[name] = seconds * total / forward
        peak[name] = max(rates)
    for name in bound:
        achieved = total / step_s[name] / 1e9 if name in step_s else float("nan")
        print(
            f"  {name}: the step at {achieved:.0f} GFLOP/s; this core's convolutions alone reach "
            f"{peak[name] / 1e9:.0f} GFLOP/s at best (widest layer), and the step's FLOPs at each "
            f"layer's own forward rate would take {1e3 * bound[name]:.0f} ms: the step "
            f"({1e3 * step_s[name]:.0f} ms) is {step_s[name] / bound[name]:.1f}x that bound"
        )
    print()


# --------------------------------------------------------------------------------------------
# 2-core study: threads vs DDP ranks vs independent runs


def _worker(
    rank: int,
    args,
    port: int,
    precision: str,
    ddp: bool,
    commands,
    results,
    size: int = 32,
    former: bool = False,
    malloc: str | None = None,
    warmup: int | None = None,
) -> None:
    """A training process that runs n steps per command and reports their (wall, CPU) seconds.
    ``malloc``: its allocator setting (default ``args.malloc``, as train.py's ranks); ``warmup``:
    untimed steps before it reports ready (default ``args.warmup``)."""
    apply_malloc_setting(malloc or args.malloc)
    set_threads(1)
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    try:
        cfg = sized(load_config_file(args.config), size)
        batch = args.batch_size or cfg.batch_size
        if ddp:
            os.environ.update(
                MASTER_ADDR="127.0.0.1",
                MASTER_PORT=str(port),
                RANK=str(rank),
                LOCAL_RANK=str(rank),
                WORLD_SIZE=str(args.world),
            )
            distributed.init_process_group(torch.device("cpu"))
            batch //= args.world  # the loop splits the config's batch across ranks
        trainer = Trainer(cfg, batch, args.seed, rank, precision=precision, former=former, ddp=ddp)
        trainer.steps(args.warmup if warmup is None else warmup)
        results.put(("ready", rank, None))
        while (n := commands.get()) is not None:
            wall, cpu = trainer.steps(n)
            results.put(("done", rank, (wall, cpu, trainer.batch * n, trainer.last_loss)))
    except Exception as exc:  # reported by the parent instead of hanging it
        results.put(("error", rank, repr(exc)))
        raise
    finally:
        if ddp:
            distributed.destroy_process_group()


class PlainProcess:
    """The ``fp32 before`` step in a process of its own with glibc's allocator defaults (as
    before issue 16), driven like a ``Trainer``: ``steps(n)`` -> per-step (wall, CPU) seconds.
    It warms up only when told to, as a ``Trainer``, so its steps see the same weights."""

    def __init__(self, args: argparse.Namespace, size: int):
        context = mp.get_context("spawn")
        self.commands, self.results = context.Queue(), context.Queue()
        worker_args = (0, args, 0, "fp32", False, self.commands, self.results, size, True)
        self.process = context.Process(
            target=_worker, args=worker_args, kwargs={"malloc": "release", "warmup": 0}, daemon=True
        )
        self.process.start()
        _collect(self.results, 1, "ready")
        self.last_loss = float("nan")

    def steps(self, n: int) -> tuple[list[float], list[float]]:
        self.commands.put(n)
        wall, cpu, _, self.last_loss = _collect(self.results, 1, "done")[0]
        return wall, cpu

    def close(self) -> None:
        self.commands.put(None)
        self.process.join(timeout=60)
        if self.process.is_alive():
            self.process.terminate()


def _collect(results, world: int, kind: str, timeout: float = 600.0) -> dict[int, object]:
    out = {}
    while len(out) < world:
        what, rank, payload = results.get(timeout=timeout)
        if what == "error":
            raise RuntimeError(f"worker {rank} failed: {payload}")
        if what == kind:
            out[rank] = payload
    return out


def two_core_study(cfg: TrainConfig, best: str, args: argparse.Namespace) -> None:
    context = mp.get_context("spawn")
    groups = {}
    for label, ddp in (("DDP", True), ("independent", False)):
        commands = [context.Queue() for _ in range(args.world)]
        results = context.Queue()
        port = free_port()
        procs = [
            context.Process(
                target=_worker, args=(r, args, port, best, ddp, commands[r], results), daemon=True
            )
            for r in range(args.world)
        ]
        for p in procs:
            p.start()
        groups[label] = (commands, results, procs)
    batch = args.batch_size or cfg.batch_size
    sized_cfg = sized(cfg, 32)
    own = Trainer(sized_cfg, batch, args.seed, precision=best)
    images_per_s: dict[str, list[float]] = {}
    n = max(2, args.steps * 2)
    try:
        for label in groups:
            _collect(groups[label][1], args.world, "ready")
        own.steps(args.warmup)
        labels = [f"1 process x {args.world} threads", "DDP", "independent", "1 process x 1 thread"]
        for i in range(3):
            shift = i % len(labels)
            for label in labels[shift:] + labels[:shift]:
                if label in groups:
                    commands, results, _ = groups[label]
                    for queue in commands:
                        queue.put(n)
                    done = _collect(results, args.world, "done")
                    wall = max(sum(w) for w, _, _, _ in done.values())
                    images = sum(k for _, _, k, _ in done.values())
                    # DDP ranks share each step's batch: the model saw `images`; independent runs
                    # each trained their own model on `images / world`
                else:
                    set_threads(args.world if "threads" in label else 1)
                    start = time.perf_counter()
                    own.steps(n)
                    wall, images = time.perf_counter() - start, batch * n
                    set_threads(args.threads)
                images_per_s.setdefault(label, []).append(images / wall)
    finally:
        for commands, _, procs in groups.values():
            for queue in commands:
                queue.put(None)
            for p in procs:
                p.join(timeout=60)
                if p.is_alive():
                    p.terminate()
    print(
        f"2-core study ({best}, config batch {batch}; {n} steps per sample, 3 rounds, rotated; "
        f"load now: {load_note(False)}):"
    )
    ref = median(images_per_s["1 process x 1 thread"])
    notes = {
        f"1 process x {args.world} threads": "one model, the config's batch",
        "DDP": f"one model, batch {batch} split over {args.world} gloo ranks",
        "independent": f"{args.world} models (e.g. seeds), batch {batch} each",
        "1 process x 1 thread": "reference: one core",
    }
    for label, values in images_per_s.items():
        value = median(values)
        print(f"  {label:<24} {value:>7.1f} images/s  {value / ref:>5.2f}x  ({notes[label]})")
    print()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    malloc = apply_malloc_setting(args.malloc)
    start_wall = time.perf_counter()
    load_before = load_note()
    set_threads(args.threads)
    cfg = load_config_file(args.config)
    batch = args.batch_size or cfg.batch_size
    support = cpu_bf16_support()
    best = resolve_precision("auto", "cpu").name
    print(f"config {Path(args.config).name}; bf16: {support.reason}")
    print(f"malloc {malloc.name}: {malloc.reason} (train.py's --malloc)")
    print(
        f"best = train.py --precision auto on this machine: {best} "
        "(* below); 'fp32 before' = the plain float32 step before issue 16"
    )
    print()
    results = {}
    for size in args.sizes:
        rounds = args.rounds if size <= 32 else max(2, args.rounds // 2)
        results[size] = throughput_table(cfg, size, batch, best, args, rounds)
    if not args.no_batches:
        batch_study(cfg, best, args)
    if args.widths:
        width_study(cfg, best, args, batch)
    if args.heat_images > 0:
        heat_study(cfg, best, args, batch)
    ref_size = 32 if 32 in results else args.sizes[0]
    step_s = {name: batch / ips for name, ips in results[ref_size].items()}
    if not args.no_data:
        data_study(cfg, batch, step_s[best])
    quality_ok = None
    if not args.no_quality and args.quality_steps > 0:
        quality_ok = quality_study(cfg, args)
    if not args.no_flops:
        flop_study(cfg, best, step_s, batch)
    if args.study:
        two_core_study(cfg, best, args)
    for size, ips in results.items():
        print(
            f"{size}x{size}: {best} {ips[best]:.1f} images/s vs plain fp32 "
            f"{ips['fp32 before']:.1f}: {ips[best] / ips['fp32 before']:.2f}x "
            f"(fp32 with today's code {ips['fp32'] / ips['fp32 before']:.2f}x)"
        )
    if quality_ok is not None:
        print(f"bf16 quality tolerances {'met' if quality_ok else 'NOT met'}")
    print_run_footer(load_before, start_wall)
    ips = results[ref_size]
    print(f"speedup: {fmt_ratio(ips[best] / ips['fp32 before'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
