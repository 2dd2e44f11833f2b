"""Training precision: bf16 detection, the choice of a run, bf16 within tolerance of float32."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import dsm_core as dc
from dsm_core import precision, train_config, train_state, training
from dsm_core.precision import (
    MALLOC_MMAP_THRESHOLD,
    MALLOC_TRIM_THRESHOLD,
    PrecisionTolerances,
    apply_malloc_setting,
    compare_precisions,
    cpu_bf16_support,
    resolve_precision,
)

REPO = Path(__file__).resolve().parent.parent
NATIVE = cpu_bf16_support().native
FAST = {
    "num_steps": 4,
    "log_every_steps": 1,
    "eval_every_steps": 1000,
    "eval_num_images": 16,
    "eval_batch_size": 16,
    "checkpoint_every_steps": 2,
    "batch_size": 8,
}


def _cpuinfo(tmp_path: Path, flags: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f {flags}\n\n")
    return path


def test_bf16_support_reads_cpu_flags_and_isa_cap(tmp_path, monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    with_bf16 = _cpuinfo(tmp_path, "avx512_bf16")
    assert cpu_bf16_support(with_bf16).native == torch.backends.mkldnn.is_available()
    without = cpu_bf16_support(_cpuinfo(tmp_path, "avx512bw"))
    assert not without.native and "no native bf16" in without.reason
    assert not cpu_bf16_support(tmp_path / "missing").native
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # how a CPU without bf16 is emulated
    capped = cpu_bf16_support(with_bf16)
    assert not capped.native and "ONEDNN_MAX_CPU_ISA=AVX2" in capped.reason


def test_resolve_precision_refuses_bf16_without_native_support(monkeypatch):
    assert resolve_precision("fp32", "cpu").autocast_dtype is None
    with pytest.raises(ValueError, match="one of"):
        resolve_precision("fp16", "cpu")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    auto = resolve_precision("auto", "cpu")
    assert auto.name == "fp32" and auto.autocast_dtype is None and "AVX2" in auto.reason
    with pytest.raises(ValueError, match="bf16 training refused on this CPU.*fp32"):
        resolve_precision("bf16", "cpu")


@pytest.mark.skipif(not NATIVE, reason="this CPU has no native bf16")
def test_auto_is_bf16_on_a_cpu_with_native_bf16(monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    choice = resolve_precision("auto", "cpu")
    assert choice.name == "bf16" and choice.autocast_dtype is torch.bfloat16


@pytest.mark.skipif(not NATIVE, reason="this CPU has no native bf16")
class _FakeGlibc:
    """Records mallopt calls; ``accept`` is what mallopt returns (1: set, 0: refused)."""

    def __init__(self, accept: int = 1):
        self.calls: list[tuple[int, int]] = []
        self.accept = accept

    def mallopt(self, param, value) -> int:
        self.calls.append((param.value, value.value))
        return self.accept


def test_malloc_setting_returns_what_it_set_and_is_harmless_twice(monkeypatch):
    fake = _FakeGlibc()
    monkeypatch.setattr(precision, "_glibc", lambda: fake)
    expected = (
        ("M_TRIM_THRESHOLD", MALLOC_TRIM_THRESHOLD),
        ("M_MMAP_THRESHOLD", MALLOC_MMAP_THRESHOLD),
    )
    first = apply_malloc_setting("keep")
    assert first.name == "keep" and first.settings == expected and "256 MiB" in first.reason
    assert apply_malloc_setting() == first  # "keep" is the default; again: the same values
    assert fake.calls == [(-1, MALLOC_TRIM_THRESHOLD), (-3, MALLOC_MMAP_THRESHOLD)] * 2
    released = apply_malloc_setting("release")
    assert released.name == "release" and released.settings == () and len(fake.calls) == 4
    with pytest.raises(ValueError, match="one of"):
        apply_malloc_setting("off")
    monkeypatch.setattr(precision, "_glibc", lambda: _FakeGlibc(accept=0))
    refused = apply_malloc_setting("keep")
    assert refused.name == "release" and "refused mallopt(M_TRIM_THRESHOLD" in refused.reason


def test_malloc_setting_does_nothing_without_glibc(monkeypatch):
    monkeypatch.setattr(precision.sys, "platform", "darwin")
    assert precision._glibc() is None
    monkeypatch.setattr(precision.sys, "platform", "linux")

    class Musl:  # a C library without glibc's gnu_get_libc_version
        def mallopt(self, param, value):
            raise AssertionError("mallopt called on a non-glibc C library")

    monkeypatch.setattr(precision.ctypes, "CDLL", lambda name: Musl())
    assert precision._glibc() is None
    choice = apply_malloc_setting("keep")
    assert choice.name == "release" and choice.settings == () and "not glibc" in choice.reason


@pytest.mark.skipif(precision._glibc() is None, reason="not glibc on Linux")
def test_malloc_setting_applies_on_this_glibc():
    assert apply_malloc_setting("keep").name == "keep"  # glibc accepts the values


def test_bf16_short_run_stays_within_tolerances_of_fp32(tiny_images, generator):
    torch.manual_seed(0)
    model = dc.build_energy_model("tiny")
    low = torch.rand(64, 1, 4, 4, generator=generator)
    x_train = torch.nn.functional.interpolate(low, size=16, mode="bilinear", align_corners=False)
    comparison = compare_precisions(
        model, x_train, tiny_images, num_steps=20, batch_size=16, ode_steps=8
    )
    assert comparison.failures() == [], comparison
    # the runs did differ (bf16 really ran) yet stayed close
    assert comparison.fp32.train_losses != comparison.bf16.train_losses
    strict = PrecisionTolerances(loss_rel=0.0, log_norm_db=0.0, ode_gap_db=0.0)
    assert precision.PrecisionComparison(comparison.fp32, comparison.bf16, strict).failures()


def test_tolerances_widen_by_the_largest_reference_spread():
    def run(gap: float, k_db: float = 0.5) -> precision.RunQuality:
        return precision.RunQuality(0.25, 100.0, k_db, gap, (0.3,))

    bf16, tol = run(0.9), PrecisionTolerances()
    alone = precision.PrecisionComparison(run(0.0), bf16, tol)
    assert alone.spread("ode_gap_db") == 0.0 and alone.allowed("ode_gap_db") == tol.ode_gap_db
    assert alone.failures() == [f"one-shot - ODE gap (dB/dim): 0.9 > {tol.ode_gap_db:.4g}"]
    refs = (run(0.1), run(-0.7, k_db=0.52), run(0.3))
    spread = precision.PrecisionComparison(run(0.0), bf16, tol, refs)
    assert spread.spread("ode_gap_db") == pytest.approx(0.7)  # the largest, not the first
    assert spread.allowed("ode_gap_db") == pytest.approx(tol.spread_factor * 0.7)
    assert spread.allowed("log_norm_db") == pytest.approx(tol.spread_factor * 0.02)
    assert spread.failures() == []


def _tiny(**overrides) -> train_config.TrainConfig:
    return train_config.load_config_file(
        REPO / "train" / "configs" / "tiny_cpu.json", {**FAST, **overrides}
    )


def test_train_refuses_bf16_clearly_without_native_support(tmp_path, monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    with pytest.raises(ValueError, match="bf16 training refused"):
        training.train(_tiny(), tmp_path / "run", progress=False, precision="bf16")
    assert not (tmp_path / "run").exists()  # refused before touching the run folder


@pytest.mark.skipif(not NATIVE, reason="this CPU has no native bf16")
def test_a_run_resumes_across_precisions(tmp_path):
    run = tmp_path / "run"

    def stop_after_step_2(record: dict) -> None:  # as Ctrl-C would: checkpoint at step 2
        if record["kind"] == "train" and record["step"] == 2:
            os.kill(os.getpid(), signal.SIGINT)

    stopped = training.train(
        _tiny(), run, progress=False, precision="fp32", on_log=stop_after_step_2
    )
    assert stopped.step == 2 and stopped.interrupted_by == signal.SIGINT
    training.train(_tiny(), run, resume=True, progress=False, precision="bf16")
    records = [json.loads(line) for line in (run / train_state.LOG_FILE).read_text().splitlines()]
    used = [(r["step"], r["precision"]) for r in records if r["kind"] == "train"]
    assert used == [(1, "fp32"), (2, "fp32"), (3, "bf16"), (4, "bf16")]
    state = train_state.load_training_state(run / train_state.CHECKPOINT_FILE)
    assert state.step == 4
    assert all(v.dtype == torch.float32 for v in state.model.values() if v.is_floating_point())


def _cli(tmp_path: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    overrides = [f"{key}={value}" for key, value in {**FAST, "num_steps": 1}.items()]
    command = [sys.executable, str(REPO / "train" / "train.py"), "--config", "tiny_cpu"]
    command += ["--out", str(tmp_path / "run"), "--no-progress", "--quiet", "--threads", "1"]
    return subprocess.run(
        command + list(args) + overrides,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_cli_says_which_precision_and_refuses_bf16_without_support(tmp_path):
    run = _cli(tmp_path)
    assert run.returncode == 0, run.stderr
    expected = "bf16" if NATIVE else "fp32"
    assert f"precision: {expected} (" in run.stdout and "--precision fp32|bf16" in run.stdout
    malloc = "keep" if precision._glibc() is not None else "release"
    assert f"malloc: {malloc} (" in run.stdout and "--malloc keep|release" in run.stdout
    released = _cli(tmp_path / "r", "--malloc", "release")
    assert released.returncode == 0, released.stderr
    assert "malloc: release (glibc's defaults, as requested" in released.stdout
    bad = _cli(tmp_path / "x", "--malloc", "never")
    assert bad.returncode == 2 and "invalid choice: 'never'" in bad.stderr
    refused = _cli(tmp_path / "b", "--precision", "bf16", env={"ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert refused.returncode == 2
    assert "bf16 training refused on this CPU: ONEDNN_MAX_CPU_ISA=AVX2" in refused.stderr
