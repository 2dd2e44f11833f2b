"""Gumbel fit of log p (Fig. 3, C.3)."""

import math

import numpy as np
import pytest
from scipy import stats

import dsm_core as dc
from dsm_core.analysis import frechet_parameters


def test_fit_recovers_synthetic_parameters():
    rng = np.random.default_rng(0)
    n, loc, scale = 50_000, 9.57, 3.17
    values = stats.gumbel_r.rvs(loc, scale, size=n, random_state=rng)
    fit = dc.fit_gumbel(values)
    # asymptotic MLE standard errors: 1.05 scale / sqrt(n) (loc), 0.78 scale / sqrt(n) (scale)
    assert abs(fit.loc - loc) < 5 * 1.05 * scale / math.sqrt(n)
    assert abs(fit.scale - scale) < 5 * 0.78 * scale / math.sqrt(n)
    assert fit.num_values == n
    assert fit.ks_statistic < 0.01
    # the Gumbel describes Gumbel data better than the Normal comparison fit
    assert fit.mean_nll < fit.normal_nll
    assert abs(fit.normal_mean - values.mean()) < 1e-9
    assert abs(fit.normal_sd - values.std()) < 1e-9
    # the right-skewed convention: the mode (loc) is below the mean
    assert fit.loc < fit.normal_mean


def test_fit_is_scipy_mle_and_not_the_left_skewed_law():
    rng = np.random.default_rng(1)
    values = stats.gumbel_r.rvs(2.0, 0.5, size=2000, random_state=rng)
    fit = dc.fit_gumbel(values)
    loc, scale = stats.gumbel_r.fit(values)
    assert fit.loc == pytest.approx(loc) and fit.scale == pytest.approx(scale)
    nll = -stats.gumbel_r.logpdf(values, fit.loc, fit.scale).mean()
    assert fit.mean_nll == pytest.approx(nll)
    left_loc, left_scale = stats.gumbel_l.fit(values)
    assert -stats.gumbel_l.logpdf(values, left_loc, left_scale).mean() > fit.mean_nll + 0.05


def test_normal_comparison_and_skewness():
    rng = np.random.default_rng(4)
    gumbel = dc.fit_gumbel(stats.gumbel_r.rvs(9.57, 3.17, size=20_000, random_state=rng))
    normal = dc.fit_gumbel(rng.normal(5.0, 2.0, size=20_000))
    # a Gumbel's skewness is 12 sqrt(6) zeta(3) / pi^3 = 1.1395; a Normal's 0
    assert gumbel.skewness == pytest.approx(1.1395, abs=0.1)
    assert abs(normal.skewness) < 0.1
    # the Normal fit is far from Gumbel data and close to Normal data
    assert gumbel.normal_ks_statistic > 0.05 > gumbel.ks_statistic
    assert normal.normal_ks_statistic < 0.015 < normal.ks_statistic
    values = rng.normal(0.0, 1.0, size=300)
    fit = dc.fit_gumbel(values)
    ks = stats.kstest(values, "norm", args=(values.mean(), values.std()))
    assert fit.normal_ks_statistic == pytest.approx(ks.statistic, abs=1e-12)
    assert fit.skewness == pytest.approx(stats.skew(values), abs=1e-12)


def test_frechet_parameters_of_the_paper_fit():
    # reference-spec §5.2: gumbel_r loc 9.5659, scale 3.1683 -> Frechet shape 1.3707, scale 9.0488
    shape, scale = frechet_parameters(9.5659, 3.1683)
    assert shape == pytest.approx(1.3707, abs=5e-5)
    assert scale == pytest.approx(9.0488, abs=5e-5)


def test_frechet_law_of_p_to_the_one_over_d():
    rng = np.random.default_rng(2)
    values = stats.gumbel_r.rvs(9.57, 3.17, size=20_000, random_state=rng)
    fit = dc.fit_gumbel(values)
    w = 10.0 ** (values / 10.0)  # p^(1/d)
    ks = stats.kstest(w, "invweibull", args=(fit.frechet_shape, 0.0, fit.frechet_scale))
    assert ks.statistic == pytest.approx(fit.ks_statistic, abs=1e-9)


def test_pdf_is_a_normalised_density():
    fit = dc.fit_gumbel(stats.gumbel_r.rvs(1.0, 2.0, size=500, random_state=3))
    grid = np.linspace(-30, 60, 20001)
    assert np.trapezoid(fit.pdf(grid), grid) == pytest.approx(1.0, abs=1e-6)
    assert np.trapezoid(fit.normal_pdf(grid), grid) == pytest.approx(1.0, abs=1e-6)
    assert fit.pdf(fit.loc) == pytest.approx(1 / (math.e * fit.scale))


def test_fit_rejects_bad_input():
    with pytest.raises(ValueError):
        dc.fit_gumbel([1.0])
    with pytest.raises(ValueError):
        dc.fit_gumbel([1.0, float("nan"), 2.0])
