"""Agreement of two models' log p (Fig. 2)."""

import math

import numpy as np
import pytest
import torch

import dsm_core as dc
from dsm_core.analysis import generalization_summary

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
