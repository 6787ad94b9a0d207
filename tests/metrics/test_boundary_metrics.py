"""Tests of specmamba.metrics.boundary: the REFERENCE.md BF1 on hand-derived cases.

A 10x10 square (rows/cols 10..19) has a 36-pixel ring as boundary. Shifting the prediction right by
d px, with tolerance D, the predicted ring pixels within D of the true ring are (derivation):
- top and bottom rows: 10 - d pixels lie on the true rows, then min(d, D) more are within reach,
  2 (10 - d + min(d, D)) in all;
- left column interior (8 px, at column 10 + d): distance min(d, 9 - d, r - 10, 19 - r) <= D;
- right column interior (8 px): distance d to the true right column -> 8 if d <= D else 0.
The configuration is mirror-symmetric, so recall equals precision:
d=1, D=2: 20 + 8 + 8 = 36 -> 1;  d=2, D=2: 36 -> 1;  d=3, D=2: 18 + 4 + 0 = 22 -> 11/18;
d=3, D=3: 36 -> 1;  d=1, D=0: 18 + 0 + 0 -> 1/2;  d=2, D=1: 18 + 2 + 0 = 20 -> 5/9.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from specmamba.errors import ConfigError
from specmamba.metrics import boundary_f1, boundary_precision_recall, mask_boundary


def square(r0: int, c0: int, side: int = 10, size: int = 32) -> np.ndarray:
    m = np.zeros((size, size), dtype=bool)
    m[r0 : r0 + side, c0 : c0 + side] = True
    return m


def test_mask_boundary_is_ring_with_cross_erosion() -> None:
    ring = mask_boundary(square(10, 10))
    assert ring.sum() == 36
    assert ring[10, 10:20].all() and ring[19, 10:20].all() and ring[10:20, 10].all() and ring[10:20, 19].all()
    assert not ring[11:19, 11:19].any()
    # plus shape: the centre has all four 4-neighbours, so the 3x3 cross erodes only the arms
    plus = np.zeros((5, 5), bool)
    plus[2, 1:4] = plus[1:4, 2] = True
    b = mask_boundary(plus)
    assert b.sum() == 4 and not b[2, 2]
    # foreground touching the image border is boundary there (border_value=0)
    full = np.ones((4, 4), bool)
    assert mask_boundary(full).sum() == 12


@pytest.mark.parametrize(
    "shift, tol, expected",
    [(1, 2, 1.0), (2, 2, 1.0), (3, 2, 11 / 18), (3, 3, 1.0), (1, 0, 1 / 2), (2, 1, 5 / 9)],
)
def test_shifted_square(shift: int, tol: float, expected: float) -> None:
    pred, target = square(10, 10 + shift), square(10, 10)
    p, r = boundary_precision_recall(pred, target, tolerance=tol)
    assert p == pytest.approx(expected, abs=1e-12) and r == pytest.approx(expected, abs=1e-12)
    assert boundary_f1(pred, target, tolerance=tol) == pytest.approx(expected, abs=1e-12)


def test_inset_square_precision_differs_from_recall() -> None:
    # pred: 6x6 square inset by 2 px. Every predicted ring pixel is exactly 2 px from the true ring
    # (P = 1); of the 36 true ring pixels only the 6 facing pixels per side are within 2 px (the
    # others are >= sqrt(5) away): R = 24/36; BF1 = 2 * 1 * (2/3) / (5/3) = 0.8.
    pred, target = square(12, 12, side=6), square(10, 10)
    assert boundary_precision_recall(pred, target, 2) == pytest.approx((1.0, 2 / 3))
    assert boundary_f1(pred, target, 2) == pytest.approx(0.8)
    assert boundary_precision_recall(target, pred, 2) == pytest.approx((2 / 3, 1.0))
    assert boundary_precision_recall(pred, target, 1.99) == pytest.approx((0.0, 0.0))
    assert boundary_f1(pred, target, 1.99) == 0.0  # P + R == 0


def test_empty_rules() -> None:
    empty = np.zeros((32, 32), bool)
    full = square(10, 10)
    assert boundary_f1(empty, empty) == 1.0
    assert boundary_precision_recall(empty, empty) == (1.0, 1.0)
    assert boundary_f1(empty, full) == 0.0 and boundary_f1(full, empty) == 0.0
    assert boundary_precision_recall(full, empty) == (0.0, 0.0)


def test_batch_and_torch_consistency() -> None:
    pred = np.stack([square(10, 11), square(10, 13), np.zeros((32, 32), bool), square(12, 12, 6)])
    target = np.stack([square(10, 10)] * 3 + [square(10, 10)])
    expected = np.array([1.0, 11 / 18, 0.0, 0.8])
    got = boundary_f1(pred, target)
    assert isinstance(got, np.ndarray) and got.shape == (4,)
    np.testing.assert_allclose(got, expected, atol=1e-12)
    np.testing.assert_allclose(got, [boundary_f1(p, t) for p, t in zip(pred, target)])
    np.testing.assert_allclose(boundary_f1(torch.from_numpy(pred), torch.from_numpy(target).int()), expected)
    p, r = boundary_precision_recall(pred, target)
    assert p.shape == r.shape == (4,)


def test_bad_tolerance() -> None:
    with pytest.raises(ConfigError, match="tolerance"):
        boundary_f1(square(1, 1), square(1, 1), tolerance=-1)
    with pytest.raises(ConfigError, match="tolerance"):
        boundary_f1(square(1, 1), square(1, 1), tolerance="two")
