"""Converting the authors' released checkpoints: key map, safety of the reader, the script."""

import argparse
import json
import os
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

import dsm_core as dc
from dsm_core.release import (
    ReleaseCheckpointError,
    convert_release,
    release_state_dict_keys,
    safe_load_checkpoint,
)

REPO = Path(__file__).resolve().parent.parent


class Perf:
    """Stand-in for the authors' perf objects (only the attribute the converter reads)."""

    def __init__(self, log_normalization_constant: float):
        self.log_normalization_constant = log_normalization_constant
        self.history = [1.0, 2.0]


def release_file(tmp_path: Path, model, with_perf: bool = True, **args) -> Path:
    """A checkpoint in exactly the released layout, with our model's weights under their keys."""
    ours = model.state_dict()
    state_dict = OrderedDict(
        (theirs, ours[key].clone()) for key, theirs in release_state_dict_keys(model).items()
    )
    document = {
        "step": 1234,
        "args": argparse.Namespace(
            network="UNet",
            network_kwargs={"num_scales": model.config.unet.num_scales, "group_size": 1},
            model="EnergyModel",
            lr=5e-4,
            **args,
        ),
        "state_dict": state_dict,
        "train_perf": Perf(1.0),
        "test_perf": Perf(5845.43) if with_perf else None,
    }
    path = tmp_path / "model.pth.tar"
    torch.save(document, path)
    return path


def test_release_keys_follow_the_spec():
    model = dc.build_energy_model("imagenet64")
    keys = release_state_dict_keys(model)
    assert keys["unet.embedding.mlp.0.weight"] == "network.noise_var_embedding.time_embed.0.weight"
    assert keys["unet.encoder.1.2.conv.weight"] == "network.encoder.1.6.weight"
    assert keys["unet.encoder.1.2.norm.weight"] == "network.encoder.1.7.weight"
    assert (
        keys["unet.encoder.0.1.norm.conditioning.bias"]
        == "network.encoder.0.4.conditioning_embedding.bias"
    )
    assert keys["unet.middle.2.conv.weight"] == "network.middle_block.6.weight"
    assert keys["unet.middle.2.norm.weight"] == "network.middle_block.7.weight"
    assert keys["unet.decoder.0.2.conv.weight"] == "network.decoder.0.6.weight"
    assert "network.decoder.0.7.weight" not in keys.values()
    assert model.state_dict()["unet.middle.2.conv.weight"].shape == (512, 256, 2, 2)
    assert len(set(keys.values())) == len(keys) == len(model.state_dict())


@pytest.mark.parametrize("preset", ["tiny", "imagenet64"])
def test_converted_release_gives_the_same_energies(tmp_path, preset, generator):
    torch.manual_seed(0)
    # the release's own form: linear-t embedding over [1, 100], no output scaling
    release_form = dict(
        embed_log_t=False, embed_t_min=1.0, embed_t_max=100.0, output_scaling="none"
    )
    model = dc.build_energy_model(preset, **release_form).eval()
    path = release_file(tmp_path, model)
    release = convert_release(path, image_size=model.config.image_size)
    assert release.step == 1234 and release.model.log_norm_nats == pytest.approx(5845.43)
    assert release.model.config == model.config
    folder = tmp_path / "converted"
    dc.save_model(release.model, folder)
    loaded = dc.load_model(folder)
    size = model.config.image_size
    y = torch.rand(2, 1, size, size, generator=generator)
    t = torch.tensor([0.01, 1.0])
    expected = model.energy(y, t) + 5845.43
    torch.testing.assert_close(loaded.energy(y, t), expected, rtol=1e-6, atol=1e-3)


def test_convert_script(tmp_path):
    torch.manual_seed(0)
    model = dc.build_energy_model("tiny").eval()
    path = release_file(tmp_path, model, with_perf=False)
    out = tmp_path / "folder"
    script = str(REPO / "train" / "convert_release.py")
    base = [sys.executable, script, "--checkpoint", str(path), "--out", str(out)]
    base += ["--image-size", "16"]
    missing_k = subprocess.run(base, capture_output=True, text=True)
    assert missing_k.returncode == 1 and "--log-norm" in missing_k.stderr
    result = subprocess.run([*base, "--log-norm", "12.5"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["log_norm_nats"] == 12.5
    loaded = dc.load_model(out)
    assert loaded.log_norm_nats == 12.5 and loaded.metadata["steps"] == 1234
    assert loaded.metadata["release_args"]["network_kwargs"]["group_size"] == 1


def test_unused_or_misshapen_tensors_are_refused(tmp_path):
    torch.manual_seed(0)
    model = dc.build_energy_model("tiny").eval()
    path = release_file(tmp_path, model)
    document = torch.load(path, weights_only=False)
    document["state_dict"]["network.extra.weight"] = torch.zeros(3)
    torch.save(document, path)
    with pytest.raises(ReleaseCheckpointError, match="unused"):
        convert_release(path, image_size=16)
    del document["state_dict"]["network.extra.weight"]
    document["state_dict"]["network.encoder.0.4.weight"] = torch.zeros(5)
    torch.save(document, path)
    with pytest.raises(ReleaseCheckpointError, match="shape"):
        convert_release(path, image_size=16)


class SystemPayload:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class CallPayload:
    """Calls a harmless-looking callable from a module not on any list."""

    def __reduce__(self):
        import fractions

        return (fractions.Fraction, ("1/3",))


def test_os_system_payload_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth.tar"
    torch.save({"state_dict": {}, "test_perf": SystemPayload(f"touch {marker}")}, path)
    with pytest.raises(ReleaseCheckpointError, match="system"):
        safe_load_checkpoint(path)
    with pytest.raises(ReleaseCheckpointError):
        convert_release(path)
    assert not marker.exists()


def test_unknown_callables_become_inert(tmp_path):
    path = tmp_path / "odd.pth.tar"
    torch.save({"state_dict": {}, "x": CallPayload()}, path)
    with pytest.raises(ReleaseCheckpointError, match="refusing to call"):
        safe_load_checkpoint(path)
    # A plain object of an unknown class is read as attributes only.
    torch.save({"test_perf": Perf(3.0)}, path)
    perf = safe_load_checkpoint(path)["test_perf"]
    assert type(perf) is not Perf and perf.log_normalization_constant == 3.0


class ObjectArrayPayload:
    """An object array whose element runs a shell command when unpickled by plain pickle."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_numpy_values_load_as_data(tmp_path):
    """np.float64 K, numpy arrays and integers (as torch.save stores them) are data."""
    torch.manual_seed(0)
    model = dc.build_energy_model("tiny").eval()
    path = release_file(tmp_path, model)
    document = torch.load(path, weights_only=False)
    constant = np.float64(5845.43)
    document["test_perf"].log_normalization_constant = constant
    document["test_perf"].history = np.linspace(0.0, 1.0, 5, dtype=np.float32)
    document["args"].seed = np.int64(7)
    document["extra"] = {"perm": np.arange(6, dtype=np.int16).reshape(2, 3), "flag": np.bool_(1)}
    torch.save(document, path)
    loaded = safe_load_checkpoint(path)
    perf = loaded["test_perf"]
    assert type(perf.log_normalization_constant) is np.float64
    assert perf.log_normalization_constant == constant
    np.testing.assert_array_equal(perf.history, document["test_perf"].history)
    assert loaded["args"].seed == 7 and loaded["extra"]["perm"].dtype == np.int16
    np.testing.assert_array_equal(loaded["extra"]["perm"], document["extra"]["perm"])
    converted = convert_release(path)
    assert converted.model.log_norm_nats == float(constant)
    # an object array is still data only: its elements' globals go through the same check
    marker = tmp_path / "pwned"
    evil = np.empty(1, dtype=object)
    evil[0] = ObjectArrayPayload(marker)
    torch.save({"state_dict": {}, "x": evil}, tmp_path / "evil.pth.tar")
    with pytest.raises(ReleaseCheckpointError, match="system"):
        safe_load_checkpoint(tmp_path / "evil.pth.tar")
    assert not marker.exists()


def test_release_and_dataset_pickles_share_one_unpickler(tmp_path, monkeypatch):
    """Both readers resolve globals through dsm_core.safe_pickle.SafeUnpickler.find_class."""
    import pickle

    from dsm_core import safe_pickle
    from dsm_core.data import safe_unpickle

    seen = []
    original = safe_pickle.SafeUnpickler.find_class

    def spy(self, module, name):
        seen.append(f"{module}.{name}")
        return original(self, module, name)

    monkeypatch.setattr(safe_pickle.SafeUnpickler, "find_class", spy)
    torch.save({"K": np.float64(1.5)}, tmp_path / "k.pth.tar")
    assert safe_load_checkpoint(tmp_path / "k.pth.tar")["K"] == 1.5
    assert any(name.endswith("multiarray.scalar") for name in seen)
    seen.clear()
    with open(tmp_path / "batch.pkl", "wb") as file:
        pickle.dump({b"K": np.float64(2.5), b"data": np.zeros((1, 3))}, file, protocol=2)
    assert safe_unpickle(tmp_path / "batch.pkl")[b"K"] == 2.5
    assert any(name.endswith("multiarray.scalar") for name in seen)
