"""Compare a trained energy model with classical baselines on the same held-out 8-bit images.

Density: test NLL in bits/dim, discrete convention (8 + continuous NLL) for every model: ours, an
isotropic Gaussian, a full-covariance Gaussian (PCA), a full-covariance Gaussian mixture (K chosen
by likelihood on a validation split of the training images), and the lossless PNG rate of the same
images (mean over images of 8 * file bytes / (C H W)). With --dequantize (data with exact repeats,
such as Fashion-MNIST) every density is scored by the dequantization bound on the 8-bit NLL.
Denoising: PSNR of the mean MSE over the test images at input PSNRs 30, 20, 10 dB, one fixed noise
draw per image and level shared by all methods: ours D(y, t) = y - t grad_y U (unclipped, as the
paper), the exact posterior means of the Gaussian baselines (Wiener filters), wavelet BayesShrink
and non-local means (scikit-image; parameters tuned on training images).
Qualitative checks (paper §3.2, Fig. 4): smooth images are more probable than textured ones, log p
barely moves with brightness and rises as contrast drops. The brightness and contrast changes of
the first --ode-images images are measured twice: by the one-shot energy and by the
probability-flow ODE, which uses only the learned scores (a gap between the two is the energy's
inconsistency across t, not the learned distribution).

The held-out images are read as uint8 once and converted to floats (/255) once; all methods see
the same arrays. Prints one table and writes everything to --out (JSON).

Examples:
    python bench/baselines.py --model checkpoints/default --data natural --out results.json
    python bench/baselines.py --model runs/fmnist/model --data fashion-mnist --num-test 2000
"""

import argparse
import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

import dsm_core as dc
from dsm_core import analysis, baselines, units
from dsm_core.analysis.denoising import denoise
from dsm_core.analysis.logp import dequantized_nll_bits_per_dim
from dsm_core.checkpoint import write_json
from dsm_core.data import load_dataset
from dsm_core.noise import dequantize

logger = logging.getLogger("bench.baselines")

NATURAL_NUM_CROPS = 20_000  # crops per split, as in training (the test images are the first N)
OURS = "ours (DSM energy)"
ISOTROPIC = "Gaussian, isotropic"
PCA = "Gaussian, full cov. (PCA)"
PNG = "PNG (lossless)"
WAVELET = "wavelet BayesShrink"
NL_MEANS = "non-local means"
NOISY = "(noisy input)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="checkpoints/default", help="model folder")
    parser.add_argument("--data", default="natural", choices=["natural", "fashion-mnist"])
    parser.add_argument(
        "--resolution",
        type=int,
        default=None,
        help="image side; taken from the model (given, it must match the model)",
    )
    parser.add_argument(
        "--num-test",
        type=int,
        default=None,
        help="first N test images (default: 1000 natural crops; all 10,000 Fashion-MNIST)",
    )
    parser.add_argument(
        "--num-train",
        type=int,
        default=None,
        help="training images for the baselines (default: the model's 20,000 natural training "
        "crops; all 60,000 Fashion-MNIST)",
    )
    parser.add_argument(
        "--gmm-components",
        type=int,
        nargs="*",
        default=[2, 4, 8],
        help="candidate numbers of mixture components (none: skip the mixture); on 32x32 "
        "natural crops 16 lost to 4 by 0.5 bits/dim on validation and took ~3 min",
    )
    parser.add_argument("--gmm-num-fit", type=int, default=5000, help="training images for EM")
    parser.add_argument(
        "--gmm-num-val", type=int, default=1000, help="training images held out to choose K"
    )
    parser.add_argument(
        "--gmm-reg-covar",
        type=float,
        default=1e-3,
        help="variance added to each component's covariance (1e-3 beat 1e-5, 1e-4, 3e-3 on "
        "natural crops)",
    )
    parser.add_argument("--gmm-max-iter", type=int, default=100)
    parser.add_argument("--psnr", type=float, nargs="+", default=[30.0, 20.0, 10.0])
    parser.add_argument(
        "--num-tune", type=int, default=64, help="training images to tune the classical denoisers"
    )
    parser.add_argument(
        "--num-affine", type=int, default=300, help="test images for brightness and contrast"
    )
    parser.add_argument(
        "--ode-images",
        type=int,
        default=16,
        help="test images whose brightness and contrast changes are also measured by the "
        "probability-flow ODE (RK4 50 steps, 2 Hutchinson probes; ~4 solves of a few seconds "
        "each per image at 32x32), the check that uses only the learned scores; 0: skip",
    )
    parser.add_argument(
        "--dequantize",
        action="store_true",
        help="fit the density baselines on dequantized training images (k + u) / 256 and "
        "score every density by the dequantization bound on the 8-bit NLL "
        "(dsm_core.analysis.dequantized_nll_bits_per_dim, one draw per image) instead of the "
        "density at the pixel values; needed for data with exact repeats such as "
        "Fashion-MNIST's zero background",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads")
    parser.add_argument("--seed", type=int, default=0, help="noise draws, subsets, EM init")
    parser.add_argument("--out", default="results.json", help="JSON output file")
    return parser


class Timer:
    """Wall time of named parts, in seconds."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
        logger.info("%s: %.1f s", name, self.seconds[name])


def to_float(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 in [0, 1]: the one conversion every method shares."""
    return torch.from_numpy(images).float().div_(255.0)


def load_images(args: argparse.Namespace, model) -> tuple[np.ndarray, np.ndarray, dict]:
    """uint8 test and training images at the model's size, and a description of both."""
    channels, height, width = model.image_shape
    if args.resolution is not None and args.resolution != height:
        raise SystemExit(f"--resolution {args.resolution} does not match the model ({height})")
    data_cfg = model.metadata.get("train_config", {}).get("data", {})
    if args.data == "natural":
        num_crops = int(data_cfg.get("num_crops") or NATURAL_NUM_CROPS)
        crop_seed = int(data_cfg.get("crop_seed") or 0)
        # the test crops of train/evaluate.py (first N of 20,000, seed 0); the training crops
        # are the model's own (its num_crops and crop_seed)
        test = load_dataset("natural", "test", height, channels == 1, num_crops=NATURAL_NUM_CROPS)
        train = load_dataset(
            "natural", "train", height, channels == 1, num_crops=num_crops, seed=crop_seed
        )
        num_test = args.num_test or 1000
    else:
        test = load_dataset("fashion-mnist", "test", height)
        train = load_dataset("fashion-mnist", "train", height)
        num_test = args.num_test or len(test)
    for dataset in (test, train):
        if tuple(dataset.image_shape) != (channels, height, width) or dataset.max_value != 255:
            raise SystemExit(
                f"{dataset.name}: images {dataset.image_shape} (max {dataset.max_value}), the "
                f"model expects {model.image_shape} 8-bit images"
            )
    num_test = min(num_test, len(test))
    num_train = min(args.num_train or len(train), len(train))
    rng = np.random.default_rng(args.seed)
    train_indices = np.sort(rng.choice(len(train), num_train, replace=False))
    info = {
        "name": args.data,
        "test": {"source": test.name, "num_images": num_test, "indices": f"0..{num_test - 1}"},
        "train": {"source": train.name, "num_available": len(train), "num_images": num_train},
        "image_shape": list(model.image_shape),
    }
    return test.images(np.arange(num_test)), train.images(train_indices), info


def fit_density_baselines(
    args: argparse.Namespace, x_train: torch.Tensor, timer: Timer
) -> tuple[dict[str, dc.BaseEnergy], dict]:
    """The Gaussian and mixture energies fitted on training images, and the mixture selection."""
    energies: dict[str, dc.BaseEnergy] = {}
    with timer.part("fit Gaussians"):
        energies[ISOTROPIC] = dc.GaussianEnergy.fit(x_train, full_covariance=False)
        energies[PCA] = dc.GaussianEnergy.fit(x_train, full_covariance=True)
    selection_info: dict = {}
    if args.gmm_components:
        # a validation split of the training images chooses K; EM sees only the fit split
        order = np.random.default_rng(args.seed + 1).permutation(len(x_train))
        num_val = min(args.gmm_num_val, len(x_train) // 5)
        x_val = x_train[order[:num_val]]
        x_fit = x_train[order[num_val : num_val + args.gmm_num_fit]]
        with timer.part("fit Gaussian mixtures"):
            selection = baselines.select_gaussian_mixture(
                x_fit,
                x_val,
                args.gmm_components,
                reg_covar=args.gmm_reg_covar,
                max_iter=args.gmm_max_iter,
                seed=args.seed,
                progress=lambda fit: logger.info("mixture %s", fit),
            )
        energies[f"Gaussian mixture (K={selection.num_components})"] = selection.energy
        selection_info = {
            "chosen_num_components": selection.num_components,
            "num_fit": len(x_fit),
            "num_val": len(x_val),
            "reg_covar": args.gmm_reg_covar,
            "val_nll_bits_per_dim": selection.val_nll_bits_per_dim,
            "fits": selection.fits,
        }
    return energies, selection_info


def tune_classical_denoisers(
    args: argparse.Namespace, x_tune: torch.Tensor
) -> tuple[dict[float, dict], dict]:
    """Per input PSNR: the wavelet and NL-means h/sigma with the best PSNR on training images."""
    chosen: dict[float, dict] = {}
    scores: dict = {}
    for psnr_db in args.psnr:
        generator = torch.Generator().manual_seed(args.seed + 2)
        wavelet, wavelet_scores = baselines.tune_denoiser(
            lambda w: lambda y, t: baselines.wavelet_denoise(y, t, wavelet=w),
            ["db1", "db2", "sym4"],
            x_tune,
            psnr_db,
            generator,
        )
        generator = torch.Generator().manual_seed(args.seed + 2)
        h_factor, h_scores = baselines.tune_denoiser(
            lambda h: lambda y, t: baselines.nl_means_denoise(y, t, h_factor=h),
            [0.4, 0.6, 0.8, 1.0, 1.2],
            x_tune,
            psnr_db,
            generator,
        )
        chosen[psnr_db] = {"wavelet": wavelet, "nl_means_h_factor": h_factor}
        scores[f"{psnr_db:g}"] = {"wavelet": wavelet_scores, "nl_means_h_factor": h_scores}
    return chosen, scores


def slope_through(x: list[float], y: list[float], origin: bool = False) -> float:
    """Least-squares slope of y on x (through the origin if asked), ignoring NaN entries."""
    x_arr, y_arr = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = ~np.isnan(y_arr)
    x_arr, y_arr = x_arr[keep], y_arr[keep]
    if len(x_arr) < (1 if origin else 2):
        return float("nan")
    if origin:
        return float((x_arr * y_arr).sum() / (x_arr * x_arr).sum())
    return float(np.polyfit(x_arr, y_arr, 1)[0])


# (name, (a, b) before, (a, b) after): the ends of the brightness grid and of the contrast sweep
AFFINE_ENDS = (
    ("brightness", (0.8, 0.0), (0.8, 0.2)),
    ("contrast", (1.0, 0.0), (0.5, 0.0)),
)


def ode_affine_changes(model: dc.BaseEnergy, x: torch.Tensor, seed: int) -> dict:
    """log p(after) - log p(before) per image for AFFINE_ENDS, one-shot and ODE, in dB/dim.

    Both ends of a pair use the same Hutchinson probes, so their difference has a smaller error
    than either ODE value.
    """
    out = {}
    for name, before, after in AFFINE_ENDS:
        values = {}
        for end, (a, b) in (("before", before), ("after", after)):
            y = a * x + b  # (n, C, H, W), within [0, 1] for every pair above
            estimate = dc.analysis.ode_nll_nats(
                model,
                y,
                num_probes=2,
                generator=torch.Generator().manual_seed(seed),
                batch_size=len(y),
            )
            values[end] = (
                dc.logp_db(model, y, 0.0).double(),
                estimate.logp_db.double(),
            )
        one_shot = values["after"][0] - values["before"][0]  # (n,)
        ode = values["after"][1] - values["before"][1]
        out[name] = {
            "before": before,
            "after": after,
            "num_images": len(x),
            "one_shot_change_db": one_shot.mean().item(),
            "one_shot_change_se_db": (one_shot.std() / math.sqrt(len(x))).item(),
            "ode_change_db": ode.mean().item(),
            "ode_change_se_db": (ode.std() / math.sqrt(len(x))).item(),
            "ode_mean_abs_change_db": ode.abs().mean().item(),
        }
    return out


def qualitative_checks(
    args: argparse.Namespace,
    model: dc.BaseEnergy,
    x_test: torch.Tensor,
    logp_db: dict[str, torch.Tensor],
    timer: Timer,
) -> dict:
    """Smoothness for every density model; brightness and contrast for ours."""
    out: dict = {}
    with timer.part("qualitative: smoothness"):
        checks = {name: analysis.smoothness_check(v, x_test) for name, v in logp_db.items()}
    out["smoothness"] = {name: {**vars(c), "passes": c.passes} for name, c in checks.items()}
    x_affine = x_test[: args.num_affine]
    ours_std = logp_db[OURS].std().item()
    out["brightness"] = {"num_images": len(x_affine), "test_logp_db_std": ours_std}
    # x + b where it stays in [0, 1]; and the paper's grid a + b <= 1 at a = 0.8, always in range
    for key, contrast, reference, offsets in (
        ("shift", 1.0, 0.0, [-0.1, -0.05, 0.05, 0.1]),
        ("grid", 0.8, 0.1, [0.0, 0.05, 0.15, 0.2]),
    ):
        with timer.part("qualitative: brightness"):
            change = analysis.brightness_logp_change_db(
                model,
                x_affine,
                offsets,
                contrast=contrast,
                reference_offset=reference,
                batch_size=args.batch_size,
            )  # (B, O), NaN where a x + b leaves [0, 1]
        valid = ~torch.isnan(change)
        mean_change = [
            change[:, j][valid[:, j]].mean().item() if valid[:, j].any() else float("nan")
            for j in range(len(offsets))
        ]
        out["brightness"][key] = {
            "contrast": contrast,
            "reference_offset": reference,
            "offsets": offsets,
            "num_valid_per_offset": valid.sum(dim=0).tolist(),
            "mean_change_db_per_offset": mean_change,
            "slope_db_per_unit_b": slope_through(
                [b - reference for b in offsets], mean_change, origin=True
            ),
            "mean_abs_change_db": (
                change[valid].abs().mean().item() if valid.any() else float("nan")
            ),
        }
    contrasts = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5]
    with timer.part("qualitative: contrast"):
        values = analysis.contrast_logp_db(model, x_affine, contrasts, batch_size=args.batch_size)
    rise = values[:, -1] - values[:, 0]  # (B,) log p at a = 0.5 minus at a = 1
    out["contrast"] = {
        "contrasts": contrasts,
        "num_images": len(x_affine),
        "mean_logp_db": values.mean(dim=0).tolist(),
        "mean_rise_db": rise.mean().item(),
        "fraction_rising": (rise > 0).double().mean().item(),
        "fraction_monotone": (values.diff(dim=1) > 0).all(dim=1).double().mean().item(),
        "slope_db_per_unit_a": slope_through(contrasts, values.mean(dim=0).tolist()),
    }
    # the paper's Fig. 4 cuts through the triangle a + b <= 1: b at a = 0.5, a at b = 0.5
    steps = np.linspace(0.0, 0.5, 11).tolist()
    with timer.part("qualitative: paper slices"):
        over_b = dc.analysis.affine_logp_db(
            model, x_affine, [0.5], steps, batch_size=args.batch_size
        )[:, 0, :]  # (B, 11)
        over_a = dc.analysis.contrast_slice_logp_db(
            model, x_affine, steps, 0.5, batch_size=args.batch_size
        )  # (B, 11)
    out["paper_slices"] = {
        key: {
            "a": a,
            "b": b,
            "mean_logp_db": values.mean(dim=0).tolist(),
            "mean_range_db": (values.amax(dim=1) - values.amin(dim=1)).mean().item(),
        }
        for key, a, b, values in (
            ("over_b_at_a_0.5", [0.5], steps, over_b),
            ("over_a_at_b_0.5", steps, [0.5], over_a),
        )
    }
    if args.ode_images > 0:
        with timer.part("qualitative: ODE cross-check"):
            out["ode"] = ode_affine_changes(model, x_test[: args.ode_images], args.seed + 4)
    brightness = out["brightness"]["grid"]["mean_abs_change_db"]
    out["summary"] = {
        "smooth_beats_textured": out["smoothness"][OURS]["passes"],
        "brightness_small": bool(brightness < 0.1 * ours_std and brightness < abs(rise.mean())),
        "brightness_criterion": "mean |change| on the a = 0.8 grid < 0.1 * std of test log p "
        "and < the mean rise from contrast 1 to 0.5",
        "logp_rises_as_contrast_drops": out["contrast"]["mean_rise_db"] > 0,
    }
    if "ode" in out:
        ode = out["ode"]
        out["summary"]["ode_brightness_small"] = bool(
            ode["brightness"]["ode_mean_abs_change_db"] < 0.1 * ours_std
            and ode["brightness"]["ode_mean_abs_change_db"] < ode["contrast"]["ode_change_db"]
        )
        out["summary"]["ode_brightness_criterion"] = (
            "mean |ODE change| from b = 0 to 0.2 at a = 0.8 < 0.1 * std of test log p and < "
            "the mean ODE rise from contrast 1 to 0.5"
        )
    return out


def run(args: argparse.Namespace) -> dict:
    timer = Timer()
    with timer.part("load model and data"):
        model = dc.load_model(args.model)
        test_u8, train_u8, data_info = load_images(args, model)
        x_test, x_train = to_float(test_u8), to_float(train_u8)  # (N, C, H, W) in [0, 1]
    d = model.d

    energies: dict[str, dc.BaseEnergy] = {OURS: model}
    x_fit = x_train
    if args.dequantize:
        generator = torch.Generator().manual_seed(args.seed + 2)
        x_fit = dequantize(torch.from_numpy(train_u8), generator)
    density_baselines, mixture_info = fit_density_baselines(args, x_fit, timer)
    energies.update(density_baselines)
    nll: dict[str, torch.Tensor] = {}
    logp_db: dict[str, torch.Tensor] = {}
    for name, energy in energies.items():
        with timer.part(f"NLL: {name}"):
            energy_nats = dc.energy_nats(energy, x_test, 0.0, batch_size=args.batch_size)  # (N,)
            if args.dequantize:  # the same u for every density
                nll[name] = dequantized_nll_bits_per_dim(
                    energy,
                    torch.from_numpy(test_u8),
                    num_draws=1,
                    generator=torch.Generator().manual_seed(args.seed + 3),
                    batch_size=args.batch_size,
                )
            else:
                nll[name] = units.discrete_nll_bits_per_dim(energy_nats.double(), d)
        logp_db[name] = units.energy_nats_to_logp_db(energy_nats.double(), d)
    with timer.part("PNG rate"):
        nll[PNG] = torch.from_numpy(baselines.png_bits_per_dim(test_u8))

    with timer.part("tune classical denoisers"):
        x_tune = x_train[: args.num_tune]
        tuned, tuning_scores = tune_classical_denoisers(args, x_tune)
    y_all = baselines.noisy_copies(x_test, args.psnr, torch.Generator().manual_seed(args.seed))

    def denoiser(name: str, y: torch.Tensor, t: float, psnr_db: float) -> torch.Tensor:
        if name in energies:  # exact posterior mean for the Gaussian baselines
            return denoise(energies[name], y, t, batch_size=args.batch_size)
        if name == WAVELET:
            return baselines.wavelet_denoise(y, t, wavelet=tuned[psnr_db]["wavelet"])
        if name == NL_MEANS:
            return baselines.nl_means_denoise(y, t, h_factor=tuned[psnr_db]["nl_means_h_factor"])
        return y  # NOISY

    psnr_out: dict[str, dict[float, float]] = {}
    for name in [*energies, WAVELET, NL_MEANS, NOISY]:
        with timer.part(f"denoise: {name}"):
            psnr_out[name] = {
                psnr_db: baselines.psnr_of_mean_mse_db(
                    denoiser(name, y_all[j], units.psnr_db_to_t(psnr_db), psnr_db), x_test
                )
                for j, psnr_db in enumerate(args.psnr)
            }

    qualitative = qualitative_checks(args, model, x_test, logp_db, timer)

    methods = {}
    for name in [*energies, PNG, WAVELET, NL_MEANS, NOISY]:
        entry: dict = {}
        if name in nll:
            entry["nll_bits_per_dim"] = nll[name].mean().item()
            entry["nll_bits_per_dim_std"] = nll[name].std().item()
        if name in logp_db:
            entry["logp_db_mean"] = logp_db[name].mean().item()
        if name in psnr_out:
            entry["psnr_out_db"] = {f"{p:g}": v for p, v in psnr_out[name].items()}
        methods[name] = entry
    bars = {
        "nll": {n: nll[OURS].mean().item() < nll[n].mean().item() for n in nll if n != OURS},
        "psnr": {
            n: {f"{p:g}": psnr_out[OURS][p] > psnr_out[n][p] for p in args.psnr}
            for n in psnr_out
            if n not in (OURS, NOISY)
        },
    }
    return {
        "model": {
            "folder": str(args.model),
            "steps": model.metadata.get("steps"),
            "log_norm_nats": model.log_norm_nats,
            "image_shape": list(model.image_shape),
        },
        "data": data_info,
        "settings": {k: v for k, v in vars(args).items()},
        "conventions": {
            "nll": (
                "dequantization bound on the 8-bit NLL, bits/dim (densities fitted on (k+u)/256)"
                if args.dequantize
                else "8 + continuous NLL in bits/dim"
            )
            + ", mean over test images; PNG: 8 * bytes / d",
            "psnr": "PSNR of the mean per-pixel MSE over test images, outputs not clipped",
        },
        "methods": methods,
        "gaussian_mixture": mixture_info,
        "denoiser_tuning": {
            "num_images": len(x_tune),
            "chosen": {f"{p:g}": v for p, v in tuned.items()},
            "psnr_out_db": tuning_scores,
        },
        "bars": bars,
        "qualitative": qualitative,
        "seconds": timer.seconds,
    }


def format_table(results: dict) -> str:
    psnr_keys = list(next(iter(results["methods"].values())).get("psnr_out_db", {}))
    header = f"{'method':<30} {'NLL bits/dim':>12}" + "".join(
        f" {'PSNR@' + k + 'dB':>11}" for k in psnr_keys
    )
    lines = [header, "-" * len(header)]
    for name, entry in results["methods"].items():
        nll = entry.get("nll_bits_per_dim")
        row = f"{name:<30} {f'{nll:.3f}' if nll is not None else '-':>12}"
        for k in psnr_keys:
            value = entry.get("psnr_out_db", {}).get(k)
            row += f" {f'{value:.2f}' if value is not None else '-':>11}"
        lines.append(row)
    bars = results["bars"]
    nll_bars = [f"{n} {'pass' if ok else 'FAIL'}" for n, ok in bars["nll"].items()]
    psnr_bars = [
        f"{n} {'/'.join('pass' if ok else 'FAIL' for ok in levels.values())}"
        for n, levels in bars["psnr"].items()
    ]
    passed = sum(bars["nll"].values()) + sum(
        ok for levels in bars["psnr"].values() for ok in levels.values()
    )
    total = len(bars["nll"]) + sum(len(levels) for levels in bars["psnr"].values())
    lines.append(f"bars passed {passed}/{total}")
    lines.append(f"  ours NLL lower than: {'; '.join(nll_bars)}")
    lines.append(f"  ours PSNR higher at {'/'.join(psnr_keys)} dB than: {'; '.join(psnr_bars)}")
    return "\n".join(lines)


def format_ode_check(q: dict) -> list[str]:
    if "ode" not in q:
        return []
    lines = []
    for name, v in q["ode"].items():
        (a0, b0), (a1, b1) = v["before"], v["after"]
        lines.append(
            f"{name}, one-shot vs probability-flow ODE ({v['num_images']} images): log p(a = "
            f"{a1:g}, b = {b1:g}) - log p(a = {a0:g}, b = {b0:g}) one-shot "
            f"{v['one_shot_change_db']:+.3f} +- {v['one_shot_change_se_db']:.3f}, ODE "
            f"{v['ode_change_db']:+.3f} +- {v['ode_change_se_db']:.3f} dB/dim"
        )
    verdict = "pass" if q["summary"]["ode_brightness_small"] else "FAIL"
    lines.append(f"  brightness, ODE: {q['summary']['ode_brightness_criterion']} -> {verdict}")
    return lines


def format_qualitative(results: dict) -> str:
    q = results["qualitative"]
    s = q["smoothness"][OURS]
    b, c = q["brightness"], q["contrast"]
    lines = [
        f"smoothness (ours): mean log p of the {s['fraction']:.0%} lowest-TV test images "
        f"{s['low_tv_logp_db']:.3f} dB/dim vs highest-TV {s['high_tv_logp_db']:.3f}; "
        f"Spearman(log p, TV) = {s['spearman_tv']:+.3f}, Spearman(log p, Haar PR) = "
        f"{s['spearman_pr']:+.3f} -> {'pass' if s['passes'] else 'FAIL'}",
        "  baselines: "
        + "; ".join(
            f"{name}: low-TV {v['low_tv_logp_db']:.2f} vs high-TV {v['high_tv_logp_db']:.2f}, "
            f"rho_TV {v['spearman_tv']:+.2f}"
            for name, v in q["smoothness"].items()
            if name != OURS
        ),
        f"brightness (ours, {b['num_images']} images, no clipping): mean |log p(a x + b) - "
        f"log p(a x + b0)| = {b['grid']['mean_abs_change_db']:.3g} dB/dim for a = 0.8, b0 = 0.1, "
        f"b in {b['grid']['offsets']}; x + b (a = 1) where it stays in [0, 1]: "
        f"{b['shift']['mean_abs_change_db']:.3g} dB/dim over b in {b['shift']['offsets']} "
        f"(valid images per b {b['shift']['num_valid_per_offset']}); std of test log p "
        f"{b['test_logp_db_std']:.3g} dB/dim; slope {b['grid']['slope_db_per_unit_b']:+.3g} "
        f"dB/dim per unit b vs {c['slope_db_per_unit_a']:+.3g} per unit contrast a -> "
        f"{'pass' if q['summary']['brightness_small'] else 'FAIL'}",
        "the paper's slices (Fig. 4, ours): "
        + "; ".join(
            f"{'b' if key.startswith('over_b') else 'a'} = 0 ... 0.5 at "
            f"{'a' if key.startswith('over_b') else 'b'} = 0.5: mean log p "
            + " ".join(f"{v:.2f}" for v in sl["mean_logp_db"])
            + f" dB/dim, per-image range {sl['mean_range_db']:.2f}"
            for key, sl in q["paper_slices"].items()
        ),
        *format_ode_check(q),
        f"contrast (ours): mean log p at a = {c['contrasts']}: "
        + ", ".join(f"{v:.3f}" for v in c["mean_logp_db"])
        + f" dB/dim; rise from a = 1 to 0.5: {c['mean_rise_db']:+.3g} dB/dim, rising for "
        f"{c['fraction_rising']:.0%} of images, monotone for {c['fraction_monotone']:.0%} -> "
        f"{'pass' if q['summary']['logp_rises_as_contrast_drops'] else 'FAIL'}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s: %(message)s")
    torch.set_num_threads(args.threads)
    from threadpoolctl import threadpool_limits

    start = time.perf_counter()
    with threadpool_limits(args.threads):  # numpy BLAS, used by scikit-learn's EM
        results = run(args)
    results["seconds"]["total"] = time.perf_counter() - start
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, results)
    print(format_table(results))
    print()
    print(format_qualitative(results))
    print()
    print("wall time (s): " + ", ".join(f"{k} {v:.1f}" for k, v in results["seconds"].items()))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
