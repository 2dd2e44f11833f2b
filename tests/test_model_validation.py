"""A model folder is validated before anything is allocated: config values, parameter count
(built on the meta device), safetensors header shapes and dtypes, file sizes, bad downloads."""

import dataclasses
import json
import math
import time
import tracemalloc

import pytest
import torch
from safetensors.torch import load_file, save_file

import dsm_core as dc
import dsm_core.checkpoint as ckpt
from dsm_core.checkpoint import ModelLoadError
from dsm_core.energy import ScoreModel
from dsm_core.unet import min_parameters


@pytest.fixture
def folder(tmp_path, tiny_model):
    tiny_model.log_norm_nats = -12.5
    return dc.save_model(tiny_model, tmp_path / "model")


def _edit_config(folder, edit) -> None:
    path = folder / "config.json"
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))


@pytest.fixture
def builds(monkeypatch):
    """The default device of every model construction during a load."""
    devices = []
    original = ckpt.model_from_config

    def recording(*args, **kwargs):
        devices.append(torch.empty(0).device.type)
        return original(*args, **kwargs)

    monkeypatch.setattr(ckpt, "model_from_config", recording)
    return devices


def test_a_huge_config_is_refused_before_allocating(folder, builds):
    _edit_config(folder, lambda d: d["model"]["unet"].update(base_width=8192))
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match="parameters, more than the limit"):
        dc.load_model(folder)
    assert time.perf_counter() - start < 5
    assert builds == []  # unet.min_parameters already exceeds the cap: nothing is built


def test_a_wider_config_than_the_weights_is_refused_from_the_header(folder, builds, monkeypatch):
    _edit_config(folder, lambda d: d["model"]["unet"].update(base_width=16))
    monkeypatch.setattr(ckpt, "load_file", lambda *a, **k: pytest.fail("tensor data was read"))
    with pytest.raises(ModelLoadError, match=r"has shape .* the config needs"):
        dc.load_model(folder)
    assert builds == ["meta"]


def test_the_release_preset_is_within_the_parameter_cap():
    config = dc.build_energy_model("imagenet64").config
    shapes = ckpt.expected_tensor_shapes(config)
    assert sum(math.prod(s) for s in shapes.values()) == 8_647_552
    with pytest.raises(ModelLoadError, match="more than the limit of 8,000,000"):
        ckpt.expected_tensor_shapes(config, max_parameters=8_000_000)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("log_norm_nats"), "log_norm_nats = None"),
        (lambda d: d.update(log_norm_nats=None), "log_norm_nats = None"),
        (lambda d: d.update(log_norm_nats="12"), "log_norm_nats = '12'"),
        (lambda d: d.update(log_norm_nats=float("nan")), "log_norm_nats = nan"),
        (lambda d: d.update(log_norm_nats=float("inf")), "log_norm_nats = inf"),
        (lambda d: d["model"].update(image_size=0), "image_size = 0 must be positive"),
        (lambda d: d["model"].update(image_size=-16), "image_size = -16 must be >= 0"),
        (lambda d: d["model"].update(data_var=-0.5), "data_var = -0.5 must be positive"),
        (lambda d: d["model"].update(data_var=float("nan")), "data_var = nan is not a finite"),
        (lambda d: d["model"]["unet"].update(norm_eps=float("inf")), "norm_eps = inf"),
        (lambda d: d["model"]["unet"].update(num_scales=40), "num_scales = 40 needs images"),
        (lambda d: d["model"].update(image_size=10**6), "is more than 4096"),
    ],
)
def test_out_of_range_config_values_are_refused_by_name(folder, builds, edit, message):
    _edit_config(folder, edit)
    with pytest.raises(ModelLoadError, match=message):
        dc.load_model(folder)
    assert builds in ([], ["meta"])


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "base_width",
            10**9,
            r"at least [\d,]{20,} parameters, more than the limit of 64,000,000",
        ),
        ("base_width", 10**30, r"at least ~10\*\*61 parameters, more than the limit"),
        ("embed_dim", 10**9, "parameters, more than the limit"),
        ("num_frequencies", 10**9, "parameters, more than the limit"),
        ("channels", 10**9, "parameters, more than the limit"),
        ("kernel_size", 10**9 + 1, "parameters, more than the limit"),
        ("kernel_size", 10**9, "kernel_size = 1000000000 must be odd"),
        ("kernel_size", 0, "kernel_size = 0 must be positive"),
        ("num_scales", 10**9, "num_scales = 1000000000 needs images of at least 2"),
        ("num_scales", 10**400, r"num_scales = ~10\*\*399 needs images"),
        ("num_scales", 0, "num_scales = 0 must be positive"),
        ("embed_dim", 0, "embed_dim = 0 must be positive"),
        ("num_frequencies", 0, "num_frequencies = 0 must be positive"),
        ("encoder_layers", 10**9, "encoder_layers = 1000000000 must be from 2 to 64"),
        ("middle_layers", 1, "middle_layers = 1 must be from 2 to 64"),
        ("decoder_layers", -3, "decoder_layers = -3 must be >= 0"),
    ],
)
def test_absurd_config_integers_are_refused_in_one_line_before_building(
    folder, builds, field, value, message
):
    """Each was a torch traceback (overflow, IndexError) or a build of 10^9 modules (14 GB)."""
    _edit_config(folder, lambda d: d["model"]["unet"].update({field: value}))
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match=message) as caught:
        dc.load_model(folder)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert "\n" not in str(caught.value)
    assert builds == []  # refused from the config alone: not even a meta-device build
    assert seconds < 1 and peak < 2_000_000


@pytest.mark.parametrize("preset", ["tiny", "natural32", "fashion28", "imagenet64"])
def test_min_parameters_bounds_the_built_count(preset):
    model = dc.build_energy_model(preset)
    assert 0 < min_parameters(model.config.unet) <= sum(p.numel() for p in model.parameters())


def test_a_score_network_needs_no_constant(tmp_path):
    config = dataclasses.replace(dc.build_energy_model("tiny").config, head="score")
    folder = dc.save_model(ScoreModel(config), tmp_path / "score")
    assert json.loads((folder / "config.json").read_text())["log_norm_nats"] is None
    assert isinstance(dc.load_model(folder), ScoreModel)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s, n: s[n].fill_(float("nan")), "holds NaN or infinite"),
        (lambda s, n: s[n].view(-1)[0].fill_(float("inf")), "holds NaN or infinite"),
        (lambda s, n: s.update({n: s[n].to(torch.int64)}), "is I64; weights must be floating"),
        (lambda s, n: s.update({n: s[n].to(torch.uint8)}), "is U8; weights must be floating"),
    ],
)
def test_bad_weight_values_are_refused_naming_the_tensor(folder, edit, message):
    state = load_file(str(folder / "model.safetensors"))
    name = sorted(state)[-1]
    edit(state, name)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(ModelLoadError, match=rf"{name!r}.*{message}|{message}"):
        dc.load_model(folder)


def test_float64_and_float16_weights_load(folder, tiny_images):
    expected = dc.load_model(folder).energy(tiny_images, 0.1)
    state = load_file(str(folder / "model.safetensors"))
    save_file({k: v.double() for k, v in state.items()}, str(folder / "model.safetensors"))
    torch.testing.assert_close(dc.load_model(folder).energy(tiny_images, 0.1), expected)


LFS_POINTER = (
    "version https://git-lfs.github.com/spec/v1\n"
    "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
    "size 34619520\n"
)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("model.safetensors", LFS_POINTER.encode(), "Git LFS pointer file .*git lfs pull"),
        ("config.json", LFS_POINTER.encode(), "Git LFS pointer file"),
        ("model.safetensors", b"<!DOCTYPE html><html>Sign in</html>", "an HTML page"),
    ],
)
def test_bad_downloads_say_what_happened(folder, name, content, message):
    (folder / name).write_bytes(content)
    with pytest.raises(ModelLoadError, match=message):
        dc.load_model(folder)


def test_a_config_with_a_byte_order_mark_says_so(folder):
    path = folder / "config.json"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    with pytest.raises(ModelLoadError, match="byte-order mark"):
        dc.load_model(folder)


@pytest.mark.parametrize("name", ["config.json", *ckpt.COMPANION_FILES])
def test_oversized_json_and_companion_files_are_refused(folder, name):
    limit = ckpt.COMPANION_MAX_BYTES.get(name, ckpt.MAX_JSON_BYTES)
    with open(folder / name, "ab") as file:
        file.truncate(limit + 1)  # sparse: nothing is written to disk
    with pytest.raises(ModelLoadError, match=f"more than the limit of {limit:,}"):
        dc.load_model(folder)


def test_weights_larger_than_the_config_can_need_are_refused(folder):
    path = folder / "model.safetensors"
    most = (
        sum(
            math.prod(s) for s in ckpt.expected_tensor_shapes(dc.load_model(folder).config).values()
        )
        * 8
        + ckpt.MAX_HEADER_BYTES
    )
    with open(path, "ab") as file:
        file.truncate(most + 1)
    with pytest.raises(ModelLoadError, match="more than the config's"):
        dc.load_model(folder)


def _hub(monkeypatch, listed, snapshot=None):
    """Fake the Hub: ``get_paths_info`` answers ``listed`` (a list of entries, or an exception to
    raise), ``snapshot_download`` returns ``snapshot`` (or fails the test); the calls in order."""
    import huggingface_hub

    calls = []

    def paths_info(self, repo_id, paths, *, revision=None, **kwargs):
        calls.append(("paths_info", repo_id, revision, tuple(paths)))
        if isinstance(listed, BaseException):
            raise listed
        return listed

    def snapshot_download(repo_id, *, revision=None, allow_patterns=None, **kwargs):
        calls.append(("download", repo_id, revision))
        if snapshot is None:
            pytest.fail("downloaded before the sizes were checked")
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub.HfApi, "get_paths_info", paths_info)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return calls


def _listed(sizes: dict[str, int]):
    """Hub entries for file name -> size; .safetensors and .npz as LFS pointers of 134 bytes."""
    from huggingface_hub.hf_api import RepoFile

    entries = []
    for name, size in sizes.items():
        lfs = {"size": size, "oid": "0" * 64, "pointerSize": 134}
        is_lfs = name.endswith((".safetensors", ".npz"))
        entries.append(
            RepoFile(
                path=name, size=134 if is_lfs else size, oid="1" * 40, lfs=lfs if is_lfs else None
            )
        )
    return entries


SMALL = {"config.json": 900, "model.safetensors": 80_000}


@pytest.mark.parametrize(
    ("sizes", "message"),
    [
        ({"model.safetensors": 10**12}, "model.safetensors is 1,000,000,000,000 bytes on the Hub"),
        ({"config.json": 2_000_000}, "config.json is 2,000,000 bytes on the Hub"),
        ({"test_images.npz": 64_000_001}, "test_images.npz is 64,000,001 bytes on the Hub"),
        ({"README.md": 1_000_001}, "README.md is 1,000,001 bytes on the Hub"),
    ],
)
def test_hub_files_over_their_caps_are_refused_before_downloading(monkeypatch, sizes, message):
    calls = _hub(monkeypatch, _listed({**SMALL, **sizes}))
    with pytest.raises(ModelLoadError, match=f"someone/dsm@v1: {message}.*refused before"):
        dc.load_model("someone/dsm", revision="v1")
    assert [c[0] for c in calls] == ["paths_info"]
    assert set(calls[0][3]) == {ckpt.WEIGHTS_FILE, ckpt.CONFIG_FILE, *ckpt.COMPANION_FILES}


def test_the_hub_weights_cap_is_the_local_one():
    assert ckpt.max_weights_bytes(ckpt.MAX_PARAMETERS) == 64_000_000 * 8 + ckpt.MAX_HEADER_BYTES
    limit = ckpt.max_weights_bytes(ckpt.MAX_PARAMETERS)
    ckpt.check_hub_sizes("a/b", {ckpt.WEIGHTS_FILE: limit, "other.bin": 10**15})
    with pytest.raises(ModelLoadError, match=f"more than the limit of {limit:,}"):
        ckpt.check_hub_sizes("a/b", {ckpt.WEIGHTS_FILE: limit + 1})


def test_hub_files_within_their_caps_are_downloaded_and_loaded(monkeypatch, folder):
    calls = _hub(monkeypatch, _listed(SMALL), folder)
    model = dc.load_model("someone/dsm", revision="v1")
    assert model.source == "someone/dsm@v1" and model.log_norm_nats == -12.5
    assert [c[0] for c in calls] == ["paths_info", "download"] and calls[1][2] == "v1"


@pytest.mark.parametrize("error", ["offline", "no network"])
def test_without_an_answer_from_the_hub_the_cache_is_used_as_before(monkeypatch, folder, error):
    from huggingface_hub.errors import OfflineModeIsEnabled

    class ConnectError(Exception):  # the transport's own type (requests, httpx or httpx2)
        pass

    raised = OfflineModeIsEnabled("HF_HUB_OFFLINE=1") if error == "offline" else ConnectError()
    calls = _hub(monkeypatch, raised, folder)
    assert dc.load_model("someone/dsm").source == "someone/dsm"
    assert [c[0] for c in calls] == ["paths_info", "download"]


def test_a_hub_answer_about_the_repository_is_reported_without_downloading(monkeypatch):
    from huggingface_hub.errors import RepositoryNotFoundError

    class Missing(RepositoryNotFoundError):
        def __init__(self):  # the real one needs an HTTP response
            Exception.__init__(self, "404 Client Error")

    calls = _hub(monkeypatch, Missing())
    with pytest.raises(ModelLoadError, match="'someone/absent' not found"):
        dc.load_model("someone/absent")
    assert [c[0] for c in calls] == ["paths_info"]
