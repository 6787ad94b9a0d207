"""The run folder: what a training run writes, and the rules that keep it whole.

Layout (DESIGN.md "Run folder"): ``config.yaml`` (resolved config), ``metrics.csv`` (one row per epoch),
``summary.json``, ``checkpoint_best.pt``, ``checkpoint_last.pt``, and ``model/config.json`` +
``model/model.safetensors`` for release. Every file is written atomically, and:

- **one writer**: a process writing the folder holds an exclusive lock on ``.lock`` in it
  (``flock``; the system drops it when the process dies, so a killed run never leaves a stale lock).
  A second ``train`` on the same folder, ``--resume`` included, is refused while the first runs.
- **checkpoint_last.pt is the truth**: every epoch is saved as checkpoint_last.pt first, then
  checkpoint_best.pt (when it improved), metrics.csv, config.yaml, summary.json. Each of those can be
  rebuilt from checkpoint_last.pt (which holds the metrics history), so resume rewrites them from it
  (:meth:`RunFolder.reconcile`): a kill at any point resumes to the files an uninterrupted run writes.
- **nothing replaced before it is replaced**: ``--overwrite`` moves the old run's files into
  ``.replaced-run/`` and deletes them only once the new run has saved its first checkpoint; a new run
  that fails (or is killed) before that gets the old run put back, at once or by the next command.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import torch
import yaml

from ..atomic import atomic_write_text, write_csv, write_json
from ..disk import output_error
from ..errors import ConfigError
from .checkpoint import save_checkpoint

RUN_FILES = ("config.yaml", "metrics.csv", "summary.json", "checkpoint_best.pt", "checkpoint_last.pt")
RELEASE_DIR = "model"
LOCK_FILE = ".lock"
SET_ASIDE = ".replaced-run"


class RunFolder:
    """Paths, lock and writers of one run folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    config = property(lambda self: self.root / "config.yaml")
    metrics = property(lambda self: self.root / "metrics.csv")
    summary = property(lambda self: self.root / "summary.json")
    best = property(lambda self: self.root / "checkpoint_best.pt")
    last = property(lambda self: self.root / "checkpoint_last.pt")
    release = property(lambda self: self.root / RELEASE_DIR)
    set_aside_folder = property(lambda self: self.root / SET_ASIDE)

    def holds_run(self) -> bool:
        return any((self.root / name).exists() for name in RUN_FILES)

    def existing(self) -> list[str]:
        return [name for name in RUN_FILES if (self.root / name).exists()]

    # -- one writer at a time -------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the folder's exclusive lock (creating the folder); ConfigError when another process
        holds it. A folder this call created is removed again if nothing but the lock was written."""
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"--out {self.root} exists and is not a folder; choose another output path.")
        created = not self.root.exists()
        lock_path = self.root / LOCK_FILE
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as err:
            raise output_error(err, self.root, "create the run folder") from err
        try:
            if not _try_lock(fd):
                os.lseek(fd, 0, os.SEEK_SET)
                holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
                raise ConfigError(
                    f"Run folder {self.root} is being written by another process (pid {holder}): two runs "
                    "in one folder would overwrite each other, and resuming a run that is still training "
                    "would fork it. Wait for that process to finish (or stop it), or choose another --out."
                )
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, str(os.getpid()).encode())
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock
            if created and [p.name for p in self.root.iterdir()] == [LOCK_FILE]:
                lock_path.unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    self.root.rmdir()

    # -- new, resumed and replaced runs -------------------------------------------------------------

    def prepare(self, resume: bool, overwrite: bool) -> None:
        """Check the folder for a new or resumed run (call while holding the lock).

        Refuses a folder holding a previous run unless resuming or overwriting; with ``overwrite`` the
        previous run is set aside (see the module docstring). First finishes what a killed process
        left: a set-aside run is put back, or deleted if the new run had saved its first checkpoint.
        """
        self.recover_set_aside()
        if resume:
            if not self.last.is_file():
                raise ConfigError(
                    f"--resume given, but {self.last} does not exist: there is no run to resume in "
                    f"{self.root}. Start a new run without --resume."
                )
            return
        if self.holds_run():
            if not overwrite:
                raise ConfigError(
                    f"Output folder {self.root} already holds a run ({', '.join(self.existing())}). "
                    "Pass --resume to continue it, --overwrite to replace it, or choose another --out."
                )
            self._set_aside()

    def discard_set_aside(self) -> None:
        """The new run has saved a checkpoint: the run it replaces is deleted for good."""
        shutil.rmtree(self.set_aside_folder, ignore_errors=True)

    def restore_set_aside(self) -> None:
        """The new run failed before its first checkpoint: put the run it was to replace back."""
        aside = self.set_aside_folder
        if not aside.is_dir():
            return
        for name in RUN_FILES:  # whatever the failed run wrote gives way to the old run
            (self.root / name).unlink(missing_ok=True)
        shutil.rmtree(self.release, ignore_errors=True)
        for path in aside.iterdir():
            os.replace(path, self.root / path.name)
        aside.rmdir()

    def _set_aside(self) -> None:
        aside = self.set_aside_folder
        aside.mkdir(exist_ok=True)
        for name in (*RUN_FILES, RELEASE_DIR):
            if (self.root / name).exists():
                os.replace(self.root / name, aside / name)

    def recover_set_aside(self) -> None:
        """Finish what a process killed during ``--overwrite`` left (call while holding the lock)."""
        if self.set_aside_folder.is_dir():
            if self.last.is_file():
                self.discard_set_aside()
            else:
                self.restore_set_aside()

    # -- files derived from checkpoint_last.pt ---------------------------------------------------------

    def reconcile(self, last: dict[str, Any], config_yaml: str, best_checkpoint: dict[str, Any]) -> None:
        """Rewrite what a kill may have left behind checkpoint_last.pt (``last``): checkpoint_best.pt
        when ``last`` is itself the best epoch and the best file holds another (``best_checkpoint``:
        ``last`` without its resume state), metrics.csv from its history, and config.yaml."""
        if last["best_epoch"] == last["epoch"] and _stored(self.best, "epoch") != last["epoch"]:
            save_checkpoint(best_checkpoint, self.best)
        self.write_metrics(list(last.get("history", [])))
        atomic_write_text(self.config, config_yaml)

    def check_belongs(self, last: dict[str, Any], ignored: Collection[str] = ()) -> None:
        """ConfigError unless ``last`` (the folder's checkpoint_last.pt) is of the run this folder
        records: the config in config.yaml (but the ``ignored`` keys, which a resume may change) and
        the run id of checkpoint_best.pt and summary.json. A foreign file cannot take the run over."""
        theirs = last["config"]
        ours = yaml.safe_load(self.config.read_text(encoding="utf-8")) if self.config.is_file() else {}
        reasons = [
            f"{key} {theirs[key]!r} where config.yaml has {value!r}"
            for key, value in (ours or {}).items()
            if key in theirs and key not in ignored and theirs[key] != value
        ]
        recorded = {
            "checkpoint_best.pt": _stored(self.best, "run_id"),
            "summary.json": self._summary_run_id(),
        }
        reasons += [
            f"its run id differs from that of {name}"
            for name, run_id in recorded.items()
            if run_id and last.get("run_id") and run_id != last["run_id"]
        ]
        if reasons:
            raise ConfigError(
                f"{self.last} is not a checkpoint of the run in {self.root} ({'; '.join(reasons)}): resuming "
                "from it would replace this run's checkpoint_best.pt, metrics.csv and config.yaml. Put the "
                "run's own checkpoint_last.pt back, or train that checkpoint's run in its own folder."
            )

    def _summary_run_id(self) -> str | None:
        try:
            return json.loads(self.summary.read_text(encoding="utf-8")).get("run_id")
        except (OSError, ValueError, AttributeError):
            return None

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Rewrite metrics.csv with all epoch rows so far (atomic, so a crash never truncates it)."""
        if rows:
            write_csv(self.metrics, rows)

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics.is_file():
            return []
        with open(self.metrics, newline="", encoding="utf-8") as fh:
            return [_parse_row(row) for row in csv.DictReader(fh)]

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json(self.summary, summary)


def _stored(path: Path, key: str) -> Any:
    """One entry of a checkpoint file (memory-mapped, so the weights are not read), or None when the
    file is missing or unreadable (a truncated or foreign file holds no value: reconcile rewrites it)."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True).get(key)
    except Exception:  # torch.load raises RuntimeError, UnpicklingError, EOFError... for bad files
        return None


def _try_lock(fd: int) -> bool:
    """Take the exclusive lock of ``fd`` without waiting; False when another process holds it."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _parse_row(row: dict[str, str]) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    for key, value in row.items():
        try:
            parsed[key] = int(value)
        except ValueError:
            try:
                parsed[key] = float(value)
            except ValueError:
                parsed[key] = value
    return parsed
