"""The paper's findings as tests: each verdict follows its statistic, both ways."""

import dataclasses

import numpy as np
import pytest
import torch
from scipy import stats

import dsm_core as dc
from dsm_core.analysis import Interpolation, findings


def test_gumbel_finding_accepts_a_gumbel_sample_and_rejects_a_bimodal_one():
    rng = np.random.default_rng(0)
    gumbel_sample = stats.gumbel_r.rvs(loc=9.0, scale=3.0, size=2000, random_state=rng)
    verdict = findings.gumbel_finding(dc.fit_gumbel(gumbel_sample))
    assert verdict.ks_passes and verdict.gumbel_beats_normal and verdict.agrees
    assert verdict.ks_critical == pytest.approx(stats.kstwo.ppf(0.95, 2000))
    bimodal = np.concatenate([rng.normal(5.0, 1.0, 1000), rng.normal(15.0, 1.0, 1000)])
    fit = dc.fit_gumbel(bimodal)
    verdict = findings.gumbel_finding(fit)
    assert verdict.ks_statistic == fit.ks_statistic > verdict.ks_critical
    assert not verdict.agrees
    normal = rng.normal(0.0, 1.0, 2000)
    assert not findings.gumbel_finding(dc.fit_gumbel(normal)).gumbel_beats_normal


def test_gumbel_qq_lies_on_the_diagonal_for_the_fitted_law():
    rng = np.random.default_rng(1)
    values = stats.gumbel_r.rvs(loc=2.0, scale=1.5, size=4000, random_state=rng)
    fit = dc.fit_gumbel(values)
    theoretical, empirical = findings.gumbel_qq(values, fit)
    np.testing.assert_array_equal(empirical, np.sort(values))
    middle = slice(400, 3600)
    np.testing.assert_allclose(theoretical[middle], empirical[middle], atol=0.15)


@pytest.mark.parametrize(("mean", "agrees"), [(0.5, True), (0.9, False)])
def test_contrast_finding_is_the_sign_of_the_slope(mean: float, agrees: bool):
    """log p(a x + 1/2) of an isotropic Gaussian: for a constant image x = 0.8 it is
    -(0.8 a + 0.5 - mean)^2 d / 2s^2, falling in a in [0, 1/2] for mean 0.5, rising for 0.9."""
    oracle = dc.GaussianEnergy.isotropic(torch.full((1, 4, 4), mean, dtype=torch.float64), 0.1)
    x = torch.full((1, 1, 4, 4), 0.8, dtype=torch.float64)
    result = findings.contrast_finding(oracle, x)
    expected = -((0.8 * result.a + 0.5 - mean) ** 2) * 16 / (2 * 0.1)
    slope = np.polyfit(result.a, expected, 1)[0]
    assert result.slope_db[0] == pytest.approx(10 / np.log(10) * slope / 16, rel=1e-6)
    assert bool(result.agrees[0]) is agrees
    assert result.b == 0.5 and result.a.max() == 0.5  # a x + b stays in [0, 1]


def test_sparsity_finding_follows_the_rank_correlation():
    rng = np.random.default_rng(2)
    ratio = rng.uniform(0.1, 0.9, 200)
    noise = rng.normal(0, 0.05, 200)
    assert findings.sparsity_finding(ratio, -ratio + noise).agrees
    opposite = findings.sparsity_finding(ratio, ratio + noise)
    assert opposite.spearman > 0 and not opposite.agrees
    unrelated = findings.sparsity_finding(ratio, rng.normal(size=200))
    assert unrelated.agrees is bool(unrelated.spearman < 0 and unrelated.p_value < 0.05)


def _path(path_db: list[float]) -> Interpolation:
    alphas = torch.linspace(0, 1, len(path_db), dtype=torch.float64)
    values = torch.tensor([path_db], dtype=torch.float64)
    chord = (1 - alphas) * values[0, 0] + alphas * values[0, -1]
    return Interpolation(alphas, values, chord[None])


def test_interpolation_finding_uses_interior_weights_and_the_pair_probability():
    below = _path([10.0, 6.0, 4.0, 7.0, 10.0])  # the path sags below a flat chord
    reference = np.linspace(0.0, 20.0, 101)  # endpoints at the 50th percentile
    verdict = findings.interpolation_finding(below, reference)
    assert verdict.path_below and not verdict.low_probability_pair and verdict.agrees
    assert verdict.max_excess_db == pytest.approx(-3.0) and verdict.max_alpha == 0.75
    assert verdict.min_excess_db == pytest.approx(-6.0) and verdict.min_alpha == 0.5
    above = _path([10.0, 11.0, 12.0, 11.0, 10.0])
    assert not findings.interpolation_finding(above, reference).agrees
    low = _path([1.0, 1.5, 2.0, 1.5, 1.0])  # endpoints in the lowest third
    verdict = findings.interpolation_finding(low, reference)
    assert verdict.low_probability_pair and not verdict.path_below and verdict.agrees


def test_the_smoothing_finding():  # total variation itself: tests/test_baselines.py
    flat = torch.full((1, 1, 4, 4), 0.3)
    checker = (torch.arange(4)[:, None] + torch.arange(4)[None, :]) % 2
    checker = checker.float()[None, None]
    assert findings.smoothing_finding(checker, flat, "ascent").agrees.tolist() == [True]
    assert findings.smoothing_finding(flat, checker, "ascent").agrees.tolist() == [False]
    assert findings.smoothing_finding(flat, checker, "descent").agrees.tolist() == [True]
    with pytest.raises(ValueError, match="direction"):
        findings.smoothing_finding(flat, checker, "sideways")


def test_one_shot_check_flags_a_wrong_normalisation(gaussian_oracle, oracle_images):
    generator = torch.Generator().manual_seed(0)
    x = oracle_images[:2]
    exact = findings.one_shot_check(
        gaussian_oracle, x, num_steps=40, num_probes=16, generator=generator
    )
    assert not exact.disagrees.any(), (exact.difference_db, exact.tolerance_db)
    np.testing.assert_allclose(exact.tolerance_db, 3 * exact.ode_stderr_db)
    # the one-shot value uses K, the ODE only the scores: a wrong K shows as a disagreement
    shift_db = 5.0
    gaussian_oracle.log_norm_nats += float(dc.units.db_per_dim_to_nats(-shift_db, 16))
    shifted = findings.one_shot_check(
        gaussian_oracle, x, num_steps=40, num_probes=16, generator=generator
    )
    np.testing.assert_allclose(shifted.one_shot_db - exact.one_shot_db, shift_db, rtol=1e-6)
    assert shifted.disagrees.all()
    tolerant = findings.one_shot_check(
        gaussian_oracle,
        x,
        num_steps=40,
        num_probes=16,
        generator=generator,
        test_spread_db=2 * shift_db,
    )
    assert not tolerant.disagrees.any() and (tolerant.tolerance_db == 2 * shift_db).all()


def test_outside_data_range():
    x = torch.full((5, 1, 2, 2), 0.5)
    x[1, 0, 0, 0] = -0.01
    x[2, 0, 1, 1] = 1.5
    x[3, 0, 0, 1], x[3, 0, 1, 0] = -0.003, 1.003  # within one grey level (1/255) of the box
    x[4, 0, 0, 0] = 1.005
    assert findings.outside_data_range(x).tolist() == [False, True, True, False, True]


def test_trained_noise_range_reads_the_floor_and_the_metadata(tiny_model):
    tiny_model.metadata = {"train_config": {"noise": {"t_min": 1e-6, "t_max": 100.0}}}
    assert findings.trained_noise_range(tiny_model) == findings.NoiseRange(1e-6, 100.0)
    tiny_model.metadata["log_norm_t_max"] = 1000.0
    tiny_model.t_min = 1e-5
    assert findings.trained_noise_range(tiny_model) == findings.NoiseRange(1e-5, 1000.0)
    tiny_model.metadata = {}
    tiny_model.t_min = 0.0
    assert findings.trained_noise_range(tiny_model) == findings.NoiseRange(None, None)


def test_noise_level_figure_marks_the_trained_range(tiny_model, tiny_images):
    tiny_model.metadata = {"train_config": {"noise": {"t_min": 1e-4, "t_max": 10.0}}}
    ts = [1e-6, 1e-4, 1e-2, 1.0]
    generator = torch.Generator().manual_seed(0)
    figure = findings.noise_level_figure(
        tiny_model,
        tiny_images[:2],
        ts,
        reference=tiny_images[2:6],
        num_noise=2,
        generator=generator,
    )
    assert figure.logp_db.shape == figure.d_eff.shape == (2, 4)
    assert figure.below_trained.tolist() == [True, False, False, False]
    again = torch.Generator().manual_seed(0)  # the same draws, in the same order
    dc.dimensionality_curves(tiny_model, tiny_images[:2], ts, num_noise=2, generator=again)
    average = dc.dimensionality_curves(
        tiny_model, tiny_images[2:6], ts, num_noise=1, generator=again
    )
    np.testing.assert_allclose(figure.mean_d_eff, average.d_eff_denoiser.mean(0).numpy())
    np.testing.assert_allclose(figure.reference_d_eff, average.d_eff_denoiser.numpy())
    np.testing.assert_array_equal(figure.above_d, figure.d_eff - figure.d > 2 * figure.d_eff_stderr)
    np.testing.assert_allclose(figure.clean_logp_db, dc.logp_db(tiny_model, tiny_images[:2]))
    np.testing.assert_allclose(
        figure.reference_clean_logp_db, dc.logp_db(tiny_model, tiny_images[2:6])
    )
    alone = findings.noise_level_figure(tiny_model, tiny_images[:2], ts, num_noise=1)
    assert alone.reference_d_eff.shape == (0, 4) and np.isnan(alone.mean_d_eff).all()


def _figure(clean: np.ndarray, d_eff: np.ndarray, ts: list[float], t_min: float | None):
    """A Fig. 5 of K images with the given log p (K,) and d_eff (K, T), d = 100, no reference
    images."""
    empty = np.empty((0, len(ts)))
    return findings.NoiseLevelFigure(
        ts=np.array(ts),
        logp_db=np.zeros_like(d_eff),
        d_eff=d_eff,
        d_eff_stderr=np.zeros_like(d_eff),
        clean_logp_db=clean,
        reference_logp_db=empty,
        reference_d_eff=empty,
        reference_clean_logp_db=np.empty(0),
        trained=findings.NoiseRange(t_min, 1e3),
        d=100,
    )


TS = [1e-8, 1e-6, 1e-4, 1e-2, 1.0, 1e3]  # tested: 1e-6, 1e-4, 1e-2 (t_min = 1e-6)


@pytest.mark.parametrize(("sign", "agrees"), [(-1.0, True), (1.0, False)])
def test_dimensionality_finding_ranks_log_p_against_d_eff(sign: float, agrees: bool):
    """d_eff falls with the rank of log p at the tested levels for sign -1 (the paper), rises
    for sign +1; the untested levels (below t_min, above 1e-2) have the opposite order, and at
    t = 1e3 d_eff is 0."""
    rng = np.random.default_rng(3)
    clean = rng.normal(10.0, 3.0, 30)
    rank = stats.rankdata(clean) / 30  # (K,) in (0, 1]
    share = np.array([0.0, 0.2, 0.4, 0.6, 0.9, 1.0])  # (T,)
    tested = np.array([False, True, True, True, False, False])
    direction = np.where(tested, sign, -sign)
    d_eff = 100 * (1 - 0.9 * share * (0.5 - direction * (rank[:, None] - 0.5)))
    d_eff[:, -1] = 0.0
    d_eff[:, 0] = 100.0 - sign * rank  # the untested smallest level: the opposite order
    finding = findings.dimensionality_finding(_figure(clean, d_eff, TS, 1e-6))
    np.testing.assert_array_equal(finding.ts, [1e-6, 1e-4, 1e-2])
    expected = [stats.spearmanr(clean, d_eff[:, j]).statistic for j in (1, 2, 3)]
    np.testing.assert_allclose(finding.spearman, expected)
    np.testing.assert_allclose(finding.spearman, sign)
    assert finding.agrees is agrees and bool(finding.significant.all()) is agrees
    assert finding.num_images == 30
    assert finding.t_smallest == 1e-8 and finding.t_largest == 1e3
    assert finding.d_eff_fraction_smallest == pytest.approx(1.0, abs=0.01)
    assert finding.d_eff_fraction_largest == 0.0


def test_dimensionality_finding_needs_most_levels_and_uses_reference_images():
    rng = np.random.default_rng(4)
    clean = rng.normal(size=40)
    d_eff = np.tile(100.0 - clean[:, None], (1, len(TS)))  # perfectly anti-correlated
    d_eff[:, 2] = rng.normal(size=40)  # unrelated at 1e-4
    two_of_three = findings.dimensionality_finding(_figure(clean, d_eff, TS, 1e-6))
    assert two_of_three.agrees and two_of_three.significant.tolist() == [True, False, True]
    d_eff[:, 1] = 100.0 + clean  # and reversed at 1e-6: one of three
    one_of_three = findings.dimensionality_finding(_figure(clean, d_eff, TS, 1e-6))
    assert not one_of_three.agrees and one_of_three.significant.tolist() == [False, False, True]
    everything = findings.dimensionality_finding(_figure(clean, d_eff, TS, None))
    assert everything.ts.tolist() == [1e-8, 1e-6, 1e-4, 1e-2]  # no t_min recorded: from 0
    # two curves and 38 reference images rank together, as 40 curves do
    figure = _figure(clean[:2], d_eff[:2], TS, 1e-6)
    split = dataclasses.replace(
        figure,
        reference_d_eff=d_eff[2:],
        reference_logp_db=np.zeros_like(d_eff[2:]),
        reference_clean_logp_db=clean[2:],
    )
    together = findings.dimensionality_finding(split)
    np.testing.assert_allclose(together.spearman, one_of_three.spearman)
    assert together.num_images == 40
    with pytest.raises(ValueError, match="at least 3 images"):
        findings.dimensionality_finding(figure)
    with pytest.raises(ValueError, match="no noise level"):
        findings.dimensionality_finding(_figure(clean, d_eff, TS, 0.1))


def test_reference_images_are_the_constant_and_uniform_noise(tiny_model):
    refs = findings.reference_images(tiny_model, generator=torch.Generator().manual_seed(0))
    assert refs.labels == ("constant 0.5", "uniform noise")
    assert (refs.images[0] == 0.5).all() and 0 <= refs.images[1].min() < refs.images[1].max() <= 1
    np.testing.assert_allclose(refs.logp_db, dc.logp_db(tiny_model, refs.images).numpy())


def test_one_shot_check_marks_a_diverging_ode_and_keeps_the_others(gaussian_oracle, oracle_images):
    x = oracle_images[:3].clone()
    x[1] = 1e307  # finite, but the ODE's trajectory grows past float64's range
    check = findings.one_shot_check(
        gaussian_oracle, x, num_steps=8, generator=torch.Generator().manual_seed(0)
    )
    assert np.isnan(check.ode_db[1]) and np.isfinite(check.ode_db[[0, 2]]).all()
    assert check.disagrees[1] and check.outside[1]
    alone = findings.one_shot_check(
        gaussian_oracle, x[[0]], num_steps=8, generator=torch.Generator().manual_seed(0)
    )
    assert np.isfinite(alone.ode_db).all()
