"""Wall time of one dual score matching training step against one single score matching step.

Both are ``dsm_core.training.train_step`` on the same network (a preset, default natural32) and
the same batch: fixed clean images x, and the same noise levels t and noise z every step (the step
draws t and z from a generator that is re-seeded identically before each call). Each step is the
forward pass, the inner autograd of the scores (``create_graph``), the backward through them
(double backprop) and an Adam step:

- dual: ``LossConfig(time_weight=1)``, the inner autograd takes grad_y U and grad_t U;
- single: ``LossConfig(time_weight=0)``, only grad_y U (still double backprop through it).

The optimizer's learning rate is 0 by default (``--lr``), so the weights, and with them the work of
every step, stay identical across the run. The two are alternated in one run (warm-up steps of
each, then timed steps, ``time.perf_counter``, medians).

The last line printed is ``ratio: X``, X = median dual step time / median single step time.

Examples:
    python bench/dual_vs_single_step.py
    python bench/dual_vs_single_step.py --preset tiny --batch-size 64 --steps 30
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

import dsm_core
from dsm_core.config import LossConfig, NoiseConfig
from dsm_core.packaging import read_test_images
from dsm_core.training import DualScoreLoss, train_step

DEFAULT_IMAGES = "checkpoints/default"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Time a dual score matching training step (time_weight=1) against a single score "
            "matching step (time_weight=0) on the same network and batch. Last line: 'ratio: X' "
            "(dual / single)."
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
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = dsm_core.build_energy_model(args.preset, channels=args.channels)
    model.train()
    shape = tuple(model.image_shape)
    x, x_source = make_batch(args.images, shape, args.batch_size, args.seed)
    loss_module = DualScoreLoss(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    noise_cfg = NoiseConfig()
    configs = {"dual": LossConfig(time_weight=1.0), "single": LossConfig(time_weight=0.0)}

    def step(kind: str) -> dict[str, float]:
        generator = torch.Generator().manual_seed(args.seed + 1)  # same t and z every step
        return train_step(loss_module, x, noise_cfg, configs[kind], optimizer, generator)

    for _ in range(args.warmup):
        for kind in configs:
            step(kind)

    times: dict[str, list[float]] = {kind: [] for kind in configs}
    last: dict[str, dict[str, float]] = {}
    for i in range(args.steps):
        # alternate, and swap which goes first every other round
        order = ("dual", "single") if i % 2 == 0 else ("single", "dual")
        for kind in order:
            start = time.perf_counter()
            last[kind] = step(kind)
            times[kind].append(time.perf_counter() - start)

    num_params = sum(p.numel() for p in model.parameters())
    print(
        f"preset {args.preset} ({num_params:,} params), batch {args.batch_size} x {shape}, "
        f"x from {x_source}, threads {args.threads}, lr {args.lr:g}"
    )
    print(f"{args.warmup} warm-up + {args.steps} timed steps each, alternating; Adam")
    print()
    header = f"{'step':<8} {'median ms':>10} {'min ms':>9} {'max ms':>9} {'loss':>9} {'space':>9}"
    print(header)
    print("-" * len(header))
    for kind in configs:
        ms = [1e3 * s for s in times[kind]]
        print(
            f"{kind:<8} {statistics.median(ms):>10.1f} {min(ms):>9.1f} {max(ms):>9.1f} "
            f"{last[kind]['loss']:>9.4f} {last[kind]['space']:>9.4f}"
        )
    ratio = statistics.median(times["dual"]) / statistics.median(times["single"])
    print(f"ratio: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
