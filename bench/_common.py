"""Shared pieces of the benchmark scripts: the thread and allocator options, alternating timers,
load notes.

Imported as ``_common`` by the scripts of this folder (``python bench/NAME.py`` puts bench/ on
the path). Timing is ``time.perf_counter``; every timer alternates the things it compares and
swaps their order every round, so a slow spell of the machine hits all of them alike.
"""

import argparse
import os
import socket
import statistics
import time
from collections.abc import Callable

import torch

from dsm_core.precision import MALLOC_SETTINGS


def add_threads_arg(parser: argparse.ArgumentParser) -> None:
    """``--threads N`` (default 1): torch intra-op threads of the benchmark process."""
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")


def add_malloc_arg(parser: argparse.ArgumentParser) -> None:
    """``--malloc keep|release`` (default keep, as ``train/train.py``;
    ``dsm_core.precision.apply_malloc_setting``)."""
    parser.add_argument(
        "--malloc",
        choices=MALLOC_SETTINGS,
        default="keep",
        help="keep (default, as train.py: glibc keeps freed memory) or release (glibc's defaults)",
    )


def set_threads(threads: int) -> None:
    """One intra-op (and inter-op) thread pool size for the whole run."""
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # already set, or parallel work already started
        pass


def median(values: list[float]) -> float:
    return statistics.median(values)


def calls_per_sample(fn: Callable[[], object], min_sample_s: float) -> int:
    """How many back-to-back calls of ``fn`` make one timed sample of at least ``min_sample_s``.

    Calls ``fn`` once (untimed for the result: a warm-up) to estimate its duration.
    """
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    if min_sample_s <= 0 or once <= 0:
        return 1
    return max(1, int(min_sample_s / once + 0.999))


def time_alternating(
    fns: dict[str, Callable[[], object]],
    repeats: int,
    *,
    warmup: int = 1,
    min_sample_s: float = 0.0,
    max_seconds: float | None = None,
    min_repeats: int = 3,
) -> dict[str, list[float]]:
    """Seconds per call of each function, alternated: ``repeats`` samples of each.

    ``warmup`` untimed calls of each first. A sample is ``n`` back-to-back calls divided by
    ``n``, with ``n`` chosen per function so that a sample lasts at least ``min_sample_s``
    (0: one call per sample). Round i runs the functions in their given order rotated by i.
    With ``max_seconds``, rounds stop once the timed rounds have taken that long and at least
    ``min_repeats`` are done (every function always gets the same number of samples).
    """
    names = list(fns)
    for _ in range(max(0, warmup - 1)):
        for name in names:
            fns[name]()
    per_sample = {name: calls_per_sample(fns[name], min_sample_s) for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    began = time.perf_counter()
    for i in range(repeats):
        if max_seconds is not None and i >= min_repeats:
            if time.perf_counter() - began > max_seconds:
                break
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            n = per_sample[name]
            start = time.perf_counter()
            for _ in range(n):
                fns[name]()
            times[name].append((time.perf_counter() - start) / n)
    return times


def load_note(warn: bool = True) -> str:
    """The 1/5/15-minute load averages and CPU count; with ``warn``, a warning when others are
    busy (call it before the run starts, so the run itself is not counted)."""
    cpus = os.cpu_count() or 1
    one, five, fifteen = os.getloadavg()
    note = f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min), {cpus} CPUs"
    if warn and one >= 0.5:
        note += (
            f": other processes kept about {one:.1f} core(s) busy as this run started, so these "
            "are the numbers of a shared machine"
        )
    return note


def print_run_footer(load_before: str, start_wall: float) -> None:
    """The machine's load before and after the run, and the run's wall time (``perf_counter``
    at its start), printed before a script's last line."""
    print(f"before the run: {load_before}")
    print(f"after the run:  {load_note(warn=False)}")
    print(f"wall time {time.perf_counter() - start_wall:.0f} s")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fmt_ratio(x: float) -> str:
    """Two decimals below 10, one below 100, none above (the scripts' last lines)."""
    if x >= 100:
        return f"{x:.0f}"
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"
