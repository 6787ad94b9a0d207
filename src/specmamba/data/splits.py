"""Train / validation / test splits: explicit list files, or the seeded protocol of the spectral audit.

The spectral audit (REFERENCE.md section 3) split ISIC 2018 (2594 pairs) by sorting the case paths,
calling ``random.seed(42)`` and ``random.shuffle``, and keeping the first ``int(n * 0.8)`` cases for
training and the last 519 for evaluation. :func:`seeded_split` reproduces that order exactly with a
private ``random.Random(seed)``, which draws the same numbers as the module-level functions after
``random.seed(seed)`` but leaves the global random state untouched.

**k folds.** With ``folds=k`` (k >= 2) the same shuffled order is cut into k contiguous parts
(sizes differing by at most one, the larger first); fold ``f`` validates on part ``f`` and trains on
the others, so the k validation splits partition the cases. ``val_fraction`` is then unused.

A data folder may instead carry ``train.txt`` / ``val.txt`` / ``test.txt`` (one case name or file
name per line; blank lines and lines starting with ``#`` are ignored); they take precedence (folds
need the seeded order, so a folder with train/val lists refuses them).
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError
from .layouts import SamplePair

SPLITS = ("train", "val", "test", "all")
_LIST_SPLITS = ("train", "val", "test")


def seeded_split(
    names: Sequence[str], val_fraction: float = 0.2, seed: int = 42, folds: int = 0, fold: int = 0
) -> tuple[list[str], list[str]]:
    """Split case names into (train, val) exactly as ``sorted`` + ``random.seed`` + ``random.shuffle``.

    Train is the first ``int(len(names) * (1 - val_fraction))`` shuffled names, val the rest, both in
    shuffled order (2594 names -> 2075 / 519). With ``folds=k >= 2``, val is instead part ``fold`` of
    the shuffled order cut into k (10 names, 3 folds -> parts of 4, 3, 3) and train the other parts.
    The global ``random`` state is not changed.
    """
    check_folds(folds, fold)
    if not 0.0 <= val_fraction <= 1.0:
        raise ConfigError(f"--val-fraction {val_fraction}: must be between 0 and 1 (e.g. 0.2).")
    order = sorted(names)
    random.Random(seed).shuffle(order)
    if folds:
        if folds > len(order):
            raise ConfigError(f"--folds {folds}: more folds than the {len(order)} cases to split.")
        size, extra = divmod(len(order), folds)
        start = fold * size + min(fold, extra)
        stop = start + size + (fold < extra)
        return order[:start] + order[stop:], order[start:stop]
    n_train = int(len(order) * (1 - val_fraction))
    return order[:n_train], order[n_train:]


def check_folds(folds: int, fold: int) -> None:
    """ConfigError unless ``folds`` is 0 (no folds) or >= 2 and ``fold`` lies in 0..folds-1 (0 without)."""
    if folds == 1 or folds < 0:
        raise ConfigError(f"--folds {folds}: give 0 (the val_fraction split) or k >= 2 folds.")
    if not 0 <= fold < max(folds, 1):
        valid = f"0..{folds - 1}" if folds else "0 (no --folds given)"
        raise ConfigError(f"--fold {fold}: must lie in {valid}.")


def split_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """The split a training config names, as :func:`select_split`'s keyword arguments (configs written
    before k folds existed have none: folds 0)."""
    return {
        "val_fraction": config["val_fraction"],
        "seed": config["split_seed"],
        "folds": config.get("folds") or 0,
        "fold": config.get("fold") or 0,
    }


def read_split_lists(root: str | os.PathLike[str]) -> dict[str, list[str]]:
    """Read ``train.txt`` / ``val.txt`` / ``test.txt`` from ``root`` where present.

    Returns {split: entries in file order}; only the files that exist appear. Each entry is one
    stripped line; blank lines and ``#`` comment lines are skipped.
    """
    out: dict[str, list[str]] = {}
    for split in _LIST_SPLITS:
        path = Path(root) / f"{split}.txt"
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"Cannot read the split list {path}: {exc}. It must be UTF-8 text.") from exc
        lines = (line.strip() for line in text.splitlines())
        out[split] = [line for line in lines if line and not line.startswith("#")]
    return out


def select_split(
    pairs: Sequence[SamplePair],
    split: str,
    root: str | os.PathLike[str] | None = None,
    val_fraction: float = 0.2,
    seed: int = 42,
    folds: int = 0,
    fold: int = 0,
) -> list[SamplePair]:
    """The pairs of one split: ``"train"``, ``"val"``, ``"test"`` or ``"all"``.

    ``all`` is every pair. Otherwise list files in ``root`` win (a missing train or val list is the
    complement of the other lists); without them train/val come from :func:`seeded_split` on the pair
    names (excluding any ``test.txt`` cases), or fold ``fold`` of its ``folds`` parts. A ``test``
    split without ``test.txt``, a listed name with no pair, or a case listed in two splits raises
    :class:`DataError`; folds with train/val lists raise :class:`ConfigError`. The result keeps the
    order of the list file, or the shuffled order of the seeded split.
    """
    if split not in SPLITS:
        raise ConfigError(f"--split {split!r}: valid splits are {', '.join(SPLITS)}.")
    if split == "all":
        return list(pairs)
    lists = read_split_lists(root) if root is not None else {}
    lookup = _lookup(pairs)
    chosen = {name: _resolve(entries, lookup, Path(root) / f"{name}.txt") for name, entries in lists.items()}
    _check_disjoint(chosen, Path(root) if root is not None else None)
    fixed = sorted(f"{name}.txt" for name in chosen if name != "test")
    if folds and split in ("train", "val") and fixed:
        raise ConfigError(
            f"--folds {folds}: {root} has {' and '.join(fixed)}, which fix the split, while k folds cut "
            "the seeded order. Remove the lists or drop --folds."
        )

    if split in chosen:
        return chosen[split]
    if split == "test":
        where = f"{root}" if root is not None else "the data folder"
        raise DataError(
            f"--split test needs a test.txt in {where} (one case name per line): without it the data only "
            "has the seeded train/val split. Use --split val, or add test.txt."
        )
    held = {p.name for selected in chosen.values() for p in selected}
    remaining = [p for p in pairs if p.name not in held]
    other = "val" if split == "train" else "train"
    if other in chosen:
        return remaining  # the complement of the lists that exist
    train, val = seeded_split([p.name for p in remaining], val_fraction, seed, folds, fold)
    by_name = {p.name: p for p in remaining}
    return [by_name[name] for name in (train if split == "train" else val)]


def _lookup(pairs: Sequence[SamplePair]) -> dict[str, SamplePair]:
    """Map every way a list may name a case (case name, image or mask file name) to its pair."""
    table: dict[str, SamplePair] = {}
    for pair in pairs:
        for key in (pair.image.name, pair.image.stem, *(m.name for m in pair.masks)):
            table.setdefault(key, pair)
    for pair in pairs:  # case names take precedence over file names
        table[pair.name] = pair
    return table


def _resolve(entries: list[str], lookup: dict[str, SamplePair], source: Path) -> list[SamplePair]:
    out: list[SamplePair] = []
    seen: set[str] = set()
    missing: list[str] = []
    for entry in entries:
        pair = lookup.get(entry) or lookup.get(Path(entry).name) or lookup.get(Path(entry).stem)
        if pair is None:
            missing.append(entry)
        elif pair.name not in seen:  # a repeated line names the same case once
            seen.add(pair.name)
            out.append(pair)
    if missing:
        shown = _shorten(missing)
        raise DataError(
            f"{len(missing)} names in {source} match no image/mask pair of the data folder: {shown}. Each "
            "line must be a case name (image file name without extension) or a file name of that case."
        )
    return out


def _check_disjoint(chosen: dict[str, list[SamplePair]], root: Path | None) -> None:
    names = list(chosen)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            common = sorted({p.name for p in chosen[a]} & {p.name for p in chosen[b]})
            if common:
                shown = _shorten(common)
                raise DataError(
                    f"{len(common)} cases are listed in both {a}.txt and {b}.txt in {root}: {shown}. "
                    "A case may belong to one split only (otherwise evaluation leaks training data)."
                )


def _shorten(names: list[str], limit: int = 10) -> str:
    more = len(names) - limit
    return ", ".join(names[:limit]) + (f" (and {more} more)" if more > 0 else "")
