"""Bad input: every case gives a clear message in the page, and the app keeps serving."""

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import upload_samples as samples
from app_helpers import APP, assert_ok, errors, metric, new_app
from streamlit.testing.v1 import AppTest

import dsm_core as dc
from dsm_core.images import prepare_upload

LOGP = "log p [dB/dim]"


def _upload(app: AppTest, name: str, data: bytes, mime: str = "image/png") -> AppTest:
    app.switch_page("views/probe.py").run()
    app.radio(key="probe_source").set_value("Upload").run()
    return app.file_uploader(key="probe_upload").set_value((name, data, mime)).run()


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("notes.png", samples.not_an_image(), "not an image file"),
        ("half.png", samples.png_truncated(), "truncated or corrupt"),
        ("bomb.png", samples.png_bomb(), "refused"),
        ("pickle.npz", samples.npz_object(), "pickle|object"),
    ],
    ids=["not-an-image", "truncated", "decompression-bomb", "object-array"],
)
def test_unusable_uploads_show_an_error(app: AppTest, name: str, data: bytes, message: str):
    start = time.perf_counter()
    _upload(app, name, data)
    assert time.perf_counter() - start < 10
    assert_ok(app)
    assert name in errors(app)
    assert any(m in errors(app) for m in message.split("|")), errors(app)
    # still serving: a good upload afterwards works
    app.file_uploader(key="probe_upload").set_value(("ok.png", samples.png_rgb(), "image/png"))
    app.run()
    assert_ok(app)
    assert not app.error and metric(app, LOGP).startswith(("+", "-"))


@pytest.mark.parametrize(
    "name, data, note",
    [
        ("deep.png", samples.png_16bit(32), "16/32-bit"),
        ("palette.png", samples.png_palette(), "palette"),
        ("alpha.png", samples.png_rgba(), "composited on a white"),
        ("cmyk.jpg", samples.jpeg_cmyk(), "CMYK"),
        ("rotated.jpg", samples.jpeg_exif_rotated(), "EXIF orientation 6"),
        ("animated.gif", samples.gif_animated(), "2 frames: using the first"),
        ("stack.npz", samples.npz_stack(5, 20), "array of 5 image(s)"),
    ],
    ids=["16-bit", "palette", "rgba", "cmyk", "exif", "animated", "npz"],
)
def test_odd_but_valid_uploads_are_scored(app: AppTest, tiny_loaded, name, data, note):
    _upload(app, name, data)
    assert_ok(app)
    assert not app.error, errors(app)
    _, fitted = prepare_upload(data, name, tiny_loaded.image_shape)
    expected = float(dc.logp_db(tiny_loaded, fitted.tensor())[0])
    assert metric(app, LOGP) == f"{expected:+.2f}"
    captions = " ".join(c.value for c in app.caption)
    assert note in captions, captions


def test_tiny_images_are_padded_or_refused(app: AppTest, tiny_loaded):
    tiny = samples.png_gray(8, 8)
    _upload(app, "tiny.png", tiny)
    assert_ok(app)
    assert "mirror-padded" in " ".join(c.value for c in app.caption)
    _, fitted = prepare_upload(tiny, "tiny.png", tiny_loaded.image_shape, small="pad")
    assert metric(app, LOGP) == f"{float(dc.logp_db(tiny_loaded, fitted.tensor())[0]):+.2f}"
    app.radio(key="upload_small").set_value("refuse").run()
    assert_ok(app)
    assert "smaller than the model" in errors(app)
    app.radio(key="upload_small").set_value("upscale").run()
    assert not app.error and "upscaled" in " ".join(c.value for c in app.caption)


def _broken_copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


@pytest.mark.parametrize("damage", ["no-weights", "bad-json", "mismatched", "not-a-folder"])
def test_broken_model_folder_is_reported_on_every_page(
    monkeypatch, tmp_path, tiny_model_dir, damage
):
    folder = _broken_copy(tiny_model_dir, tmp_path / "broken")
    if damage == "no-weights":
        (folder / "model.safetensors").unlink()
        expected = "model.safetensors: missing"
    elif damage == "bad-json":
        (folder / "config.json").write_text("{ not json")
        expected = "not valid JSON"
    elif damage == "mismatched":
        config = json.loads((folder / "config.json").read_text())
        config["model"]["unet"]["base_width"] = 16
        (folder / "config.json").write_text(json.dumps(config))
        expected = "has shape"
    else:
        folder = tmp_path / "nowhere"
        expected = "no such model folder"
    monkeypatch.setenv("DSM_MODEL", str(folder))
    monkeypatch.setenv("DSM_TORCH_THREADS", "1")
    app = new_app()
    for page in ("views/testset.py", "views/probe.py", "views/affine.py", "views/sample.py"):
        app.switch_page(page).run()
        assert_ok(app)
        assert "could not be loaded" in errors(app) and expected in errors(app), errors(app)
    app.switch_page("views/units.py").run()  # pages without a model still work
    assert_ok(app)
    assert not app.error


def test_missing_hub_repo_offline(monkeypatch, app_env, tiny_model_dir):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    app = new_app()
    app.switch_page("views/model.py").run()
    app.radio(key="model_kind").set_value("Hugging Face Hub").run()
    app.text_input(key="model_repo").input("nobody-here/no-such-model-xyz").run()
    app.button(key="model_load").click().run()
    assert_ok(app)
    assert "Could not load that model" in errors(app)
    assert "no network" in errors(app) or "HF_HUB_OFFLINE" in errors(app)
    # the previous model is still in use
    assert str(tiny_model_dir) in " ".join(m.value for m in app.markdown)
    app.switch_page("views/testset.py").run()
    assert_ok(app)
    assert not app.error
    # and as the starting model
    monkeypatch.setenv("DSM_MODEL", "nobody-here/no-such-model-xyz")
    app = AppTest.from_file(APP, default_timeout=60).run()
    assert_ok(app)
    assert "could not be loaded" in errors(app) and "no network" in errors(app)


def test_switching_models_reruns_pages_for_the_new_one(app: AppTest, tmp_path, tiny_model_dir):
    from app_helpers import make_model_folder

    other = make_model_folder(tmp_path / "other", seed=1)
    app.switch_page("views/probe.py").run()
    before = metric(app, LOGP)
    app.switch_page("views/model.py").run()
    app.radio(key="model_kind").set_value("Local folder").run()
    app.text_input(key="model_folder").input(str(other)).run()
    app.button(key="model_load").click().run()
    assert_ok(app)
    assert "every page now uses it" in " ".join(s.value for s in app.success)
    app.switch_page("views/probe.py").run()
    x = dc.images.pixels_to_tensor(np.load(other / "test_images.npz")["images"][:1])
    expected = float(dc.logp_db(dc.load_model(other), x)[0])
    assert metric(app, LOGP) == f"{expected:+.2f}"
    assert metric(app, LOGP) != before


def test_folder_without_companion_files(monkeypatch, tmp_path, tiny_model_dir, tiny_loaded):
    folder = tmp_path / "bare"
    folder.mkdir()
    for name in ("model.safetensors", "config.json"):
        shutil.copy(tiny_model_dir / name, folder / name)
    monkeypatch.setenv("DSM_MODEL", str(folder))
    monkeypatch.setenv("DSM_TORCH_THREADS", "1")
    app = new_app()
    assert "No test-set log p" in " ".join(w.value for w in app.warning)
    # an upload still works without a test set (no percentile, no histogram)
    _upload(app, "ok.png", samples.png_rgb())
    assert_ok(app)
    assert not app.error and metric(app, LOGP).startswith(("+", "-"))
    assert not [m for m in app.metric if m.label == "test-set percentile"]
    # images without log p: the app computes them once with the model
    with np.load(tiny_model_dir / "test_images.npz") as archive:
        np.savez(folder / "test_images.npz", images=archive["images"])
    app = new_app()
    assert_ok(app)
    assert not app.warning
    expected = dc.logp_db(
        tiny_loaded, dc.images.pixels_to_tensor(np.load(folder / "test_images.npz")["images"])
    ).numpy()
    assert metric(app, "entropy [dB/dim]") == f"{-expected.mean():.2f}"


def test_bundled_models_can_be_chosen(app: AppTest):
    from app.loading import CHECKPOINTS_DIR, bundled_models

    folders = bundled_models()
    assert folders[0].name == "default" and CHECKPOINTS_DIR / "fashion-mnist" in folders
    app.switch_page("views/model.py").run()
    app.selectbox(key="model_bundled").set_value(CHECKPOINTS_DIR / "fashion-mnist").run()
    app.button(key="model_load").click().run()
    assert_ok(app)
    assert "1 × 28 × 28" in " ".join(m.value for m in app.markdown)
    app.switch_page("views/probe.py").run()
    fashion = CHECKPOINTS_DIR / "fashion-mnist"
    x = dc.images.pixels_to_tensor(np.load(fashion / "test_images.npz")["images"][:1])
    assert metric(app, LOGP) == f"{float(dc.logp_db(dc.load_model(fashion), x)[0]):+.2f}"
