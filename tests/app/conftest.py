"""App test fixtures: a tiny random-weight model folder packaged like the default one."""

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from app_helpers import make_model_folder, new_app
from streamlit.testing.v1 import AppTest

import dsm_core as dc


@pytest.fixture(autouse=True)
def _restore_main_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """Put the real ``__main__`` back after each test.

    AppTest runs the app as ``sys.modules["__main__"]`` and leaves it there. A later test that
    spawns processes (tests/test_distributed.py) would then run the whole app in each child, since
    multiprocessing's spawn re-imports ``__main__`` there (a CI log showed the workers' Streamlit
    warnings).
    """
    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_folder(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def tiny_loaded(tiny_model_dir: Path) -> dc.EnergyModel:
    return dc.load_model(tiny_model_dir)


@pytest.fixture
def app_env(monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path) -> Iterator[Path]:
    """DSM_MODEL points at the tiny model; one torch thread (conftest's setting)."""
    monkeypatch.setenv("DSM_MODEL", str(tiny_model_dir))
    monkeypatch.delenv("DSM_MODEL_REVISION", raising=False)
    monkeypatch.setenv("DSM_TORCH_THREADS", "1")
    yield tiny_model_dir


@pytest.fixture
def app(app_env: Path) -> AppTest:
    """The app on its first page, already run once."""
    return new_app()
