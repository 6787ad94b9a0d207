"""The file system as the user sees it: output folders checked before long work, OS errors as paragraphs.

Every command that writes (train, evaluate, predict, audit) calls :func:`check_output_folder` before
its first long step, so a read-only folder, a file in the way or a disk without room is reported in
seconds, not after the work. A write that fails later anyway (the disk filled meanwhile) goes through
:func:`output_error`, the one place that turns an ``OSError`` into the package's paragraph: the
path, what the system said, and what to do.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

from .errors import OutputError

#: errno -> what the user can do about it.
_ADVICE = {
    errno.ENOSPC: "the disk is full: free space on it or choose a folder on another disk",
    errno.EDQUOT: "the disk quota is exhausted: free space or choose a folder on another disk",
    errno.EROFS: "the file system is read-only: choose a writable folder",
    errno.EACCES: "permission denied: choose a folder you can write to, or change its permissions",
    errno.EPERM: "permission denied: choose a folder you can write to, or change its permissions",
    errno.ENOTDIR: "a file is in the way where a folder is needed: move it or choose another path",
    errno.EEXIST: "a file is in the way where a folder is needed: move it or choose another path",
}


def output_error(err: OSError, path: str | os.PathLike[str], what: str = "write") -> OutputError:
    """The package's error for an OSError raised while writing ``path`` (raise it ``from err``)."""
    reason = err.strerror or str(err)
    advice = _ADVICE.get(err.errno, "check the path and the disk, then run again")
    return OutputError(
        f"Cannot {what} {path}: {reason} ({advice}). Files written before are intact; "
        "nothing was half-written."
    )


def existing_ancestor(path: str | os.PathLike[str]) -> Path:
    """``path`` itself if it exists, else its nearest existing parent folder."""
    current = Path(os.path.abspath(path))
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def free_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes free for this user on the file system that holds (or would hold) ``path``."""
    return shutil.disk_usage(existing_ancestor(path)).free


def check_output_folder(folder: str | os.PathLike[str], flag: str, need_bytes: int = 0) -> None:
    """Raise OutputError unless ``folder`` can be created or written and has ``need_bytes`` free.

    The test is real: a probe file is created (and removed) in the folder, or in its nearest existing
    parent when the folder does not exist yet (nothing is created then). ``flag`` names the argument
    in the message (``--out``, ``-o``).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{flag} {folder} is a file, not a folder: choose a folder for the output.")
    probe_in = existing_ancestor(folder)
    if not probe_in.is_dir():
        raise OutputError(f"{flag} {folder}: {probe_in} is a file, not a folder; choose another path.")
    try:
        fd, probe = tempfile.mkstemp(prefix=".specmamba-probe-", dir=probe_in)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OutputError(
            f"{flag} {folder} cannot be written: {err.strerror or err} in {probe_in} "
            f"({_ADVICE.get(err.errno, 'choose a writable folder')})."
        ) from err
    free = free_bytes(probe_in)
    if free < need_bytes:
        raise OutputError(
            f"{flag} {folder}: the disk holding it has {_size(free)} free, but this run needs about "
            f"{_size(need_bytes)}; free space on it or choose a folder on another disk."
        )


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    value, unit = n / 1024, "KB"
    for bigger in ("MB", "GB", "TB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f} {unit}"
