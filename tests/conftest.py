"""Shared fixtures: tiny random-weight models and exact Gaussian oracles; CPU, seconds."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dsm_core as dc
from dsm_core.data import natural


@pytest.fixture(autouse=True)
def _no_lomiri_wallpapers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The natural test split of a machine without Debian's lomiri-wallpapers packages, so that
    no test depends on what apt installed; their tests point LOMIRI_WALLPAPER_DIR elsewhere."""
    monkeypatch.setattr(natural, "LOMIRI_WALLPAPER_DIR", Path("/nonexistent/lomiri-wallpapers"))


@pytest.fixture
def fake_lomiri_wallpapers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``fake_lomiri_wallpapers({name: (width, height)})``: writes smooth random RGB JPEGs under
    those lomiri-wallpapers file names into a temporary folder, points LOMIRI_WALLPAPER_DIR at
    it and returns it (the Path)."""

    def make(sizes: dict[str, tuple[int, int]]) -> Path:
        folder = tmp_path / "backgrounds"
        folder.mkdir()
        rng = np.random.default_rng(0)
        for name, (width, height) in sizes.items():
            low = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
            Image.fromarray(low).resize((width, height)).save(folder / f"{name}.jpg")
        monkeypatch.setattr(natural, "LOMIRI_WALLPAPER_DIR", folder)
        return folder

    return make


@pytest.fixture(autouse=True)
def _one_thread():
    """Run each test on one intra-op thread, then restore the setting.

    These tests are many tiny tensor ops; on a small, shared machine torch's default thread pool
    makes them 10-200x slower (spinning threads competing with other processes).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@pytest.fixture
def tiny_model() -> dc.EnergyModel:
    """A random-weight 16x16 grayscale energy UNet (about 20k parameters), eval mode."""
    torch.manual_seed(0)
    return dc.build_energy_model("tiny").eval()


@pytest.fixture
def tiny_images(generator: torch.Generator) -> torch.Tensor:
    """Eight smooth-ish 16x16 grayscale images in [0, 1], (8, 1, 16, 16)."""
    low = torch.rand(8, 1, 4, 4, generator=generator)
    return torch.nn.functional.interpolate(low, size=16, mode="bilinear", align_corners=False)


@pytest.fixture
def smooth_images(generator: torch.Generator):
    """``smooth_images(n, channels=1, size=16)``: smooth float64 images inside [0.2, 0.8]."""

    def make(n: int, channels: int = 1, size: int = 16) -> torch.Tensor:
        low = torch.rand(n, channels, 4, 4, generator=generator, dtype=torch.float64)
        up = torch.nn.functional.interpolate(low, size=size, mode="bilinear", align_corners=False)
        return 0.2 + 0.6 * up  # (n, C, size, size)

    return make


@pytest.fixture
def gaussian_oracle(generator: torch.Generator) -> dc.GaussianEnergy:
    """Exact energy of N(mu, Sigma) on (1, 4, 4) images with a random full covariance."""
    d = 16
    a = torch.randn(d, d, generator=generator, dtype=torch.float64)
    cov = a @ a.T / d + 0.05 * torch.eye(d, dtype=torch.float64)
    eigenvalues, eigenvectors = torch.linalg.eigh(cov)
    mean = 0.5 + 0.1 * torch.randn(1, 4, 4, generator=generator, dtype=torch.float64)
    return dc.GaussianEnergy(mean, eigenvalues, eigenvectors)
