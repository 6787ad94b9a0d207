"""Fault injection for the tests of what a failure leaves on disk: small real disks, read-only
folders, and writes that fail with ENOSPC.

A real filesystem is used where the test can make one (a tmpfs mounted by root, as on these machines
and in CI); the fixtures skip where it cannot, and ``fail_with_enospc`` stands in for a full disk
anywhere.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def mounted_tmpfs(path: Path, size: str, read_only: bool = False) -> Iterator[Path]:
    """A tmpfs of ``size`` (e.g. "256k") mounted at ``path`` for the duration; skips where the test
    cannot mount one (not root, or no mount permission in the sandbox)."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@contextlib.contextmanager
def read_only_folder(path: Path) -> Iterator[Path]:
    """An existing, empty folder no process can write to: a read-only tmpfs as root (permission bits do
    not stop root), the permission bits otherwise."""
    if os.geteuid() == 0:
        with mounted_tmpfs(path, "64k", read_only=True) as folder:
            yield folder
        return
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o555)
    try:
        yield path
    finally:
        path.chmod(0o755)


def fill_disk(folder: Path, leave: int = 4096) -> None:
    """Fill the filesystem of ``folder`` until about ``leave`` bytes are free."""
    filler = folder / "filler.bin"
    with open(filler, "wb") as fh:
        block = b"\0" * 65536
        try:
            while True:
                fh.write(block)
                fh.flush()
        except OSError:
            pass
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    if free < leave:
        with open(filler, "r+b") as fh:
            fh.truncate(max(0, filler.stat().st_size - (leave - free)))


def fail_with_enospc(real: Callable, after: int = 0) -> Callable:
    """``real`` for its first ``after`` calls, then ENOSPC (the error a full disk gives) on every call."""
    calls = {"n": 0}

    def fail(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > after:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*args, **kwargs)

    return fail
