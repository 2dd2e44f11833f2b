"""Train a dual score matching energy model: preset + overrides -> TrainConfig -> the loop."""

import argparse
import logging
import pickle
import signal
import sys
from pathlib import Path
from zipfile import BadZipFile

import torch

from dsm_core import distributed
from dsm_core.checkpoint import ModelLoadError
from dsm_core.precision import (
    MALLOC_SETTINGS,
    PRECISIONS,
    apply_malloc_setting,
    resolve_precision,
)
from dsm_core.train_config import config_to_json, find_config, load_config_file, parse_overrides
from dsm_core.training import NonFiniteLossError, train

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

DESCRIPTION = """\
Train a dual score matching energy model (Guth, Kadkhodaie & Simoncelli 2025).

The config is a preset name from train/configs/ (without .json) or a path to a JSON file, plus
key=value overrides. Keys are TrainConfig fields, dotted for nested ones; values are parsed as
JSON when they can be (numbers, true/false, null, quoted strings), else taken as strings.
The resolved config is written to OUT/config.json before step 0; --dry-run prints it and exits.
init_from=FOLDER starts from a packaged model's weights (same architecture) with a fresh
optimizer, e.g. to continue checkpoints/default when its run folder is gone.
"""

EPILOG = """\
presets (train/configs/):
{presets}

overrides, e.g.:
  num_steps=2000 lr=2e-4 batch_size=64 warmup_steps=0 grad_clip=null ema_decay=0.999
  noise.t_min=1e-9 loss.time_weight=0 seed=1 device=cuda
  model.time_term=none model.unet.base_width=16 model.head=squared_norm
  model.mean_embedding=true   (with model.mean_term=gaussian: the network sees each channel's
      image mean through its noise embedding; init_from may switch it on)
  model.box_term=gaussian_tail model.box_margin=3 model.box_var=0.01   (an analytic energy
      that is zero near [0, 1]^d and a Gaussian tail beyond it; init_from may switch it on)
  data.name=fashion-mnist data.grayscale=false model.unet.channels=3
  data.name=imagenet64:/data/imagenet64 data.subset=A data.subset_size=1000
  loss.heat_weight=10 loss.heat_images=4 loss.heat_points=ascent   (the heat-equation term on
      off-data points: noisy images, or persistent gradient-ascent chains; dsm_core.LossConfig)
  frozen_modules='["time_term","mean_term"]'   (keep those parts' weights as init_from gave
      them; freezable: unet, time_term, mean_term, mean_embedding)

the run folder OUT holds:
  config.json               the resolved TrainConfig (a resumed run must match it exactly)
  log.jsonl                 one JSON record per line: kind "train" (running means of the loss
                            and its space, time and heat terms), "eval"
                            (held-out loss, denoising PSNR per input PSNR, time-score error,
                            NLL bits/dim with K re-estimated at t_max), "checkpoint", "error"
  checkpoint.safetensors    model, optimizer, EMA, step, RNG and data-stream state (atomic)
  model/                    the exported, normalised model (load with dsm_core.load_model)

interruptions:
  SIGTERM or Ctrl-C finish the current step, save a checkpoint and exit with status 128+signal
  (a second Ctrl-C stops at once). Continue with the same command plus --resume. A NaN/inf loss
  stops the run (status 1) naming the step; the last good checkpoint is kept.

several GPUs (one process per GPU, DistributedDataParallel, batch split across processes):
  torchrun --standalone --nproc_per_node=4 train/train.py --config imagenet64_gray --out runs/g
  Only rank 0 logs and saves. batch_size is the total over all processes. CPU processes use
  the gloo backend (e.g. torchrun --nproc_per_node=2 ... device=cpu).
"""


def build_parser() -> argparse.ArgumentParser:
    presets = "\n".join(f"  {p.stem}" for p in sorted(CONFIG_DIR.glob("*.json")))
    parser = argparse.ArgumentParser(
        description=DESCRIPTION,
        epilog=EPILOG.format(presets=presets),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, help="preset name or path to a JSON config")
    parser.add_argument("--out", help="run folder (required unless --dry-run)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config, exit")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's, one per core); on a busy machine --threads 1 "
        "avoids OpenMP oversubscription (measured 10x faster on 2 shared cores)",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="auto (default): bf16 autocast with float32 weights on a CPU with native bf16 "
        "(AVX512-BF16 / AMX; measured 1.5x the images/s of float32 at equal loss, "
        "bench/training_throughput.py), else float32 (on CUDA: the config's bf16); fp32 or bf16 "
        "to force one. Not part of the config: a run resumes in either precision",
    )
    parser.add_argument(
        "--malloc",
        choices=MALLOC_SETTINGS,
        default="keep",
        help="keep (default, glibc on Linux): glibc keeps up to 256 MiB of freed memory instead "
        "of returning it to the OS after each step's double backward (measured: 8-14k -> 5 page "
        "faults per dual step, dual / score-network step time 2.48 -> 2.29, "
        "bench/dual_vs_single_step.py); release: glibc's defaults (a smaller resident size "
        "between steps). Elsewhere nothing is changed",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--quiet", action="store_true", help="do not print log records")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    return parser


def set_global_switches(cfg, threads: int | None) -> None:
    """Process-wide torch switches (kept out of dsm_core): threads, TF32."""
    if threads:
        torch.set_num_threads(threads)
    if torch.cuda.is_available():
        # Off by default: full float32 (PyTorch enables TF32 convolutions unless told not to).
        torch.backends.cuda.matmul.allow_tf32 = cfg.tf32
        torch.backends.cudnn.allow_tf32 = cfg.tf32


# What bad data, a bad run folder or a bad init_from model raise: missing, unreadable or not a
# directory (OSError), malformed values (ValueError), refused or broken pickles and archives.
DATA_ERRORS = (OSError, ValueError, EOFError, pickle.UnpicklingError, BadZipFile, ModelLoadError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = load_config_file(
            find_config(args.config, CONFIG_DIR), parse_overrides(args.overrides)
        )
    except (ValueError, TypeError, FileNotFoundError) as exc:
        raise SystemExit(f"invalid config: {exc}") from exc
    is_main = distributed.env_info().is_main
    if args.dry_run:
        if is_main:
            print(config_to_json(cfg), end="")
        return 0
    if not args.out:
        raise SystemExit("--out is required (the run folder)")
    logging.basicConfig(
        level=logging.INFO if is_main else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
    )
    set_global_switches(cfg, args.threads)
    malloc = apply_malloc_setting(args.malloc)
    try:
        choice = resolve_precision(
            args.precision, distributed.resolve_device(cfg.device), config_bf16=cfg.bf16
        )
    except ValueError as exc:
        if is_main:
            print(f"error: {exc}", file=sys.stderr)
        return 2
    if is_main:
        print(
            f"precision: {choice.name} ({choice.reason}); {torch.get_num_threads()} torch "
            f"thread(s); override with --precision fp32|bf16 and --threads N",
            flush=True,
        )
        print(
            f"malloc: {malloc.name} ({malloc.reason}); override with --malloc keep|release",
            flush=True,
        )

    def show(record: dict) -> None:
        if args.quiet:
            return
        brief = {k: v for k, v in record.items() if not isinstance(v, dict)}
        text = " ".join(
            f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in brief.items()
        )
        if args.no_progress:
            print(text, flush=True)
        else:
            from tqdm.auto import tqdm

            tqdm.write(text)

    try:
        result = train(
            cfg,
            args.out,
            resume=args.resume,
            progress=not args.no_progress,
            on_log=show,
            precision=args.precision,
        )
    except NonFiniteLossError as exc:
        if is_main:
            print(f"error: {exc}", file=sys.stderr)
        return 1
    except DATA_ERRORS as exc:  # every bad input (data, run folder, init model): one line
        if is_main:
            print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        distributed.destroy_process_group()
    if result.interrupted_by is not None:
        if is_main:
            name = signal.Signals(result.interrupted_by).name
            print(
                f"stopped by {name} at step {result.step}; checkpoint saved in {args.out}; "
                "continue with --resume",
                file=sys.stderr,
            )
        return 128 + result.interrupted_by
    if is_main:
        print(f"done: {result.step} steps in {result.wall_time_s:.1f} s; model in {args.out}/model")
    return 0


if __name__ == "__main__":
    sys.exit(main())
