"""bench/model_quality.py: its bar logic passes and fails on synthetic figures, and its core runs
end to end on a tiny random-weight model with tiny sizes."""

import argparse
import importlib
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dsm_core as dc
from dsm_core.checkpoint import json_safe

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mq():
    """The script as a module (bench/ on the path for its ``_common`` and ``baselines``)."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        yield importlib.import_module("model_quality")
    finally:
        sys.path.remove(str(ROOT / "bench"))


def _good(mq) -> dict:
    """Figures that meet every bar, with some margin."""
    return {
        "oneshot-vs-ode": {
            "num_images": 64,
            "num_probes": 4,
            "mean_abs_delta_db": 0.2,
            "mean_signed_delta_db": -0.1,
            "signed_se_db": 0.02,
        },
        "ascent": {
            "num_images": 16,
            "num_steps": 1000,
            "max_abs_ode_gap_db": 1.0,
            "mean_abs_ode_gap_db": 0.5,
            "max_best_logp_db": 20.5,
            "best_constant_logp_db": 20.0,
            "best_constant_c": 0.5,
            "max_above_constant_db": 0.5,
            "fraction_tv_falling": 0.875,
            "mean_tv_start": 0.3,
            "mean_tv_best": 0.1,
        },
        "brightness-contrast": {
            "num_images": 256,
            "brightness_slope_db": 1.2,
            "brightness_slope_se_db": 0.1,
            "contrast_fraction_monotone": 0.97,
            "contrast_mean_logp_db": [40.0, 30.0, 20.0],
        },
        "distribution": {
            "num_values": 2040,
            "num_scenes": 68,
            "skew": 0.4,
            "gumbel_ks": 0.02,
            "gumbel_nll": 2.9,
            "normal_ks": 0.05,
            "normal_nll": 3.0,
        },
        "nll": {
            "num_images": 2040,
            "ours_bits_per_dim": 4.0,
            "png_bits_per_dim": 5.5,
            "gmm_bits_per_dim": 4.2,
            "gmm_name": "Gaussian mixture (K=4)",
            "gmm_note": "",
            "train_bits_per_dim": 3.9,
            "train_note": "train",
        },
        "sparsity": {"num_images": 2040, "spearman_pr": -0.85, "spearman_tv": -0.8},
    }


# each: (bar, key, value) that alone must turn a passing bar into a failing one
BREAKERS = [
    ("oneshot-vs-ode", "mean_abs_delta_db", 0.31),
    ("oneshot-vs-ode", "mean_signed_delta_db", 0.16),
    ("oneshot-vs-ode", "mean_signed_delta_db", -0.16),
    ("ascent", "max_abs_ode_gap_db", 1.6),
    ("ascent", "max_above_constant_db", 1.01),
    ("ascent", "fraction_tv_falling", 0.75),
    ("brightness-contrast", "brightness_slope_db", -1.6),
    ("brightness-contrast", "contrast_fraction_monotone", 0.94),
    ("distribution", "num_values", 512),
    ("distribution", "num_scenes", 4),
    ("distribution", "num_scenes", None),
    ("distribution", "skew", -0.2),
    ("distribution", "gumbel_nll", 3.1),
    ("nll", "ours_bits_per_dim", 5.0),  # above the mixture, below PNG
    ("nll", "ours_bits_per_dim", 6.0),
    ("sparsity", "spearman_pr", -0.79),
]


def test_every_bar_passes_on_good_figures_and_fails_on_each_breaker(mq):
    bars = mq.judge_set("bsds", _good(mq), fashion=False)
    assert [b.status for b in bars] == ["PASS"] * 6
    assert all(b.line().startswith(f"bar bsds/{b.name}: PASS  ") for b in bars)
    for name, key, value in BREAKERS:
        figures = _good(mq)
        figures[name][key] = value
        (bar,) = [b for b in mq.judge_set("bsds", figures, fashion=False) if b.name == name]
        assert bar.status == "FAIL", (name, key, value, bar.line())
    figures = _good(mq)
    figures["distribution"]["num_values"] = 512
    (bar,) = [b for b in mq.judge_set("own", figures, fashion=False) if b.name == "distribution"]
    assert "only 512 crops" in bar.figures


def test_ascent_line_reports_the_step_curvature_product_when_measured(mq):
    figures = _good(mq)["ascent"]
    assert "lambda_max" not in mq.judge_ascent("own", figures).line()  # older figures
    bar = mq.judge_ascent("own", {**figures, "step_curvature_best": [0.5, 3.0, 1.5]})
    assert bar.met  # reported, not judged
    assert "step x lambda_max at the best iterates median 1.50, max 3.00" in bar.line()
    bands = {
        "gap_band_edges_t": [1e-3, 1.0],
        "gap_formed_by_band_db": [[1.0, 2.0], [0, -0.5], [0.5, 0]],
    }
    bar = mq.judge_ascent("own", {**figures, **bands})
    assert bar.met
    assert "formed at t < 0.001 / 0.001-1 / > 1: mean +1.50 / -0.25 / +0.25, max +2.00 / +0.00" in (
        bar.line()
    )


def test_sampling_bar(mq):
    good = {
        "num_samples": 16,
        "method": "ancestral",
        "num_steps": 100,
        "min_pixel": -0.04,
        "max_pixel": 1.0,
        "num_outside": 0,
        "max_abs_ode_gap_db": 1.4,
        "mean_abs_ode_gap_db": 0.3,
    }
    assert mq.judge_sampling("model", good).status == "PASS"
    for key, value in (("min_pixel", -0.8), ("max_pixel", 1.2), ("max_abs_ode_gap_db", 2.0)):
        assert mq.judge_sampling("model", {**good, key: value}).status == "FAIL"


def test_counting_not_evaluated_and_fashion(mq):
    missing = mq.judge_set("bsds", None, fashion=False, why="no folder")
    assert [b.status for b in missing] == ["NOT EVALUATED"] * 6
    assert mq.bars_met(missing) == (0, 6)  # in M, never in N
    no_mixture = _good(mq)
    no_mixture["nll"]["gmm_bits_per_dim"] = None
    no_mixture["nll"]["gmm_note"] = "training data not readable"
    (nll,) = [b for b in mq.judge_set("own", no_mixture, fashion=False) if b.name == "nll"]
    assert nll.status == "NOT EVALUATED" and not nll.met
    fashion = mq.judge_set("fashion-mnist", _good(mq), fashion=True)
    assert mq.bars_met(fashion) == (4, 4)  # brightness-contrast and sparsity not counted
    assert all("[reported, not counted]" in b.line() for b in fashion if not b.counted)


def test_app_default_sampling_steps_and_method(mq):
    page = (ROOT / "app" / "views" / "sample.py").read_text()
    match = re.search(r'slider\("steps",\s*\d+,\s*\d+,\s*(\d+)', page)
    assert match and int(match.group(1)) == mq.APP_SAMPLE_STEPS
    # the method box lists METHODS in order, so its default is the dict's first key
    match = re.search(r'METHODS = \{[^\n]*\n\s*"(\w+)"', page)
    assert match and match.group(1) == mq.APP_SAMPLE_METHOD


def _tiny_setup(mq, tmp_path: Path, **sizes):
    """A random-weight tiny model folder with 6 labelled held-out crops, 2 'BSDS' photographs,
    tiny sizes (``sizes`` overrides them) and the script's arguments."""
    torch.manual_seed(0)
    model = dc.build_energy_model("tiny").eval()
    folder = tmp_path / "model"
    dc.save_model(model, folder)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, *model.image_shape), dtype=np.uint8)
    scenes = {"images": images, "labels": [0, 0, 1, 1, 2, 2], "label_names": ["a", "b", "c"]}
    np.savez(folder / "test_images.npz", **scenes)
    photos = tmp_path / "bsds"
    photos.mkdir()
    for k in range(2):
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(photos / f"{k}.png")
    tiny = {
        "ode_crops": 2,
        "ode_probes": 2,
        "ode_steps": 3,
        "ascent_crops": 2,
        "ascent_steps": 3,
        "num_samples": 2,
        "sample_steps": 4,
        "affine_crops": 3,
        "bsds_crops_per_photo": 2,
        "nll_draws": 1,
        "train_gap_crops": 4,
        "quick": True,
    }
    settings = mq.Settings(**{**tiny, **sizes})
    args = argparse.Namespace(
        model=str(folder),
        bsds_dir=str(photos),
        seed=0,
        quick=True,
        proxy=False,
        test_images=None,
        gmm_components=None,
        threads=1,
        json=None,
    )
    return settings, args


def test_command_line_chooses_the_sizes(mq):
    parser = mq.build_parser()
    full = mq.settings_from_args(parser.parse_args(["--model", "m"]))
    assert full == mq.Settings() and full.gmm_components == (2, 4, 8)
    assert mq.settings_from_args(parser.parse_args(["--model", "m", "--proxy"])).proxy
    assert mq.settings_from_args(parser.parse_args(["--model", "m", "--quick"])).quick
    # --gmm-components replaces only the mixture's candidates (64x64: EM ~ K N d^2)
    only2 = mq.settings_from_args(parser.parse_args(["--model", "m", "--gmm-components", "2"]))
    assert only2 == mq.dataclasses.replace(mq.Settings(), gmm_components=(2,))
    quick = parser.parse_args(["--model", "m", "--quick", "--gmm-components", "4", "8"])
    assert mq.settings_from_args(quick).gmm_components == (4, 8)
    assert mq.settings_from_args(quick).ode_crops == mq.Settings.quick_settings().ode_crops
    with pytest.raises(SystemExit):
        parser.parse_args(["--model", "m", "--gmm-components", "two"])


def test_core_runs_on_a_tiny_model(mq, tmp_path):
    settings, args = _tiny_setup(mq, tmp_path)
    lines: list[str] = []
    results = mq.run(args, emit=lines.append, settings=settings)
    text = "\n".join(lines)
    assert "QUICK RUN" in text
    assert "test set own:" in text and "test set bsds:" in text
    assert "scenes from its labels (a 2, b 2, c 2)" in text
    bar_lines = [line for line in lines if line.startswith("bar ")]
    assert len(bar_lines) == 13  # six per set, sampling once
    assert all(re.match(r"bar \S+/\S+: (PASS|FAIL|NOT EVALUATED)  ", line) for line in bar_lines)
    # no training data for a fresh model: no mixture, so the NLL bars cannot be met
    assert "Gaussian mixture baseline: n/a" in text
    assert [b["status"] for b in results["bars"] if b["name"] == "nll"] == ["NOT EVALUATED"] * 2
    assert results["figures"]["own"]["distribution"]["num_scenes"] == 3
    assert results["figures"]["bsds"]["distribution"]["num_scenes"] == 2
    ascent = results["figures"]["own"]["ascent"]  # the ODE's gap, split by where it formed
    np.testing.assert_allclose(
        np.sum(ascent["gap_formed_by_band_db"], axis=0),
        np.asarray(ascent["best_logp_db"]) - np.asarray(ascent["best_ode_logp_db"]),
        atol=1e-6,
    )
    met, total = results["bars_met"]
    assert total == 13 and 0 <= met <= 11
    json.dumps(json_safe(results), allow_nan=False)  # everything is JSON-writable
    # a missing BSDS folder: its six bars are in M but not evaluated
    args.bsds_dir = str(tmp_path / "absent")
    lines.clear()
    results = mq.run(args, emit=lines.append, settings=settings)
    assert any(line.startswith("test set bsds: NOT EVALUATED") for line in lines)
    bsds = [b for b in results["bars"] if b["set_name"] == "bsds"]
    assert len(bsds) == 6 and all(b["status"] == "NOT EVALUATED" for b in bsds)
    assert results["bars_met"][1] == 13


def test_proxy_measures_bars_1_and_2_only(mq, tmp_path):
    settings, args = _tiny_setup(mq, tmp_path, quick=False, proxy=True)
    # the own set from another file: the model folder's copy is gone
    moved = tmp_path / "elsewhere" / "held_out.npz"
    moved.parent.mkdir()
    (tmp_path / "model" / "test_images.npz").rename(moved)
    args.test_images = str(moved)
    lines: list[str] = []
    results = mq.run(args, emit=lines.append, settings=settings)
    text = "\n".join(lines)
    assert "PROXY (--proxy)" in text and "best constant image: c = " in text
    assert f"test set own: {moved}" in text
    checks = [line for line in lines if line.startswith("proxy ")]
    assert [line.split(":")[0] for line in checks] == [
        "proxy own/oneshot-vs-ode",
        "proxy own/ascent",
        "proxy bsds/oneshot-vs-ode",
        "proxy bsds/ascent",
    ]
    assert not any(line.startswith("bar ") for line in lines)
    assert set(results["figures"]["own"]) == {"oneshot-vs-ode", "ascent"}
    ode_figures = results["figures"]["own"]["oneshot-vs-ode"]
    assert ode_figures["num_images"] == 2
    # the per-crop values the JSON keeps reproduce the aggregates
    delta = [a - b for a, b in zip(ode_figures["one_shot_db"], ode_figures["ode_db"], strict=True)]
    assert len(delta) == 2 and len(set(ode_figures["crop_indices"])) == 2
    assert sum(delta) / 2 == pytest.approx(ode_figures["mean_signed_delta_db"], abs=1e-9)
    assert max(map(abs, delta)) == pytest.approx(ode_figures["max_abs_delta_db"], abs=1e-9)
    assert all(se >= 0 for se in ode_figures["ode_stderr_db"])
    met, total = results["proxy_met"]
    assert total == 4 and met == sum(": PASS" in line for line in checks)
    assert "bars_met" not in results
    assert mq.Settings.proxy_settings().ode_crops == 32  # the sizes --proxy documents
