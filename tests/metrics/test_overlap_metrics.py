"""Tests of specmamba.metrics.overlap: hand-computed cases, empty rules, batch/torch consistency."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from specmamba.errors import ConfigError
from specmamba.metrics import confusion_counts, dice, iou, pooled_dice_iou, precision, recall


def _hand_pair() -> tuple[np.ndarray, np.ndarray]:
    """pred row 0 cols 0..2, target (0,2) and (1,2): TP 1, FP 2, FN 1, TN 12 in a 4x4 image."""
    pred = np.zeros((4, 4), dtype=np.uint8)
    pred[0, 0:3] = 1
    target = np.zeros((4, 4), dtype=bool)
    target[0:2, 2] = True
    return pred, target


def test_hand_computed_values() -> None:
    pred, target = _hand_pair()
    assert dice(pred, target) == pytest.approx(2 / 5)
    assert iou(pred, target) == pytest.approx(1 / 4)
    assert precision(pred, target) == pytest.approx(1 / 3)
    assert recall(pred, target) == pytest.approx(1 / 2)
    assert isinstance(dice(pred, target), float)
    assert confusion_counts(pred, target) == (1, 2, 1, 12)


E = np.zeros((5, 5), dtype=bool)
F = np.zeros((5, 5), dtype=bool)
F[1:3, 1:3] = True


@pytest.mark.parametrize(
    "pred, target, expected",
    [
        # (dice, iou, precision, recall)
        (E, E, (1.0, 1.0, 1.0, 1.0)),  # both empty: a correct "no lesion"
        (E, F, (0.0, 0.0, 0.0, 0.0)),  # missed lesion: no prediction, target non-empty -> precision 0
        (F, E, (0.0, 0.0, 0.0, 0.0)),  # false alarm: empty target, prediction non-empty -> recall 0
        (F, F, (1.0, 1.0, 1.0, 1.0)),
    ],
)
def test_empty_rules(pred: np.ndarray, target: np.ndarray, expected: tuple[float, ...]) -> None:
    got = (dice(pred, target), iou(pred, target), precision(pred, target), recall(pred, target))
    assert got == expected


def _random_batch(seed: int = 0, b: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pred = rng.random((b, 16, 16)) > 0.6
    target = rng.random((b, 16, 16)) > 0.5
    pred[0] = False  # include the empty cases
    target[0] = False
    target[1] = False
    pred[2] = False
    return pred, target


@pytest.mark.parametrize("fn", [dice, iou, precision, recall])
def test_batch_matches_per_case_and_torch_matches_numpy(fn) -> None:
    pred, target = _random_batch()
    batch = fn(pred, target)
    assert isinstance(batch, np.ndarray) and batch.shape == (6,) and batch.dtype == np.float64
    per_case = np.array([fn(p, t) for p, t in zip(pred, target)])
    np.testing.assert_array_equal(batch, per_case)

    tb = fn(torch.from_numpy(pred), torch.from_numpy(target).long())  # mixed dtypes are fine
    assert isinstance(tb, torch.Tensor) and tb.shape == (6,) and tb.dtype == torch.float32
    np.testing.assert_allclose(tb.numpy(), batch, rtol=1e-6)
    single = fn(torch.from_numpy(pred[3]), torch.from_numpy(target[3]))
    assert isinstance(single, float) and single == pytest.approx(batch[3], rel=1e-6)


def test_accepted_dtypes_agree() -> None:
    pred, target = _random_batch(seed=1)
    ref = dice(pred, target)
    for dt in (np.uint8, np.int64, np.float32):
        np.testing.assert_array_equal(dice(pred.astype(dt), target.astype(dt)), ref)
    np.testing.assert_allclose(dice(torch.from_numpy(pred).float(), target).numpy(), ref, rtol=1e-6)


def test_rejects_probabilities_bad_shapes() -> None:
    pred, target = _hand_pair()
    with pytest.raises(ConfigError, match="values other than 0 and 1"):
        dice(pred * 0.7, target)
    with pytest.raises(ConfigError, match="same"):
        iou(pred, target[:3])
    with pytest.raises(ConfigError, match=r"\(H, W\) or a batch"):
        recall(pred[None, None], target[None, None])
    with pytest.raises(ConfigError, match="values other than 0 and 1"):
        precision(torch.tensor(pred) * 2, torch.tensor(target))


def test_confusion_counts_pool_all_pixels() -> None:
    pred, target = _random_batch(seed=2)
    tp, fp, fn, tn = confusion_counts(pred, target)
    assert all(isinstance(v, int) for v in (tp, fp, fn, tn))
    assert tp + fp + fn + tn == pred.size
    assert tp == int((pred & target).sum()) and fp == int((pred & ~target).sum())
    assert fn == int((~pred & target).sum())
    t_counts = confusion_counts(torch.from_numpy(pred), torch.from_numpy(target))
    assert all(isinstance(v, torch.Tensor) and v.dtype == torch.int64 for v in t_counts)
    assert [int(v) for v in t_counts] == [tp, fp, fn, tn]
    # summing per-case counts gives the pooled counts
    per_case = np.array([confusion_counts(p, t) for p, t in zip(pred, target)])
    assert tuple(per_case.sum(0)) == (tp, fp, fn, tn)


def test_pooled_dice_iou() -> None:
    assert pooled_dice_iou(1, 2, 1) == pytest.approx((2 / 5, 1 / 4))
    assert pooled_dice_iou(0, 0, 0) == (1.0, 1.0)
    assert pooled_dice_iou(0, 3, 0) == (0.0, 0.0)
    d, i = pooled_dice_iou(torch.tensor(3), torch.tensor(1), torch.tensor(2))
    assert isinstance(d, torch.Tensor)
    assert float(d) == pytest.approx(6 / 9) and float(i) == pytest.approx(3 / 6)
    d0, i0 = pooled_dice_iou(torch.tensor(0), torch.tensor(0), torch.tensor(0))
    assert float(d0) == 1.0 and float(i0) == 1.0
    # pooled differs from the mean of per-case scores: a large good case outweighs a small bad one
    pred = np.zeros((2, 10, 10), bool)
    target = np.zeros((2, 10, 10), bool)
    pred[0, :8, :8] = target[0, :8, :8] = True
    target[1, 0, 0] = True
    pooled_dice, _ = pooled_dice_iou(*confusion_counts(pred, target)[:3])
    assert pooled_dice == pytest.approx(128 / 129)
    assert dice(pred, target).mean() == pytest.approx(0.5)
