"""Training: lr schedule, one step, a short run, resume after kills, NaN stop, the scripts."""

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from train_helpers import CONFIGS, FAST, tiny_config

import dsm_core as dc
from dsm_core import losses, train_state
from dsm_core.config import LossConfig, NoiseConfig, to_dict
from dsm_core.data import splits
from dsm_core.energy import model_from_config
from dsm_core.evaluation import random_t_loss
from dsm_core.losses import DualScoreLoss
from dsm_core.train_config import TrainConfig, load_config_file
from dsm_core.train_state import load_training_state
from dsm_core.training import NonFiniteLossError, learning_rate, train, train_step

REPO = Path(__file__).resolve().parent.parent
TRAIN_SCRIPT = REPO / "train" / "train.py"


def read_log(run_dir: Path) -> list[dict]:
    path = run_dir / train_state.LOG_FILE
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written
            break
    return records


# --------------------------------------------------------------------------------------------
# Schedule and command line


def test_learning_rate_schedule_and_warmup():
    cfg = TrainConfig(lr=5e-4, lr_halve_every_steps=100_000, warmup_steps=0)
    assert learning_rate(0, cfg) == 5e-4
    assert learning_rate(99_999, cfg) == 5e-4
    assert learning_rate(100_000, cfg) == 2.5e-4
    assert learning_rate(999_999, cfg) == pytest.approx(5e-4 / 512)
    warm = TrainConfig(lr=1e-3, lr_halve_every_steps=10, warmup_steps=4)
    assert [learning_rate(s, warm) for s in range(5)] == pytest.approx(
        [2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3]
    )
    assert learning_rate(10, warm) == 5e-4
    assert learning_rate(7, TrainConfig(lr=1.0, lr_halve_every_steps=None)) == 1.0


def test_dry_run_prints_resolved_config(tmp_path):
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, str(TRAIN_SCRIPT), "--config", "tiny_cpu", "--out", str(out),
         "--dry-run", "lr=0.002", "data.subset=A", "data.subset_size=10", "grad_clip=null"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    document = json.loads(result.stdout)
    assert document["lr"] == 0.002 and document["data"]["subset"] == "A"
    assert document["model"]["unet"]["base_width"] == 8  # the preset was expanded
    assert not out.exists()
    bad = subprocess.run(
        [sys.executable, str(TRAIN_SCRIPT), "--config", "tiny_cpu", "--dry-run", "bogus=1"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode != 0 and "bogus" in bad.stderr


# --------------------------------------------------------------------------------------------
# One step


@pytest.mark.parametrize("time_term", ["none", "gaussian", "gaussian_log_t"])
@pytest.mark.parametrize("head", ["inner_product", "squared_norm"])
def test_every_parameter_gets_a_gradient(time_term, head, generator):
    torch.manual_seed(0)
    model = dc.build_energy_model("tiny", time_term=time_term, head=head)
    x = torch.rand(4, 1, 16, 16, generator=generator)
    t = torch.tensor([1e-4, 1e-2, 1.0, 100.0])
    z = torch.randn(x.shape, generator=generator)
    total, _, _, _ = DualScoreLoss(model)(x, x + t.sqrt().view(-1, 1, 1, 1) * z, t, LossConfig())
    total.mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient for {missing}"
    if time_term != "none":
        assert model.time_term.correction[2].weight.grad.abs().sum() > 0
    if time_term == "gaussian_log_t":
        assert model.time_term.log_t_correction[2].weight.grad.abs().sum() > 0


def test_train_step_updates_and_reports(generator):
    torch.manual_seed(0)
    model = dc.build_energy_model("tiny")
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(4, 1, 16, 16, generator=generator)
    stats = train_step(model, x, NoiseConfig(1e-6, 1e3), LossConfig(), optimizer, generator)
    assert set(stats) >= {"loss", "space", "time"}
    assert stats["loss"] == pytest.approx(stats["space"] + stats["time"], rel=1e-5)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_nonfinite_loss_skips_the_update(generator):
    torch.manual_seed(0)
    model = dc.build_energy_model("tiny")
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(2, 1, 16, 16, generator=generator)
    x[0, 0, 0, 0] = math.nan
    with pytest.raises(NonFiniteLossError, match="non-finite"):
        train_step(model, x, NoiseConfig(), LossConfig(), optimizer, generator)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


# --------------------------------------------------------------------------------------------
# The loop


def test_short_run_learns_and_exports(tmp_path):
    cfg = tiny_config(num_steps=120, batch_size=32, eval_every_steps=120, eval_num_images=32)
    eval_images = splits.load_heldout_images(cfg.data, 16, 64)
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)  # the same initial weights as the run
        initial = model_from_config(cfg.model)
    result = train(cfg, tmp_path / "run", progress=False)
    assert result.step == 120 and result.interrupted_by is None
    trained = dc.load_model(tmp_path / "run" / "model")
    args = (cfg.noise, cfg.loss)
    before = random_t_loss(initial, eval_images, *args, seed=3)["loss"]
    after = random_t_loss(trained, eval_images, *args, seed=3)["loss"]
    # the zero score (D = y) scores ~1; a model that learned to denoise does clearly better
    assert after < 0.8 * before and after < 0.9, (before, after)
    meta = trained.metadata
    assert meta["steps"] == 120 and meta["resolution"] == 16 and meta["data"]["name"] == "digits"
    assert math.isfinite(meta["log_norm_stderr_nats"]) and trained.log_norm_nats != 0
    records = read_log(tmp_path / "run")
    evals = [r for r in records if r["kind"] == "eval"]
    assert len(evals) == 1 and len(evals[0]["psnr_out_db"]) == 17
    assert {"-30", "90", "7.5"} <= set(evals[0]["psnr_out_db"])
    assert math.isfinite(evals[0]["nll_bits_per_dim"])
    with pytest.raises(FileExistsError):
        train(cfg, tmp_path / "run", progress=False)


def test_init_from_starts_at_a_packaged_models_weights(tmp_path):
    source = train(tiny_config(num_steps=3), tmp_path / "first", progress=False)
    assert source.step == 3
    folder = tmp_path / "first" / "model"
    cfg = tiny_config(num_steps=0, init_from=str(folder))
    train(cfg, tmp_path / "second", progress=False)
    first, second = dc.load_model(folder), dc.load_model(tmp_path / "second" / "model")
    for name, value in first.state_dict().items():
        torch.testing.assert_close(second.state_dict()[name], value, rtol=0, atol=0)
    # an EMA of the weights starts from the source's weights too (it is what gets exported)
    averaged = tiny_config(num_steps=0, init_from=str(folder), ema_decay=0.9)
    train(averaged, tmp_path / "averaged", progress=False)
    ema = dc.load_model(tmp_path / "averaged" / "model").state_dict()
    for name, value in first.state_dict().items():
        torch.testing.assert_close(ema[name], value, rtol=0, atol=0)
    fresh = train(tiny_config(num_steps=0), tmp_path / "fresh", progress=False)
    assert fresh.step == 0
    unet = dc.load_model(tmp_path / "fresh" / "model").state_dict()
    assert any(not torch.equal(unet[k], v) for k, v in first.state_dict().items())
    dequantized = tiny_config(num_steps=2, init_from=str(folder), **{"data.dequantize": True})
    assert train(dequantized, tmp_path / "dequantized", progress=False).step == 2
    saved = json.loads((tmp_path / "dequantized" / "config.json").read_text())
    assert saved["data"]["dequantize"] is True and saved["init_from"] == str(folder)
    # the exports count the source's steps and wall time too, also after a resume
    source_meta = dc.load_model(folder).metadata
    meta = dc.load_model(tmp_path / "dequantized" / "model").metadata
    assert meta["init_from"]["steps"] == 3 and meta["steps"] == 3 + 2
    assert meta["wall_time_s"] > meta["init_from"]["wall_time_s"] == source_meta["wall_time_s"]
    longer = dataclasses.replace(dequantized, num_steps=4)
    (tmp_path / "dequantized" / "config.json").write_text(json.dumps({**saved, "num_steps": 4}))
    assert train(longer, tmp_path / "dequantized", resume=True, progress=False).step == 4
    meta = dc.load_model(tmp_path / "dequantized" / "model").metadata
    assert meta["init_from"]["steps"] == 3 and meta["steps"] == 3 + 4
    # the network is fully convolutional: a run may fine-tune the weights at another image size
    larger = {"data.resolution": 32, "model.image_size": 32}
    at_32 = tiny_config(num_steps=0, init_from=str(folder), **larger)
    train(at_32, tmp_path / "32", progress=False)
    fine_tuned = dc.load_model(tmp_path / "32" / "model")
    assert fine_tuned.config.image_size == 32 and fine_tuned.d == 4 * first.d
    for name, value in first.state_dict().items():
        torch.testing.assert_close(fine_tuned.state_dict()[name], value, rtol=0, atol=0)
    wider = tiny_config(num_steps=0, init_from=str(folder), **{"model.unet.base_width": 4})
    with pytest.raises(ValueError, match="another architecture.*base_width"):
        train(wider, tmp_path / "third", progress=False)


def test_init_from_may_add_the_log_t_time_term_and_change_eps(tmp_path, generator):
    source = tiny_config(num_steps=2, **{"model.time_term": "gaussian"})
    train(source, tmp_path / "first", progress=False)
    folder = tmp_path / "first" / "model"
    upgraded = tiny_config(
        num_steps=0, init_from=str(folder), **{"model.time_term": "gaussian_log_t"}
    )
    train(upgraded, tmp_path / "second", progress=False)
    first, second = dc.load_model(folder), dc.load_model(tmp_path / "second" / "model")
    assert second.config.time_term == "gaussian_log_t"
    y = torch.rand(3, 1, 16, 16, generator=generator)
    t = torch.tensor([1e-5, 1e-2, 10.0])
    with torch.no_grad():  # h starts at zero: the same function as the source
        torch.testing.assert_close(second.energy(y, t), first.energy(y, t), rtol=0, atol=0)
    back = tiny_config(num_steps=0, init_from=str(tmp_path / "second" / "model"))
    with pytest.raises(ValueError, match="another architecture.*time_term"):
        train(back, tmp_path / "third", progress=False)
    # the norm's eps is not part of the weights: a run may change it (issue 12: 1e-5 -> 1e-9)
    other_eps = tiny_config(
        num_steps=0,
        init_from=str(folder),
        **{"model.time_term": "gaussian", "model.unet.norm_eps": 1e-3},
    )
    train(other_eps, tmp_path / "eps", progress=False)
    eps = dc.load_model(tmp_path / "eps" / "model")
    assert eps.config.unet.norm_eps == 1e-3 != first.config.unet.norm_eps
    for name, value in first.state_dict().items():
        torch.testing.assert_close(eps.state_dict()[name], value, rtol=0, atol=0)


def test_init_from_may_switch_on_the_mean_embedding(tmp_path, generator):
    kinds = {"model.mean_term": "gaussian", "model.head": "squared_norm"}
    train(tiny_config(num_steps=2, **kinds), tmp_path / "first", progress=False)
    folder = tmp_path / "first" / "model"
    seeing = tiny_config(
        num_steps=0, init_from=str(folder), **kinds, **{"model.mean_embedding": True}
    )
    train(seeing, tmp_path / "second", progress=False)
    first, second = dc.load_model(folder), dc.load_model(tmp_path / "second" / "model")
    assert second.config.mean_embedding and not first.config.mean_embedding
    y = torch.rand(3, 1, 16, 16, generator=generator)
    t = torch.tensor([1e-5, 1e-2, 10.0])
    with torch.no_grad():  # its weights start at zero: the same function as the source
        torch.testing.assert_close(second.energy(y, t), first.energy(y, t), rtol=0, atol=0)
    back = tiny_config(num_steps=0, init_from=str(tmp_path / "second" / "model"), **kinds)
    with pytest.raises(ValueError, match="another architecture.*mean_embedding"):
        train(back, tmp_path / "third", progress=False)


def test_init_from_may_switch_on_the_box_term(tmp_path, generator):
    kinds = {"model.mean_term": "gaussian", "model.head": "squared_norm"}
    train(tiny_config(num_steps=2, **kinds), tmp_path / "first", progress=False)
    folder = tmp_path / "first" / "model"
    boxed = tiny_config(
        num_steps=0, init_from=str(folder), **kinds, **{"model.box_term": "gaussian_tail"}
    )
    train(boxed, tmp_path / "second", progress=False)
    first, second = dc.load_model(folder), dc.load_model(tmp_path / "second" / "model")
    assert second.config.box_term == "gaussian_tail" and first.config.box_term == "none"
    y = torch.rand(3, 1, 16, 16, generator=generator)
    t = torch.tensor([1e-5, 1e-2, 10.0])
    with torch.no_grad():  # the same weights; the term is zero on the box and positive off it
        torch.testing.assert_close(second.raw_energy(y, t), first.raw_energy(y, t), rtol=0, atol=0)
        small = torch.tensor([1e-5, 1e-4, 1e-3])  # beyond the margin (3 sqrt(t) < 0.1)
        assert (second.raw_energy(y - 0.5, small) > first.raw_energy(y - 0.5, small)).all()
    # K is estimated at t_max = 1e3, where the faded term is ~1e-5 of the noisy images' distance
    assert abs(second.log_norm_nats - first.log_norm_nats) < 0.01


def test_frozen_modules_keep_their_weights_and_the_rest_trains(tmp_path):
    kinds = {"model.mean_term": "gaussian", "model.head": "squared_norm"}
    train(tiny_config(num_steps=2, **kinds), tmp_path / "first", progress=False)
    folder = tmp_path / "first" / "model"
    frozen = tiny_config(
        num_steps=3, init_from=str(folder), frozen_modules=["time_term", "mean_term"], **kinds
    )
    train(frozen, tmp_path / "second", progress=False)
    first, second = dc.load_model(folder).state_dict(), dc.load_model(tmp_path / "second" / "model")
    for name, value in second.state_dict().items():
        if name.startswith(("time_term.", "mean_term.")):
            torch.testing.assert_close(value, first[name], rtol=0, atol=0)
    moved = [
        n
        for n, v in second.state_dict().items()
        if n.startswith("unet.") and not torch.equal(v, first[n])
    ]
    assert moved
    saved = json.loads((tmp_path / "second" / "config.json").read_text())
    assert saved["frozen_modules"] == ["time_term", "mean_term"]
    with pytest.raises(ValueError, match="no 'mean_embedding' to freeze"):
        train(
            tiny_config(num_steps=1, frozen_modules=["mean_embedding"]),
            tmp_path / "third",
            progress=False,
        )


def test_resume_refuses_a_different_config(tmp_path):
    cfg = tiny_config(num_steps=3)
    train(cfg, tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match="lr: saved"):
        train(dataclasses.replace(cfg, lr=1.0), tmp_path / "run", resume=True, progress=False)
    # a run saved before a field existed resumes with that field's default; unknown ones raise
    path = tmp_path / "run" / "config.json"
    saved = json.loads(path.read_text())
    del saved["init_from"], saved["data"]["dequantize"]
    longer = dataclasses.replace(cfg, num_steps=4)
    saved["num_steps"] = 4
    path.write_text(json.dumps(saved))
    assert train(longer, tmp_path / "run", resume=True, progress=False).step == 4
    path.write_text(json.dumps({**saved, "no_such_field": 1}))
    with pytest.raises(ValueError, match="no_such_field"):
        train(longer, tmp_path / "run", resume=True, progress=False)


def test_nan_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = losses.score_matching_terms

    def corrupt_at_step_13(*args, **kwargs):
        calls["n"] += 1
        terms = real(*args, **kwargs)
        if calls["n"] == 13:
            return type(terms)(space=terms.space * math.nan, time=terms.time)
        return terms

    monkeypatch.setattr(losses, "score_matching_terms", corrupt_at_step_13)
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match="at step 13 ") as info:
        train(tiny_config(), run, progress=False)
    assert info.value.step == 13
    assert "step 10" in str(info.value)  # names the checkpoint it kept
    state = load_training_state(run / train_state.CHECKPOINT_FILE)
    assert state.step == 10
    assert all(torch.isfinite(v).all() for v in state.model.values())
    assert json.loads((run / "model" / "config.json").read_text())["metadata"]["steps"] == 10
    assert read_log(run)[-1]["kind"] == "error"


def _launch(run_dir: Path, resume: bool = False) -> subprocess.Popen:
    args = [sys.executable, str(TRAIN_SCRIPT), "--config", "tiny_cpu", "--out", str(run_dir)]
    args += ["--threads", "1", "--no-progress", "--quiet"]
    args += [f"{k}={json.dumps(v)}" for k, v in FAST.items()]
    if resume:
        args.append("--resume")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(run_dir: Path, process: subprocess.Popen, predicate, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(predicate(r) for r in read_log(run_dir)):
            return
        if process.poll() is not None:
            raise AssertionError(f"run ended early: {process.communicate()[1].decode()[-2000:]}")
        time.sleep(0.02)
    raise AssertionError("timed out")


@pytest.mark.parametrize("how", ["SIGTERM", pytest.param("SIGKILL", marks=pytest.mark.slow)])
def test_killed_run_resumes_exactly(tmp_path, how):
    """A run killed mid-way and resumed ends with the same weights as an uninterrupted one."""
    reference = tmp_path / "reference"
    ref = _launch(reference)
    run = tmp_path / "run"
    process = _launch(run)
    if how == "SIGTERM":
        _wait_for(run, process, lambda r: r["kind"] == "train" and r["step"] >= 5)
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 128 + signal.SIGTERM
        assert "resume" in process.stderr.read().decode()
    else:
        _wait_for(run, process, lambda r: r["kind"] == "checkpoint" and r["step"] >= 10)
        process.kill()
        process.wait(60)
    stopped_at = load_training_state(run / train_state.CHECKPOINT_FILE).step
    assert 5 <= stopped_at < FAST["num_steps"]
    resumed = _launch(run, resume=True)
    assert resumed.wait(120) == 0, resumed.stderr.read().decode()[-2000:]
    assert ref.wait(120) == 0, ref.stderr.read().decode()[-2000:]

    final = load_training_state(run / train_state.CHECKPOINT_FILE)
    expected = load_training_state(reference / train_state.CHECKPOINT_FILE)
    assert final.step == FAST["num_steps"] == expected.step
    for name, value in expected.model.items():
        assert torch.equal(final.model[name], value), name
    # The log runs 1..num_steps once each, and the data stream never restarted.
    steps = [r["step"] for r in read_log(run) if r["kind"] == "train"]
    assert steps == list(range(1, FAST["num_steps"] + 1))
    num_images = len(splits.load_training_data(tiny_config().data, 16))
    for record in read_log(run):
        if record["kind"] == "train":
            consumed = record["step"] * FAST["batch_size"]
            assert (record["epoch"], record["data_position"]) == divmod(consumed, num_images)


def test_checkpoint_state_round_trip(tmp_path):
    cfg = tiny_config(num_steps=2, ema_decay=0.9)
    train(cfg, tmp_path / "run", progress=False)
    state = load_training_state(tmp_path / "run" / train_state.CHECKPOINT_FILE)
    assert state.step == 2 and state.ema is not None and state.config == to_dict(cfg)
    assert state.optimizer["param_groups"][0]["betas"] == (0.9, 0.999)
    assert len(state.noise_rng) == 1 and state.noise_rng[0].dtype == torch.uint8
    # EMA weights differ from the raw weights after two steps, and the export uses them.
    exported = dc.load_model(tmp_path / "run" / "model")
    name = next(iter(state.ema))
    assert torch.equal(exported.state_dict()[name], state.ema[name])
    assert not torch.equal(state.ema[name], state.model[name])


@pytest.mark.slow
def test_generalization_driver(tmp_path):
    out = tmp_path / "gen"
    args = [sys.executable, str(REPO / "train" / "generalization.py"), "--config", "tiny_cpu"]
    args += ["--out", str(out), "--sizes", "6", "--num-images", "4", "--no-progress"]
    args += ["num_steps=2", "batch_size=4", "eval_num_images=8", "checkpoint_every_steps=2"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    for which in ("A_images", "B_images"):
        entry = summary["6"][which]
        assert entry["num_images"] == 4
        assert {"mean_abs_diff_db", "rms_diff_db", "pearson", "mean_diff_db"} <= set(entry)
    assert (out / "curve.png").stat().st_size > 0 and (out / "N6" / "scatter.png").is_file()
    scatter = np.load(out / "N6" / "scatter.npz")
    assert (
        scatter["indices_B"].tolist()[0]
        == len(splits.load_split(tiny_config().data, 16, "train")) - 1
    )
    a_meta = dc.load_model(out / "N6A" / "model").metadata["data"]
    assert (a_meta["subset"], a_meta["subset_size"]) == ("A", 6)
    # A second call reuses the finished runs instead of training again.
    log_size = (out / "N6A" / "log.jsonl").stat().st_size
    again = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (out / "N6A" / "log.jsonl").stat().st_size == log_size


def test_release_preset_trains_on_cpu_through_the_gpu_code_path(tmp_path):
    """The imagenet64_color preset (8.6M params), on ImageNet64 npz files the test writes."""
    folder = tmp_path / "imagenet64"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("train_data_batch_1.npz", 6), ("val_data.npz", 4)):
        data = rng.integers(0, 256, size=(n, 3 * 64 * 64), dtype=np.uint8)
        np.savez(folder / name, data=data, labels=np.arange(1, n + 1))
    overrides = {
        "data.name": f"imagenet64:{folder}",
        "num_steps": 2,
        "batch_size": 2,
        "log_every_steps": 1,
        "eval_every_steps": 1000,
        "eval_num_images": 2,
        "eval_batch_size": 2,
        "checkpoint_every_steps": 1000,
        "device": "cpu",
    }
    cfg = load_config_file(CONFIGS / "imagenet64_color.json", overrides)
    release = dc.presets.preset_config("imagenet64", 3)
    assert cfg.model == dataclasses.replace(release, t_min=cfg.noise.t_min)
    result = train(cfg, tmp_path / "run", progress=False)
    assert result.step == 2
    records = [r for r in read_log(tmp_path / "run") if r["kind"] == "train"]
    assert [r["step"] for r in records] == [1, 2] and all(math.isfinite(r["loss"]) for r in records)
    model = dc.load_model(tmp_path / "run" / "model")
    assert sum(p.numel() for p in model.parameters()) == 8_649_856
    assert model.image_shape == (3, 64, 64) and math.isfinite(model.log_norm_nats)


def test_training_with_ascent_chain_heat_points(tmp_path):
    """loss.heat_points="ascent" trains end to end and logs a finite heat term."""
    overrides = {
        "num_steps": 4,
        "log_every_steps": 2,
        "loss.heat_weight": 1.0,
        "loss.heat_images": 2,
        "loss.heat_points": "ascent",
        "loss.heat_chains": 4,
    }
    train(tiny_config(**overrides), tmp_path / "run", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    heat = [row["heat_loss"] for row in rows if row["kind"] == "train"]
    assert len(heat) == 2 and all(math.isfinite(h) and h != 0 for h in heat)
