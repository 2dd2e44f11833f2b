"""Data folders as downloaded: the official ImageNet64 layout, missing batches, archives, and
train.py's one-line ``error:`` (exit 2) for every data error."""

import logging
import os
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

import dsm_core.data as D

REPO = Path(__file__).resolve().parent.parent
SIDE = 4


def _batch(path: Path, first_label: int, n: int = 2) -> None:
    rng = np.random.default_rng(first_label)
    data = rng.integers(0, 256, size=(n, 3 * SIDE * SIDE), dtype=np.uint8)
    np.savez(path, data=data, labels=np.arange(first_label, first_label + n))


def _official_download(root: Path, batches=range(1, 11)) -> Path:
    """The extracted official download: two train part folders and a val folder."""
    for number in batches:
        part = root / f"Imagenet64_train_part{1 if number <= 5 else 2}"
        part.mkdir(parents=True, exist_ok=True)
        _batch(part / f"train_data_batch_{number}.npz", 100 * number)
    (root / "Imagenet64_val").mkdir(parents=True, exist_ok=True)
    _batch(root / "Imagenet64_val" / "val_data.npz", 0, n=3)
    return root


def test_the_official_layout_is_found(tmp_path, caplog):
    root = _official_download(tmp_path / "imagenet64")
    assert D.is_imagenet64_folder(root)
    with caplog.at_level(logging.WARNING):
        train = D.read_imagenet64(root, "train")
    assert len(train) == 20 and "not found" not in caplog.text
    assert train.labels.tolist()[::2] == [100 * k for k in range(1, 11)]  # batches in order
    assert len(D.read_imagenet64(root, "test")) == 3
    assert len(D.load_dataset(f"imagenet64:{root}", "train")) == 20


@pytest.mark.parametrize(
    ("batches", "folder", "missing"),
    [
        (range(1, 11), "Imagenet64_train_part1", "[6, 7, 8, 9, 10]"),
        ([1, 2, 4, 5, 6, 7, 8, 9, 10], ".", "[3]"),
    ],
)
def test_missing_batches_are_reported(tmp_path, caplog, batches, folder, missing):
    root = _official_download(tmp_path / "imagenet64", batches)
    with caplog.at_level(logging.WARNING):
        dataset = D.read_imagenet64(root / folder, "train")
    assert f"batch(es) {missing}" in caplog.text
    assert len(dataset) == 2 * (10 - len(missing.strip("[]").split(",")))


def test_a_cifar_archive_says_extract_it_first(tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path, arcname="cifar-10-batches-py", recursive=False)
    with pytest.raises(ValueError, match="extract the archive first"):
        D.read_cifar10(archive)


class _RunsShell:
    def __reduce__(self):
        return (os.system, ("true",))


def _bad_data(tmp_path: Path) -> dict[str, str]:
    """data.name values that must each end train.py with one 'error:' line."""
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path, arcname="cifar-10-batches-py", recursive=False)
    evil = tmp_path / "evil"
    evil.mkdir()
    with open(evil / "data_batch_1", "wb") as file:
        pickle.dump({b"data": _RunsShell(), b"labels": [0]}, file)
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 not really a zip")
    (tmp_path / "not_a_dir").write_text("x")
    return {
        "archive": f"cifar10:{archive}",
        "pickle": f"cifar10:{evil}",
        "missing": f"imagenet64:{tmp_path / 'nowhere'}",
        "broken-zip": str(tmp_path / "broken.npz"),
        "not-a-folder": f"imagenet64:{tmp_path / 'not_a_dir'}",
    }


def test_every_data_error_exits_train_py_with_one_error_line(tmp_path):
    script = str(REPO / "train" / "train.py")
    for case, name in _bad_data(tmp_path).items():
        result = subprocess.run(
            [sys.executable, script, "--config", "tiny_cpu", "--out", str(tmp_path / case)]
            + ["--quiet", "--no-progress", f"data.name={name}"],
            capture_output=True,
            text=True,
            env=dict(os.environ, PYTHONWARNINGS="ignore"),
        )
        errors = [line for line in result.stderr.splitlines() if not line[:4].isdigit()]
        assert result.returncode == 2, (case, result.stderr)
        assert len(errors) == 1 and errors[0].startswith("error: "), (case, result.stderr)
        assert "Traceback" not in result.stderr, case
