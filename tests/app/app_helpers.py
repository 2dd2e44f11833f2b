"""Helpers of the app tests: a packaged tiny model folder and readers of AppTest output."""

import base64
import json
import sys
from pathlib import Path

import numpy as np
import torch
from streamlit.testing.v1 import AppTest

import dsm_core as dc
from dsm_core.data import natural_image_crops

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app" / "main.py")
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))  # for upload_samples
NUM_TEST_IMAGES = 24


def make_model_folder(folder: Path, seed: int = 0, num_images: int = NUM_TEST_IMAGES) -> Path:
    """A tiny (16x16 gray) random-weight energy model with its companion files, packaged by
    dsm_core.package_model as train/package_model.py does.

    The last convolution is scaled up (the network is homogeneous, so the energy scales with it):
    at initialisation log p differs between images by ~1e-4 dB/dim, after it by ~0.1, so the
    two decimals the app shows differ from image to image.
    """
    torch.manual_seed(seed)
    model = dc.build_energy_model("tiny").eval().requires_grad_(False)
    with torch.no_grad():
        model.unet.decoder[0][-1].conv.weight.mul_(1000.0)
    model.metadata = {"data": {"description": "natural test crops"}, "steps": 0}
    dc.save_model(model, folder)
    images = natural_image_crops("test", 16, num_images, seed=0).to_numpy()
    dc.package_model(model, images, folder, num_sample_images=num_images, data_description="toy")
    return folder


def new_app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert_ok(at)
    return at


def heldout_images(folder: Path) -> np.ndarray:
    with np.load(folder / "test_images.npz") as archive:
        return archive["images"]


def assert_ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def metric(at: AppTest, label: str) -> str:
    found = [m.value for m in at.metric if m.label == label]
    assert found, f"no metric {label!r} in {[m.label for m in at.metric]}"
    return found[0]


def _decode_typed_arrays(value):
    """Plotly >= 6 writes numpy arrays as {"dtype", "bdata" (base64), "shape"}: decode them."""
    if isinstance(value, dict):
        if "bdata" in value and "dtype" in value:
            array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
            shape = value.get("shape")
            if shape is not None:
                dims = [int(v) for v in str(shape).split(",")] if isinstance(shape, str) else shape
                array = array.reshape(dims)
            return array.tolist()
        return {k: _decode_typed_arrays(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_typed_arrays(v) for v in value]
    return value


def plotly_specs(at: AppTest) -> list[dict]:
    """The plotly figures of the page as dicts (data, layout), arrays decoded to lists."""
    return [_decode_typed_arrays(json.loads(chart.proto.spec)) for chart in at.get("plotly_chart")]


def errors(at: AppTest) -> str:
    return "\n".join(e.value for e in at.error)
