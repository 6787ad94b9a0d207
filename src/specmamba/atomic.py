"""Atomic file writes: write to a temporary file in the same folder, then rename over the target.

An interrupted run therefore never leaves a truncated checkpoint, table or report behind; the
previous version of the file stays intact until the new one is complete. A write that fails (disk
full, read-only) raises :class:`~specmamba.errors.OutputError` naming the target, and removes its
temporary file. :func:`staged_folder` does the same for everything a command writes into one folder
(masks, tables, figures): all of it appears at the end, or none of it. :func:`write_csv` and
:func:`write_json` are the package's one CSV and one JSON writer, so every table has one format:
a header of the columns in first-appearance order, CRLF line ends (RFC 4180, the csv module's
default), floats in full precision (Python's shortest repr that reads back exactly), an empty cell for
None and non-finite values (what spreadsheets and pandas read as missing), yes/no for booleans; JSON
indented, newline-terminated.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from .disk import output_error
from .errors import OutputError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``, else removed.

    An OSError while creating, writing or renaming it becomes an OutputError naming ``path``.
    """
    target = Path(path)
    tmp_path: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        # mkstemp makes 0600, and some writers recreate the file: give the permissions open() would.
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, target)
    except OutputError:
        raise
    except OSError as err:
        raise output_error(err, target) from err
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def staged_folder(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty staging folder for everything a command writes into ``folder``.

    On success its files (sub-folders included) are moved into ``folder``, replacing files of the same
    name and leaving every other file alone; on any failure the staging folder is removed and
    ``folder`` is as it was (removed again if this call created it). The staging folder is a hidden
    ``.partial-*`` folder inside ``folder``, so the moves are renames on one file system and error
    messages name paths under ``folder``.
    """
    target = Path(folder)
    created = not target.exists()
    committed = False
    try:
        target.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".partial-", dir=target))
    except OSError as err:
        raise output_error(err, target) from err
    try:
        yield stage
        for path in sorted(stage.rglob("*")):
            destination = target / path.relative_to(stage)
            if path.is_dir():
                destination.mkdir(exist_ok=True)
            else:
                os.replace(path, destination)
        committed = True
    except OutputError:
        raise
    except OSError as err:
        raise output_error(err, target) from err
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if created and not committed and target.is_dir() and not any(target.iterdir()):
            target.rmdir()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """``open`` that only replaces ``path`` once the file is completely written and closed."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def format_cell(value: Any) -> Any:
    """A table cell: None and non-finite floats -> '', booleans -> yes/no, floats in full precision."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return value


def write_csv(
    path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None
) -> None:
    """Rows of dicts as a CSV table, atomically (cells by :func:`format_cell`; a missing key is empty).

    ``columns`` default: every key of every row, in order of first appearance.
    """
    rows = list(rows)
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    with atomic_open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns))
        writer.writeheader()
        for row in rows:
            writer.writerow({key: format_cell(row.get(key)) for key in columns})


def write_json(
    path: str | os.PathLike[str], obj: Any, indent: int = 2, default: Callable[[Any], Any] | None = None
) -> None:
    """``obj`` as indented JSON with a final newline, atomically."""
    atomic_write_text(path, json.dumps(obj, indent=indent, default=default) + "\n")
