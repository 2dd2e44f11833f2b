"""Training throughput of the CPU preset: one process against DDP over two gloo ranks.

The step is the training loop's: ``dsm_core.training.train_step`` (t and z drawn, forward, inner
autograd of both scores with ``create_graph``, double backprop, Adam step) on the model, noise and
loss settings of ``--config`` (default ``train/configs/natural32_cpu.json``: natural32, dual score
matching, batch 32), at ``--threads`` torch threads per process. Data loading, logging, evaluation
and checkpoints are not included; the images are a fixed uniform random batch per process.

- single: this process, no process group, ``--batch-size`` images per step (default: the
  config's batch_size);
- DDP: ``--world`` (default 2) worker processes (``torch.multiprocessing``, spawn), joined by
  ``dsm_core.distributed.init_process_group`` (gloo on CPU) and wrapped by ``wrap_ddp`` as the
  training loop does, each with the same per-rank batch, so one step trains on world x batch
  images (weak scaling).

The workers start first and warm up, then wait on a queue while this process warms up; then the
two alternate in rounds (``--rounds``, swapping which goes first), ``--steps`` timed steps each per
round, and only one of them computes at a time. A DDP step's time is the slowest rank's.

The last line printed is ``ddp_scaling: X``, X = DDP images/s / (world x single images/s): 1.0 is
perfect scaling. On a machine where another job keeps a core busy (see the load average printed)
the ranks share the remaining core(s) and X says so rather than what DDP itself costs.

Examples:
    python bench/training_throughput.py
    python bench/training_throughput.py --rounds 2 --steps 3
"""

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.multiprocessing as mp
from _common import (
    add_threads_arg,
    fmt_ratio,
    free_port,
    load_note,
    median,
    print_run_footer,
    set_threads,
)

from dsm_core import distributed
from dsm_core.energy import model_from_config
from dsm_core.training import (
    DualScoreLoss,
    TrainConfig,
    _find_unused_parameters,
    load_config_file,
    train_step,
)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "train" / "configs" / "natural32_cpu.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Steps/hour and images/s of the CPU training preset in one process against DDP over "
            "gloo ranks with the same per-rank batch. Last line: 'ddp_scaling: X' "
            "(DDP images/s / (world x single images/s))."
        )
    )
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="training config JSON")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="images per step per process (config's)"
    )
    parser.add_argument("--world", type=int, default=2, help="DDP ranks (default 2)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps of each (default 2)")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per round (default 4)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the images and noise")
    add_threads_arg(parser)
    return parser.parse_args(argv)


class Trainer:
    """A model, its optimizer, a fixed batch and a noise generator, as the training loop has."""

    def __init__(self, cfg: TrainConfig, batch: int, seed: int, rank: int = 0):
        device = torch.device("cpu")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)  # every rank starts from the same weights
            self.model = model_from_config(cfg.model).to(device)
        self.model.train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.loss_module = distributed.wrap_ddp(
            DualScoreLoss(self.model), device, _find_unused_parameters(self.model, cfg.loss)
        )
        data = torch.Generator().manual_seed(seed * 1000 + rank)
        self.x = torch.rand((batch, *cfg.model.image_shape), generator=data)
        self.noise = torch.Generator().manual_seed(seed * 1000 + 500 + rank)
        self.cfg = cfg
        self.last_loss = float("nan")

    def steps(self, n: int) -> tuple[list[float], list[float]]:
        """(wall seconds, CPU seconds of this process) of each of n training steps."""
        times, cpu_times = [], []
        for _ in range(n):
            start, cpu_start = time.perf_counter(), time.process_time()
            stats = train_step(
                self.loss_module,
                self.x,
                self.cfg.noise,
                self.cfg.loss,
                self.optimizer,
                self.noise,
                grad_clip=self.cfg.grad_clip,
            )
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
            self.last_loss = stats["loss"]
        return times, cpu_times


def _worker(rank: int, args: argparse.Namespace, port: int, commands, results) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(args.world),
    )
    set_threads(args.threads)
    # the time term's (32, 1) weight gets a gradient of other strides than DDP's bucket view:
    # 32 numbers copied per step, reported below rather than once per rank
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    try:
        distributed.init_process_group(torch.device("cpu"))
        cfg = load_config_file(args.config)
        trainer = Trainer(cfg, args.batch_size or cfg.batch_size, args.seed, rank)
        trainer.steps(args.warmup)
        results.put(("ready", rank, None))
        while (n := commands.get()) is not None:
            results.put(("times", rank, (trainer.steps(n), trainer.last_loss)))
    except Exception as exc:  # reported by the parent instead of hanging it
        results.put(("error", rank, repr(exc)))
        raise
    finally:
        distributed.destroy_process_group()


def collect(results, world: int, kind: str, timeout: float = 600.0) -> dict[int, object]:
    """One message of ``kind`` from every rank (raises on a worker's error)."""
    out = {}
    while len(out) < world:
        what, rank, payload = results.get(timeout=timeout)
        if what == "error":
            raise RuntimeError(f"DDP rank {rank} failed: {payload}")
        if what == kind:
            out[rank] = payload
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start_wall = time.perf_counter()
    load_before = load_note()
    set_threads(args.threads)
    cfg = load_config_file(args.config)
    batch = args.batch_size or cfg.batch_size

    context = mp.get_context("spawn")
    commands = [context.Queue() for _ in range(args.world)]
    results = context.Queue()
    port = free_port()
    workers = [
        context.Process(target=_worker, args=(rank, args, port, commands[rank], results))
        for rank in range(args.world)
    ]
    for process in workers:
        process.start()
    single_times: list[float] = []
    ddp_times: list[float] = []
    single_cpu: list[float] = []
    ddp_cpu: list[float] = []
    try:
        collect(results, args.world, "ready")  # the workers have warmed up; now they wait
        single = Trainer(cfg, batch, args.seed)
        single.steps(args.warmup)
        ddp_loss = float("nan")
        for i in range(args.rounds):
            order = ("single", "ddp") if i % 2 == 0 else ("ddp", "single")
            for kind in order:
                if kind == "single":
                    wall, cpu = single.steps(args.steps)
                    single_times += wall
                    single_cpu += cpu
                    continue
                for queue in commands:
                    queue.put(args.steps)
                per_rank = collect(results, args.world, "times")
                ddp_loss = per_rank[0][1]
                walls = [wall for (wall, _), _ in per_rank.values()]
                cpus = [cpu for (_, cpu), _ in per_rank.values()]
                ddp_times += [max(step) for step in zip(*walls, strict=True)]
                ddp_cpu += [max(step) for step in zip(*cpus, strict=True)]
            print(
                f"  round {i + 1}: single {median(single_times[-args.steps :]):.3f} s/step, "
                f"DDP {median(ddp_times[-args.steps :]):.3f} s/step",
                flush=True,
            )
    finally:
        for queue in commands:
            queue.put(None)
        for process in workers:
            process.join(timeout=60)
            if process.is_alive():
                process.terminate()

    t_single, t_ddp = median(single_times), median(ddp_times)
    ips_single = batch / t_single
    ips_ddp = args.world * batch / t_ddp
    scaling = ips_ddp / (args.world * ips_single)
    num_params = sum(p.numel() for p in single.model.parameters())
    print()
    print(
        f"config {Path(args.config).name}: {num_params:,} params, images "
        f"{tuple(cfg.model.image_shape)}, time_weight {cfg.loss.time_weight:g}, Adam lr {cfg.lr:g}"
    )
    print(
        f"{batch} images per step per process, {args.threads} thread(s) per process; "
        f"{args.warmup} warm-up + {args.rounds} x {args.steps} timed steps of each, alternating; "
        "train_step only (no data loading, logging, evaluation or checkpoints)"
    )
    print()
    header = (
        f"{'run':<14} {'images/step':>11} {'median s/step':>13} {'min':>7} {'max':>7} "
        f"{'steps/hour':>10} {'images/s':>9} {'CPU s/step':>10} {'loss':>8}"
    )
    print(header)
    print("-" * len(header))
    for label, times, cpu, images, ips, loss in (
        ("single", single_times, single_cpu, batch, ips_single, single.last_loss),
        (f"DDP {args.world} x gloo", ddp_times, ddp_cpu, args.world * batch, ips_ddp, ddp_loss),
    ):
        print(
            f"{label:<14} {images:>11} {median(times):>13.3f} {min(times):>7.3f} "
            f"{max(times):>7.3f} {3600 / median(times):>10.0f} {ips:>9.1f} {median(cpu):>10.3f} "
            f"{loss:>8.4f}"
        )
    print()
    print(
        f"scaling efficiency {scaling:.2f} = {ips_ddp:.1f} / ({args.world} x {ips_single:.1f}) "
        "images/s (wall time)"
    )
    cpu_scaling = median(single_cpu) / median(ddp_cpu)
    print(
        f"CPU time per step and process: single {median(single_cpu):.3f} s, DDP rank "
        f"{median(ddp_cpu):.3f} s (slowest rank): {cpu_scaling:.2f} is roughly the scaling to "
        "expect if every rank had a core of its own (DDP's own cost: all-reduce, gloo threads)"
    )
    print(
        "DDP warns that the time term's (32, 1) weight gradient has other strides than its "
        "bucket view (32 numbers copied per step); silenced in the workers"
    )
    print_run_footer(load_before, start_wall)
    print(f"ddp_scaling: {fmt_ratio(scaling)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
