"""Model folders: exact round trip, strict refusal with clear messages, Hub cache offline."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

import dsm_core as dc
from dsm_core.checkpoint import ModelLoadError


@pytest.fixture
def saved(tmp_path, tiny_model):
    tiny_model.log_norm_nats = -321.5
    folder = dc.save_model(tiny_model, tmp_path / "model", metadata={"data": "synthetic"})
    return folder, tiny_model


def test_round_trip_is_bit_exact(saved, tiny_images):
    folder, model = saved
    loaded = dc.load_model(folder)
    assert loaded.log_norm_nats == -321.5 and loaded.metadata == {"data": "synthetic"}
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    for t in (0.0, 0.01, 10.0):
        assert torch.equal(loaded.energy(tiny_images, t), model.energy(tiny_images, t))
    assert loaded.config == model.config


def test_missing_and_unexpected_tensors(saved):
    folder, _ = saved
    state = load_file(str(folder / "model.safetensors"))
    name = next(iter(state))
    state["extra.weight"] = state.pop(name)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(
        ModelLoadError, match=rf"missing \['{name}'\].*unexpected \['extra.weight'\]"
    ):
        dc.load_model(folder)


def test_shape_mismatch(saved):
    folder, _ = saved
    state = load_file(str(folder / "model.safetensors"))
    name = "unet.decoder.0.1.conv.weight"
    state[name] = torch.zeros(2, *state[name].shape[1:])
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(ModelLoadError, match=f"{name}.*shape"):
        dc.load_model(folder)


def test_config_errors(saved):
    folder, _ = saved
    path = folder / "config.json"
    document = json.loads(path.read_text())
    document["model"]["unet"]["widthh"] = 3
    path.write_text(json.dumps(document))
    with pytest.raises(ModelLoadError, match="widthh"):
        dc.load_model(folder)
    document["model"]["unet"].pop("widthh")
    document["surprise"] = 1
    path.write_text(json.dumps(document))
    with pytest.raises(ModelLoadError, match="surprise"):
        dc.load_model(folder)
    path.write_text("{not json")
    with pytest.raises(ModelLoadError, match="JSON"):
        dc.load_model(folder)
    path.unlink()
    with pytest.raises(ModelLoadError, match="config.json"):
        dc.load_model(folder)


def test_corrupted_weights(saved):
    folder, _ = saved
    (folder / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ModelLoadError, match="safetensors"):
        dc.load_model(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="missing"):
        dc.load_model(folder)


def test_not_a_folder_or_repo(tmp_path):
    with pytest.raises(ModelLoadError, match="no such model folder"):
        dc.load_model(tmp_path / "absent")
    with pytest.raises(ModelLoadError, match="no such model folder"):
        dc.load_model("not-a-repo-id")


HUB_SCRIPT = """
import sys, dsm_core as dc
try:
    m = dc.load_model(sys.argv[1], revision=sys.argv[2] if len(sys.argv) > 2 else None)
    print("OK", m.log_norm_nats, m.source)
except dc.ModelLoadError as exc:
    print("ERR", exc)
"""


def run_offline(cache, *args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_HOME": str(cache)}
    out = subprocess.run(
        [sys.executable, "-c", HUB_SCRIPT, *args], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_hub_loading_offline_from_cache(saved, tmp_path):
    folder, _ = saved
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someone--dsm-tiny"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in ("model.safetensors", "config.json"):
        (snapshot / name).write_bytes((folder / name).read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    assert run_offline(tmp_path / "hub", "someone/dsm-tiny") == "OK -321.5 someone/dsm-tiny"
    out = run_offline(tmp_path / "hub", "someone/absent")
    assert out.startswith("ERR") and "no network" in out and "HF_HUB_OFFLINE" in out


def test_a_folder_saved_before_the_floor_takes_its_training_range(saved):
    """Folders written before models knew their floor (no ``model.t_min``) take the run's
    ``noise.t_min`` from their metadata, so t = 0 is not evaluated below the trained range."""
    saved = saved[0]
    config = json.loads((saved / "config.json").read_text())
    config["model"].pop("t_min")
    config["metadata"] = {"train_config": {"noise": {"t_min": 1e-5, "t_max": 1e3}}}
    (saved / "config.json").write_text(json.dumps(config))
    model = dc.load_model(saved)
    assert model.t_min == 1e-5
    x = torch.rand(2, *model.image_shape)
    with torch.no_grad():
        assert torch.equal(model.energy(x, 0.0), model.energy(x, 1e-5))
    config["metadata"] = {}
    (saved / "config.json").write_text(json.dumps(config))
    assert dc.load_model(saved).t_min == 0.0  # nothing recorded: no floor
    config["model"]["t_min"] = -1e-6
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="t_min"):
        dc.load_model(saved)


def _refuse_constant(name):
    raise ValueError(f"{name} in strict JSON")


def test_config_json_is_strict_json_when_metadata_holds_nan(saved):
    folder, model = saved
    metadata = {"log_norm_stderr_nats": float("nan"), "bound": float("inf"), "steps": [1, 2.5]}
    dc.save_model(model, folder, metadata=metadata)
    document = json.loads((folder / "config.json").read_text(), parse_constant=_refuse_constant)
    expected = {"log_norm_stderr_nats": None, "bound": None, "steps": [1, 2.5]}
    assert document["metadata"] == expected
    loaded = dc.load_model(folder)
    assert loaded.metadata == expected and loaded.log_norm_nats == -321.5


def test_a_folder_written_with_a_nan_literal_still_loads(saved):
    folder, _ = saved
    path = folder / "config.json"
    document = json.loads(path.read_text())
    document["metadata"]["log_norm_stderr_nats"] = float("nan")
    path.write_text(json.dumps(document, indent=2))  # the old writer: a bare NaN
    assert "NaN" in path.read_text()
    loaded = dc.load_model(folder)
    assert loaded.log_norm_nats == -321.5 and math.isnan(loaded.metadata["log_norm_stderr_nats"])


def test_training_data_name_reads_either_record():
    from dsm_core.checkpoint import training_data_name

    assert (
        training_data_name({"data": {"name": "natural:/data/bsds500"}}) == "natural:/data/bsds500"
    )
    # folders exported before metadata had "data" record it in the run's train_config only
    assert (
        training_data_name({"train_config": {"data": {"name": "fashion-mnist"}}}) == "fashion-mnist"
    )
    assert training_data_name({"data": None, "train_config": {"data": None}}) is None
    assert training_data_name({}) is None
