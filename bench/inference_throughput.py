"""Images per second of the energy alone against the energy with its scores, by batch and size.

Two inference paths of the same network on the same images (uniform random in [0, 1]):

- energy: ``dsm_core.logp_db(model, x, t=0, batch_size=B)`` on B images, i.e. one forward pass
  under ``torch.inference_mode`` (the path of log p, the test set, brightness & contrast);
- scores: ``model.energy_and_scores(x, 0)`` on the same B images, i.e. a forward pass recorded by
  autograd and one backward to grad_y and grad_t (the path of gradient ascent, the score map,
  sampling and denoising).

Models: the default model (``--model``, natural32 architecture, trained weights) at its 32x32,
and the same config with random weights at the other ``--sizes``; the release architecture
``imagenet64`` (8.6M parameters, random weights) at ``--release-sizes`` with the small
``--release-batch-sizes``. The two paths alternate for every (model, size, batch): one warm-up
call each, then ``--repeats`` samples of each, a sample being enough back-to-back calls to last
``--min-sample-s``; medians are reported.

Peak memory is measured afterwards in one child process started with a fixed glibc mmap
threshold (``MALLOC_MMAP_THRESHOLD_=65536``, so freed tensors go back to the system): for each
case one untimed warm-up call, then the peak resident set size (Linux VmHWM, reset through
/proc/self/clear_refs) during one more call minus the resident size just before it. That is the
transient memory of one call beyond the model, the inputs and torch's persistent caches.

Also timed, alternately: the default model in channels-last memory format against the standard
(contiguous) format, both paths, at the library's default batch size.

Fitted: the exponent k of time per image ~ pixels^k over the sizes, at batch ``--fit-batch``.

The last line printed is ``scores_over_energy: X``, X = per-image time of the scores path /
per-image time of the energy path, default model at 32x32, the library's default batch size (64).

Examples:
    python bench/inference_throughput.py
    python bench/inference_throughput.py --sizes 32 --batch-sizes 1 16 64 --no-release
"""

import argparse
import copy
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _common import (
    add_threads_arg,
    fmt_ratio,
    load_note,
    median,
    print_run_footer,
    set_threads,
    time_alternating,
)

import dsm_core
from dsm_core.analysis._common import batch_size_for
from dsm_core.config import apply_overrides
from dsm_core.energy import model_from_config

DEFAULT_MODEL = "checkpoints/default"
RELEASE = "imagenet64"
MODES = ("energy", "scores")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Images/s of the energy only (logp_db, inference mode) against energy + scores "
            "(energy_and_scores, autograd) by batch size and image size, with peak memory, for "
            "the default model and the imagenet64 release architecture. Last line: "
            "'scores_over_energy: X' (per-image time ratio at the default batch size)."
        )
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help="default model folder or Hub id")
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[16, 32, 64], help="image sides (default model)"
    )
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=[1, 4, 16, 64, 256],
        help="batch sizes (default model)",
    )
    parser.add_argument(
        "--release-sizes",
        type=int,
        nargs="+",
        default=[16, 32, 64],
        help="image sides (imagenet64)",
    )
    parser.add_argument(
        "--release-batch-sizes",
        type=int,
        nargs="+",
        default=[1, 4, 16],
        help="batch sizes (imagenet64)",
    )
    parser.add_argument("--no-release", action="store_true", help="skip the imagenet64 preset")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak memory pass")
    parser.add_argument(
        "--no-channels-last", action="store_true", help="skip the channels-last comparison"
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed samples of each (default 5)")
    parser.add_argument(
        "--min-sample-s",
        type=float,
        default=0.05,
        help="a sample repeats short calls until it lasts this long (default 0.05 s)",
    )
    parser.add_argument(
        "--max-row-s",
        type=float,
        default=10.0,
        help="stop a row's samples after this long once 3 are done (default 10 s)",
    )
    parser.add_argument(
        "--fit-batch", type=int, default=16, help="batch at which the size exponent is fitted"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the images and weights")
    add_threads_arg(parser)
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------------ cases


def cases(args: argparse.Namespace) -> list[tuple[str, int, list[int]]]:
    """(preset label, image side, batch sizes) in the order they are measured."""
    out = [("default", size, args.batch_sizes) for size in args.sizes]
    if not args.no_release:
        out += [(RELEASE, size, args.release_batch_sizes) for size in args.release_sizes]
    return out


def make_model(label: str, size: int, default_model, seed: int):
    """The default model at its own size; its config with fresh weights, or imagenet64, else."""
    if label == "default" and size == default_model.config.image_size:
        return default_model
    torch.manual_seed(seed)
    if label == "default":
        config = apply_overrides(default_model.config, {"image_size": size})
        model = model_from_config(config, default_model.log_norm_nats)
    else:
        model = dsm_core.build_energy_model(RELEASE, channels=1, image_size=size)
    return model.eval().requires_grad_(False)  # as dsm_core.load_model leaves a model


def path_fns(model, x: torch.Tensor) -> dict:
    """The two compared paths on the same images x (B, C, H, W)."""
    batch = x.shape[0]
    return {
        "energy": lambda: dsm_core.logp_db(model, x, 0.0, batch_size=batch),
        "scores": lambda: model.energy_and_scores(x, 0.0),
    }


def images(model, batch: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((batch, *model.image_shape), generator=generator)


# ----------------------------------------------------------------------------------- memory


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def transient_peak_mib(fn) -> float:
    """Peak resident memory of one call of ``fn`` above the resident memory at its start, MiB."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # reset VmHWM (the peak RSS) to the current RSS
    before = _status_kib("VmRSS")
    fn()
    return (_status_kib("VmHWM") - before) / 1024


def memory_child(args: argparse.Namespace) -> int:
    """Print one JSON line per (model, size, batch): transient peak MiB of both paths."""
    set_threads(args.threads)
    default_model = dsm_core.load_model(args.model)
    print(json.dumps({"baseline_rss_mib": _status_kib("VmRSS") / 1024}), flush=True)
    for label, size, batches in cases(args):
        model = make_model(label, size, default_model, args.seed)
        for batch in batches:
            x = images(model, batch, args.seed)
            row = {"label": label, "size": size, "batch": batch}
            for mode, fn in path_fns(model, x).items():
                fn()  # warm-up: persistent caches are not part of a call's transient memory
                row[mode] = transient_peak_mib(fn)
            print(json.dumps(row), flush=True)
        del model
    return 0


def measure_memory(args: argparse.Namespace, argv: list[str] | None) -> dict:
    """{(label, size, batch): {mode: MiB}} from a child process (see memory_child)."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    command = [sys.executable, str(Path(__file__).resolve()), "--memory-child"]
    command += list(sys.argv[1:] if argv is None else argv)
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        print(f"memory pass failed:\n{result.stderr[-2000:]}", file=sys.stderr)
        return {}
    out = {}
    for line in result.stdout.splitlines():
        row = json.loads(line)
        if "label" in row:
            out[(row["label"], row["size"], row["batch"])] = row
        else:
            out["baseline"] = row["baseline_rss_mib"]
    return out


# ------------------------------------------------------------------------------------- main


def fit_exponent(pixels: list[int], seconds: list[float]) -> float:
    """Least-squares slope of log(seconds) against log(pixels)."""
    if len(pixels) < 2:
        return float("nan")
    return float(np.polyfit(np.log(pixels), np.log(seconds), 1)[0])


def channels_last_rows(model, batch: int, args: argparse.Namespace) -> list[tuple]:
    """(path, contiguous s/call, channels-last s/call, max relative difference), default model.

    The difference is that of log p (energy path) or grad_y (scores path), relative to the
    largest magnitude of the standard result.
    """
    x = images(model, batch, args.seed)
    model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    standard, last = path_fns(model, x), path_fns(model_cl, x_cl)
    fns = {}
    for mode in MODES:
        fns[f"{mode}/contiguous"] = standard[mode]
        fns[f"{mode}/channels-last"] = last[mode]
    times = time_alternating(fns, args.repeats, min_sample_s=args.min_sample_s)
    rows = []
    for mode in MODES:
        a, b = standard[mode](), last[mode]()
        if mode == "scores":
            a, b = a[1], b[1]  # grad_y
        delta = float((a.double() - b.double()).abs().max() / a.double().abs().max())
        t_std, t_cl = (median(times[f"{mode}/{kind}"]) for kind in ("contiguous", "channels-last"))
        rows.append((mode, t_std, t_cl, delta))
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.memory_child:
        return memory_child(args)
    start_wall = time.perf_counter()
    load_before = load_note()
    set_threads(args.threads)
    default_model = dsm_core.load_model(args.model)

    per_image: dict[tuple, dict[str, float]] = {}  # (label, size, batch) -> mode -> s/image
    params: dict[str, int] = {}
    num_samples: dict[tuple, int] = {}
    for label, size, batches in cases(args):
        model = make_model(label, size, default_model, args.seed)
        params[label] = sum(p.numel() for p in model.parameters())
        for batch in batches:
            x = images(model, batch, args.seed)
            times = time_alternating(
                path_fns(model, x),
                args.repeats,
                min_sample_s=args.min_sample_s,
                max_seconds=args.max_row_s,
            )
            num_samples[(label, size, batch)] = len(times["energy"])
            per_image[(label, size, batch)] = {m: median(times[m]) / batch for m in MODES}
            e, s = (1e3 * per_image[(label, size, batch)][m] for m in MODES)
            print(
                f"  {label:<10} {size:>3}px batch {batch:>3}: energy {e:8.3f} ms/image, "
                f"scores {s:8.3f} ms/image",
                flush=True,
            )
        del model

    cl_rows = []
    if not args.no_channels_last:
        cl_rows = channels_last_rows(default_model, batch_size_for(default_model.d, None), args)
    memory_start = time.perf_counter()
    memory = {} if args.no_memory else measure_memory(args, argv)
    memory_s = time.perf_counter() - memory_start

    default_size = default_model.config.image_size
    print()
    print(
        f"default model {args.model} ({params['default']:,} params, natural32 architecture; "
        f"random weights at sides other than {default_size})"
        + (
            f", imagenet64 ({params[RELEASE]:,} params, random weights)"
            if RELEASE in params
            else ""
        )
    )
    print(
        f"threads {args.threads}; n samples of each path per row (up to {args.repeats}, at least "
        f"3, fewer after {args.max_row_s:g} s), alternating, >= {args.min_sample_s:g} s per "
        "sample; uniform random images, t = 0"
    )
    print(
        "energy = dsm_core.logp_db (one forward, inference_mode); scores = energy_and_scores "
        "(forward + backward to grad_y, grad_t)"
    )
    if memory:
        print(
            "peak MiB = transient peak RSS of one call above the RSS before it (child process, "
            f"fixed mmap threshold, {memory_s:.0f} s; model + torch resident before: "
            f"{memory['baseline']:.0f} MiB)"
        )
    print()
    header = (
        f"{'model':<10} {'side':>4} {'batch':>5} {'n':>2} {'energy ms/img':>13} {'img/s':>8} "
        f"{'scores ms/img':>13} {'img/s':>8} {'ratio':>6} {'peak MiB e':>10} {'peak MiB s':>10}"
    )
    print(header)
    print("-" * len(header))
    for (label, size, batch), row in per_image.items():
        mem = memory.get((label, size, batch), {})
        e, s = row["energy"], row["scores"]
        mem_e = f"{mem['energy']:10.1f}" if mem else f"{'-':>10}"
        mem_s = f"{mem['scores']:10.1f}" if mem else f"{'-':>10}"
        print(
            f"{label:<10} {size:>4} {batch:>5} {num_samples[(label, size, batch)]:>2} "
            f"{1e3 * e:>13.3f} {1 / e:>8.0f} "
            f"{1e3 * s:>13.3f} {1 / s:>8.0f} {s / e:>6.2f} {mem_e} {mem_s}"
        )

    # the batch size to use by default: per-image time relative to the best batch, per mode
    print()
    print(f"default model at {default_size}x{default_size}: per-image time / best batch's")
    rel_header = f"{'batch':>5} {'energy':>8} {'scores':>8} {'worse':>8}"
    print(rel_header)
    print("-" * len(rel_header))
    rows = {b: per_image[("default", default_size, b)] for b in args.batch_sizes}
    best = {m: min(r[m] for r in rows.values()) for m in MODES}
    worst_of = {b: max(r[m] / best[m] for m in MODES) for b, r in rows.items()}
    for batch, r in rows.items():
        print(
            f"{batch:>5} {r['energy'] / best['energy']:>8.2f} {r['scores'] / best['scores']:>8.2f} "
            f"{worst_of[batch]:>8.2f}"
        )
    near = [b for b in rows if worst_of[b] <= 1.10]
    recommended = min(near) if near else min(rows, key=worst_of.get)
    library_batch = batch_size_for(default_model.d, None)
    print(
        f"library default batch_size {library_batch} at {default_size}x{default_size} "
        f"(dsm_core.analysis, VALUES_PER_BATCH / d): "
        f"{100 * (worst_of.get(library_batch, float('nan')) - 1):+.0f}% vs the best batch "
        f"(worse of the two paths); smallest batch within 10% of the best on both paths: "
        f"{recommended}"
    )

    # cost per image against pixels
    print()
    print(f"time per image ~ pixels^k, fitted over the sides at batch {args.fit_batch}")
    fit_header = f"{'model':<10} {'sides':<12} {'k energy':>9} {'k scores':>9}"
    print(fit_header)
    print("-" * len(fit_header))
    for label, sizes in (("default", args.sizes), (RELEASE, args.release_sizes)):
        keys = [
            (label, s, args.fit_batch) for s in sizes if (label, s, args.fit_batch) in per_image
        ]
        if not keys:
            continue
        pixels = [k[1] ** 2 for k in keys]
        ks = [fit_exponent(pixels, [per_image[k][m] for k in keys]) for m in MODES]
        sides = ",".join(str(k[1]) for k in keys)
        print(f"{label:<10} {sides:<12} {ks[0]:>9.2f} {ks[1]:>9.2f}")

    if cl_rows:
        print()
        print(
            f"memory format, default model {default_size}x{default_size}, batch "
            f"{batch_size_for(default_model.d, None)} (same weights and images)"
        )
        cl_header = (
            f"{'path':<8} {'contiguous ms':>13} {'channels-last ms':>16} {'speedup':>8} "
            f"{'max rel diff':>12}"
        )
        print(cl_header)
        print("-" * len(cl_header))
        for mode, t_std, t_cl, delta in cl_rows:
            print(
                f"{mode:<8} {1e3 * t_std:>13.2f} {1e3 * t_cl:>16.2f} {t_std / t_cl:>8.2f} "
                f"{delta:>12.2e}"
            )

    print()
    print_run_footer(load_before, start_wall)
    key = per_image.get(("default", default_size, batch_size_for(default_model.d, None)))
    if key is None:
        key = per_image[("default", default_size, max(args.batch_sizes))]
    ratio = key["scores"] / key["energy"]
    if not math.isfinite(ratio):
        raise SystemExit("no finite ratio")
    print(f"scores_over_energy: {fmt_ratio(ratio)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
