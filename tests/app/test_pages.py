"""One AppTest per page against a tiny random-weight model: widgets by key, numbers = library's."""

import json

import numpy as np
import pytest
import torch
import upload_samples as samples
from app_helpers import assert_ok, heldout_images, metric, plotly_specs
from streamlit.testing.v1 import AppTest

import dsm_core as dc
from dsm_core import units
from dsm_core.analysis import (
    affine_logp_db,
    interpolation_logp_db,
    iter_logp_ascent,
    max_curvature,
)
from dsm_core.images import pixels_to_tensor, prepare_upload, tensor_to_pixels

LOGP = "log p [dB/dim]"


def _x(folder, position: int) -> torch.Tensor:
    return pixels_to_tensor(heldout_images(folder)[position : position + 1])


def test_testset_page_histogram_gumbel_and_galleries(app: AppTest, tiny_model_dir, tiny_loaded):
    with np.load(tiny_model_dir / "test_logp_db.npz") as archive:
        logp = archive["logp_db"]
    assert metric(app, "held-out log p values") == str(logp.size)
    assert metric(app, "entropy [dB/dim]") == f"{-logp.mean():.2f}"
    gumbel = dc.fit_gumbel(logp)
    assert metric(app, "Gumbel location [dB/dim]") == f"{gumbel.loc:+.2f}"
    metrics = json.loads((tiny_model_dir / "metrics.json").read_text())
    bound = metrics["nll_bits_per_dim_dequantized"]
    (nll,) = [m for m in app.metric if m.label == "test NLL [bits/dim]"]
    assert "dequantized bound of the model card" in nll.proto.help
    assert f"is {bound:.3f} bits/dim" in nll.proto.help
    spec, qq = plotly_specs(app)
    kinds = [(trace["type"], trace.get("name")) for trace in spec["data"]]
    assert kinds[:2] == [("histogram", "test images"), ("scatter", "Gumbel fit")]
    assert [k[1] for k in kinds[2:]] == ["constant 0.5", "uniform noise"]  # Fig. 3's references
    np.testing.assert_allclose(qq["data"][0]["y"], np.sort(logp))
    assert spec["data"][0]["histnorm"] == "probability density"
    np.testing.assert_allclose(spec["data"][0]["x"], logp)
    np.testing.assert_allclose(
        spec["data"][1]["y"], gumbel.pdf(np.array(spec["data"][1]["x"])), rtol=1e-6
    )
    app.toggle(key="testset_log_y").set_value(True).run()
    app.toggle(key="testset_normal").set_value(True).run()
    assert_ok(app)
    spec = plotly_specs(app)[0]
    assert spec["layout"]["yaxis"]["type"] == "log"
    assert [t.get("name") for t in spec["data"]][:3] == ["test images", "Gumbel fit", "Normal fit"]
    # galleries: the highest-log-p image first; "Probe" opens it on the Probe page
    top = int(np.argmax(logp))
    app.button(key=f"testset_probe_highest_{top}").click().run()
    assert_ok(app)
    assert [t.value for t in app.title] == ["Probe an image"]
    assert app.session_state["image_index"] == top
    assert metric(app, LOGP) == f"{logp[top]:+.2f}"


def test_probe_test_image_numbers_match_the_library(app: AppTest, tiny_model_dir, tiny_loaded):
    app.switch_page("views/probe.py").run()
    app.number_input(key="probe_index").set_value(5).run()
    assert_ok(app)
    x = _x(tiny_model_dir, 5)
    logp = float(dc.logp_db(tiny_loaded, x)[0])
    energy = float(dc.energy_nats(tiny_loaded, x)[0])
    with np.load(tiny_model_dir / "test_logp_db.npz") as archive:
        reference = archive["logp_db"]
    assert metric(app, LOGP) == f"{logp:+.2f}"
    nll = units.discrete_nll_bits_per_dim(energy, tiny_loaded.d)
    assert metric(app, "density at the pixels + 8 [bits/dim]") == f"{nll:.3f}"
    assert metric(app, "log p [nats]") == f"{-energy:,.1f}"
    percentile = float(dc.percentile_of(logp, reference))
    assert metric(app, "test-set percentile") == f"{percentile:.1f} %"
    histogram = plotly_specs(app)[0]
    names = [t.get("name") for t in histogram["data"]]
    assert names == ["test images", "Gumbel fit", "this image"]
    assert histogram["data"][2]["x"] == pytest.approx([logp, logp], abs=1e-9)
    app.button(key="probe_next").click().run()
    assert app.number_input(key="probe_index").value == 6


def test_probe_upload_png_matches_the_library(app: AppTest, tiny_loaded):
    app.switch_page("views/probe.py").run()
    app.radio(key="probe_source").set_value("Upload").run()
    data = samples.png_rgb(48, 64)
    app.file_uploader(key="probe_upload").set_value(("photo.png", data, "image/png")).run()
    assert_ok(app)
    _, fitted = prepare_upload(data, "photo.png", tiny_loaded.image_shape)
    logp = float(dc.logp_db(tiny_loaded, fitted.tensor())[0])
    assert metric(app, LOGP) == f"{logp:+.2f}"
    captions = " ".join(c.value for c in app.caption)
    assert "resized to 16x16" in captions and "grayscale" in captions
    app.radio(key="upload_fit").set_value("crop").run()
    _, cropped = prepare_upload(data, "photo.png", tiny_loaded.image_shape, fit="crop")
    cropped_db = float(dc.logp_db(tiny_loaded, cropped.tensor())[0])
    assert metric(app, LOGP) == f"{cropped_db:+.2f}"
    # the upload is used by the other pages too
    app.switch_page("views/affine.py").run()
    assert_ok(app)
    assert app.radio(key="affine_from").value == "my upload"


def test_probe_denoise_score_and_noise_curves(app: AppTest, tiny_model_dir, tiny_loaded):
    app.switch_page("views/probe.py").run()
    app.slider(key="probe_psnr").set_value(10).run()
    assert_ok(app)
    example = dc.explore.denoising_example(
        tiny_loaded, _x(tiny_model_dir, 0), 10.0, generator=torch.Generator().manual_seed(0)
    )
    captions = [caption for image in app.image for caption in image.captions]
    assert f"denoised D(y, t): {example.psnr_out_db[0]:.1f} dB" in captions
    app.select_slider(key="probe_score_level").set_value("t = 0 (clean)").run()
    score_spec = plotly_specs(app)[1]
    assert score_spec["data"][0]["type"] == "heatmap"
    expected = dc.explore.logp_gradient(tiny_loaded, _x(tiny_model_dir, 0))[0, 0].numpy()
    np.testing.assert_allclose(score_spec["data"][0]["z"], expected, rtol=1e-5, atol=1e-6)
    app.slider(key="probe_curve_levels").set_value(5).run()
    app.slider(key="probe_curve_draws").set_value(2).run()
    app.button(key="probe_curve_run").click().run()
    assert_ok(app)
    specs = plotly_specs(app)
    titles = [s["layout"]["title"]["text"] for s in specs]
    assert "effective dimensionality d_eff (eq. 11)" in titles
    assert any("effective log p" in t for t in titles)


def test_affine_page(app: AppTest, tiny_model_dir, tiny_loaded):
    app.switch_page("views/affine.py").run()
    assert_ok(app)
    app.slider(key="affine_a").set_value(0.5).run()
    app.slider(key="affine_b").set_value(0.25).run()
    assert_ok(app)
    x = _x(tiny_model_dir, 0)
    value = float(affine_logp_db(tiny_loaded, x, [0.5], [0.25])[0, 0, 0])
    assert metric(app, "log p(a·x + b) [dB/dim]") == f"{value:+.2f}"
    heatmap = next(s for s in plotly_specs(app) if s["data"][0]["type"] == "heatmap")
    assert heatmap["data"][1]["x"] == [0.25] and heatmap["data"][1]["y"] == [0.5]
    grid = np.array(heatmap["data"][0]["z"], dtype=np.float64)  # None -> nan above a + b = 1
    expected = affine_logp_db(tiny_loaded, x, np.linspace(0, 1, 21), np.linspace(0, 1, 21))[0]
    mask = np.isfinite(grid)
    assert mask.sum() == 231  # a + b <= 1 on the 21 x 21 grid
    np.testing.assert_allclose(grid[mask], expected.numpy()[mask], rtol=1e-5)


def test_interpolate_page(app: AppTest, tiny_model_dir, tiny_loaded):
    app.switch_page("views/interpolate.py").run()
    app.number_input(key="interp_b").set_value(7).run()
    app.slider(key="interp_alpha").set_value(0.3).run()
    assert_ok(app)
    x0, x1 = _x(tiny_model_dir, 0), _x(tiny_model_dir, 7)
    blend = float(dc.logp_db(tiny_loaded, 0.7 * x0 + 0.3 * x1)[0])
    assert metric(app, "log p of the blend [dB/dim]") == f"{blend:+.2f}"
    (spec,) = plotly_specs(app)
    path = interpolation_logp_db(tiny_loaded, x0, x1, 21)
    np.testing.assert_allclose(spec["data"][0]["y"], path.path_logp_db[0].numpy(), rtol=1e-5)
    np.testing.assert_allclose(spec["data"][1]["y"], path.chord_logp_db[0].numpy(), rtol=1e-5)
    assert spec["data"][2]["x"] == [0.3]


def test_ascent_page(app: AppTest, tiny_model_dir, tiny_loaded):
    app.switch_page("views/ascent.py").run()
    app.slider(key="ascent_steps").set_value(20).run()
    app.button(key="ascent_run").click().run()
    assert_ok(app)
    x = _x(tiny_model_dir, 0)
    step = dc.analysis.default_step_size(tiny_loaded)
    items = list(iter_logp_ascent(tiny_loaded, x, num_steps=20, step_size=step))
    values = [float(item.logp_db[0]) for item in items]
    assert metric(app, "gain [dB/dim]") == f"{max(values) - values[0]:+.2f}"
    best = pixels_to_tensor(tensor_to_pixels(items[int(np.argmax(values))].image[0])[None])
    curvature = max_curvature(
        tiny_loaded, torch.cat([x, best]), num_iters=30, generator=torch.Generator().manual_seed(0)
    )
    notes = [c.value for c in app.caption] + [i.value for i in app.info]
    (note,) = [n for n in notes if n.startswith("Step stability")]
    ratio = step * curvature
    assert f"η·λ_max = {ratio[0]:.2f} at the start and {ratio[1]:.2f} at the best" in note
    assert bool(app.info) is bool(ratio.max() > 2)
    assert ("A negative value means" in note) is bool(ratio.min() < 0)
    assert any(s["layout"]["title"]["text"] == "log p during the run" for s in plotly_specs(app))
    app.radio(key="ascent_direction").set_value("descent").run()
    app.button(key="ascent_run").click().run()
    assert_ok(app)
    assert float(metric(app, "change [dB/dim]")) <= 0.0
    notes = [c.value for c in app.caption] + [i.value for i in app.info]
    assert not any(n.startswith("Step stability") for n in notes)  # ascent only


def test_estimators_page(app: AppTest, tiny_model_dir, tiny_loaded):
    app.switch_page("views/estimators.py").run()
    app.slider(key="est_ode_steps").set_value(5).run()
    app.slider(key="est_mse_points").set_value(9).run()
    app.slider(key="est_mse_noise").set_value(1).run()
    app.checkbox(key="est_sde").check().run()
    app.slider(key="est_sde_steps").set_value(50).run()
    app.slider(key="est_sde_paths").set_value(1).run()
    app.button(key="est_run").click().run()
    assert_ok(app)
    table = app.dataframe[0].value
    assert list(table["estimator"]) == [
        "one-shot energy",
        "probability-flow ODE",
        "MSE bound",
        "SDE (Itô)",
    ]
    one_shot = float(dc.logp_db(tiny_loaded, _x(tiny_model_dir, 0))[0])
    assert table["log p (dB/dim)"][0] == pytest.approx(one_shot, abs=1e-5)
    assert table["network evaluations"][0] == 1
    assert (table["network evaluations"][1:] > 1).all()
    np.testing.assert_allclose(table["NLL (bits/dim)"], -table["log p (dB/dim)"] / units.DB_PER_BIT)
    # the ODE's path: its curve starts at the table's one-shot - ODE difference, ends near 0
    app.button(key="est_path_run").click().run()
    assert_ok(app)
    path = next(spec for spec in plotly_specs(app) if spec["data"][-1]["name"] == "one-shot − ODE")
    gap = np.asarray(path["data"][-1]["y"], dtype=float)
    assert gap.shape == (6,)  # t_min ... t_max on 5 RK4 steps
    caption = next(c.value for c in app.caption if c.value.startswith("One-shot − ODE of this"))
    total = float(caption.split("image ")[1].split(" dB/dim")[0])
    assert total == pytest.approx(table["log p (dB/dim)"][0] - table["log p (dB/dim)"][1], abs=0.01)


def test_sample_page(app: AppTest, tiny_loaded):
    app.switch_page("views/sample.py").run()
    app.slider(key="sample_steps").set_value(10).run()
    app.slider(key="sample_count").set_value(3).run()
    app.button(key="sample_run").click().run()
    assert_ok(app)
    spec = plotly_specs(app)[0]
    assert [t["name"] for t in spec["data"][-3:]] == ["s0", "s1", "s2"]
    samples_db = [t["customdata"][0] for t in spec["data"][-3:]]
    images = dc.sample(tiny_loaded, 3, num_steps=10, generator=torch.Generator().manual_seed(0))
    expected = dc.logp_db(tiny_loaded, images).numpy()
    np.testing.assert_allclose(samples_db, expected, rtol=1e-4, atol=1e-4)
    # the axis stays on the test set: a sample off it is drawn at its edge
    low, high = spec["layout"]["xaxis"]["range"]
    test_logp = np.array(spec["data"][0]["x"])
    assert low <= test_logp.min() and test_logp.max() <= high
    assert high - low < 2 * np.ptp(test_logp)
    for trace, value in zip(spec["data"][-3:], expected, strict=True):
        assert trace["x"][0] == pytest.approx(np.clip(value, low, high))


def test_model_and_units_pages(app: AppTest, tiny_model_dir, tiny_loaded):
    app.switch_page("views/model.py").run()
    assert_ok(app)
    text = " ".join(m.value for m in app.markdown)
    assert f"{sum(p.numel() for p in tiny_loaded.parameters()):,}" in text
    assert "natural test crops" in text and "1 × 16 × 16" in text
    assert "Dual score matching energy model" in text  # the card
    app.switch_page("views/units.py").run()
    app.number_input(key="units_db").set_value(10.0).run()
    assert_ok(app)
    assert metric(app, "NLL (continuous) [bits/dim]") == f"{-units.db_to_bits(10.0):.4f}"
    assert metric(app, "density p(x)") == f"10^{10.0 * tiny_loaded.d / 10:,.1f}"
