"""glibc malloc tuning (cpu_malloc.py): freed tensor memory is reused instead of faulted in again.

The oracle is the kernel's own count of minor page faults (``getrusage``) over a steady pattern of
tensor allocations like a training step's at batch 4 (3-48 MiB, a few alive at a time), in a fresh
process each: tuned, a repeat of the pattern touches only pages it already has (< 100 faults allowed
for the interpreter's own small allocations); left at glibc's defaults, whose dynamic mmap
threshold stops at 32 MiB, every larger tensor is a fresh mmap faulted in page by page (10,000s of
faults), which is what the tuning is for. (Below 32 MiB the defaults' behaviour depends on the
process's history, so the pattern cannot show them reliably.)
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap

import pytest

from specmamba import cpu_malloc

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

_PATTERN = textwrap.dedent(
    """
    import json, resource, torch
    from specmamba.cpu_malloc import tune_cpu_malloc
    reason = tune_cpu_malloc()
    SIZES = (3, 12, 40, 6, 48, 24, 3, 40)  # MiB; glibc always mmaps blocks above 32 MiB
    def cycle():
        live = []
        for mb in SIZES:
            live.append(torch.empty(mb << 18).fill_(1.0))
            if len(live) > 3:
                live.pop(0)
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        cycle()
    start = faults()
    for _ in range(20):
        cycle()
    print(json.dumps({"reason": reason, "faults": faults() - start}))
    """
)


def _run_pattern(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "SPECMAMBA_MALLOC"))}
    out = subprocess.run(
        [sys.executable, "-c", _PATTERN], env={**clean, **env}, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason="mallopt tuning is glibc-only")
def test_tuned_malloc_reuses_freed_tensor_memory():
    tuned = _run_pattern()
    assert tuned["reason"] is None
    assert tuned["faults"] < 100, tuned
    untouched = _run_pattern(SPECMAMBA_MALLOC="default")
    assert "SPECMAMBA_MALLOC=default" in untouched["reason"]
    assert untouched["faults"] > 10 * max(tuned["faults"], 100), (tuned, untouched)


def test_the_opt_out_and_the_users_own_tuning_are_respected(monkeypatch):
    for name in ("SPECMAMBA_MALLOC", *cpu_malloc._USER_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SPECMAMBA_MALLOC", "default")
    assert "malloc left as it is" in cpu_malloc._why_not()
    monkeypatch.delenv("SPECMAMBA_MALLOC")
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "0")
    assert "MALLOC_TRIM_THRESHOLD_ set in the environment" in cpu_malloc._why_not()
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    assert (cpu_malloc._why_not() is None) == GLIBC


def test_other_c_libraries_are_left_alone(monkeypatch):
    monkeypatch.delenv("SPECMAMBA_MALLOC", raising=False)
    monkeypatch.setattr(cpu_malloc.platform, "system", lambda: "Darwin")
    monkeypatch.setattr(cpu_malloc.platform, "libc_ver", lambda: ("", ""))
    assert "not a glibc Linux (Darwin, unknown libc)" in cpu_malloc._why_not()


def test_the_state_line_names_the_settings_or_the_reason(monkeypatch):
    monkeypatch.setattr(cpu_malloc, "tune_cpu_malloc", lambda: None)
    assert cpu_malloc.malloc_state() == (
        "tuned, M_MMAP_THRESHOLD 256 MiB, M_TRIM_THRESHOLD 1024 MiB, M_TOP_PAD 64 MiB"
    )
    monkeypatch.setattr(
        cpu_malloc, "tune_cpu_malloc", lambda: "SPECMAMBA_MALLOC=default: malloc left as it is"
    )
    assert cpu_malloc.malloc_state() == "defaults (SPECMAMBA_MALLOC=default: malloc left as it is)"
