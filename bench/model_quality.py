"""The quality bars of a trained model (issue 12): one line per bar, last line ``bars_met: N/M``.

Test sets:
  own    the model folder's ``test_images.npz`` (key ``images``, uint8 (N, C, H, W)): held-out
         crops of the model's own test photographs. Its scenes (source photographs) are counted
         from a ``labels`` array in the file (named by its ``label_names`` where present; the
         natural test split includes Debian's lomiri-wallpapers photographs where installed),
         else, for the bundled "natural" data, by cutting the held-out crops again
         (``natural_image_crops``, N = the folder's test_logp_db.npz size, seed 0) and checking
         that they are the very same images; else "unknown".
  bsds   random multi-scale crops of the 68 BSDS500 test photographs (``--bsds-dir``), read at
         run time and cut at the model's resolution by ``dsm_core.data.photo_crops`` (the crop
         routine of the natural training data; luma for a 1-channel model). Absent folder: its
         bars are printed as NOT EVALUATED and count in M but never in N.
  fashion-mnist (instead of both, for a model whose metadata names Fashion-MNIST): the 10,000
         test images of Debian's dataset-fashion-mnist (``dsm_core.data.load_dataset``).

Bars per test set (thresholds are the module constants; all log p in dB/dim; one-shot log p is
``dsm_core.logp_db`` at the library's default t, the model's clean-image level):
  1 oneshot-vs-ode   64 crops (a seeded random subset): one-shot vs probability-flow ODE
                     (``ode_nll_nats``, library-default solver and t range, 4 Hutchinson probes):
                     mean |delta| <= 0.3 and |mean signed delta| <= 0.15.
  2 ascent           ``ascend_logp`` (1,000 steps, step 1e-2/d, paper §D.4) from the 16 crops
                     with the highest Haar wavelet participation ratio (the most textured): for
                     every crop the best iterate's one-shot log p within 1.5 of its ODE log p
                     and at most 1 above the best constant image's log p (constants c =
                     0, 0.01, ..., 1); total variation (``dsm_core.analysis.total_variation``)
                     lower at the best iterate than at the start for >= 80 % of the crops.
                     Reported beside it, not judged: step x the largest eigenvalue of the
                     Hessian of U at each best iterate (``max_curvature``); above 2 the
                     ascent oscillates there.
  4 brightness-contrast  one-shot slope of log p(0.8 x + b) over b = 0 ... 0.2 (mean over crops of
                     the least-squares slope) within +-1.5 per unit b; on the paper's slice
                     (``contrast_slice_logp_db``: a x + 1/2, a = 0, 0.05, ..., 0.5) log p strictly
                     decreasing in a for >= 95 % of crops.
  5 distribution     one-shot log p of >= 2,000 crops from >= 13 scenes: skewness > 0 and the
                     Gumbel (``fit_gumbel``) has a lower mean NLL than the Normal; KS of both.
  6 nll              the dequantization bound (``dequantized_nll_bits_per_dim``, bits/dim) below
                     the PNG rate and below the Gaussian mixture of bench/baselines.py (fitted the
                     same way, on the model's dequantized training images, K chosen on a
                     validation split), same crops and same dequantization draws; the train/test
                     gap (train crops: the model's training data, if this machine can read it).
  7 sparsity         Spearman(log p, Haar participation ratio) <= -0.8 on all crops of the set.
And once per model (it depends on no test set, so it is counted once, not per set):
  3 sampling         16 reverse-SDE samples (``dsm_core.sample``) with the app's default
                     method and steps (ancestral, 100: app/views/sample.py), library-default
                     noise range: every pixel in
                     [-0.05, 1.05] and every sample's one-shot log p within 1.5 of its ODE log p.

For Fashion-MNIST models, brightness-contrast and sparsity are reported but not counted in M.
A bar whose figures cannot be computed says NOT EVALUATED and is never met. Randomness comes from
generators seeded by ``--seed``; every setting is printed. ``--quick`` shrinks every size (for
tests and development; its verdicts are not the bars'). ``--proxy`` is the cheap check for
choosing checkpoints while training (issue 12, 4): the best constant image and bars 1 and 2 only,
on 32 ODE crops and 4 ascent crops per set (about 7 minutes on one CPU thread for a 32x32 model),
last line ``proxy_met: N/M``; ``--test-images`` scores a run's exported model on another folder's
held-out crops; ``--gmm-components 2`` fits the mixture baseline with K = 2 only (at
64x64 that fit took 189 s on one thread, the full list over 10 minutes). Progress goes to
stderr. At 64x64 the full script took 36 minutes on one thread.

Examples:
    python bench/model_quality.py --model checkpoints/default
    python bench/model_quality.py --model checkpoints/fashion-mnist --json quality.json
    python bench/model_quality.py --model checkpoints/default --quick
    python bench/model_quality.py --model runs/heat/model --proxy \
        --test-images checkpoints/default/test_images.npz --threads 1
"""

import argparse
import dataclasses
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from _common import add_threads_arg, load_note, set_threads
from tqdm import tqdm

import dsm_core as dc
from dsm_core import analysis, baselines, units
from dsm_core.analysis import (
    affine_logp_db,
    contrast_slice_logp_db,
    default_step_size,
    dequantized_nll_bits_per_dim,
)
from dsm_core.checkpoint import training_data_name, write_json
from dsm_core.data import (
    IMAGE_EXTENSIONS,
    load_dataset,
    load_natural_photo,
    natural_image_crops,
    photo_crops,
    read_photo_folder,
)
from dsm_core.noise import dequantize

DEFAULT_BSDS_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "bsds500" / "test"
APP_SAMPLE_STEPS = 100  # the "steps" slider's default in app/views/sample.py (a test checks it)
APP_SAMPLE_METHOD = "ancestral"  # the "method" box's default there (tested the same way)

# thresholds (issue 12), log p in dB/dim
ODE_MEAN_ABS_MAX_DB = 0.3
ODE_MEAN_SIGNED_MAX_DB = 0.15
ASCENT_ODE_GAP_MAX_DB = 1.5
ASCENT_ABOVE_CONSTANT_MAX_DB = 1.0
ASCENT_TV_FALLING_MIN = 0.8
SAMPLE_RANGE = (-0.05, 1.05)
SAMPLE_ODE_GAP_MAX_DB = 1.5
BRIGHTNESS_SLOPE_MAX_DB = 1.5
CONTRAST_MONOTONE_MIN = 0.95
DISTRIBUTION_MIN_VALUES = 2000
DISTRIBUTION_MIN_SCENES = 13
SPARSITY_SPEARMAN_MAX = -0.8

BRIGHTNESS_A = 0.8
BRIGHTNESS_B = [0.0, 0.05, 0.1, 0.15, 0.2]
CONTRAST_B = 0.5
CONTRAST_A = np.linspace(0.0, 0.5, 11).round(3).tolist()
CONSTANTS = np.linspace(0.0, 1.0, 101).round(3).tolist()


@dataclass(frozen=True)
class Settings:
    """Sizes of every measurement (the bars' values; ``quick_settings()`` shrinks them)."""

    ode_crops: int = 64
    ode_probes: int = 4
    ode_steps: int | None = None  # None: ode_nll_nats's default (tests use a few)
    ascent_crops: int = 16
    ascent_steps: int = 1000
    num_samples: int = 16
    sample_steps: int = APP_SAMPLE_STEPS
    affine_crops: int = 256
    bsds_crops_per_photo: int = 30  # 68 photos -> 2,040 crops
    fashion_test_images: int = 10_000
    nll_draws: int = 4
    train_gap_crops: int = 2000
    gmm_components: tuple[int, ...] = (2, 4, 8)  # bench/baselines.py's defaults
    gmm_num_fit: int = 5000
    gmm_num_val: int = 1000
    quick: bool = False
    proxy: bool = False

    @classmethod
    def proxy_settings(cls) -> "Settings":
        """The training-time proxy (``--proxy``): bars 1 and 2 only, on fewer crops."""
        return cls(ode_crops=32, ascent_crops=4, proxy=True)

    @classmethod
    def quick_settings(cls) -> "Settings":
        return cls(
            ode_crops=8,
            ascent_crops=4,
            ascent_steps=100,
            num_samples=4,
            affine_crops=32,
            bsds_crops_per_photo=4,
            fashion_test_images=1000,
            nll_draws=1,
            train_gap_crops=256,
            gmm_components=(2,),
            gmm_num_fit=1000,
            gmm_num_val=200,
            quick=True,
        )


# ----------------------------------------------------------------------------- bars


@dataclass(frozen=True)
class Bar:
    """One verdict. ``status``: "PASS", "FAIL" or "NOT EVALUATED"; ``counted``: part of M."""

    set_name: str
    name: str
    status: str
    figures: str
    threshold: str
    counted: bool = True

    @property
    def met(self) -> bool:
        return self.counted and self.status == "PASS"

    def line(self) -> str:
        note = "" if self.counted else "  [reported, not counted]"
        head = f"bar {self.set_name}/{self.name}: {self.status}"
        return f"{head}  {self.figures} ({self.threshold}){note}"


def _status(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _count(f: dict, key: str = "num_images", adjective: str = "") -> str:
    """A count from the figures with the set's word for its items: "64 crops", "64 images"."""
    return " ".join(filter(None, [str(f[key]), adjective, f.get("item", "crops")]))


def _not_evaluated(set_name: str, name: str, why: str, threshold: str, counted: bool) -> Bar:
    return Bar(set_name, name, "NOT EVALUATED", why, threshold, counted)


def judge_oneshot_ode(set_name: str, f: dict | None, counted: bool = True) -> Bar:
    """Bar 1 from ``{"num_images", "num_probes", "mean_abs_delta_db", "mean_signed_delta_db",
    "signed_se_db"}`` (delta = one-shot - ODE, dB/dim)."""
    threshold = (
        f"mean |delta| <= {ODE_MEAN_ABS_MAX_DB}, |mean delta| <= {ODE_MEAN_SIGNED_MAX_DB} dB/dim"
    )
    if f is None:
        return _not_evaluated(set_name, "oneshot-vs-ode", "no crops", threshold, counted)
    ok = (
        f["mean_abs_delta_db"] <= ODE_MEAN_ABS_MAX_DB
        and abs(f["mean_signed_delta_db"]) <= ODE_MEAN_SIGNED_MAX_DB
    )
    figures = (
        f"{_count(f)}, {f['num_probes']} probes: mean |delta| "
        f"{f['mean_abs_delta_db']:.3f}, mean delta (one-shot - ODE) "
        f"{f['mean_signed_delta_db']:+.3f} +- {f['signed_se_db']:.3f} dB/dim"
    )
    return Bar(set_name, "oneshot-vs-ode", _status(ok), figures, threshold, counted)


def judge_ascent(set_name: str, f: dict | None, counted: bool = True) -> Bar:
    """Bar 2 from ``{"num_images", "num_steps", "max_abs_ode_gap_db", "max_above_constant_db",
    "best_constant_logp_db", "fraction_tv_falling", ...}``."""
    threshold = (
        f"every |one-shot - ODE| <= {ASCENT_ODE_GAP_MAX_DB}, every best log p <= best constant "
        f"+ {ASCENT_ABOVE_CONSTANT_MAX_DB} dB/dim, TV falling for >= {ASCENT_TV_FALLING_MIN:.0%}"
    )
    if f is None:
        return _not_evaluated(set_name, "ascent", "no crops", threshold, counted)
    ok = (
        f["max_abs_ode_gap_db"] <= ASCENT_ODE_GAP_MAX_DB
        and f["max_above_constant_db"] <= ASCENT_ABOVE_CONSTANT_MAX_DB
        and f["fraction_tv_falling"] >= ASCENT_TV_FALLING_MIN
    )
    figures = (
        f"{_count(f, adjective='most textured')} (highest Haar PR), {f['num_steps']} steps: "
        f"best iterate one-shot - ODE max |.| {f['max_abs_ode_gap_db']:.2f} (mean "
        f"{f['mean_abs_ode_gap_db']:.2f}); best log p max {f['max_best_logp_db']:.2f} vs best "
        f"constant {f['best_constant_logp_db']:.2f} (c = {f['best_constant_c']:g}), excess "
        f"{f['max_above_constant_db']:+.2f}; TV falling {f['fraction_tv_falling']:.0%} "
        f"(mean TV {f['mean_tv_start']:.3f} -> {f['mean_tv_best']:.3f})"
    )
    if "step_curvature_best" in f:  # figures written before it was measured lack it
        ratio = np.asarray(f["step_curvature_best"])
        figures += (
            f"; step x lambda_max at the best iterates median {np.median(ratio):.2f}, max "
            f"{ratio.max():.2f} (above 2 a step overshoots)"
        )
    if "gap_formed_by_band_db" in f:
        low, high = f["gap_band_edges_t"]
        bands = np.asarray(f["gap_formed_by_band_db"])  # (3, B)
        figures += (
            f"; one-shot - ODE formed at t < {low:g} / {low:g}-{high:g} / > {high:g}: mean "
            + " / ".join(f"{band.mean():+.2f}" for band in bands)
            + ", max "
            + " / ".join(f"{band.max():+.2f}" for band in bands)
        )
    return Bar(set_name, "ascent", _status(ok), figures, threshold, counted)


def judge_sampling(set_name: str, f: dict | None, counted: bool = True) -> Bar:
    """Bar 3 from ``{"num_samples", "num_steps", "min_pixel", "max_pixel", "num_outside",
    "max_abs_ode_gap_db", "mean_abs_ode_gap_db"}``."""
    low, high = SAMPLE_RANGE
    threshold = (
        f"all pixels in [{low}, {high}], every |one-shot - ODE| <= {SAMPLE_ODE_GAP_MAX_DB} dB/dim"
    )
    if f is None:
        return _not_evaluated(set_name, "sampling", "no samples", threshold, counted)
    in_range = f["min_pixel"] >= low and f["max_pixel"] <= high
    ok = in_range and f["max_abs_ode_gap_db"] <= SAMPLE_ODE_GAP_MAX_DB
    figures = (
        f"{f['num_samples']} reverse-SDE samples ({f['method']}), {f['num_steps']} steps: "
        "pixels in "
        f"[{f['min_pixel']:.3f}, {f['max_pixel']:.3f}], {f['num_outside']} samples leave the "
        f"range; one-shot - ODE max |.| {f['max_abs_ode_gap_db']:.2f} (mean "
        f"{f['mean_abs_ode_gap_db']:.2f}) dB/dim"
    )
    return Bar(set_name, "sampling", _status(ok), figures, threshold, counted)


def judge_brightness_contrast(set_name: str, f: dict | None, counted: bool = True) -> Bar:
    """Bar 4 from ``{"num_images", "brightness_slope_db", "brightness_slope_se_db",
    "contrast_fraction_monotone", "contrast_mean_logp_db"}``."""
    threshold = (
        f"|slope| <= {BRIGHTNESS_SLOPE_MAX_DB} dB/dim per unit b; monotone for >= "
        f"{CONTRAST_MONOTONE_MIN:.0%}"
    )
    if f is None:
        return _not_evaluated(set_name, "brightness-contrast", "no crops", threshold, counted)
    ok = (
        abs(f["brightness_slope_db"]) <= BRIGHTNESS_SLOPE_MAX_DB
        and f["contrast_fraction_monotone"] >= CONTRAST_MONOTONE_MIN
    )
    curve = f["contrast_mean_logp_db"]
    figures = (
        f"{_count(f)}: one-shot slope of log p({BRIGHTNESS_A:g} x + b) "
        f"{f['brightness_slope_db']:+.2f} +- {f['brightness_slope_se_db']:.2f} dB/dim per unit b; "
        f"log p(a x + {CONTRAST_B:g}) strictly decreasing over a = 0 ... 0.5 for "
        f"{f['contrast_fraction_monotone']:.0%} of {f.get('item', 'crops')} (mean "
        f"{curve[0]:.2f} -> {curve[-1]:.2f})"
    )
    return Bar(set_name, "brightness-contrast", _status(ok), figures, threshold, counted)


def judge_distribution(set_name: str, f: dict | None, counted: bool = True) -> Bar:
    """Bar 5 from ``{"num_values", "num_scenes" (int or None), "scenes_note", "skew",
    "gumbel_ks", "gumbel_nll", "normal_ks", "normal_nll"}``."""
    threshold = (
        f">= {DISTRIBUTION_MIN_VALUES} crops from >= {DISTRIBUTION_MIN_SCENES} scenes, skew > 0, "
        "Gumbel NLL < Normal NLL"
    )
    if f is None:
        return _not_evaluated(set_name, "distribution", "no crops", threshold, counted)
    scenes = f["num_scenes"]
    reasons = []
    if f["num_values"] < DISTRIBUTION_MIN_VALUES:
        reasons.append(f"only {_count(f, 'num_values')}")
    if scenes is None:
        reasons.append("scene count unknown")
    elif scenes < DISTRIBUTION_MIN_SCENES:
        reasons.append(f"only {scenes} scenes")
    if not f["skew"] > 0:
        reasons.append("skew not positive")
    if not f["gumbel_nll"] < f["normal_nll"]:
        reasons.append("Normal fits as well or better")
    figures = (
        f"{_count(f, 'num_values')}, {scenes if scenes is not None else 'unknown'} scenes: skew "
        f"{f['skew']:+.3f}; Gumbel KS {f['gumbel_ks']:.3f} NLL {f['gumbel_nll']:.4f}, Normal KS "
        f"{f['normal_ks']:.3f} NLL {f['normal_nll']:.4f} nats"
        + (f" -- fails: {'; '.join(reasons)}" if reasons else "")
    )
    return Bar(set_name, "distribution", _status(not reasons), figures, threshold, counted)


def judge_nll(set_name: str, f: dict | None, counted: bool = True) -> Bar:
    """Bar 6 from ``{"num_images", "ours_bits_per_dim", "png_bits_per_dim", "gmm_bits_per_dim"
    (None: no mixture), "gmm_name", "train_bits_per_dim" (or None), "train_note"}``."""
    threshold = "ours < PNG and ours < Gaussian mixture (dequantized bound, bits/dim)"
    if f is None:
        return _not_evaluated(set_name, "nll", "no crops", threshold, counted)
    ours, png, gmm = f["ours_bits_per_dim"], f["png_bits_per_dim"], f["gmm_bits_per_dim"]
    train = f.get("train_bits_per_dim")
    gap = (
        f"train {train:.3f} (test - train {ours - train:+.3f})"
        if train is not None
        else f"train n/a ({f.get('train_note', 'not readable')})"
    )
    gmm_text = f"{f['gmm_name']} {gmm:.3f}" if gmm is not None else f"mixture n/a ({f['gmm_note']})"
    figures = f"{_count(f)}: ours {ours:.3f}, PNG {png:.3f}, {gmm_text} bits/dim; {gap}"
    if gmm is None:
        return Bar(set_name, "nll", "NOT EVALUATED", figures, threshold, counted)
    return Bar(set_name, "nll", _status(ours < png and ours < gmm), figures, threshold, counted)


def judge_sparsity(set_name: str, f: dict | None, counted: bool = True) -> Bar:
    """Bar 7 from ``{"num_images", "spearman_pr", "spearman_tv"}``."""
    threshold = f"Spearman(log p, PR) <= {SPARSITY_SPEARMAN_MAX}"
    if f is None:
        return _not_evaluated(set_name, "sparsity", "no crops", threshold, counted)
    figures = (
        f"{_count(f)}: Spearman(log p, Haar PR) {f['spearman_pr']:+.3f} "
        f"(with TV {f['spearman_tv']:+.3f})"
    )
    ok = f["spearman_pr"] <= SPARSITY_SPEARMAN_MAX
    return Bar(set_name, "sparsity", _status(ok), figures, threshold, counted)


PER_SET_BARS: tuple[tuple[str, Callable[..., Bar]], ...] = (
    ("oneshot-vs-ode", judge_oneshot_ode),
    ("ascent", judge_ascent),
    ("brightness-contrast", judge_brightness_contrast),
    ("distribution", judge_distribution),
    ("nll", judge_nll),
    ("sparsity", judge_sparsity),
)
NOT_REQUIRED_FOR_FASHION = ("brightness-contrast", "sparsity")


def judge_set(set_name: str, figures: dict | None, *, fashion: bool, why: str = "") -> list[Bar]:
    """The six per-set bars of one test set; ``figures`` None: the set could not be read."""
    bars = []
    for name, judge in PER_SET_BARS:
        counted = not (fashion and name in NOT_REQUIRED_FOR_FASHION)
        if figures is None:
            threshold = judge(set_name, None).threshold
            bars.append(_not_evaluated(set_name, name, why, threshold, counted))
        else:
            bars.append(judge(set_name, figures.get(name), counted))
    return bars


def bars_met(bars: list[Bar]) -> tuple[int, int]:
    """(N met, M counted)."""
    return sum(bar.met for bar in bars), sum(bar.counted for bar in bars)


# ----------------------------------------------------------------------------- test sets


@dataclass
class EvalSet:
    """uint8 crops (N, C, H, W) and their scene (source photograph) labels, if known."""

    name: str
    pixels: np.ndarray
    scenes: np.ndarray | None
    description: str
    item: str = "crops"  # what the output calls one image of the set

    @property
    def num_scenes(self) -> int | None:
        return None if self.scenes is None else int(len(np.unique(self.scenes)))


def data_name(model: dc.BaseEnergy) -> str:
    return training_data_name(model.metadata or {}) or "unknown"


def own_test_set(path: Path, model: dc.BaseEnergy) -> EvalSet:
    """A test_images.npz (a model folder's), with scene labels where they can be established
    (from its labels, else from the test_logp_db.npz beside it)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing")
    with np.load(path, allow_pickle=False) as arrays:
        pixels = np.ascontiguousarray(arrays["images"])
        indices = arrays["indices"] if "indices" in arrays.files else None
        labels = arrays["labels"] if "labels" in arrays.files else None
        names = arrays["label_names"].tolist() if "label_names" in arrays.files else None
    if pixels.dtype != np.uint8 or pixels.shape[1:] != tuple(model.image_shape):
        raise ValueError(f"{path}: images {pixels.dtype} {pixels.shape}, model {model.image_shape}")
    note = f"{path} ({len(pixels)} crops)"
    if labels is not None:
        if names is not None:
            note += f", scenes from its labels ({scene_counts(labels, names)})"
        else:
            note += ", scenes from its labels"
        return EvalSet("own", pixels, np.asarray(labels), note)
    logp_path = path.parent / "test_logp_db.npz"
    if data_name(model) == "natural" and indices is not None and logp_path.is_file():
        with np.load(logp_path, allow_pickle=False) as arrays:
            num_heldout = int(arrays["logp_db"].size)
        channels, height, _ = model.image_shape
        heldout = natural_image_crops("test", height, num_heldout, 0, grayscale=channels == 1)
        if indices.max() < num_heldout and np.array_equal(heldout.images(indices), pixels):
            scenes = heldout.labels[indices]
            counts = scene_counts(scenes, heldout.label_names)
            return EvalSet(
                "own",
                pixels,
                scenes,
                note + f", scenes by re-cutting the natural test crops ({counts})",
            )
        note += ", scenes unknown (not the natural test crops of seed 0)"
    else:
        note += ", scenes unknown (no labels in the file)"
    return EvalSet("own", pixels, None, note)


def scene_counts(scenes: np.ndarray, names: Sequence[str]) -> str:
    """ "name count, ..." of integer scene labels (N,) that index ``names``."""
    values, counts = np.unique(scenes, return_counts=True)
    return ", ".join(f"{names[k]} {c}" for k, c in zip(values, counts, strict=True))


def bsds_test_set(folder: Path, model: dc.BaseEnergy, per_photo: int, seed: int) -> EvalSet:
    """Random multi-scale crops of every photograph in the folder (``photo_crops``)."""
    from PIL import Image

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"no images in {folder}")
    channels, height, _ = model.image_shape
    photos = []
    for path in files:
        with Image.open(path) as image:
            photos.append(np.asarray(image.convert("RGB")))  # (H, W, 3) uint8
    crops = photo_crops(
        photos,
        [p.stem for p in files],
        height,
        per_photo * len(files),
        seed,
        grayscale=channels == 1,
        name="bsds:test",
    )
    return EvalSet(
        "bsds",
        crops.to_numpy(),
        crops.labels,
        f"{folder}: {len(crops)} crops ({per_photo} per photograph) of {len(files)} photographs, "
        f"{'luma' if channels == 1 else 'RGB'}, seed {seed}",
    )


def fashion_test_set(model: dc.BaseEnergy, num: int) -> EvalSet:
    dataset = load_dataset("fashion-mnist", "test", model.image_shape[1])
    num = min(num, len(dataset))
    pixels = dataset.images(np.arange(num))
    return EvalSet(
        "fashion-mnist",
        pixels,
        np.arange(num),  # every test image is its own scene
        f"{dataset.name}: the first {num} of {len(dataset)} test images (each its own scene)",
        item="images",
    )


def training_pixels(model: dc.BaseEnergy) -> tuple[np.ndarray | None, str]:
    """The model's training images (uint8) if this machine can read them, and a description.

    Crop datasets are cut afresh (20,000 crops: plenty for the train-gap and baseline-fit
    samples) from the photographs the model's metadata records (``data.photographs``), else from
    what this checkout calls the train split, named in the description.
    """
    data_cfg = (model.metadata or {}).get("train_config", {}).get("data", {})
    recorded = ((model.metadata or {}).get("data") or {}).get("photographs")
    name = data_name(model)
    channels, height, _ = model.image_shape
    num_crops = min(int(data_cfg.get("num_crops") or 20_000), 20_000)
    seed = int(data_cfg.get("crop_seed") or 0)
    try:
        if name.startswith("natural") and recorded:
            photos = recorded_photographs(name, recorded, grayscale=channels == 1)
            dataset = photo_crops(
                photos, recorded, height, num_crops, seed, channels == 1, name="natural:train"
            )
        elif name == "natural" or name.startswith("natural:"):
            dataset = load_dataset(name, "train", height, channels == 1, num_crops=num_crops)
        else:
            dataset = load_dataset(name, "train", height, channels == 1)
    except Exception as error:  # noqa: BLE001 -- any reader failure means "not readable here"
        return None, f"training data {name!r} not readable: {error}"
    if tuple(dataset.image_shape) != tuple(model.image_shape) or dataset.max_value != 255:
        return None, f"training data {dataset.name}: {dataset.image_shape}, not the model's"
    photos = ""
    if dataset.label_names is not None and name.startswith("natural"):
        whose = "the model records" if recorded else "this checkout assigns to it"
        shown = ", ".join(list(dataset.label_names)[:8])
        more = f", ... ({len(dataset.label_names)} in all)" if len(dataset.label_names) > 8 else ""
        photos = f" from the photographs {whose}: {shown}{more}"
    return dataset.to_numpy(), f"{dataset.name}, {len(dataset)} images{photos}"


def recorded_photographs(name: str, recorded: list[str], grayscale: bool) -> list[np.ndarray]:
    """The photographs a model's metadata names: bundled ones by name, ``<folder>/<stem>`` from
    the ``train/`` folder of a ``natural:<folder>`` data name."""
    folder = Path(name.removeprefix("natural:")) if name.startswith("natural:") else None
    from_folder = {}
    if folder is not None and any("/" in n for n in recorded):
        photos, stems = read_photo_folder(folder / "train", grayscale)
        from_folder = {
            f"{folder.name}/{stem}": photo for stem, photo in zip(stems, photos, strict=True)
        }
    return [from_folder[n] if "/" in n else load_natural_photo(n) for n in recorded]


# ----------------------------------------------------------------------------- measurements


def _bar_progress(description: str) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback drawing a tqdm bar on stderr."""
    state: dict = {}

    def progress(done: int, total: int) -> None:
        if "bar" not in state:
            state["bar"] = tqdm(total=total, desc=description, file=sys.stderr, leave=False)
        bar = state["bar"]
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return progress


def to_float(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels).float().div_(255.0)  # (N, C, H, W) in [0, 1]


def ode_logp_db(
    model: dc.BaseEnergy, x: torch.Tensor, settings: Settings, seed: int, what: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """ODE log p (B,) and its Hutchinson standard error (B,), dB/dim (``ode_nll_nats`` with its
    default solver, t range and prior)."""
    steps = {} if settings.ode_steps is None else {"num_steps": settings.ode_steps}
    estimate = dc.analysis.ode_nll_nats(
        model,
        x,
        num_probes=settings.ode_probes,
        generator=torch.Generator().manual_seed(seed),
        progress=_bar_progress(f"ODE {what}"),
        **steps,
    )
    stderr = units.energy_nats_to_logp_db(estimate.stderr_nats, model.d).abs()
    return estimate.logp_db.double(), stderr.double()


def best_constant(model: dc.BaseEnergy) -> dict:
    """One-shot log p of the constant images c for c in CONSTANTS; the best of them."""
    c = torch.tensor(CONSTANTS, dtype=torch.float32)
    x = c.view(-1, 1, 1, 1).expand(-1, *model.image_shape).contiguous()  # (101, C, H, W)
    logp = dc.logp_db(model, x).double()
    k = int(torch.argmax(logp))
    return {"c": CONSTANTS[k], "logp_db": logp[k].item(), "grid": f"{len(c)} values on [0, 1]"}


def measure_oneshot_ode(model, x: torch.Tensor, settings: Settings, seed: int, tag: str) -> dict:
    generator = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(x), generator=generator)[: settings.ode_crops]  # test-set rows
    xs = x[pick]
    one_shot = dc.logp_db(model, xs).double()
    ode, ode_se = ode_logp_db(model, xs, settings, seed + 1, f"{tag} crops")
    delta = one_shot - ode
    return {
        "num_images": len(xs),
        "num_probes": settings.ode_probes,
        "mean_abs_delta_db": delta.abs().mean().item(),
        "mean_signed_delta_db": delta.mean().item(),
        "signed_se_db": (ode_se.square().sum().sqrt() / len(xs)).item(),
        "max_abs_delta_db": delta.abs().max().item(),
        "one_shot_mean_db": one_shot.mean().item(),
        "ode_mean_db": ode.mean().item(),
        # per crop, for analyses the aggregates hide (which images the two estimators part on)
        "crop_indices": pick.tolist(),
        "one_shot_db": one_shot.tolist(),
        "ode_db": ode.tolist(),
        "ode_stderr_db": ode_se.tolist(),
    }


def measure_ascent(
    model, x: torch.Tensor, pr: torch.Tensor, settings: Settings, constant: dict, seed: int, tag
) -> dict:
    order = torch.argsort(pr, descending=True, stable=True)
    start = x[order[: settings.ascent_crops]]
    result = dc.ascend_logp(
        model,
        start,
        num_steps=settings.ascent_steps,
        step_size=default_step_size(model),
        progress=_bar_progress(f"ascent {tag}"),
    )
    best = result.best_image
    one_shot = dc.logp_db(model, best).double()
    # ode_logp_db's ODE (same probes and grid), with its path recorded
    profile = dc.analysis.ode_gap_profile(
        model,
        best,
        num_probes=settings.ode_probes,
        generator=torch.Generator().manual_seed(seed),
        progress=_bar_progress(f"ODE {tag} ascent"),
        **({} if settings.ode_steps is None else {"num_steps": settings.ode_steps}),
    )
    ode, ode_se = profile.ode_db[0], profile.ode_stderr_db[0]
    gap = (one_shot - ode).abs()
    # where along the ODE's path the gap forms (bands of t), reported, not judged
    formed = profile.gap_by_band()  # (3, B); the bands sum to one-shot - ODE
    # step x the Hessian's largest eigenvalue: above 2 the ascent oscillates there (paper §D.4)
    step_curvature = default_step_size(model) * analysis.max_curvature(
        model, best, generator=torch.Generator().manual_seed(seed)
    )
    tv_start = analysis.total_variation(start)
    tv_best = analysis.total_variation(best)
    return {
        "num_images": len(start),
        "num_steps": settings.ascent_steps,
        "step_size": default_step_size(model),
        "texture_measure": "Haar wavelet participation ratio (highest)",
        "start_pr": pr[order[: settings.ascent_crops]].tolist(),
        "start_logp_db": result.logp_db_curve[0].tolist(),
        "best_logp_db": one_shot.tolist(),
        "best_step": result.best_step.tolist(),
        "best_ode_logp_db": ode.tolist(),
        "best_ode_stderr_db": ode_se.tolist(),
        "max_abs_ode_gap_db": gap.max().item(),
        "mean_abs_ode_gap_db": gap.mean().item(),
        "gap_band_edges_t": list(dc.analysis.GAP_BAND_EDGES),
        "gap_formed_by_band_db": formed.tolist(),  # (bands, B)
        "max_best_logp_db": one_shot.max().item(),
        "best_constant_logp_db": constant["logp_db"],
        "best_constant_c": constant["c"],
        "max_above_constant_db": (one_shot - constant["logp_db"]).max().item(),
        "fraction_tv_falling": (tv_best < tv_start).double().mean().item(),
        "mean_tv_start": tv_start.mean().item(),
        "mean_tv_best": tv_best.mean().item(),
        "step_curvature_best": step_curvature.tolist(),
    }


def measure_sampling(model, settings: Settings, seed: int) -> dict:
    samples = dc.sample(
        model,
        settings.num_samples,
        method=APP_SAMPLE_METHOD,
        num_steps=settings.sample_steps,
        generator=torch.Generator().manual_seed(seed),
        progress=_bar_progress("sampling"),
    )  # (S, C, H, W), library-default t range and final denoising, as the app
    low, high = SAMPLE_RANGE
    outside = ((samples < low) | (samples > high)).flatten(1).any(dim=1)
    one_shot = dc.logp_db(model, samples).double()
    ode, ode_se = ode_logp_db(model, samples, settings, seed + 1, "samples")
    gap = (one_shot - ode).abs()
    return {
        "num_samples": settings.num_samples,
        "method": APP_SAMPLE_METHOD,
        "num_steps": settings.sample_steps,
        "min_pixel": samples.min().item(),
        "max_pixel": samples.max().item(),
        "num_outside": int(outside.sum()),
        "pixel_means": samples.flatten(1).mean(dim=1).tolist(),
        "one_shot_logp_db": one_shot.tolist(),
        "ode_logp_db": ode.tolist(),
        "ode_stderr_db": ode_se.tolist(),
        "max_abs_ode_gap_db": gap.max().item(),
        "mean_abs_ode_gap_db": gap.mean().item(),
    }


def measure_affine(model, x: torch.Tensor, settings: Settings, seed: int) -> dict:
    pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    xs = x[pick[: settings.affine_crops]]
    bright = affine_logp_db(model, xs, [BRIGHTNESS_A], BRIGHTNESS_B)[:, 0, :]  # (B, 5)
    b = torch.tensor(BRIGHTNESS_B, dtype=torch.float64)
    b_centered = b - b.mean()
    slopes = ((bright - bright.mean(dim=1, keepdim=True)) * b_centered).sum(dim=1) / (
        b_centered.square().sum()
    )  # (B,) least-squares slope per crop, dB/dim per unit b
    contrast = contrast_slice_logp_db(model, xs, CONTRAST_A, CONTRAST_B)  # (B, 11)
    monotone = (contrast.diff(dim=1) < 0).all(dim=1)
    return {
        "num_images": len(xs),
        "brightness_a": BRIGHTNESS_A,
        "brightness_b": BRIGHTNESS_B,
        "brightness_slope_db": slopes.mean().item(),
        "brightness_slope_se_db": (slopes.std() / math.sqrt(len(xs))).item()
        if len(xs) > 1
        else float("nan"),
        "brightness_mean_logp_db": bright.mean(dim=0).tolist(),
        "contrast_b": CONTRAST_B,
        "contrast_a": CONTRAST_A,
        "contrast_mean_logp_db": contrast.mean(dim=0).tolist(),
        "contrast_fraction_monotone": monotone.double().mean().item(),
    }


def distribution_figures(logp: torch.Tensor, test_set: EvalSet) -> dict:
    values = logp.double().numpy()
    fit = dc.fit_gumbel(values)
    return {
        "num_values": int(values.size),
        "num_scenes": test_set.num_scenes,
        "skew": fit.skewness,
        "gumbel_loc_db": fit.loc,
        "gumbel_scale_db": fit.scale,
        "gumbel_ks": fit.ks_statistic,
        "gumbel_nll": fit.mean_nll,
        "normal_mean_db": fit.normal_mean,
        "normal_sd_db": fit.normal_sd,
        "normal_ks": fit.normal_ks_statistic,
        "normal_nll": fit.normal_nll,
    }


@dataclass
class Reference:
    """What every test set is compared with: the mixture baseline and the training NLL."""

    gmm: dc.BaseEnergy | None
    gmm_name: str | None
    gmm_note: str
    gmm_info: dict
    train_bits_per_dim: float | None
    train_note: str
    constant: dict


def fit_reference(model, settings: Settings, seed: int) -> Reference:
    """The Gaussian mixture of bench/baselines.py (K by validation NLL) on the model's training
    images, dequantized as bench/baselines.py --dequantize does, and the training-set NLL."""
    from baselines import Timer, fit_density_baselines
    from baselines import build_parser as baselines_parser

    constant = best_constant(model)
    train, note = training_pixels(model)
    if train is None:
        return Reference(None, None, note, {}, None, note, constant)
    rng = np.random.default_rng(seed)
    num_fit = min(len(train), settings.gmm_num_fit + settings.gmm_num_val)
    fit_rows = np.sort(rng.choice(len(train), num_fit, replace=False))
    x_fit = dequantize(torch.from_numpy(train[fit_rows]), torch.Generator().manual_seed(seed))
    args = baselines_parser().parse_args(
        [
            "--seed",
            str(seed),
            "--gmm-num-fit",
            str(settings.gmm_num_fit),
            "--gmm-num-val",
            str(settings.gmm_num_val),
            "--gmm-components",
            *map(str, settings.gmm_components),
        ]
    )
    print(
        f"fitting the Gaussian mixture baseline (K in {list(settings.gmm_components)})...",
        file=sys.stderr,
    )
    energies, info = fit_density_baselines(args, x_fit, Timer())
    gmm_name = next(name for name in energies if name.startswith("Gaussian mixture"))
    gap_rows = np.sort(rng.choice(len(train), min(len(train), settings.train_gap_crops), False))
    train_nll = dequantized_nll_bits_per_dim(
        model,
        torch.from_numpy(train[gap_rows]),
        num_draws=settings.nll_draws,
        generator=torch.Generator().manual_seed(seed + 1),
    )
    info = {
        **info,
        "fit_on": f"{num_fit} dequantized training images ({note})",
        "reg_covar": args.gmm_reg_covar,
        "max_iter": args.gmm_max_iter,
    }
    return Reference(
        energies[gmm_name],
        gmm_name,
        "",
        info,
        train_nll.mean().item(),
        f"{len(gap_rows)} training images of {note}",
        constant,
    )


def measure_set(
    model, test_set: EvalSet, settings: Settings, reference: Reference, seed: int
) -> dict:
    """Every per-set figure of one test set (see the module docstring)."""
    x = to_float(test_set.pixels)
    tag = test_set.name
    logp = dc.logp_db(model, x).double()  # (N,)
    pr = dc.participation_ratio(x)  # (N,) float64
    out: dict = {"description": test_set.description, "num_images": len(x)}
    out["oneshot-vs-ode"] = measure_oneshot_ode(model, x, settings, seed, tag)
    out["ascent"] = measure_ascent(model, x, pr, settings, reference.constant, seed + 2, tag)
    out["brightness-contrast"] = measure_affine(model, x, settings, seed + 3)
    out["distribution"] = distribution_figures(logp, test_set)
    out["distribution"]["scenes_note"] = test_set.description
    # dequantization bound; the same u for the model and the mixture
    pixels = torch.from_numpy(test_set.pixels)
    nll: dict = {"num_images": len(x), "num_draws": settings.nll_draws}
    nll["ours_bits_per_dim"] = (
        dequantized_nll_bits_per_dim(
            model,
            pixels,
            num_draws=settings.nll_draws,
            generator=torch.Generator().manual_seed(seed + 4),
        )
        .mean()
        .item()
    )
    nll["png_bits_per_dim"] = float(baselines.png_bits_per_dim(test_set.pixels).mean())
    nll["gmm_name"], nll["gmm_note"] = reference.gmm_name, reference.gmm_note
    nll["gmm_bits_per_dim"] = (
        dequantized_nll_bits_per_dim(
            reference.gmm,
            pixels,
            num_draws=settings.nll_draws,
            generator=torch.Generator().manual_seed(seed + 4),
        )
        .mean()
        .item()
        if reference.gmm is not None
        else None
    )
    nll["train_bits_per_dim"] = reference.train_bits_per_dim
    nll["train_note"] = reference.train_note
    out["nll"] = nll
    out["sparsity"] = {
        "num_images": len(x),
        "spearman_pr": analysis.spearman(logp, pr),
        "spearman_tv": analysis.spearman(logp, analysis.total_variation(x)),
    }
    for name, _ in PER_SET_BARS:
        out[name]["item"] = test_set.item
    return out


# ----------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="model folder (with test_images.npz)")
    parser.add_argument(
        "--bsds-dir",
        default=str(DEFAULT_BSDS_DIR),
        help="folder of the BSDS500 test photographs (default: ../shared/data/bsds500/test); "
        "absent: the bsds bars are NOT EVALUATED",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    parser.add_argument(
        "--quick", action="store_true", help="small sizes for tests and development"
    )
    parser.add_argument(
        "--proxy",
        action="store_true",
        help="the cheap check for choosing checkpoints during training: the best constant image "
        "and bars 1 and 2 only (one-shot vs ODE on 32 crops, ascent from the 4 most textured), "
        "judged at those sizes; last line proxy_met: N/M (not the bars)",
    )
    parser.add_argument(
        "--test-images",
        default=None,
        help="the own test set's file (default: MODEL/test_images.npz), e.g. to score a run's "
        "exported model/ on the shipped default's held-out crops",
    )
    parser.add_argument(
        "--gmm-components",
        type=int,
        nargs="+",
        default=None,
        metavar="K",
        help="candidate numbers of components of the Gaussian mixture baseline (default: "
        f"{' '.join(map(str, Settings.gmm_components))}; --quick: 2). EM costs about 4 K N d^2 "
        "flops per iteration; K = 2 won the validation at 32x32",
    )
    parser.add_argument("--json", default=None, help="write every figure to this JSON file")
    add_threads_arg(parser)
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The sizes chosen on the command line: ``--proxy``, ``--quick`` or the full bars, with
    ``--gmm-components`` replacing the mixture's candidate K where given."""
    if args.proxy:
        settings = Settings.proxy_settings()
    else:
        settings = Settings.quick_settings() if args.quick else Settings()
    if args.gmm_components:
        settings = dataclasses.replace(settings, gmm_components=tuple(args.gmm_components))
    return settings


def run(
    args: argparse.Namespace,
    emit: Callable[[str], None] = print,
    settings: Settings | None = None,
) -> dict:
    """Measure and judge; ``emit`` receives each output line. Returns everything for JSON.

    ``settings`` overrides the sizes of ``--quick`` / ``--proxy`` / the full run (tests use tiny
    ones); with ``settings.proxy`` only bars 1 and 2 are measured.
    """
    if settings is None:
        settings = settings_from_args(args)
    model_dir = Path(args.model)
    model = dc.load_model(str(model_dir))
    name = data_name(model)
    fashion = name.startswith("fashion")
    emit(
        f"model {model_dir}: data {name}, image shape {tuple(model.image_shape)}, d = {model.d}, "
        f"{(model.metadata or {}).get('steps', '?')} training steps"
    )
    emit(
        ("QUICK RUN (--quick): small sizes, not the bars' settings. " if settings.quick else "")
        + ("PROXY (--proxy): bars 1 and 2 only, fewer crops. " if settings.proxy else "")
        + "settings: "
        + ", ".join(f"{k} {v}" for k, v in dataclasses.asdict(settings).items() if k != "quick")
        + f"; seed {args.seed}; threads {args.threads}; one-shot log p at the library's default "
        f"t; ODE: ode_nll_nats defaults (RK4, library t range, Gaussian prior)"
    )
    if settings.proxy:
        return run_proxy(args, emit, settings, model, model_dir)
    reference = fit_reference(model, settings, args.seed)
    c = reference.constant
    emit(
        f"best constant image: c = {c['c']:g}, one-shot log p {c['logp_db']:.3f} dB/dim "
        f"({c['grid']})"
    )
    if reference.gmm is not None:
        info = reference.gmm_info
        emit(
            f"Gaussian mixture baseline: {reference.gmm_name}, chosen by validation NLL among "
            f"K in {list(settings.gmm_components)}, {info['fit_on']}"
        )
    else:
        emit(f"Gaussian mixture baseline: n/a ({reference.gmm_note})")
    emit(f"train NLL: {reference.train_note}")

    bars: list[Bar] = []
    figures: dict = {}
    for k, (set_name, make) in enumerate(test_sets(args, settings, model, model_dir)):
        try:
            test_set = make()
        except (FileNotFoundError, OSError, ValueError) as error:
            emit(f"test set {set_name}: NOT EVALUATED ({error})")
            figures[set_name] = {"error": str(error)}
            bars += judge_set(set_name, None, fashion=fashion, why=f"set not readable: {error}")
            continue
        emit(f"test set {set_name}: {test_set.description}")
        began = time.perf_counter()
        figures[set_name] = measure_set(model, test_set, settings, reference, args.seed + 10 * k)
        figures[set_name]["seconds"] = time.perf_counter() - began
        emit(f"  (measured in {figures[set_name]['seconds']:.0f} s)")
        for bar in judge_set(set_name, figures[set_name], fashion=fashion):
            bars.append(bar)
            emit(bar.line())
    began = time.perf_counter()
    figures["model"] = {"sampling": measure_sampling(model, settings, args.seed + 100)}
    figures["model"]["seconds"] = time.perf_counter() - began
    sampling = judge_sampling("model", figures["model"]["sampling"])
    bars.append(sampling)
    emit(sampling.line() + "  [no test set: counted once]")
    met, total = bars_met(bars)
    if fashion:
        emit("Fashion-MNIST: brightness-contrast and sparsity are reported, not counted")
    return {
        "model": str(model_dir),
        "data": name,
        "settings": {**dataclasses.asdict(settings), "seed": args.seed, "threads": args.threads},
        "best_constant": reference.constant,
        "gaussian_mixture": reference.gmm_info,
        "figures": figures,
        "bars": [{**dataclasses.asdict(bar), "met": bar.met} for bar in bars],
        "bars_met": [met, total],
    }


def test_sets(
    args: argparse.Namespace, settings: Settings, model: dc.BaseEnergy, model_dir: Path
) -> list[tuple[str, Callable[[], EvalSet]]]:
    """(name, reader) of each test set of the model: Fashion-MNIST's, or own and bsds."""
    if data_name(model).startswith("fashion"):
        return [("fashion-mnist", lambda: fashion_test_set(model, settings.fashion_test_images))]
    own = Path(args.test_images) if args.test_images else model_dir / "test_images.npz"
    bsds_dir = Path(args.bsds_dir)
    return [
        ("own", lambda: own_test_set(own, model)),
        ("bsds", lambda: bsds_test_set(bsds_dir, model, settings.bsds_crops_per_photo, args.seed)),
    ]


def run_proxy(
    args: argparse.Namespace,
    emit: Callable[[str], None],
    settings: Settings,
    model: dc.BaseEnergy,
    model_dir: Path,
) -> dict:
    """``--proxy``: the best constant image, then bars 1 and 2 of each test set at the proxy's
    sizes (issue 12: "a cheaper proxy during training"). Returns the figures; ``proxy_met``."""
    constant = best_constant(model)
    emit(
        f"best constant image: c = {constant['c']:g}, one-shot log p "
        f"{constant['logp_db']:.3f} dB/dim ({constant['grid']})"
    )
    checks: list[Bar] = []
    figures: dict = {}
    for k, (set_name, make) in enumerate(test_sets(args, settings, model, model_dir)):
        try:
            test_set = make()
        except (FileNotFoundError, OSError, ValueError) as error:
            emit(f"test set {set_name}: NOT EVALUATED ({error})")
            figures[set_name] = {"error": str(error)}
            continue
        emit(f"test set {set_name}: {test_set.description}")
        x = to_float(test_set.pixels)
        seed = args.seed + 10 * k
        f = {
            "oneshot-vs-ode": measure_oneshot_ode(model, x, settings, seed, set_name),
            "ascent": measure_ascent(
                model, x, dc.participation_ratio(x), settings, constant, seed + 2, set_name
            ),
        }
        figures[set_name] = f
        for judge, name in ((judge_oneshot_ode, "oneshot-vs-ode"), (judge_ascent, "ascent")):
            f[name]["item"] = test_set.item
            checks.append(judge(set_name, f[name]))
            emit(checks[-1].line().replace("bar ", "proxy ", 1))
    met = sum(check.met for check in checks)
    return {
        "model": str(model_dir),
        "data": data_name(model),
        "settings": {**dataclasses.asdict(settings), "seed": args.seed, "threads": args.threads},
        "best_constant": constant,
        "figures": figures,
        "proxy_met": [met, len(checks)],
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    set_threads(args.threads)
    from threadpoolctl import threadpool_limits

    load_before = load_note()
    start = time.perf_counter()
    with threadpool_limits(args.threads):  # numpy BLAS (the mixture's EM)
        results = run(args)
    wall = time.perf_counter() - start
    results["wall_seconds"] = wall
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        write_json(args.json, results)
        print(f"wrote {args.json}")
    print(f"before the run: {load_before}")
    print(f"after the run:  {load_note(warn=False)}")
    print(f"wall time {wall:.0f} s")
    if "proxy_met" in results:
        met, total = results["proxy_met"]
        print(f"proxy_met: {met}/{total} (bars 1 and 2 at the proxy's sizes, not the bars)")
    else:
        met, total = results["bars_met"]
        print(f"bars_met: {met}/{total}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
