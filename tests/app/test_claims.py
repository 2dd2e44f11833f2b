"""Issue 13 on the bundled models: every agreement line follows the test it reports (computed here
independently), the ODE check flags what it should, pictures and pickers stay in sync, work moves
between pages. Heavy computations on tiny settings; the ODE checks on the tiny model except one."""

from pathlib import Path

import numpy as np
import pytest
import torch
import upload_samples as samples
from app_helpers import ROOT, assert_ok, metric, new_app, plotly_specs
from scipy import stats
from streamlit.testing.v1 import AppTest

import dsm_core as dc
from app import components, loading
from dsm_core.analysis import (
    contrast_finding,
    convergence_finding,
    dequantized_nll_bits_per_dim,
    gumbel_finding,
    interpolation_finding,
    interpolation_logp_db,
    iter_logp_ascent,
    noise_level_figure,
    one_shot_check,
    one_shot_spread,
    read_generalization_runs,
    sampling_score_evaluations,
    smoothing_finding,
    sparsity_finding,
    trained_noise_range,
)
from dsm_core.images import pixels_to_tensor, tensor_to_pixels
from dsm_core.packaging import load_heldout

DEFAULT = ROOT / "checkpoints" / "default"
FASHION = ROOT / "checkpoints" / "fashion-mnist"
needs_bundled = pytest.mark.skipif(
    not (DEFAULT / "model.safetensors").is_file() or not (FASHION / "model.safetensors").is_file(),
    reason="the bundled models are not packaged",
)


def _verdicts(app: AppTest) -> list[str]:
    return [m.value for m in app.markdown if "with the paper." in m.value]


def _says(line: str, agrees: bool) -> bool:
    """The line says "agrees" exactly when ``agrees`` ("disagrees" contains "agrees")."""
    says_disagrees = "disagrees with the paper." in line
    says_agrees = "agrees with the paper." in line.replace("disagrees with the paper.", "")
    return says_agrees is agrees and says_disagrees is (not agrees)


def _open(monkeypatch: pytest.MonkeyPatch, folder: Path) -> AppTest:
    monkeypatch.setenv("DSM_MODEL", str(folder))
    monkeypatch.delenv("DSM_MODEL_REVISION", raising=False)
    monkeypatch.setenv("DSM_TORCH_THREADS", "1")
    return new_app()


@pytest.fixture(scope="module")
def default_model() -> dc.EnergyModel:
    return dc.load_model(DEFAULT)


def _heldout(folder: Path, model) -> tuple:
    heldout = load_heldout(folder, model.image_shape)
    return heldout, pixels_to_tensor(heldout.images)


def _library_check(model, folder: Path, images: torch.Tensor):
    """What the app's ODE-check panel should show for images: the library's check, with the
    tolerance from the first SPREAD_NUM_IMAGES test images, and its verdict words per image."""
    _, x = _heldout(folder, model)
    spread = one_shot_spread(
        model, x[: loading.SPREAD_NUM_IMAGES], generator=torch.Generator().manual_seed(0)
    )
    check = one_shot_check(
        model, images, test_spread_db=spread, generator=torch.Generator().manual_seed(0)
    )
    words = [
        "ODE diverged" if not np.isfinite(o) else "disagree" if d else "agree"
        for o, d in zip(check.ode_db, check.disagrees, strict=True)
    ]
    return check, words


# ------------------------------------------------------------------------ item 1: the claims


@needs_bundled
@pytest.mark.parametrize("folder", [DEFAULT, FASHION], ids=["default", "fashion"])
def test_explore_gumbel_line_follows_the_ks_and_normal_tests(monkeypatch, folder: Path):
    app = _open(monkeypatch, folder)
    model = dc.load_model(folder)
    heldout = load_heldout(folder, model.image_shape)
    finding = gumbel_finding(dc.fit_gumbel(heldout.logp_db))
    (line,) = _verdicts(app)
    assert _says(line, finding.agrees), line
    assert f"{finding.ks_statistic:.3f}" in line and f"{finding.ks_critical:.3f}" in line
    assert ("not well fitted by a Gumbel" in line) is (not finding.agrees)
    intro = app.markdown[0].value  # the paper's finding, attributed to the paper
    assert intro.index("**The paper**") < intro.index("well fitted by a **Gumbel**")
    histogram, qq = plotly_specs(app)[:2]
    np.testing.assert_allclose(qq["data"][0]["y"], np.sort(heldout.logp_db))
    refs = dc.analysis.reference_images(model, generator=torch.Generator().manual_seed(0))
    markers = {t["name"]: t["customdata"][0] for t in histogram["data"] if "customdata" in t}
    assert markers["constant 0.5"] == pytest.approx(refs.logp_db[0], abs=1e-6)
    assert markers["uniform noise"] == pytest.approx(refs.logp_db[1], abs=1e-6)
    assert len(histogram["layout"]["images"]) == 5 + 2  # Fig. 3 thumbnails at their log p
    # the held-out count and the galleries' count are told apart
    assert metric(app, "held-out log p values") == f"{heldout.logp_db.size:,}"
    captions = " ".join(c.value for c in app.caption)
    assert f"browse the {heldout.num_images:,} test images packaged" in captions
    # the sidebar names the bundled model as bundled
    sidebar = " ".join(c.value for c in app.sidebar.caption)
    assert ("bundled default" if folder == DEFAULT else "bundled fashion-mnist") in sidebar
    assert "local folder" not in sidebar


@needs_bundled
def test_affine_line_is_the_sign_of_the_slope_on_b_half(monkeypatch, default_model):
    app = _open(monkeypatch, DEFAULT)
    app.switch_page("views/affine.py").run()
    assert_ok(app)
    heldout, x = _heldout(DEFAULT, default_model)
    finding = contrast_finding(default_model, x[:1])
    (line,) = _verdicts(app)
    assert _says(line, bool(finding.agrees[0])), line
    assert f"{finding.slope_db[0]:+.2f}" in line and "b = 0.5" in line
    # a = 1, b = 0: no delta (the red "-0.00" of the issue)
    (current,) = [m for m in app.metric if m.label == "log p(a·x + b) [dB/dim]"]
    assert not current.proto.delta
    # the line plots score only images inside [0, 1]
    app.slider(key="affine_b").set_value(0.3).run()
    specs = {s["layout"]["title"]["text"]: s for s in plotly_specs(app)}
    along_a = specs["vary contrast (b = 0.30)"]["data"][0]
    a_values = np.array(along_a["x"])
    inside = dc.analysis.affine_in_range(x[:1], a_values, [0.3])[0, :, 0].numpy()
    assert not inside.all() and inside.any()
    y = np.array([np.nan if v is None else v for v in along_a["y"]], dtype=np.float64)
    assert np.isnan(y[~inside]).all() and np.isfinite(y[inside]).all()
    expected = dc.analysis.contrast_slice_logp_db(default_model, x[:1], a_values[inside], 0.3)
    np.testing.assert_allclose(y[inside], expected[0].numpy(), rtol=1e-5)


@needs_bundled
def test_interpolation_line_and_caption_follow_the_path(monkeypatch, default_model):
    app = _open(monkeypatch, DEFAULT)
    app.switch_page("views/interpolate.py").run()
    assert_ok(app)
    heldout, x = _heldout(DEFAULT, default_model)
    second = app.number_input(key="interp_b").value
    path = interpolation_logp_db(default_model, x[:1], x[second : second + 1], 21)
    finding = interpolation_finding(path, heldout.logp_db)
    (line,) = _verdicts(app)
    assert _says(line, finding.agrees), line
    assert ("below" if finding.path_below else "above") in line
    captions = " ".join(c.value for c in app.caption)
    assert "at α = 0.00" not in captions and "at α = 1.00" not in captions  # interior only
    if finding.max_excess_db <= 0:
        assert "lies below the chord at every 0 < α < 1" in captions
        assert f"{finding.min_excess_db:+.2f} dB/dim at α = {finding.min_alpha:.2f}" in captions


@needs_bundled
def test_probe_sparsity_line_and_dequantized_bound(monkeypatch, default_model):
    app = _open(monkeypatch, DEFAULT)
    app.switch_page("views/probe.py").run()
    assert_ok(app)
    heldout, x = _heldout(DEFAULT, default_model)
    ratios = dc.participation_ratio(x).double().numpy()
    finding = sparsity_finding(ratios, heldout.image_logp_db)
    (line,) = _verdicts(app)
    assert _says(line, finding.agrees) and f"{finding.spearman:+.2f}" in line, line
    scatter = next(s for s in plotly_specs(app) if "sparsity" in s["layout"]["title"]["text"])
    np.testing.assert_allclose(scatter["data"][0]["x"], ratios, rtol=1e-6)
    bound = dequantized_nll_bits_per_dim(
        default_model,
        torch.from_numpy(heldout.images[:1].astype(np.int64)),
        generator=torch.Generator().manual_seed(0),
    )
    assert metric(app, "NLL of the 8-bit image ≤ [bits/dim]") == f"{float(bound[0]):.3f}"


def _probe_noise_curves(monkeypatch, folder: Path, model, average: int):
    """Run the Probe page's noise-level curves (5 levels, 2 draws, ``average`` test images) and
    compute the same figure here: (app, the images drawn (4, ...), the test images x, t grid,
    figure)."""
    app = _open(monkeypatch, folder)
    app.switch_page("views/probe.py").run()
    app.slider(key="probe_curve_levels").set_value(5).run()
    app.slider(key="probe_curve_draws").set_value(2).run()
    app.slider(key="probe_curve_average").set_value(average).run()
    app.button(key="probe_curve_run").click().run()
    assert_ok(app)
    heldout, x = _heldout(folder, model)
    examples = [int(v) for v in dc.packaging.rank_indices(heldout.image_logp_db, 3, "even")]
    images = torch.cat([x[:1], x[examples]])
    ts = np.logspace(-8, 3, 5)
    figure = noise_level_figure(
        model,
        images,
        torch.as_tensor(ts),
        reference=x[:average],
        num_noise=2,
        generator=torch.Generator().manual_seed(0),
    )
    return app, images, x, ts, figure


@needs_bundled
def test_probe_noise_levels_mark_the_trained_range(monkeypatch, default_model):
    app, _, _, _, figure = _probe_noise_curves(monkeypatch, DEFAULT, default_model, average=4)
    trained = trained_noise_range(default_model)
    assert trained.t_min is not None and trained.t_max is not None
    specs = [s for s in plotly_specs(app) if "t (per pixel)" in str(s["layout"]["xaxis"])]
    deff = next(s for s in specs if s["layout"]["title"]["text"].startswith("effective dim"))
    np.testing.assert_allclose(deff["data"][0]["y"], figure.d_eff[0], rtol=1e-6)
    np.testing.assert_allclose(deff["data"][4]["y"], figure.mean_d_eff, rtol=1e-6)
    shapes = deff["layout"]["shapes"]
    assert any(s["type"] == "rect" and s["x1"] == trained.t_min for s in shapes)
    assert {s["x0"] for s in shapes if s["type"] == "line"} >= {trained.t_min, trained.t_max}
    captions = " ".join(c.value for c in app.caption)
    assert f"t_min = {trained.t_min:.0e}" in captions
    assert (f"d_eff > d = {figure.d} beyond 2 standard errors" in captions) is bool(
        figure.above_d.any()
    )


@needs_bundled
@pytest.mark.parametrize("folder", [DEFAULT, FASHION], ids=["default", "fashion"])
def test_probe_dimensionality_line_follows_the_rank_test(monkeypatch, folder: Path):
    """Fig. 5's line: the paper's finding quoted as the paper's, then Spearman's rank correlation
    of log p with d_eff at the trained levels t <= 1e-2, computed here from the figure's arrays."""
    model = dc.load_model(folder)
    app, images, x, ts, figure = _probe_noise_curves(monkeypatch, folder, model, average=6)
    logp = dc.logp_db(model, torch.cat([images, x[:6]])).double().numpy()
    d_eff = np.concatenate([figure.d_eff, figure.reference_d_eff])  # (10, T)
    t_min = trained_noise_range(model).t_min
    tested = [j for j, t in enumerate(ts) if t_min <= t <= 1e-2]
    assert len(tested) == 2
    results = [stats.spearmanr(logp, d_eff[:, j]) for j in tested]
    significant = sum(r.statistic < 0 and r.pvalue < 0.05 for r in results)
    rhos = [r.statistic for r in results]
    fractions = d_eff.mean(axis=0) / model.d
    (line,) = [v for v in _verdicts(app) if "d_eff" in v]
    assert _says(line, bool(2 * significant > len(tested))), line
    assert f"at {significant} of the {len(tested)} levels" in line
    assert f"ρ from {min(rhos):+.2f} to {max(rhos):+.2f}" in line
    assert "Over the 10 images (the 4 curves and the 6 test images" in line
    assert f"d_eff / d is {fractions[0]:.2f} at t = 1e-08" in line
    assert f"and {fractions[-1]:.2f} at t = 1e+03" in line
    intro = next(m.value for m in app.markdown if "Fig. 5" in m.value)
    assert intro.index("**The paper**") < intro.index("higher-probability images have lower-")


@needs_bundled
def test_generalization_page_line_follows_the_stored_runs(monkeypatch):
    app = _open(monkeypatch, FASHION)
    app.switch_page("views/generalization.py").run()
    assert_ok(app)
    runs = read_generalization_runs(ROOT / "docs" / "results" / "fashion_generalization")
    finding = convergence_finding(runs)
    (line,) = _verdicts(app)
    assert _says(line, finding.agrees), line
    app.text_input(key="gen_folder_a").set_value(str(FASHION)).run()
    app.text_input(key="gen_folder_b").set_value(str(FASHION)).run()
    app.button(key="gen_run").click().run()
    assert_ok(app)
    captions = " ".join(c.value for c in app.caption)
    assert "mean |Δ| 0.00 dB/dim" in captions  # a model against itself


# ------------------------------------------------------------- item 2: the one-shot check


@needs_bundled
def test_ascent_line_and_ode_check_on_the_default_model(monkeypatch, default_model):
    app = _open(monkeypatch, DEFAULT)
    app.switch_page("views/ascent.py").run()
    app.slider(key="ascent_steps").set_value(10).run()
    app.button(key="ascent_run").click().run()
    assert_ok(app)
    heldout, x = _heldout(DEFAULT, default_model)
    step = dc.analysis.default_step_size(default_model)
    best, best_value = None, -np.inf
    for item in iter_logp_ascent(default_model, x[:1], num_steps=10, step_size=step):
        if float(item.logp_db[0]) > best_value:
            best, best_value = tensor_to_pixels(item.image[0]), float(item.logp_db[0])
    best_x = pixels_to_tensor(best[None])
    smooth = smoothing_finding(x[:1], best_x, "ascent")
    (line,) = _verdicts(app)
    assert _says(line, bool(smooth.agrees[0])), line
    assert f"{smooth.start_tv[0]:.4f} to {smooth.result_tv[0]:.4f}" in line
    app.button(key="ascent_ode_run").click().run()
    assert_ok(app)
    check, _ = _library_check(default_model, DEFAULT, torch.cat([x[:1], best_x]))
    table = next(d.value for d in app.dataframe if "one-shot − ODE" in d.value.columns)
    np.testing.assert_allclose(table["ODE (dB/dim)"], check.ode_db, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(table["tolerance"], check.tolerance_db, rtol=1e-5, atol=1e-4)
    assert list(table["check"]) == ["disagree" if d else "agree" for d in check.disagrees]
    assert bool(app.warning) is bool(check.disagrees.any())


def test_testset_reference_points_get_the_ode_check(app: AppTest, tiny_model_dir, tiny_loaded):
    # Fig. 3's constant and uniform-noise images: their one-shot values with the ODE's beside
    app.button(key="testset_references_ode_run").click().run()
    assert_ok(app)
    references = dc.analysis.reference_images(
        tiny_loaded, generator=torch.Generator().manual_seed(0)
    )
    check, words = _library_check(tiny_loaded, tiny_model_dir, references.images)
    table = next(d.value for d in app.dataframe if "one-shot − ODE" in d.value.columns)
    assert list(table["image"]) == ["constant 0.5", "uniform noise"]
    np.testing.assert_allclose(table["one-shot (dB/dim)"], references.logp_db, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(table["ODE (dB/dim)"], check.ode_db, rtol=1e-5, atol=1e-4)
    assert list(table["check"]) == words


def test_sample_ode_check_flags_and_cost_warning(app: AppTest, tiny_model_dir, tiny_loaded):
    app.switch_page("views/sample.py").run()
    app.slider(key="sample_steps").set_value(10).run()
    app.slider(key="sample_count").set_value(1).run()
    evaluations = sampling_score_evaluations("ancestral", 10)
    assert f"{evaluations:,} score evaluations of 1 image," in " ".join(
        c.value for c in app.caption
    )
    app.button(key="sample_run").click().run()
    app.button(key="sample_ode_run").click().run()
    assert_ok(app)
    images = dc.sample(tiny_loaded, 1, num_steps=10, generator=torch.Generator().manual_seed(0))
    check, words = _library_check(tiny_loaded, tiny_model_dir, images)
    table = next(d.value for d in app.dataframe if "one-shot − ODE" in d.value.columns)
    assert list(table["image"]) == ["s0"]
    assert list(table["check"]) == words
    assert list(table["pixels outside [0, 1] (by > 1/255)"]) == check.outside.tolist()
    np.testing.assert_allclose(
        table["one-shot − ODE"].astype(float), check.difference_db, rtol=1e-4, atol=1e-4
    )
    # Langevin: ten updates per level; the page says what a long run costs before it starts
    app.selectbox(key="sample_method").set_value("langevin").run()
    app.slider(key="sample_steps").set_value(1000).run()
    app.slider(key="sample_count").set_value(16).run()
    assert_ok(app)
    langevin = sampling_score_evaluations("langevin", 1000)
    text = " ".join(w.value for w in app.warning) + " ".join(c.value for c in app.caption)
    assert f"{langevin:,} score evaluations of 16 images" in text
    seconds = float(text.split("about ")[1].split(" s on")[0].replace(",", ""))
    assert bool([w for w in app.warning if "take a while" in w.value]) is (seconds > 20.0)


# ------------------------------------------------------------ items 5, 6: moving, syncing


def test_picker_follows_the_image_chosen_on_any_page(app: AppTest):
    app.switch_page("views/affine.py").run()  # draws its picker on image 0
    assert app.number_input(key="affine_index").value == 0
    app.switch_page("views/probe.py").run()
    app.number_input(key="probe_index").set_value(5).run()
    app.switch_page("views/affine.py").run()
    assert_ok(app)
    assert app.number_input(key="affine_index").value == 5
    app.number_input(key="affine_index").set_value(3).run()
    app.switch_page("views/ascent.py").run()
    assert app.number_input(key="ascent_index").value == 3
    app.switch_page("views/probe.py").run()
    assert app.number_input(key="probe_index").value == 3


def test_probe_this_moves_an_ascent_result_to_the_probe_page(app: AppTest, tiny_loaded):
    app.switch_page("views/ascent.py").run()
    app.slider(key="ascent_steps").set_value(10).run()
    app.button(key="ascent_run").click().run()
    app.button(key="ascent_probe").click().run()
    assert_ok(app)
    assert [t.value for t in app.title] == ["Probe an image"]
    captions = " ".join(c.value for c in app.caption)
    assert "sent from *Gradient ascent / descent*" in captions
    best = app.session_state[components.UPLOAD_BYTES]
    _, fitted = dc.images.prepare_upload(best, "best.png", tiny_loaded.image_shape)
    assert (
        metric(app, "log p [dB/dim]")
        == f"{float(dc.logp_db(tiny_loaded, fitted.tensor())[0]):+.2f}"
    )
    app.switch_page("views/affine.py").run()
    assert app.radio(key="affine_from").value == "my upload"  # it is the current image


def test_estimators_standard_error_with_one_probe_and_points(app: AppTest):
    app.switch_page("views/estimators.py").run()
    app.slider(key="est_ode_steps").set_value(5).run()
    app.slider(key="est_ode_probes").set_value(1).run()
    app.slider(key="est_mse_points").set_value(9).run()
    app.slider(key="est_mse_noise").set_value(2).run()
    app.button(key="est_run").click().run()
    assert_ok(app)
    table = app.dataframe[0].value
    column = list(table["± s.e. (dB/dim)"])
    assert column[0] == "— (deterministic)" and column[1].startswith("n/a")
    assert None not in column and "None" not in column
    (points,) = [s for s in plotly_specs(app) if s["data"][0]["type"] == "scatter"]
    assert points["data"][0]["mode"] == "markers+text"


def test_tiny_upload_is_enlarged_by_pixel_repetition(app: AppTest):
    app.switch_page("views/probe.py").run()
    app.radio(key="probe_source").set_value("Upload").run()
    data = samples.png_rgb(20, 30)
    app.file_uploader(key="probe_upload").set_value(("tiny.png", data, "image/png")).run()
    assert_ok(app)
    pixels = dc.images.decode_upload(data, "tiny.png").pixels
    shown = components.preview(pixels, 256)
    assert shown.shape[:2] == (20 * 8, 30 * 8)  # 256 // 30 = 8: nearest neighbour, sharp
    np.testing.assert_array_equal(shown[::8, ::8], pixels.transpose(1, 2, 0))
    assert [i for i in app.image if "as uploaded (30×20)" in i.captions]
    large = np.zeros((3, 600, 900), dtype=np.uint8)
    assert components.preview(large, 256).shape[:2] == (171, 256)  # reduced, not enlarged


# ------------------------------------------------------------------ item 4: the log p map


@needs_bundled
def test_log_p_map_of_a_large_upload_on_the_default_model(monkeypatch, default_model):
    app = _open(monkeypatch, DEFAULT)
    app.switch_page("views/probe.py").run()
    app.radio(key="probe_source").set_value("Upload").run()
    rgb = np.random.default_rng(3).integers(0, 256, (300, 420, 3), dtype=np.uint8)
    rgb[:, :200] = 128  # a flat half and a noisy half: the map must tell them apart
    data = samples.encode(samples.Image.fromarray(rgb), "PNG")
    app.file_uploader(key="probe_upload").set_value(("big.png", data, "image/png")).run()
    app.button(key="probe_map_run").click().run()
    assert_ok(app)
    tiled = dc.images.decode_tiles(data, "big.png", default_model.image_shape)
    expected = dc.analysis.logp_map(default_model, tiled)
    (spec,) = [s for s in plotly_specs(app) if "native resolution" in s["layout"]["title"]["text"]]
    heatmap = next(t for t in spec["data"] if t["type"] == "heatmap")
    np.testing.assert_allclose(np.array(heatmap["z"]), expected.logp_db, rtol=1e-5)
    best = int(expected.order[0])
    assert (
        tiled.lefts[best] + 32 <= 200 + 32
    )  # the most probable tile lies in (or at) the flat half
    captions = " ".join(c.value for c in app.caption)
    assert f"median {expected.median_db:+.2f}" in captions
    logp = metric(app, "log p [dB/dim]")
    assert f"the number at the top of the page ({logp}) is of the whole image" in captions
    app.button(key="probe_map_probe_most").click().run()  # the best tile becomes the image
    assert_ok(app)
    assert metric(app, "log p [dB/dim]") == f"{expected.logp_db.ravel()[best]:+.2f}"
