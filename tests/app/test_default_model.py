"""The shipped default model (checkpoints/default) opens on every page, when it is there."""

from pathlib import Path

import pytest
from app_helpers import ROOT, assert_ok, new_app

DEFAULT = ROOT / "checkpoints" / "default"


@pytest.mark.skipif(
    not (DEFAULT / "model.safetensors").is_file(), reason="checkpoints/default is not packaged"
)
def test_default_model_renders_every_page(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DSM_MODEL", raising=False)
    monkeypatch.setenv("DSM_TORCH_THREADS", "1")
    app = new_app()
    assert not app.error and not app.warning, [e.value for e in app.error]
    assert "bundled default" in " ".join(c.value for c in app.sidebar.caption)
    for page in sorted(Path(ROOT / "app" / "views").glob("*.py")):
        app.switch_page(f"views/{page.name}").run()
        assert_ok(app)
        assert not app.error, (page.name, [e.value for e in app.error])
