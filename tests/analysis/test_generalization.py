"""Agreement of two models' log p (Fig. 2)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import dsm_core as dc
from dsm_core.analysis import (
    convergence_finding,
    generalization_summary,
    read_generalization_runs,
)

from .closed_forms import eigen_coords


def test_summary_of_known_differences():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    s = generalization_summary(a, a - torch.tensor([1.0, -1.0, 1.0, -1.0]))
    assert s.mean_diff_db == 0 and s.mean_abs_diff_db == 1 and s.rms_diff_db == 1
    assert s.num_images == 4
    shifted = generalization_summary(a, a - 0.5)
    assert shifted.mean_diff_db == pytest.approx(0.5) and shifted.pearson == pytest.approx(1)
    assert math.isnan(generalization_summary([1.0, 1.0], [2.0, 3.0]).pearson)
    with pytest.raises(ValueError):
        generalization_summary([1.0], [1.0, 2.0])


def test_two_oracles_whose_difference_is_known(gaussian_oracle, oracle_images):
    lam = gaussian_oracle.eigenvalues
    model_b = dc.GaussianEnergy(gaussian_oracle.mean, 2.0 * lam, gaussian_oracle.eigenvectors)
    result = dc.compare_models(gaussian_oracle, model_b, oracle_images, batch_size=4)
    # U_b - U_a = -sum m^2 / (4 lam) + (d/2) ln 2, so log p_a - log p_b = U_b - U_a
    m = eigen_coords(gaussian_oracle, oracle_images)
    diff_nats = -(m**2 / (4 * lam)).sum(1) + 8 * math.log(2.0)
    diff_db = (10 * diff_nats / (16 * math.log(10))).numpy()
    s = result.summary
    assert s.mean_diff_db == pytest.approx(diff_db.mean(), abs=1e-9)
    assert s.mean_abs_diff_db == pytest.approx(np.abs(diff_db).mean(), abs=1e-9)
    assert s.rms_diff_db == pytest.approx(np.sqrt((diff_db**2).mean()), abs=1e-9)
    a, b = result.logp_db_a.numpy(), result.logp_db_b.numpy()
    np.testing.assert_allclose(a - b, diff_db, atol=1e-9)
    assert s.pearson == pytest.approx(np.corrcoef(a, b)[0, 1])
    same = dc.compare_models(gaussian_oracle, gaussian_oracle, oracle_images).summary
    assert same.rms_diff_db == 0 and same.pearson == pytest.approx(1)


def test_read_generalization_runs_and_the_convergence_finding(tmp_path):
    rng = np.random.default_rng(0)
    spreads = {10: 5.0, 100: 1.0, 1000: 0.2}
    for size, spread in spreads.items():
        base = rng.normal(10, 3, (2, 20))
        arrays = {
            "logp_db_model_a_on_A": base[0],
            "logp_db_model_b_on_A": base[0] + rng.normal(0, spread, 20),
            "logp_db_model_a_on_B": base[1],
            "logp_db_model_b_on_B": base[1] + rng.normal(0, spread, 20),
        }
        if size == 100:  # the docs/results layout
            np.savez(tmp_path / f"scatter_N{size}.npz", **arrays)
        else:  # train/generalization.py's layout
            (tmp_path / f"N{size}").mkdir()
            np.savez(tmp_path / f"N{size}" / "scatter.npz", **arrays)
    runs = read_generalization_runs(tmp_path)
    assert [run.size for run in runs] == [10, 100, 1000]
    run = runs[0]
    diff = np.concatenate(
        [run.on_a.logp_db_a - run.on_a.logp_db_b, run.on_b.logp_db_a - run.on_b.logp_db_b]
    )
    assert run.mean_abs_diff_db == pytest.approx(np.abs(diff).mean())
    finding = convergence_finding(runs)
    assert finding.sizes == (10, 100, 1000) and finding.monotone and finding.agrees
    diverging = convergence_finding(runs[::-1])
    assert not diverging.agrees and not diverging.monotone
    with pytest.raises(FileNotFoundError):
        read_generalization_runs(tmp_path / "N10" / "nothing")


def test_the_shipped_fashion_results_are_read():
    folder = Path(__file__).resolve().parents[2] / "docs" / "results" / "fashion_generalization"
    runs = read_generalization_runs(folder)
    summary = json.loads((folder / "summary.json").read_text())
    assert [str(run.size) for run in runs] == list(summary)
    for run in runs:
        stored = summary[str(run.size)]["A_images"]["mean_abs_diff_db"]
        assert run.on_a.summary.mean_abs_diff_db == pytest.approx(stored, rel=1e-6)
