"""Convert one of the authors' released checkpoints (model.pth.tar) into a model folder.

The file is read without executing any code from it (torch.load with weights_only=False but
through dsm_core.safe_pickle's restricted unpickler: the authors' own classes are replaced by inert
stand-ins; references to os, subprocess, builtins, ... are refused). Every tensor is mapped onto
our UNet, with shapes checked and none left over. K is taken from the checkpoint's
test_perf.log_normalization_constant unless --log-norm is given.

Example:
    python train/convert_release.py --checkpoint model.pth.tar --out checkpoints/release-gray
    python train/convert_release.py --checkpoint model.pth.tar --out out/ --log-norm 5845.43
"""

import argparse
import json
import sys
from pathlib import Path

from dsm_core.checkpoint import save_model
from dsm_core.release import ReleaseCheckpointError, convert_release


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", required=True, help="the released .pth.tar file")
    parser.add_argument("--out", required=True, help="model folder to write")
    parser.add_argument("--log-norm", type=float, default=None, help="K in nats (overrides file)")
    parser.add_argument("--image-size", type=int, default=64, help="training image side")
    parser.add_argument(
        "--head",
        choices=["inner_product", "score"],
        default=None,
        help="energy (inner_product) or score network; default: from the checkpoint's args",
    )
    args = parser.parse_args(argv)
    try:
        release = convert_release(
            args.checkpoint, log_norm_nats=args.log_norm, image_size=args.image_size, head=args.head
        )
    except ReleaseCheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    metadata = {
        "source": "released checkpoint (Guth, Kadkhodaie, Simoncelli 2025)",
        "checkpoint": Path(args.checkpoint).name,
        "steps": release.step,
        "resolution": args.image_size,
        "log_norm_source": release.log_norm_source,
        "release_args": release.args,
    }
    save_model(release.model, args.out, metadata=metadata)
    document = {
        "out": args.out,
        "steps": release.step,
        "log_norm_nats": getattr(release.model, "log_norm_nats", None),
        "head": release.model.config.head,
        "image_shape": list(release.model.image_shape),
    }
    print(json.dumps(document))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
