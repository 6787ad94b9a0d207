"""Splits: the exact seeded protocol of the spectral audit, explicit list files, and their errors."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from specmamba.data import SamplePair, read_split_lists, seeded_split, select_split
from specmamba.errors import ConfigError, DataError


def _global_form(names: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """The audit script, verbatim in spirit: sorted, random.seed, random.shuffle, slice."""
    names = sorted(names)
    random.seed(seed)
    random.shuffle(names)
    n_train = int(len(names) * (1 - val_fraction))
    return names[:n_train], names[n_train:]


def test_protocol_2594_identical_to_global_random_form():
    names = [f"ISIC_{i:07d}" for i in range(2594)]
    saved = random.getstate()
    try:
        expected = _global_form(list(names), 0.2, 42)
    finally:
        random.setstate(saved)
    before = random.getstate()
    train, val = seeded_split(list(reversed(names)), 0.2, 42)  # input order does not matter
    assert random.getstate() == before  # the global RNG is untouched
    assert (len(train), len(val)) == (2075, 519)
    assert (train, val) == expected


@pytest.mark.parametrize("n, fraction, seed", [(10, 0.3, 0), (101, 0.2, 7), (1, 0.2, 42)])
def test_other_sizes_match_global_form(n, fraction, seed):
    names = [f"c{i}" for i in range(n)]
    saved = random.getstate()
    try:
        expected = _global_form(names, fraction, seed)
    finally:
        random.setstate(saved)
    assert seeded_split(names, fraction, seed) == expected


def test_seed_changes_order_and_split_is_partition():
    names = [f"c{i:03d}" for i in range(50)]
    a = seeded_split(names, 0.2, 1)
    b = seeded_split(names, 0.2, 2)
    assert a != b
    assert sorted(a[0] + a[1]) == names and not set(a[0]) & set(a[1])
    with pytest.raises(ConfigError):
        seeded_split(names, 1.5)


def _pairs(root: Path, names: list[str]) -> list[SamplePair]:
    return [
        SamplePair(n, root / "images" / f"{n}.jpg", (root / "masks" / f"{n}_segmentation.png",))
        for n in names
    ]


def test_seeded_select_split_without_lists(tmp_path):
    pairs = _pairs(tmp_path, [f"c{i:02d}" for i in range(20)])
    train = select_split(pairs, "train", tmp_path, 0.25, 3)
    val = select_split(pairs, "val", tmp_path, 0.25, 3)
    exp_train, exp_val = seeded_split([p.name for p in pairs], 0.25, 3)
    assert [p.name for p in train] == exp_train and [p.name for p in val] == exp_val
    assert select_split(pairs, "all", tmp_path) == pairs
    assert select_split(pairs, "train", None, 0.25, 3) == train
    with pytest.raises(DataError, match="test.txt"):
        select_split(pairs, "test", tmp_path)
    with pytest.raises(ConfigError, match="valid splits"):
        select_split(pairs, "validation", tmp_path)


def test_read_split_lists(tmp_path):
    (tmp_path / "train.txt").write_text("# training cases\nc01\n\n  c02  \n")
    (tmp_path / "test.txt").write_text("c03\n")
    assert read_split_lists(tmp_path) == {"train": ["c01", "c02"], "test": ["c03"]}
    assert read_split_lists(tmp_path / "elsewhere") == {}


def test_explicit_lists_win_and_accept_file_names(tmp_path):
    pairs = _pairs(tmp_path, [f"c{i:02d}" for i in range(8)])
    (tmp_path / "train.txt").write_text("c05\nc01\nimages/c02.jpg\nc01\n")  # file names and repeats allowed
    (tmp_path / "val.txt").write_text("c03_segmentation.png\nc00\n")
    (tmp_path / "test.txt").write_text("c07\n")
    assert [p.name for p in select_split(pairs, "train", tmp_path)] == ["c05", "c01", "c02"]
    assert [p.name for p in select_split(pairs, "val", tmp_path)] == ["c03", "c00"]
    assert [p.name for p in select_split(pairs, "test", tmp_path)] == ["c07"]


def test_missing_list_is_complement(tmp_path):
    pairs = _pairs(tmp_path, [f"c{i}" for i in range(6)])
    (tmp_path / "train.txt").write_text("c0\nc1\nc2\n")
    (tmp_path / "test.txt").write_text("c5\n")
    assert [p.name for p in select_split(pairs, "val", tmp_path)] == ["c3", "c4"]


def test_test_list_held_out_of_seeded_split(tmp_path):
    names = [f"c{i:02d}" for i in range(30)]
    pairs = _pairs(tmp_path, names)
    (tmp_path / "test.txt").write_text("c00\nc10\nc20\n")
    train = select_split(pairs, "train", tmp_path, 0.2, 42)
    val = select_split(pairs, "val", tmp_path, 0.2, 42)
    rest = [n for n in names if n not in ("c00", "c10", "c20")]
    assert ([p.name for p in train], [p.name for p in val]) == seeded_split(rest, 0.2, 42)


def test_unknown_name_and_overlap_errors(tmp_path):
    pairs = _pairs(tmp_path, ["a", "b", "c"])
    (tmp_path / "val.txt").write_text("a\nzzz\n")
    with pytest.raises(DataError, match=r"1 names in .*val.txt match no image/mask pair.*zzz"):
        select_split(pairs, "val", tmp_path)
    (tmp_path / "val.txt").write_text("a\nb\n")
    (tmp_path / "train.txt").write_text("b\nc\n")
    with pytest.raises(DataError, match="listed in both"):
        select_split(pairs, "train", tmp_path)


@pytest.mark.parametrize(("n", "k"), [(10, 3), (20, 5), (7, 7), (2594, 5)])
def test_k_folds_partition_the_seeded_order_into_contiguous_parts(n, k):
    """Independent of the implementation: the global-random shuffle cut by hand into parts whose sizes
    differ by at most one, the larger first; each fold trains on the rest, in shuffled order."""
    names = [f"case{i:04d}" for i in range(n)]
    order = sorted(names)
    random.seed(11)
    random.shuffle(order)
    sizes = [n // k + (1 if f < n % k else 0) for f in range(k)]
    bounds = [sum(sizes[:f]) for f in range(k + 1)]
    held = []
    for fold in range(k):
        train, val = seeded_split(names, 0.2, 11, folds=k, fold=fold)
        assert val == order[bounds[fold] : bounds[fold + 1]]
        assert train == [c for c in order if c not in set(val)]
        held += val
    assert sorted(held) == sorted(names)  # every case validated exactly once


def test_folds_are_refused_where_they_cannot_be_cut(tmp_path):
    names = [f"c{i:02d}" for i in range(6)]
    for folds, fold, message in [
        (1, 0, "--folds 1"),
        (-2, 0, "--folds -2"),
        (3, 3, "--fold 3: must lie in 0..2"),
    ]:
        with pytest.raises(ConfigError, match=message):
            seeded_split(names, folds=folds, fold=fold)
    with pytest.raises(ConfigError, match=r"--fold 1: must lie in 0 \(no --folds"):
        seeded_split(names, fold=1)
    with pytest.raises(ConfigError, match="more folds than the 6 cases"):
        seeded_split(names, folds=7)
    pairs = _pairs(tmp_path, names)
    assert len(select_split(pairs, "val", tmp_path, folds=3, fold=1)) == 2
    (tmp_path / "val.txt").write_text("c01\n")
    with pytest.raises(ConfigError, match=r"--folds 3: .* has val.txt, which fix the split"):
        select_split(pairs, "train", tmp_path, folds=3, fold=0)
