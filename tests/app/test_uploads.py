"""Uploads in the app: removal stops their use everywhere, sessions keep their own, every bad
kind gives one line and the app keeps serving, decoded uploads stay within a byte budget."""

import numpy as np
import pytest
import upload_samples as samples
from app_helpers import assert_ok, errors, metric, new_app
from streamlit.testing.v1 import AppTest

from app import loading
from dsm_core.images import DEFAULT_MAX_DECODED_PIXELS

LOGP = "log p [dB/dim]"
AFFINE_LOGP = "log p(a·x + b) [dB/dim]"


def _upload(app: AppTest, name: str, data: bytes) -> AppTest:
    app.switch_page("views/probe.py").run()
    app.radio(key="probe_source").set_value("Upload").run()
    return app.file_uploader(key="probe_upload").set_value((name, data, "image/png")).run()


def _picker_options(app: AppTest) -> list[str]:
    radios = [r for r in app.radio if r.key == "affine_from"]
    return list(radios[0].options) if radios else []


def test_removing_the_upload_stops_its_use_everywhere(app: AppTest):
    _upload(app, "photo.png", samples.png_rgb(seed=5))
    assert_ok(app)
    uploaded_logp = metric(app, LOGP)
    app.file_uploader(key="probe_upload").set_value(None).run()  # the user removes it
    assert_ok(app)
    assert not app.error and not [m for m in app.metric if m.label == LOGP]
    assert "Upload an image" in " ".join(i.value for i in app.info)
    app.switch_page("views/affine.py").run()
    assert_ok(app)
    assert "my upload" not in _picker_options(app)
    assert metric(app, AFFINE_LOGP) != uploaded_logp


def test_an_upload_kept_across_pages_can_be_removed(app: AppTest):
    _upload(app, "photo.png", samples.png_rgb(seed=6))
    uploaded_logp = metric(app, LOGP)
    app.switch_page("views/affine.py").run()
    assert "my upload" in _picker_options(app)
    assert metric(app, AFFINE_LOGP) == uploaded_logp  # the upload is the current image
    app.switch_page("views/probe.py").run()  # the uploader widget is empty again
    assert "uploaded earlier" in " ".join(c.value for c in app.caption)
    assert metric(app, LOGP) == uploaded_logp
    app.button(key="probe_forget").click().run()
    assert_ok(app)
    assert not [m for m in app.metric if m.label == LOGP]
    app.switch_page("views/affine.py").run()
    assert "my upload" not in _picker_options(app)


def test_an_empty_file_replaces_the_upload_and_says_so(app: AppTest):
    _upload(app, "photo.png", samples.png_rgb(seed=7))
    app.file_uploader(key="probe_upload").set_value(("empty.png", b"", "image/png")).run()
    assert_ok(app)
    assert "empty.png" in errors(app) and "the file is empty" in errors(app)
    assert not [m for m in app.metric if m.label == LOGP]  # the earlier image is not scored


def test_each_session_sees_only_its_own_upload(app_env):
    first, second = new_app(), new_app()
    _upload(first, "mine.png", samples.png_rgb(seed=8))
    second.switch_page("views/probe.py").run()
    second.radio(key="probe_source").set_value("Upload").run()
    assert "Upload an image" in " ".join(i.value for i in second.info)
    second.switch_page("views/affine.py").run()
    assert "my upload" not in _picker_options(second)


BAD_KINDS = {
    "encrypted.npz": (samples.npz_encrypted_flag(), "not a readable .npz"),
    "compress99.npz": (samples.npz_unsupported_compression(), "not a readable .npz"),
    "zero.npy": (samples.npy(np.zeros((2, 32, 0), dtype=np.uint8)), "has no pixels"),
    "ambiguous.npy": (samples.npy(np.zeros((3, 40, 4), dtype=np.uint8)), "cannot tell"),
    "empty.npz": (b"", "the file is empty"),
    "disguised.png": (samples.encode(samples.Image.new("RGB", (16, 16)), "ICO"), "not an image"),
}


@pytest.mark.parametrize("name", sorted(BAD_KINDS))
def test_bad_kinds_give_one_line_and_the_app_keeps_serving(app: AppTest, name: str):
    data, message = BAD_KINDS[name]
    _upload(app, name, data)
    assert_ok(app)
    assert message in errors(app) and len(app.error) == 1, errors(app)
    assert "Traceback" not in errors(app) and "/tmp" not in errors(app)
    _upload(app, "ok.png", samples.png_rgb())
    assert_ok(app)
    assert not app.error and metric(app, LOGP).startswith(("+", "-"))


@pytest.mark.parametrize(
    ("name", "array", "note"),
    [
        ("chw.npy", np.full((3, 40, 40), 200, dtype=np.uint8), "read as (C, H, W)"),
        ("rgba.npy", np.full((40, 40, 4), 0.5, dtype=np.float32), "composited on a white"),
        ("mask.npy", np.eye(40, dtype=bool), "black (0) and white (255)"),
    ],
)
def test_single_image_arrays_are_scored_with_a_note(app: AppTest, name, array, note):
    _upload(app, name, samples.npy(array))
    assert_ok(app)
    assert not app.error, errors(app)
    assert metric(app, LOGP).startswith(("+", "-"))
    assert note in " ".join(c.value for c in app.caption)


def test_decoded_uploads_stay_within_the_cache_budget(app: AppTest):
    """More large uploads than the budget holds: the shared cache keeps at most its bytes, and
    each decoded image at most the decode cap."""
    loading.upload_cache.clear()
    side = 2400  # above the 2048x2048 decode cap: each is reduced while decoding
    num = loading.UPLOAD_CACHE_BYTES // (DEFAULT_MAX_DECODED_PIXELS * 3) + 2
    for seed in range(num):
        _upload(app, f"big{seed}.png", samples.png_large(side, seed))
        assert_ok(app)
        assert not app.error and metric(app, LOGP).startswith(("+", "-"))
    cache = loading.upload_cache()
    assert cache.nbytes <= loading.UPLOAD_CACHE_BYTES
    assert 0 < len(cache) < num  # the oldest were evicted
    assert "downscaled from 2400x2400" in " ".join(c.value for c in app.caption)
