"""Package a model folder for the app: weights + config, held-out log p, sample images, metrics.

Writes to --out: ``model.safetensors`` + ``config.json`` (copied from --model), ``test_logp_db.npz``
(log p in dB/dim of every held-out image, computed with dsm_core.logp_db), ``test_images.npz`` (a
sample of those images spread over the range of log p, with their log p), and, only if absent
(or with --force), ``metrics.json`` and a ``README.md`` model card.

Examples:
    python train/package_model.py --model /work/runs/natural32/model --data natural \
        --out checkpoints/default
    python train/package_model.py --preset natural32 --data natural --out /tmp/random32
"""

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dsm_core as dc  # noqa: E402
from dsm_core.checkpoint import load_model_folder, resolve_source  # noqa: E402
from dsm_core.data import load_dataset  # noqa: E402
from dsm_core.packaging import DEFAULT_NUM_SAMPLE_IMAGES, package_model  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="model folder (or Hugging Face repo id)")
    source.add_argument(
        "--preset", help="random-weight model of this preset (a provisional placeholder)"
    )
    parser.add_argument("--revision", default=None, help="Hub revision (with a repo id)")
    parser.add_argument("--data", required=True, help="dataset name or path (e.g. natural)")
    parser.add_argument("--split", default="test", help="held-out split (default: test)")
    parser.add_argument("--out", required=True, help="destination model folder")
    parser.add_argument(
        "--num-images", type=int, default=300, help="held-out images to score (default 300)"
    )
    parser.add_argument(
        "--num-sample-images",
        type=int,
        default=DEFAULT_NUM_SAMPLE_IMAGES,
        help=f"images kept in test_images.npz (default {DEFAULT_NUM_SAMPLE_IMAGES})",
    )
    parser.add_argument(
        "--psnr-images", type=int, default=64, help="images for the PSNR table (0 skips)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the held-out crops/noise")
    parser.add_argument("--provisional", action="store_true", help="mark the card provisional")
    parser.add_argument(
        "--force", action="store_true", help="overwrite an existing metrics.json and README.md"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    out = Path(args.out)
    source_folder = None
    if args.preset:
        model = dc.build_energy_model(args.preset).eval().requires_grad_(False)
        model.metadata = {"preset": args.preset, "steps": 0, "random_weights": True}
        dc.save_model(model, out)
        provisional = True
    else:
        resolved = resolve_source(args.model, args.revision)
        source_folder = resolved.folder
        model = load_model_folder(source_folder, source=resolved.key)
        provisional = args.provisional
    c, h, _ = model.image_shape
    kwargs = {"num_crops": args.num_images, "seed": args.seed} if args.data == "natural" else {}
    dataset = load_dataset(args.data, args.split, resolution=h, grayscale=(c == 1), **kwargs)
    num = min(args.num_images, len(dataset))
    indices = np.arange(num)
    images = dataset.images(indices)  # (N, C, H, W) uint8
    description = f"{dataset.name} ({args.split} split), {num} held-out images"
    result = package_model(
        model,
        images,
        out,
        source_folder=source_folder,
        indices=indices,
        labels=None if dataset.labels is None else dataset.labels[indices],
        label_names=dataset.label_names if args.data.startswith("natural") else None,
        num_sample_images=args.num_sample_images,
        data_description=description,
        psnr_num_images=args.psnr_images,
        provisional=provisional,
        force=args.force,
        seed=args.seed,
    )
    print(
        f"packaged {out}: {num} images, mean log p {result.logp_db.mean():.2f} dB/dim, "
        f"NLL {result.metrics['nll_bits_per_dim']:.3f} bits/dim, "
        f"metrics.json {'written' if result.wrote_metrics else 'kept'}, "
        f"README.md {'written' if result.wrote_card else 'kept'} "
        f"({time.perf_counter() - start:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
