"""Training precision: where bfloat16 autocast pays off, which one a run uses, and its tolerances.

Training keeps float32 master weights, optimizer state and loss reduction in every precision;
"bf16" autocasts the network's forward (and so its scores and the double backward) to bfloat16.
On a CPU that computes bf16 natively (AVX512-BF16 or AMX, through oneDNN) the dual score matching
step of the default model is about 1.5x faster at equal loss (``bench/training_throughput.py``,
issue 16); on one without, oneDNN emulates bf16 and it is slower than float32, so it is refused.
A run's precision is a choice of the machine, not of the model: it is not part of ``TrainConfig``
(beyond the CUDA-era ``bf16`` switch), and a checkpoint written in one precision resumes in the
other (the weights and the optimizer state are float32 either way).

The other fastest measured setting of the step lives here too: :func:`apply_malloc_setting`, which
makes glibc keep the memory the double backward frees instead of returning it to the OS.
"""

import copy
import ctypes
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from dsm_core import units
from dsm_core.analysis.estimators import ode_nll_nats
from dsm_core.config import LossConfig, NoiseConfig
from dsm_core.energy import BaseEnergy
from dsm_core.evaluation import random_t_loss
from dsm_core.normalization import estimate_log_norm

PRECISIONS = ("auto", "fp32", "bf16")

# oneDNN instruction sets (ONEDNN_MAX_CPU_ISA / DNNL_MAX_CPU_ISA values) that include native bf16
_BF16_ISAS = {
    "ALL",
    "AVX2_VNNI_2",
    "AVX512_CORE_BF16",
    "AVX512_CORE_FP16",
    "AVX512_CORE_AMX",
    "AVX512_CORE_AMX_FP16",
    "AVX10_1_512",
    "AVX10_1_512_AMX",
    "AVX10_1_512_AMX_FP16",
    "AVX10_2_512",
    "AVX10_2_512_AMX_2",
}
# /proc/cpuinfo flags of native bf16 arithmetic (dot products, not only conversions)
_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "avx_ne_convert")


@dataclass(frozen=True)
class Bf16Support:
    """Whether this machine's CPU computes bfloat16 convolutions natively, and why (one line)."""

    native: bool
    reason: str


def cpu_bf16_support(cpuinfo: str | Path = "/proc/cpuinfo") -> Bf16Support:
    """Native bf16 on this CPU: oneDNN present, a bf16 CPU flag, and no ISA cap that hides it.

    Reads the ``flags`` of ``cpuinfo`` (Linux) and the ``ONEDNN_MAX_CPU_ISA`` /
    ``DNNL_MAX_CPU_ISA`` environment variables (a cap below AVX512_CORE_BF16, e.g. ``AVX2``, makes
    oneDNN emulate bf16, so it counts as no support). Cheap: no timing.

    Args:
        cpuinfo: the file to read the CPU flags from.

    Returns:
        A :class:`Bf16Support`; ``native`` is False wherever it cannot tell.
    """
    if not torch.backends.mkldnn.is_available():
        return Bf16Support(False, "this torch build has no oneDNN (mkldnn)")
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        isa = os.environ.get(name, "").strip().upper()
        if isa and isa not in _BF16_ISAS:
            return Bf16Support(False, f"{name}={isa} caps oneDNN below native bf16")
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return Bf16Support(False, f"cannot read the CPU flags ({cpuinfo})")
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    found = [flag for flag in _BF16_FLAGS if flag in flags]
    if not found:
        return Bf16Support(False, "the CPU has no native bf16 (no avx512_bf16 / amx_bf16 flag)")
    return Bf16Support(True, f"the CPU has {' and '.join(found)}")


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a run trains in: ``name`` "fp32" or "bf16", its autocast dtype (None for
    float32) and a one-line reason to print."""

    name: str
    autocast_dtype: torch.dtype | None
    reason: str


def resolve_precision(
    requested: str, device: torch.device | str, *, config_bf16: bool = False
) -> PrecisionChoice:
    """The precision to train in on ``device``.

    Args:
        requested: "fp32", "bf16" or "auto". "auto" is bf16 on a CPU with native bf16 (the
            fastest measured setting, issue 16), float32 on any other CPU, and the config's
            ``bf16`` switch on CUDA (float32 unless set; bf16 with double backprop is untested
            there).
        device: the training device.
        config_bf16: the run config's ``bf16`` field.

    Returns:
        A :class:`PrecisionChoice`.

    Raises:
        ValueError: an unknown name, or "bf16" on a CPU without native bf16 (oneDNN would emulate
            it, slower than float32), or on a CUDA device without bf16.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    device = torch.device(device)
    if requested == "fp32":
        return PrecisionChoice("fp32", None, "float32 as requested")
    if device.type == "cuda":
        if requested == "auto" and not config_bf16:
            return PrecisionChoice("fp32", None, "auto on CUDA: float32 (the config's bf16=false)")
        if not torch.cuda.is_bf16_supported():
            raise ValueError(f"bf16 requested, but {device} does not support bfloat16")
        return PrecisionChoice("bf16", torch.bfloat16, f"bf16 autocast on {device}")
    if device.type != "cpu":
        if requested == "auto":
            return PrecisionChoice("fp32", None, f"auto on {device.type}: float32")
        raise ValueError(f"bf16 training is supported on CPU and CUDA, not {device.type}")
    support = cpu_bf16_support()
    if support.native:
        why = "as requested" if requested == "bf16" else "auto: the fastest measured setting"
        return PrecisionChoice(
            "bf16", torch.bfloat16, f"bf16 autocast, float32 weights ({why}; {support.reason})"
        )
    if requested == "auto":
        return PrecisionChoice("fp32", None, f"auto: float32 because {support.reason}")
    raise ValueError(
        f"bf16 training refused on this CPU: {support.reason}; oneDNN would emulate bf16, "
        "slower than float32. Train with precision fp32 (or auto)."
    )


# --------------------------------------------------------------------------------------------
# The allocator: keep freed memory in the process

MALLOC_SETTINGS = ("keep", "release")
MALLOC_TRIM_THRESHOLD = 256 * 2**20  # bytes of free memory at the heap's top kept, not trimmed
MALLOC_MMAP_THRESHOLD = 32 * 2**20  # larger blocks are mmap'd; glibc's cap on 64-bit systems
_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers (glibc malloc.h)
_M_MMAP_THRESHOLD = -3


@dataclass(frozen=True)
class MallocChoice:
    """The allocator setting of this process: ``name`` "keep" or "release", the ``mallopt``
    parameters it set (``(name, value)`` pairs, empty when none) and a one-line reason."""

    name: str
    settings: tuple[tuple[str, int], ...]
    reason: str


def _glibc() -> ctypes.CDLL | None:
    """This process's C library when it is glibc on Linux (has ``mallopt``), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return None  # musl and others: no glibc malloc to tune
    return libc


def apply_malloc_setting(requested: str = "keep") -> MallocChoice:
    """Make glibc's malloc keep freed memory in the process ("keep"), or leave it alone.

    What: "keep" calls ``mallopt(M_TRIM_THRESHOLD, 256 MiB)`` and ``mallopt(M_MMAP_THRESHOLD,
    32 MiB)`` at run time (no environment variables, any time after start; calling it again sets
    the same values). Blocks up to 32 MiB then come from the heap, and up to 256 MiB of free
    memory at the heap's top stays mapped instead of being returned to the OS. "release" does
    nothing: glibc's defaults, which return it.

    Why: a dual score matching step allocates and frees hundreds of MB in its double backward.
    With glibc's defaults (a dynamic mmap threshold, trimming the heap above twice it) that memory
    goes back to the OS after every step and the next step faults it in again. Measured with
    ``bench/dual_vs_single_step.py`` (natural32, batch 32, 1 thread, bf16 autocast, 6 runs of each
    alternated, issue 16): 8.4-14.3k minor page faults per dual step (float32: 15-21k, 36 ms of
    system time), none in a score-network step; with "keep" 3-5 faults. Dual / score-network step
    time: median 2.48 (2.44-2.60) with glibc's defaults, 2.29 (2.20-2.33) with "keep".
    Both settings are needed: the trim threshold alone fixes the mmap threshold at 128 KiB (every
    larger tensor mmap'd and unmapped: 9x the faults, the step 1.7x slower in one run), the mmap
    threshold alone keeps trimming at 128 KiB. glibc refuses mmap thresholds above 32 MiB (64-bit).

    Cost: the process keeps up to 256 MiB of freed memory: its resident size between steps stays
    near its peak (natural32 at 64x64, float32: 1.10 GB instead of 0.91 GB after a step). The peak
    is about the same (the benchmark's 562-574 MB either way).

    Args:
        requested: "keep" or "release".

    Returns:
        A :class:`MallocChoice`: what was set, or "release" with the reason nothing was (not glibc
        on Linux, or ``mallopt`` refused).

    Raises:
        ValueError: an unknown name.
    """
    if requested not in MALLOC_SETTINGS:
        raise ValueError(f"malloc setting must be one of {MALLOC_SETTINGS}, got {requested!r}")
    if requested == "release":
        return MallocChoice("release", (), "glibc's defaults, as requested: freed memory returned")
    libc = _glibc()
    if libc is None:
        return MallocChoice("release", (), "not glibc on Linux: the C library's defaults")
    wanted = (
        ("M_TRIM_THRESHOLD", _M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD),
        ("M_MMAP_THRESHOLD", _M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD),
    )
    done = []
    for name, param, value in wanted:
        if libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)) != 1:
            return MallocChoice(
                "release", tuple(done), f"glibc refused mallopt({name}, {value}); defaults kept"
            )
        done.append((name, value))
    return MallocChoice(
        "keep",
        tuple(done),
        f"glibc keeps up to {MALLOC_TRIM_THRESHOLD >> 20} MiB of freed memory, blocks up to "
        f"{MALLOC_MMAP_THRESHOLD >> 20} MiB from the heap (fewer page faults per step)",
    )


# --------------------------------------------------------------------------------------------
# Quality tolerances of reduced precision


@dataclass(frozen=True)
class PrecisionTolerances:
    """How far a bf16-trained model may be from the float32-trained one of the same short run.

    Both runs start from the same weights and see the same images, t and z; they are evaluated
    in float32 on the same held-out noise and probes. Each difference must stay within
    ``max(absolute, spread_factor * spread)``, where spread is the largest difference between the
    float32 run and float32 reference runs that differ only in their t and z draws (what any
    change of a run perturbs; Adam from a trained model amplifies small changes, measured on
    the default model: K moved 0.16 dB/dim and the gap 1 dB/dim between two noise seeds at
    lr 5e-4). Absolute amounts: ``loss_rel``, the relative difference of the held-out loss
    (fixed t and z; no spread allowance); ``log_norm_db``, K in dB/dim (``10 K / (d ln 10)``);
    ``ode_gap_db``, the mean (one-shot - ODE) log p gap in dB/dim (same Hutchinson probes).
    """

    loss_rel: float = 0.02
    log_norm_db: float = 0.02
    ode_gap_db: float = 0.05
    spread_factor: float = 1.5


@dataclass(frozen=True)
class RunQuality:
    """A short run's model evaluated in float32: held-out loss, K (nats and dB/dim) and the mean
    one-shot - ODE log p gap (dB/dim, positive: the one-shot log p is higher)."""

    loss: float
    log_norm_nats: float
    log_norm_db: float
    ode_gap_db: float
    train_losses: tuple[float, ...]


@dataclass(frozen=True)
class PrecisionComparison:
    """Float32 and bf16 runs of the same short training, float32 runs with other noise draws
    (``references``, empty when not run), and their differences."""

    fp32: RunQuality
    bf16: RunQuality
    tolerances: PrecisionTolerances
    references: tuple[RunQuality, ...] = ()

    @property
    def loss_rel(self) -> float:
        return abs(self.bf16.loss - self.fp32.loss) / abs(self.fp32.loss)

    @property
    def log_norm_db(self) -> float:
        return abs(self.bf16.log_norm_db - self.fp32.log_norm_db)

    @property
    def ode_gap_db(self) -> float:
        return abs(self.bf16.ode_gap_db - self.fp32.ode_gap_db)

    def spread(self, key: str) -> float:
        """The largest |reference - fp32| of ``key`` ("log_norm_db" or "ode_gap_db") over the
        references; 0 without any."""
        return max(
            (abs(getattr(r, key) - getattr(self.fp32, key)) for r in self.references), default=0.0
        )

    def allowed(self, key: str) -> float:
        """The tolerance of ``key`` ("loss_rel", "log_norm_db" or "ode_gap_db") in this run."""
        absolute = getattr(self.tolerances, key)
        if key == "loss_rel":
            return absolute
        return max(absolute, self.tolerances.spread_factor * self.spread(key))

    def failures(self) -> list[str]:
        """One line per tolerance exceeded (empty: bf16 is within every tolerance)."""
        checks = (
            ("held-out loss (relative)", "loss_rel"),
            ("K (dB/dim)", "log_norm_db"),
            ("one-shot - ODE gap (dB/dim)", "ode_gap_db"),
        )
        return [
            f"{name}: {getattr(self, key):.4g} > {self.allowed(key):.4g}"
            for name, key in checks
            if getattr(self, key) > self.allowed(key)
        ]


def short_run_quality(
    model: BaseEnergy,
    x_train: torch.Tensor,
    x_eval: torch.Tensor,
    *,
    num_steps: int,
    batch_size: int,
    lr: float,
    noise_cfg: NoiseConfig,
    loss_cfg: LossConfig,
    autocast_dtype: torch.dtype | None,
    seed: int = 0,
    ode_steps: int = 20,
    eval_seed: int = 12345,
) -> RunQuality:
    """Train a copy of ``model`` for ``num_steps`` Adam steps, then evaluate it in float32.

    Args:
        model: the starting energy model (not modified).
        x_train: training images (N, C, H, W) in [0, 1], taken in order, ``batch_size`` a step.
        x_eval: held-out images (M, C, H, W): loss at fixed t and z, K at ``noise_cfg.t_max``,
            one-shot and ODE log p (``ode_steps`` RK4 steps, one Rademacher probe).
        num_steps, batch_size, lr: the run.
        noise_cfg, loss_cfg: the training noise range and loss weights.
        autocast_dtype: None (float32) or torch.bfloat16.
        seed: seeds t and z of the run.
        ode_steps: RK4 steps of the probability-flow ODE.
        eval_seed: seeds the evaluation's noise and probes (the same for every run compared).

    Returns:
        A :class:`RunQuality`.
    """
    from dsm_core.training import train_step  # training imports this module

    trained = copy.deepcopy(model).train().requires_grad_(True)  # a loaded model is frozen
    optimizer = torch.optim.Adam(trained.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    n = x_train.shape[0]
    for step in range(num_steps):
        idx = torch.arange(step * batch_size, (step + 1) * batch_size) % n
        stats = train_step(
            trained,
            x_train[idx],
            noise_cfg,
            loss_cfg,
            optimizer,
            generator,
            autocast_dtype=autocast_dtype,
        )
        losses.append(stats["loss"])
    trained.eval()
    loss = random_t_loss(trained, x_eval, noise_cfg, loss_cfg, seed=eval_seed)["loss"]
    estimate = estimate_log_norm(
        trained, x_eval, noise_cfg.t_max, generator=torch.Generator().manual_seed(eval_seed + 1)
    )
    trained.log_norm_nats = estimate.log_norm_nats
    with torch.no_grad():
        oneshot_nats = trained.energy(x_eval, 0.0).double()  # (M,) -log p one-shot
    ode = ode_nll_nats(
        trained, x_eval, num_steps=ode_steps, generator=torch.Generator().manual_seed(eval_seed + 2)
    )
    d = trained.d
    gap_nats = (ode.nll_nats.double() - oneshot_nats).mean().item()  # log p one-shot - ODE
    return RunQuality(
        loss=float(loss),
        log_norm_nats=estimate.log_norm_nats,
        log_norm_db=float(units.nats_to_db_per_dim(estimate.log_norm_nats, d)),
        ode_gap_db=float(units.nats_to_db_per_dim(gap_nats, d)),
        train_losses=tuple(losses),
    )


def compare_precisions(
    model: BaseEnergy,
    x_train: torch.Tensor,
    x_eval: torch.Tensor,
    *,
    num_steps: int,
    batch_size: int,
    lr: float = 5e-4,
    noise_cfg: NoiseConfig | None = None,
    loss_cfg: LossConfig | None = None,
    tolerances: PrecisionTolerances | None = None,
    seed: int = 0,
    ode_steps: int = 20,
    num_references: int = 3,
) -> PrecisionComparison:
    """The same seeded short run in float32 and in bf16 autocast, evaluated alike in float32.

    Args are those of :func:`short_run_quality` (defaults: ``NoiseConfig()``, dual score
    matching ``LossConfig(time_weight=1)``, :class:`PrecisionTolerances`); ``num_references``
    more float32 runs, with the noise seeds ``seed + 1``, ``seed + 2``, ..., measure the
    run-to-run spread. One reference is not enough: on the default model (2026-12-01, 40 steps at
    lr 5e-4) the one-shot - ODE gap of float32 runs with seeds 0-3 was 0.86, 0.91, -2.19 and
    0.14 dB/dim, so seed 1 alone put the spread at 0.05 and bf16's 0.12 outside it.

    Returns:
        A :class:`PrecisionComparison`; ``failures()`` lists the tolerances exceeded.
    """
    noise_cfg = noise_cfg or NoiseConfig()
    loss_cfg = loss_cfg or LossConfig(time_weight=1.0)
    runs = {}
    plan = [("fp32", None, seed), ("bf16", torch.bfloat16, seed)]
    plan += [(f"reference {k}", None, seed + k) for k in range(1, num_references + 1)]
    for name, dtype, run_seed in plan:
        runs[name] = short_run_quality(
            model,
            x_train,
            x_eval,
            num_steps=num_steps,
            batch_size=batch_size,
            lr=lr,
            noise_cfg=noise_cfg,
            loss_cfg=loss_cfg,
            autocast_dtype=dtype,
            seed=run_seed,
            ode_steps=ode_steps,
        )
    return PrecisionComparison(
        runs["fp32"],
        runs["bf16"],
        tolerances or PrecisionTolerances(),
        tuple(runs[f"reference {k}"] for k in range(1, num_references + 1)),
    )
