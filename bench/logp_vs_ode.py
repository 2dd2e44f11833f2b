"""Wall time of the one-shot log p against the probability-flow ODE estimate, same model and images.

The one-shot log p is ``dsm_core.logp_db(model, x, t=0)``: one forward pass of the energy network
per image (no backward). The ODE estimate is ``dsm_core.analysis.estimators.ode_nll_nats``
(fixed-step RK4 on the log-t grid from 0 to t_max, Hutchinson trace of the Laplacian): each
evaluation is one forward + one backward (grad_y U) plus one Hessian-vector product per probe.

The two are timed alternately in one run (``time.perf_counter``, medians over repeats) on the same
N held-out images, after one untimed warm-up of each. The agreement is the mean |difference| of
the two log p's in dB/dim (the ODE NLL in nats converted with ``dsm_core.units``), and the mean
signed difference (one-shot - ODE) with its standard error from the Hutchinson probes: a
difference well outside that error is the model's own inconsistency, not estimator noise.

The last line printed is ``speedup: X``, X = median ODE wall time / median one-shot wall time.

Examples:
    python bench/logp_vs_ode.py
    python bench/logp_vs_ode.py --model checkpoints/default --num-images 8 --ode-steps 50
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _common import add_threads_arg, fmt_ratio, load_note, set_threads

import dsm_core
from dsm_core import units
from dsm_core.analysis.estimators import ode_nll_nats
from dsm_core.packaging import read_test_images

DEFAULT_MODEL = "checkpoints/default"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Time the one-shot log p (logp_db, t=0) against the probability-flow ODE estimate "
            "(ode_nll_nats) on the same model and held-out images. Last line: 'speedup: X' "
            "(ODE wall time / one-shot wall time)."
        )
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model folder or Hub repo id")
    parser.add_argument(
        "--images",
        default=None,
        help="test_images.npz-style file or folder holding one (default: the model folder)",
    )
    parser.add_argument("--num-images", type=int, default=8, help="held-out images (default 8)")
    parser.add_argument("--ode-steps", type=int, default=50, help="RK4 steps (default 50)")
    parser.add_argument("--ode-probes", type=int, default=1, help="Hutchinson probes (default 1)")
    parser.add_argument(
        "--oneshot-repeats", type=int, default=7, help="timed one-shot calls (default 7)"
    )
    parser.add_argument("--ode-repeats", type=int, default=2, help="timed ODE calls (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the Hutchinson probes")
    add_threads_arg(parser)
    return parser.parse_args(argv)


def load_images(folder: Path, image_shape: tuple[int, ...], num: int) -> torch.Tensor:
    """The first ``num`` held-out images as floats in [0, 1], (num, C, H, W)."""
    if folder.is_file():
        arrays = np.load(folder)
        images = arrays["images"]
    else:
        sample = read_test_images(folder, image_shape)
        if sample is None:
            raise SystemExit(f"no test_images.npz in {folder}; pass --images")
        images = sample[0]
    if images.shape[0] < num:
        raise SystemExit(f"only {images.shape[0]} images available, asked for {num}")
    return torch.from_numpy(images[:num].astype(np.float32) / 255.0)


def schedule(num_a: int, num_b: int) -> list[str]:
    """An interleaving of num_a "a" and num_b "b", spread evenly, starting with "a"."""
    order, done_a, done_b = [], 0, 0
    while done_a < num_a or done_b < num_b:
        # pick whichever is further behind its share of the run
        frac_a = done_a / num_a if num_a else 1.0
        frac_b = done_b / num_b if num_b else 1.0
        if done_a < num_a and frac_a <= frac_b:
            order.append("a")
            done_a += 1
        else:
            order.append("b")
            done_b += 1
    return order


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_threads(args.threads)
    load_before = load_note()
    model = dsm_core.load_model(args.model)
    source = Path(args.images) if args.images else Path(args.model)
    x = load_images(source, model.image_shape, args.num_images)
    n, d = x.shape[0], model.d

    def oneshot() -> torch.Tensor:
        return dsm_core.logp_db(model, x, 0.0)

    def ode():
        generator = torch.Generator().manual_seed(args.seed)  # same probes every repeat
        return ode_nll_nats(
            model,
            x,
            num_steps=args.ode_steps,
            solver="rk4",
            trace="hutchinson",
            num_probes=args.ode_probes,
            generator=generator,
            batch_size=n,
        )

    # untimed warm-up of both code paths
    oneshot()
    ode_nll_nats(model, x[:1], num_steps=1, solver="rk4", num_probes=args.ode_probes)

    times: dict[str, list[float]] = {"a": [], "b": []}
    logp_oneshot, estimate = None, None
    for kind in schedule(args.oneshot_repeats, args.ode_repeats):
        start = time.perf_counter()
        if kind == "a":
            logp_oneshot = oneshot()
        else:
            estimate = ode()
        times[kind].append(time.perf_counter() - start)
        print(f"  {'one-shot' if kind == 'a' else 'ODE':8s} {times[kind][-1]:9.3f} s", flush=True)

    t_oneshot = statistics.median(times["a"])
    t_ode = statistics.median(times["b"])
    logp_ode = estimate.logp_db.float()
    delta = (logp_oneshot.float() - logp_ode).abs()

    print()
    print(f"model {args.model}, {n} images {tuple(x.shape[1:])}, d = {d}, threads {args.threads}")
    print(
        f"ODE: RK4, {args.ode_steps} steps, {args.ode_probes} Hutchinson probe(s), "
        f"t in [0, {1e3:g}], Gaussian prior"
    )
    print()
    header = f"{'method':<10} {'repeats':>7} {'median s':>10} {'s/image':>10} {'evals/image':>24}"
    print(header)
    print("-" * len(header))
    print(
        f"{'one-shot':<10} {len(times['a']):>7} {t_oneshot:>10.4f} {t_oneshot / n:>10.5f} "
        f"{'1 forward':>24}"
    )
    ode_evals = (
        f"{estimate.num_score_evals} grad + {estimate.num_hvp_evals} HVP"
        if estimate.num_hvp_evals
        else f"{estimate.num_score_evals} grad"
    )
    print(f"{'ODE':<10} {len(times['b']):>7} {t_ode:>10.4f} {t_ode / n:>10.5f} {ode_evals:>24}")
    print()
    print(f"log p one-shot (dB/dim): mean {logp_oneshot.mean():.3f}")
    print(f"log p ODE      (dB/dim): mean {logp_ode.mean():.3f}")
    print(
        f"network evaluations per image: one-shot 1 forward; ODE {estimate.num_score_evals} "
        f"grad_y U (forward + backward) + {estimate.num_hvp_evals} Hessian-vector products"
    )
    print(f"agreement: mean |delta log p| = {delta.mean():.4f} dB/dim (max {delta.max():.4f})")
    # the ODE's Monte Carlo error per image, and that of the mean over the n images
    stderr_db = units.energy_nats_to_logp_db(estimate.stderr_nats, d).abs().double()  # (n,)
    signed = (logp_oneshot.double() - logp_ode.double()).mean()
    print(
        f"mean delta (one-shot - ODE) = {signed:+.4f} +- {stderr_db.square().sum().sqrt() / n:.4f}"
        f" dB/dim (Hutchinson standard error; per image {stderr_db.mean():.4f})"
    )
    print(load_before)
    print(f"speedup: {fmt_ratio(t_ode / t_oneshot)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
