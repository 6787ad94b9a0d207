"""glibc malloc settings for tensor workloads on CPU: freed tensor memory is kept for reuse.

Why (issue 17, "per-step allocations"): a VM-UNet step allocates and frees tensors of 1-25 MiB by
the hundred. glibc serves large blocks with fresh mmaps and trims the top of its heap when a large
block is freed, so the next step's tensors land on pages the kernel has to fault in and zero again:
on this project's two-core machine, up to 15,000 page faults per vmunet inference and 35,000-51,000
per training step (batch 2), 280-330 ms of system CPU time per step. With the settings below the
inference faults drop to a few hundred at most and the training ones to 11,000-13,000 (the rest
come from the worker threads' arenas), and the system time to 160-200 ms per step (three runs of
each, alternated): about 60 ms of a 2.2 s step on two cores. The wall-clock gain is within this
shared machine's noise (median of five alternated pairs: 0.93 -> 1.01 training img/s; inference
unchanged within noise), so it is a small, steady saving, not a headline.

What: ``mallopt`` with a fixed mmap threshold of 256 MiB (fixing it also stops glibc's dynamic
threshold from moving), a trim threshold of 1 GiB and a top pad of 64 MiB. The five pairs above
used a 32 MiB threshold, the system-time runs 256 MiB: the same thing at batch 2, where no tensor is
larger than 32 MiB; 256 MiB keeps larger batches' tensors on the heap too. The cost is that the
process keeps up to 1 GiB of freed heap for reuse instead of returning it at once; peak RSS did
not change (1.84-1.93 GiB for vmunet inference + training either way). Blocks above 256 MiB are
still mmapped and returned on free.

Where: the ``specmamba`` command applies it once per process before running a subcommand; library
users call :func:`tune_cpu_malloc` themselves. ``SPECMAMBA_MALLOC=default`` leaves malloc as it is,
and so does any ``MALLOC_*`` tuning variable already in the environment (glibc read the user's
choice at start-up; we do not override it). On other C libraries (macOS, musl, Windows) nothing is
done and the reason is returned.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import platform

__all__ = ["MALLOPT_SETTINGS", "malloc_state", "tune_cpu_malloc"]

# glibc's mallopt parameter numbers (malloc.h).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
#: (mallopt parameter, value, name) applied by :func:`tune_cpu_malloc`, in this order.
MALLOPT_SETTINGS = (
    (_M_MMAP_THRESHOLD, 256 << 20, "M_MMAP_THRESHOLD"),
    (_M_TRIM_THRESHOLD, 1 << 30, "M_TRIM_THRESHOLD"),
    (_M_TOP_PAD, 64 << 20, "M_TOP_PAD"),
)
_USER_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")


def _why_not() -> str | None:
    """Why the settings are not applied here (with what to do about it), or None if they can be."""
    if os.environ.get("SPECMAMBA_MALLOC", "").strip().lower() == "default":
        return "SPECMAMBA_MALLOC=default: malloc left as it is"
    user = [name for name in _USER_VARIABLES if name in os.environ]
    if user:
        return f"{', '.join(user)} set in the environment: the user's malloc tuning is kept"
    libc_name, _ = platform.libc_ver()
    if platform.system() != "Linux" or libc_name != "glibc":
        return f"not a glibc Linux ({platform.system()}, {libc_name or 'unknown libc'}): nothing to tune"
    return None


@functools.cache
def tune_cpu_malloc() -> str | None:
    """Apply :data:`MALLOPT_SETTINGS` to this process (once; later calls return the first answer).

    Returns None when applied, else the reason it was not (see the module docstring). Safe to call
    from any thread before or after tensors exist; it changes how later allocations are served.
    """
    reason = _why_not()
    if reason is not None:
        return reason
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    refused = [name for param, value, name in MALLOPT_SETTINGS if libc.mallopt(param, value) != 1]
    return f"mallopt refused {', '.join(refused)}" if refused else None


def malloc_state() -> str:
    """One line for benchmark headers: the settings in force after :func:`tune_cpu_malloc`, or why
    malloc runs with its defaults."""
    reason = tune_cpu_malloc()
    if reason is not None:
        return f"defaults ({reason})"
    return "tuned, " + ", ".join(f"{name} {value >> 20} MiB" for _, value, name in MALLOPT_SETTINGS)
