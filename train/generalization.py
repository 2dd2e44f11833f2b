"""Generalization (paper Fig. 2): two models on disjoint training subsets, compared on both.

For each N in --sizes, trains model A on the first N training images and model B on the last N
(``data.subset`` = "A" / "B", ``data.subset_size`` = N), each normalised with its own K, then
computes log p (dB/dim) of both models on "A images" (the first min(N, --num-images) training
images, in order) and "B images" (the last ones, in reverse order: index 0 is the very last image).
Writes per N: ``N{N}/scatter.npz`` and a PNG scatter; ``summary.json`` with the mean
difference, mean |difference|, RMS difference and correlation of log p_A vs log p_B; and
``curve.png``, the mean |difference| against N and its two parts (own-model advantage,
offset between the models).

Runs already finished are reused; unfinished ones are resumed. Example (CPU, minutes):
    python train/generalization.py --config tiny_cpu --out runs/gen --sizes 10 100 num_steps=500
The paper's setting (1M steps per model on a GPU):
    python train/generalization.py --config generalization_imagenet64 --out runs/gen \\
        --sizes 10 100 1000 10000 100000 data.name=imagenet64:/data/imagenet64
"""

import argparse
import json
import logging
from dataclasses import asdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dsm_core import distributed  # noqa: E402
from dsm_core.analysis.generalization import compare_models  # noqa: E402
from dsm_core.checkpoint import CONFIG_FILE, load_model, write_json  # noqa: E402
from dsm_core.data.splits import generalization_image_indices, load_split  # noqa: E402
from dsm_core.train_config import (  # noqa: E402
    TrainConfig,
    find_config,
    load_config_file,
    parse_overrides,
)
from dsm_core.train_state import MODEL_DIR  # noqa: E402
from dsm_core.training import train  # noqa: E402

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, help="preset name or JSON path")
    parser.add_argument("--out", required=True, help="folder for all runs and the summary")
    parser.add_argument("--sizes", type=int, nargs="+", required=True, help="subset sizes N")
    parser.add_argument(
        "--num-images", type=int, default=1000, help="images per set for the comparison"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    return parser


def run_is_finished(run_dir: Path, cfg: TrainConfig) -> bool:
    """A run whose exported model has reached num_steps."""
    config = run_dir / MODEL_DIR / CONFIG_FILE
    if not config.is_file():
        return False
    return json.loads(config.read_text())["metadata"].get("steps") == cfg.num_steps


def train_subset(base: Path, path: Path, overrides: dict, size: int, subset: str, progress: bool):
    """Train (or resume, or reuse) the model of one subset; returns its run folder."""
    cfg = load_config_file(path, {**overrides, "data.subset": subset, "data.subset_size": size})
    run_dir = base / f"N{size}{subset}"
    if run_is_finished(run_dir, cfg):
        return run_dir, cfg
    resume = (run_dir / "config.json").is_file()
    result = train(cfg, run_dir, resume=resume, progress=progress)
    if result.interrupted_by is not None:
        raise SystemExit(f"interrupted while training {run_dir}; rerun to resume")
    return run_dir, cfg


def scatter_plot(size: int, on_a: tuple, on_b: tuple, path: Path) -> None:
    """log p under model A (x) vs model B (y): A images green, B images red (Fig. 2)."""
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(on_a[0], on_a[1], s=6, c="tab:green", alpha=0.6, label="A images")
    ax.scatter(on_b[0], on_b[1], s=6, c="tab:red", alpha=0.6, label="B images")
    values = np.concatenate([*on_a, *on_b])
    low, high = float(values.min()), float(values.max())
    ax.plot([low, high], [low, high], "k-", lw=0.8)
    ax.set_xlabel("log p_A(x) [dB/dim]")
    ax.set_ylabel("log p_B(x) [dB/dim]")
    ax.set_title(f"N = {size}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def curve_plot(summary: dict, path: Path) -> None:
    """Fig. 2 in one picture, against N. Left: mean |log p_A - log p_B| on A's and on B's
    images. Right: its two parts, from the mean differences d_A (on A images) and d_B (on B
    images): the own-model advantage (d_A - d_B) / 2 (memorization: each model prefers its own
    training images) and the offset (d_A + d_B) / 2 (one model higher everywhere: a difference
    of normalization, not of memory)."""
    sizes = sorted(int(n) for n in summary)
    mean_diff = {w: [summary[str(n)][f"{w}_images"]["mean_diff_db"] for n in sizes] for w in "AB"}
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    for which, color in (("A", "tab:green"), ("B", "tab:red")):
        values = [summary[str(n)][f"{which}_images"]["mean_abs_diff_db"] for n in sizes]
        left.plot(sizes, values, "o-", c=color, label=f"{which} images")
    left.set_yscale("log")
    left.set_ylabel("mean |log p_A - log p_B| [dB/dim]")
    advantage = [(a - b) / 2 for a, b in zip(mean_diff["A"], mean_diff["B"], strict=True)]
    offset = [(a + b) / 2 for a, b in zip(mean_diff["A"], mean_diff["B"], strict=True)]
    right.plot(sizes, advantage, "o-", c="tab:purple", label="own-model advantage")
    right.plot(sizes, offset, "s--", c="tab:gray", label="offset between the models")
    right.axhline(0.0, c="k", lw=0.6)
    right.set_yscale("symlog", linthresh=1.0)
    right.set_ylabel("dB/dim")
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xlabel("training images per model, N")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s: %(message)s")
    base = Path(args.out)
    try:
        path = find_config(args.config, CONFIG_DIR)
        overrides = parse_overrides(args.overrides)
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(str(exc)) from exc
    summary = {}
    for size in args.sizes:
        run_a, cfg = train_subset(base, path, overrides, size, "A", not args.no_progress)
        run_b, _ = train_subset(base, path, overrides, size, "B", not args.no_progress)
        if not distributed.get_info().is_main:
            continue
        model_a, model_b = load_model(run_a / MODEL_DIR), load_model(run_b / MODEL_DIR)
        dataset = load_split(cfg.data, cfg.model.image_size, cfg.data.split)
        entry = {}
        arrays = {}
        for which in ("A", "B"):
            indices = generalization_image_indices(len(dataset), size, which, args.num_images)
            x = dataset.batch(indices)
            result = compare_models(model_a, model_b, x, batch_size=args.batch_size)
            arrays[f"logp_db_model_a_on_{which}"] = result.logp_db_a.numpy()
            arrays[f"logp_db_model_b_on_{which}"] = result.logp_db_b.numpy()
            arrays[f"indices_{which}"] = indices
            entry[f"{which}_images"] = asdict(result.summary)
        folder = base / f"N{size}"
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / "scatter.npz", **arrays)
        scatter_plot(
            size,
            (arrays["logp_db_model_a_on_A"], arrays["logp_db_model_b_on_A"]),
            (arrays["logp_db_model_a_on_B"], arrays["logp_db_model_b_on_B"]),
            folder / "scatter.png",
        )
        summary[str(size)] = entry
        print(f"N={size}: " + json.dumps(entry))
    if distributed.get_info().is_main:
        write_json(base / "summary.json", summary)
        curve_plot(summary, base / "curve.png")
    distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
