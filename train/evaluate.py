"""Evaluate a model folder on a dataset: log p of every image, NLL, entropy, Gumbel fit, PSNR.

Writes to --out: ``metrics.json`` (nll_bits_per_dim, entropy_db, gumbel_loc_db, gumbel_scale_db,
num_images, psnr_db = {input PSNR: output PSNR}, and more), ``logp_db.npz`` (``logp_db`` and
``indices``), PNG plots and ``report.md``.

Example:
    python train/evaluate.py --model runs/natural32/model --data natural --out runs/natural32/eval
    python train/evaluate.py --model checkpoints/default --data digits --out ev --num-images 200
"""

import argparse
import logging
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from dsm_core.checkpoint import load_model, write_json  # noqa: E402
from dsm_core.data import load_dataset  # noqa: E402
from dsm_core.evaluation import ModelEvaluation, evaluate_model  # noqa: E402
from dsm_core.noise import PSNR_GRID_DB  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="model folder (or Hugging Face repo id)")
    parser.add_argument(
        "--data",
        required=True,
        help="dataset: natural, fashion-mnist, digits, imagenet64:<folder>, cifar10:<folder>, path",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--split", default="test", help="dataset split (default: test)")
    parser.add_argument("--num-images", type=int, default=None, help="first N images (default all)")
    parser.add_argument(
        "--psnr-images",
        type=int,
        default=1024,
        help="images for the denoising PSNR table (default 1024; the release used 3200; 0 skips)",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise draws")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return parser


def plot_histogram(evaluation: ModelEvaluation, path: Path) -> None:
    """Histogram of log p (density, log y axis) with the fitted Gumbel density (Fig. 3 style)."""
    logp = evaluation.logp_db
    fig, ax = plt.subplots(figsize=(6, 4))
    density, _, _ = ax.hist(
        logp, bins=25, density=True, color="0.7", edgecolor="0.4", label="images"
    )
    if evaluation.gumbel is not None:
        pad = 0.1 * max(float(logp.max() - logp.min()), 1e-6)
        grid = np.linspace(logp.min() - pad, logp.max() + pad, 400)
        ax.plot(grid, evaluation.gumbel.pdf(grid), "r-", label="Gumbel fit")
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.3 * density[density > 0].min())
    ax.set_xlabel("log p(x) [dB/dim]")
    ax.set_ylabel("density")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_extremes(images: torch.Tensor, logp_db: np.ndarray, path: Path, per_row: int) -> None:
    """Two rows: the least probable images (top) and the most probable ones (bottom)."""
    fig, axes = plt.subplots(2, per_row, figsize=(1.6 * per_row, 3.8), squeeze=False)
    for ax, image, value in zip(axes.flat, images, logp_db, strict=False):
        array = image.permute(1, 2, 0).numpy()
        if array.shape[2] == 1:
            ax.imshow(array[:, :, 0], cmap="gray", vmin=0, vmax=1)
        else:
            ax.imshow(array.clip(0, 1))
        ax.set_title(f"{value:.1f}", fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle("lowest (top) and highest (bottom) log p [dB/dim]", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_psnr(psnr_table: dict[str, float], path: Path) -> None:
    """Output PSNR of the denoiser against input PSNR."""
    psnr_in = np.array([float(k) for k in psnr_table])
    psnr_out = np.array(list(psnr_table.values()))
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(psnr_in, psnr_out, "o-", label="denoiser D(y, t)")
    ax.plot(psnr_in, psnr_in, "k--", lw=0.8, label="identity")
    ax.set_xlabel("input PSNR [dB]")
    ax.set_ylabel("output PSNR [dB]")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(metrics: dict, out: Path, figures: list[tuple[str, str]]) -> None:
    """report.md: the summary numbers, the PSNR table and the figures."""
    lines = [
        "# Evaluation report",
        "",
        f"Model `{metrics['model']}` on `{metrics['data']}` ({metrics['split']} split, "
        f"{metrics['num_images']} images, image shape {tuple(metrics['image_shape'])}).",
        "",
        "| quantity | value |",
        "|---|---|",
    ]

    def fmt(value) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    for key in (
        "nll_bits_per_dim",
        "entropy_db",
        "logp_db_mean",
        "logp_db_std",
        "logp_db_min",
        "logp_db_max",
        "gumbel_loc_db",
        "gumbel_scale_db",
        "gumbel_ks_statistic",
        "log_norm_nats",
        "wall_time_s",
    ):
        if key in metrics and metrics[key] is not None:
            lines.append(f"| {key} | {fmt(metrics[key])} |")
    lines += [
        "",
        "NLL is discrete (+8 bits for 256-level data); entropy is -mean log p in dB/dim.",
        "",
    ]
    if metrics["psnr_db"]:
        lines += [
            f"## Denoising ({metrics['psnr_num_images']} images, PSNR of the mean MSE)",
            "",
            "| input PSNR [dB] | output PSNR [dB] |",
            "|---|---|",
        ]
        lines += [f"| {k} | {v:.2f} |" for k, v in metrics["psnr_db"].items()]
        lines.append("")
    for title, name in figures:
        lines += [f"## {title}", "", f"![{title}]({name})", ""]
    (out / "report.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    model = load_model(args.model, device=args.device)
    channels, height, _ = model.image_shape
    dataset = load_dataset(args.data, args.split, height, grayscale=channels == 1)
    if tuple(dataset.image_shape) != tuple(model.image_shape):
        raise SystemExit(
            f"{args.data} gives images {tuple(dataset.image_shape)}, the model expects "
            f"{tuple(model.image_shape)}"
        )
    num_images = len(dataset) if args.num_images is None else min(args.num_images, len(dataset))
    indices = np.arange(num_images)
    psnr_images = min(args.psnr_images, num_images)
    evaluation = evaluate_model(
        model,
        dataset,
        indices,
        psnr_grid_db=PSNR_GRID_DB if psnr_images > 0 else None,
        psnr_num_images=psnr_images,
        seed=args.seed,
        batch_size=args.batch_size,
    )
    metrics = evaluation.metrics()
    metrics.update(
        model=str(args.model),
        data=str(args.data),
        split=args.split,
        image_shape=list(model.image_shape),
        psnr_num_images=psnr_images,
        wall_time_s=time.perf_counter() - start,
    )
    np.savez(
        out / "logp_db.npz",
        logp_db=evaluation.logp_db.astype(np.float64),
        indices=evaluation.indices.astype(np.int64),
    )
    write_json(out / "metrics.json", metrics)

    figures = []
    finite = np.isfinite(evaluation.logp_db)
    if finite.sum() >= 2:
        plot_histogram(evaluation, out / "logp_histogram.png")
        figures.append(("Distribution of log p", "logp_histogram.png"))
        per_row = min(8, int(finite.sum()) // 2)
        order = np.argsort(evaluation.logp_db)
        chosen = np.concatenate([order[:per_row], order[-per_row:][::-1]])
        images = dataset.batch(evaluation.indices[chosen])
        plot_extremes(images, evaluation.logp_db[chosen], out / "extremes.png", per_row)
        figures.append(("Least and most probable images", "extremes.png"))
    if metrics["psnr_db"]:
        plot_psnr(metrics["psnr_db"], out / "psnr.png")
        figures.append(("Denoising PSNR", "psnr.png"))
    write_report(metrics, out, figures)

    def show(value) -> str:
        return "n/a" if value is None or not math.isfinite(value) else f"{value:.3f}"

    print(
        f"{num_images} images: NLL {show(metrics['nll_bits_per_dim'])} bits/dim, "
        f"entropy {show(metrics['entropy_db'])} dB/dim, Gumbel loc "
        f"{show(metrics['gumbel_loc_db'])} scale {show(metrics['gumbel_scale_db'])} dB/dim; "
        f"wrote {out}/metrics.json"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
