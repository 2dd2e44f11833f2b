"""Every file the project writes gets the mode a plain open() gives (umask respected), so other
users can read model folders and run folders; checked as an unprivileged user when root."""

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import dsm_core as dc
from dsm_core.checkpoint import new_file_mode, write_atomic
from dsm_core.packaging import package_model

NOBODY = 65534


@pytest.fixture(params=[0o022, 0o027, 0o002])
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


@pytest.fixture
def shared_dir():
    """A folder others may enter (pytest's tmp_path is 0700), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="dsm_modes_"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _written_files(folder: Path, tiny_model) -> list[Path]:
    """Files written by save_model, package_model and write_atomic (safetensors with metadata,
    as the training checkpoint is written)."""
    tiny_model.log_norm_nats = 10.0
    model_dir = dc.save_model(tiny_model, folder / "model")
    images = np.random.default_rng(0).integers(0, 256, (6, 1, 16, 16), dtype=np.uint8)
    package_model(tiny_model, images, folder / "package", source_folder=model_dir, seed=0)
    tensors = {"w": torch.zeros(3)}
    write_atomic(
        folder / "checkpoint.safetensors",
        lambda p: save_file(tensors, str(p), metadata={"state": "{}"}),
    )
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_written_files_get_the_umask_mode(tmp_path, tiny_model, umask):
    reference = tmp_path / "plain.txt"
    reference.write_text("written by open()\n")
    expected = _mode(reference)
    assert new_file_mode() == expected
    files = _written_files(tmp_path / "out", tiny_model)
    names = {p.name for p in files}
    assert {"model.safetensors", "config.json", "checkpoint.safetensors"} <= names
    assert {"test_logp_db.npz", "metrics.json"} <= names
    assert {p.name: oct(_mode(p)) for p in files} == {p.name: oct(expected) for p in files}
    assert not list((tmp_path / "out").rglob(".*.tmp"))  # no temporary file left behind


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="reading as another user needs root (to setuid); CI runs as root",
)
def test_an_unprivileged_user_can_read_what_we_write(shared_dir, tiny_model):
    previous = os.umask(0o022)
    try:
        files = _written_files(shared_dir, tiny_model)
    finally:
        os.umask(previous)
    result = subprocess.run(
        ["cat", *map(str, files)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
    )
    assert result.returncode == 0, result.stderr
