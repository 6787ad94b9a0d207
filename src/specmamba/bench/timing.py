"""Timing and memory helpers shared by the benchmarks (``specmamba bench scan|model``).

Benchmarks, never timed tests (DESIGN.md "Speed"): these helpers measure a callable the same way for
every backend so that figures printed side by side are comparable.

* :func:`time_ms`: warm-up calls, then the median (and min) wall time of ``repeats`` calls, with CUDA
  synchronisation around each call on GPU.
* :func:`peak_extra_bytes`: peak memory a call adds on top of what was allocated before it. On CUDA
  this is the allocator's peak statistic; on CPU (Linux) it is the process's resident-set high-water
  mark, reset through ``/proc/self/clear_refs`` before the call, minus the resident set before it. The
  CPU figure counts everything the process touched (numba scratch, torch temporaries, allocator
  slack), so it is an upper bound on the call's own allocations; None where /proc is unavailable.
  glibc keeps freed blocks resident, which would hide a call's allocations inside the "before"
  figure; so each CPU measurement first returns free heap memory to the OS (``malloc_trim``) and the
  first one pins the mmap threshold (``mallopt(M_MMAP_THRESHOLD, 128 KiB)``) so that large blocks
  are unmapped when freed.
* :func:`format_table`: a fixed-width text table for the console; :func:`publish` prints a result's
  table and writes its JSON atomically.
"""

from __future__ import annotations

import ctypes
import gc
import os
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..atomic import write_json

__all__ = [
    "Timing",
    "format_table",
    "peak_extra_bytes",
    "publish",
    "synchronize",
    "time_interleaved",
    "time_ms",
]

_PROC_STATUS = Path("/proc/self/status")
_PROC_CLEAR_REFS = Path("/proc/self/clear_refs")
_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
_malloc_pinned = False


def _release_free_memory() -> None:
    """Give freed heap memory back to the OS so that the resident set is live memory only (glibc)."""
    global _malloc_pinned
    try:
        libc = ctypes.CDLL(None)
        if not _malloc_pinned:
            libc.mallopt(_M_MMAP_THRESHOLD, 128 * 1024)
            _malloc_pinned = True
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: RSS figures may then read low
        pass


def synchronize(device: str | torch.device) -> None:
    """Wait for queued work on ``device`` (a no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class Timing:
    """Wall times of a benchmarked call, in milliseconds."""

    median_ms: float
    min_ms: float
    repeats: int


def time_ms(
    fn: Callable[[], Any], device: str | torch.device = "cpu", repeats: int = 5, warmup: int = 1
) -> Timing:
    """Median / min wall time of ``fn()`` over ``repeats`` calls after ``warmup`` untimed calls."""
    return time_interleaved([fn], device, repeats, warmup)[0]


def time_interleaved(
    fns: Sequence[Callable[[], Any]], device: str | torch.device = "cpu", repeats: int = 5, warmup: int = 1
) -> list[Timing]:
    """:func:`time_ms` of several calls taken in turns (a, b, c, a, b, c, ...), one Timing each.

    On a machine whose speed drifts (shared cores, frequency changes) calls timed one after the
    other can differ by 1.5-2x for the same work; taken in turns, every call sees the same drift,
    so their ratios hold even where the absolute figures move.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"bench timing: need repeats >= 1 and warmup >= 0, got {repeats} / {warmup}")
    for _ in range(warmup):
        for fn in fns:
            fn()
    synchronize(device)
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, times):
            start = time.perf_counter()
            fn()
            synchronize(device)
            out.append((time.perf_counter() - start) * 1e3)
    return [Timing(statistics.median(t), min(t), repeats) for t in times]


def _status_kb(key: str) -> int:
    match = re.search(rf"^{key}:\s+(\d+) kB", _PROC_STATUS.read_text(), re.MULTILINE)
    if match is None:
        raise OSError(f"{key} not found in {_PROC_STATUS}")
    return int(match.group(1))


def peak_extra_bytes(fn: Callable[[], Any], device: str | torch.device = "cpu") -> int | None:
    """Peak memory that one call of ``fn()`` adds above the memory in use before it (bytes).

    CUDA: ``torch.cuda.max_memory_allocated`` after resetting the peak. CPU: resident-set high-water
    mark after resetting it (Linux), minus the resident set before the call; None elsewhere.
    """
    dev = torch.device(device)
    gc.collect()
    if dev.type == "cuda":
        synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
        fn()
        synchronize(dev)
        return int(torch.cuda.max_memory_allocated(dev) - base)
    _release_free_memory()
    try:
        _PROC_CLEAR_REFS.write_text("5")  # resets VmHWM to the current resident set
        base = _status_kb("VmRSS")
        fn()
        return max(0, _status_kb("VmHWM") - base) * 1024
    except OSError:
        return None


def format_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """Right-aligned fixed-width table; floats printed with 2 decimals (None as '-')."""

    def cell(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.2f}"
        return str(v)

    text = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in text)) if text else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in text]
    return "\n".join(lines)


def publish(
    result: dict, render: Callable[[dict], str], verbose: bool, json_path: str | os.PathLike[str] | None
) -> None:
    """Print ``render(result)`` if ``verbose``; write ``result`` as JSON to ``json_path`` (atomically)."""
    if verbose:
        print(render(result))
    if json_path is not None:
        write_json(json_path, result)
