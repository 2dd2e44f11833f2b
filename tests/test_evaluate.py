"""Evaluation: analytic checks on a Gaussian, and train/evaluate.py on a tiny random model."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import dsm_core as dc
from dsm_core import units
from dsm_core.config import LossConfig, NoiseConfig
from dsm_core.data import load_dataset
from dsm_core.evaluation import (
    evaluate_during_training,
    evaluate_model,
    nll_with_fresh_log_norm,
)

REPO = Path(__file__).resolve().parent.parent
API_KEYS = {
    "nll_bits_per_dim",
    "entropy_db",
    "gumbel_loc_db",
    "gumbel_scale_db",
    "num_images",
    "psnr_db",
}


def test_fresh_log_norm_of_a_normalised_gaussian(gaussian_oracle, generator):
    x = gaussian_oracle.sample(4000, generator).float()
    model = gaussian_oracle.float()
    estimate = nll_with_fresh_log_norm(model, x, 1e3, seed=0, batch_size=1000)
    assert abs(estimate.log_norm_nats) < 4 * estimate.log_norm_stderr_nats + 0.05
    entropy_nats = 0.5 * torch.log(2 * math.pi * math.e * gaussian_oracle.eigenvalues).sum()
    expected = units.discrete_nll_bits_per_dim(entropy_nats.item(), model.d)
    assert estimate.nll_bits_per_dim == pytest.approx(expected, abs=0.05)


def test_evaluate_during_training_keys(tiny_model, tiny_images):
    metrics = evaluate_during_training(
        tiny_model, tiny_images, NoiseConfig(1e-6, 1e3), LossConfig(), seed=0, batch_size=4
    )
    assert {"loss", "space_loss", "time_loss", "psnr_out_db", "nll_bits_per_dim"} <= set(metrics)
    assert len(metrics["psnr_out_db"]) == 17 and len(metrics["time_loss_by_psnr"]) == 17
    assert metrics["time_loss_zero_by_psnr"].keys() == metrics["time_loss_by_psnr"].keys()
    json.dumps(metrics)


def test_evaluate_model_reads_datasets_in_batches(tiny_model):
    dataset = load_dataset("digits", "test", 16)
    indices = np.arange(10)
    from_dataset = evaluate_model(tiny_model, dataset, indices, psnr_grid_db=None, batch_size=3)
    x = dataset.batch(indices)
    from_tensor = evaluate_model(tiny_model, x, psnr_grid_db=(0.0, 30.0), batch_size=4)
    np.testing.assert_allclose(from_dataset.logp_db, from_tensor.logp_db, atol=1e-6)
    np.testing.assert_allclose(from_tensor.logp_db, dc.logp_db(tiny_model, x).numpy(), atol=1e-6)
    metrics = from_tensor.metrics()
    assert API_KEYS <= set(metrics) and set(metrics["psnr_db"]) == {"0", "30"}
    assert metrics["entropy_db"] == pytest.approx(-from_tensor.logp_db.mean())
    assert metrics["nll_bits_per_dim"] == pytest.approx(
        8 - units.db_to_bits(-metrics["entropy_db"])
    )


def test_evaluate_script_writes_the_api_files(tmp_path, tiny_model):
    folder = tmp_path / "model"
    x = load_dataset("digits", "test", 16).batch(np.arange(32))
    tiny_model.log_norm_nats = dc.estimate_log_norm(tiny_model, x, 1e3).log_norm_nats
    dc.save_model(tiny_model, folder)
    out = tmp_path / "eval"
    result = subprocess.run(
        [sys.executable, str(REPO / "train" / "evaluate.py"), "--model", str(folder),
         "--data", "digits", "--out", str(out), "--num-images", "24", "--psnr-images", "4",
         "--threads", "1"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert API_KEYS <= set(metrics)
    assert metrics["num_images"] == 24 and len(metrics["psnr_db"]) == 17
    assert all(math.isfinite(metrics[k]) for k in API_KEYS - {"psnr_db", "num_images"})
    saved = np.load(out / "logp_db.npz", allow_pickle=False)
    assert saved["indices"].tolist() == list(range(24))
    expected = dc.logp_db(dc.load_model(folder), x[:24]).numpy()
    np.testing.assert_allclose(saved["logp_db"], expected, rtol=1e-5)
    report = (out / "report.md").read_text()
    for png in ("logp_histogram.png", "extremes.png", "psnr.png"):
        assert (out / png).stat().st_size > 0 and png in report


def test_evaluate_model_bounds_the_8bit_nll_by_dequantization(gaussian_oracle, generator):
    pixels = torch.randint(0, 256, (6, *gaussian_oracle.image_shape), generator=generator)
    result = evaluate_model(gaussian_oracle, pixels / 255, psnr_grid_db=None, seed=3)
    expected = dc.analysis.dequantized_nll_bits_per_dim(
        gaussian_oracle, pixels, num_draws=1, generator=torch.Generator().manual_seed(3)
    )
    assert result.metrics()["nll_bits_per_dim_dequantized"] == pytest.approx(
        expected.mean().item(), rel=1e-6
    )
    off_grid = evaluate_model(gaussian_oracle, pixels / 255 + 1e-3, psnr_grid_db=None)
    assert off_grid.nll_bits_per_dim_dequantized is None
    assert "nll_bits_per_dim_dequantized" not in off_grid.metrics()
