"""Wall time of one dual score matching training step against one single score matching step.

Both are ``dsm_core.training.train_step`` on the same network (a preset, default natural32) and
the same batch: fixed clean images x, and the same noise levels t and noise z every step (the step
draws t and z from a generator that is re-seeded identically before each call). Each step is the
forward pass, the inner autograd of the scores (``create_graph``), the backward through them
(double backprop) and an Adam step:

- dual: ``LossConfig(time_weight=1)``, the inner autograd takes grad_y U and grad_t U;
- single: ``LossConfig(time_weight=0)``, only grad_y U (still double backprop through it);
- score: the score network of the same UNet (``head="score"``, ``grad_y = f(y, t)``, paper
  Table 1's baseline): denoising score matching with one ordinary backward, no double backprop.

All three run at ``--precision`` (default ``auto``: what ``train/train.py`` picks on this machine,
bf16 autocast on a CPU with native bf16, else float32; ``dsm_core.precision``), and with the
allocator setting ``train/train.py`` applies, ``--malloc`` (default ``keep``: glibc keeps freed
memory in the process, ``dsm_core.precision.apply_malloc_setting``; ``release``: glibc's defaults,
which fault the dual step's memory back in every step). The table's ``faults`` column is the
median of minor page faults per step (``getrusage``).

The optimizer's learning rate is 0 by default (``--lr``), so the weights, and with them the work of
every step, stay identical across the run. The two are alternated in one run (warm-up steps of
each, then timed steps, ``time.perf_counter``, medians).

The line above the last is ``dual_over_score: X`` = median dual step time / median score-network
step time (the paper's comparison: 3.75 on its GPU). The last line printed is ``ratio: X``,
X = median dual step time / median single step time.

Examples:
    python bench/dual_vs_single_step.py
    python bench/dual_vs_single_step.py --preset tiny --batch-size 64 --steps 30
    python bench/dual_vs_single_step.py --precision fp32
    python bench/dual_vs_single_step.py --malloc release
"""

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _common import add_malloc_arg, load_note

import dsm_core
from dsm_core.config import LossConfig, NoiseConfig
from dsm_core.losses import DualScoreLoss
from dsm_core.packaging import read_test_images
from dsm_core.precision import (
    PRECISIONS,
    apply_malloc_setting,
    resolve_precision,
)
from dsm_core.training import train_step

DEFAULT_IMAGES = "checkpoints/default"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Time a dual score matching training step (time_weight=1) against a single score "
            "matching step (time_weight=0) and a score-network step (head='score') on the same "
            "network and batch. Last lines: 'dual_over_score: X', then 'ratio: X' (dual / single)."
        )
    )
    parser.add_argument("--preset", default="natural32", help="model preset (default natural32)")
    parser.add_argument("--channels", type=int, default=1, help="image channels (default 1)")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size (default 32)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps of each (default 3)")
    parser.add_argument("--steps", type=int, default=15, help="timed steps of each (default 15)")
    parser.add_argument("--lr", type=float, default=0.0, help="Adam learning rate (default 0)")
    parser.add_argument(
        "--images",
        default=DEFAULT_IMAGES,
        help="folder with test_images.npz for x (random x if absent or of another shape)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of x, t, z and the weights")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="fp32, bf16 or auto (default: train.py's choice on this machine)",
    )
    add_malloc_arg(parser)
    return parser.parse_args(argv)


def make_batch(folder: str, shape: tuple[int, ...], batch: int, seed: int) -> tuple:
    """(x (batch, C, H, W) in [0, 1], description): held-out images if they fit, else uniform."""
    try:
        sample = read_test_images(Path(folder), shape)
    except ValueError:
        sample = None
    if sample is not None:
        images = sample[0]
        reps = -(-batch // images.shape[0])
        images = np.concatenate([images] * reps)[:batch]
        return torch.from_numpy(images.astype(np.float32) / 255.0), f"{folder}/test_images.npz"
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((batch, *shape), generator=generator), "uniform random"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    malloc = apply_malloc_setting(args.malloc)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = dsm_core.build_energy_model(args.preset, channels=args.channels)
    model.train()
    shape = tuple(model.image_shape)
    x, x_source = make_batch(args.images, shape, args.batch_size, args.seed)
    loss_module = DualScoreLoss(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    torch.manual_seed(args.seed)
    score_model = dsm_core.build_energy_model(args.preset, channels=args.channels, head="score")
    score_model.train()
    score_module = DualScoreLoss(score_model)
    score_optimizer = torch.optim.Adam(score_model.parameters(), lr=args.lr)
    noise_cfg = NoiseConfig()
    configs = {
        "dual": LossConfig(time_weight=1.0),
        "single": LossConfig(time_weight=0.0),
        "score": LossConfig(time_weight=0.0),
    }
    choice = resolve_precision(args.precision, "cpu")

    def step(kind: str) -> dict[str, float]:
        generator = torch.Generator().manual_seed(args.seed + 1)  # same t and z every step
        module, opt = (
            (score_module, score_optimizer) if kind == "score" else (loss_module, optimizer)
        )
        return train_step(
            module,
            x,
            noise_cfg,
            configs[kind],
            opt,
            generator,
            autocast_dtype=choice.autocast_dtype,
        )

    for _ in range(args.warmup):
        for kind in configs:
            step(kind)

    times: dict[str, list[float]] = {kind: [] for kind in configs}
    cpu: dict[str, list[float]] = {kind: [] for kind in configs}
    faults: dict[str, list[int]] = {kind: [] for kind in configs}
    last: dict[str, dict[str, float]] = {}
    kinds = list(configs)
    for i in range(args.steps):
        # alternate, rotating which goes first every round
        order = kinds[i % 3 :] + kinds[: i % 3]
        for kind in order:
            faults_start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            start, cpu_start = time.perf_counter(), time.process_time()
            last[kind] = step(kind)
            times[kind].append(time.perf_counter() - start)
            cpu[kind].append(time.process_time() - cpu_start)
            faults[kind].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_start)

    num_params = sum(p.numel() for p in model.parameters())
    print(
        f"preset {args.preset} ({num_params:,} params), batch {args.batch_size} x {shape}, "
        f"x from {x_source}, threads {args.threads}, lr {args.lr:g}"
    )
    print(f"precision {choice.name}: {choice.reason}")
    print(f"malloc {malloc.name}: {malloc.reason}")
    print(f"{args.warmup} warm-up + {args.steps} timed steps each, alternating; Adam")
    print()
    header = (
        f"{'step':<8} {'median ms':>10} {'min ms':>9} {'max ms':>9} {'CPU ms':>8} {'loss':>9} "
        f"{'space':>9} {'faults':>7}"
    )
    print(header)
    print("-" * len(header))
    for kind in configs:
        ms = [1e3 * s for s in times[kind]]
        print(
            f"{kind:<8} {statistics.median(ms):>10.1f} {min(ms):>9.1f} {max(ms):>9.1f} "
            f"{1e3 * statistics.median(cpu[kind]):>8.1f} {last[kind]['loss']:>9.4f} "
            f"{last[kind]['space']:>9.4f} {statistics.median(faults[kind]):>7.0f}"
        )
    cpu_dual = statistics.median(cpu["dual"])
    print(
        f"by CPU time (process_time; steadier on a shared machine): dual / score "
        f"{cpu_dual / statistics.median(cpu['score']):.2f}, dual / single "
        f"{cpu_dual / statistics.median(cpu['single']):.2f}"
    )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory {peak_mb:.0f} MB")
    print(load_note(warn=False))
    dual = statistics.median(times["dual"])
    print(f"dual_over_score: {dual / statistics.median(times['score']):.2f}")
    print(f"ratio: {dual / statistics.median(times['single']):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
