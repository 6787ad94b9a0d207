"""The run folder: what a training run writes, and the rule that it never clobbers an earlier run.

Layout (DESIGN.md "Run folder"): ``config.yaml`` (resolved config), ``metrics.csv`` (one row per epoch),
``summary.json``, ``checkpoint_best.pt``, ``checkpoint_last.pt``, and ``model/config.json`` +
``model/model.safetensors`` for release. Every file is written atomically.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Any

from ..atomic import write_csv, write_json
from ..errors import ConfigError

RUN_FILES = ("config.yaml", "metrics.csv", "summary.json", "checkpoint_best.pt", "checkpoint_last.pt")
RELEASE_DIR = "model"


class RunFolder:
    """Paths and writers of one run folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    config = property(lambda self: self.root / "config.yaml")
    metrics = property(lambda self: self.root / "metrics.csv")
    summary = property(lambda self: self.root / "summary.json")
    best = property(lambda self: self.root / "checkpoint_best.pt")
    last = property(lambda self: self.root / "checkpoint_last.pt")
    release = property(lambda self: self.root / RELEASE_DIR)

    def holds_run(self) -> bool:
        return any((self.root / name).exists() for name in RUN_FILES)

    def prepare(self, resume: bool, overwrite: bool) -> None:
        """Create the folder; refuse one holding a previous run unless resuming or overwriting."""
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"--out {self.root} exists and is not a folder; choose another output path.")
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
            for name in RUN_FILES:
                (self.root / name).unlink(missing_ok=True)
            shutil.rmtree(self.release, ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True)

    def existing(self) -> list[str]:
        return [name for name in RUN_FILES if (self.root / name).exists()]

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
