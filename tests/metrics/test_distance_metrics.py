"""Tests of specmamba.metrics.distance: hand cases, a brute-force oracle, and MONAI as cross-check."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.spatial.distance import cdist

from specmamba.errors import ConfigError
from specmamba.metrics import hd95, mask_boundary, surface_distances


def _pixels(shape: tuple[int, int], *coords: tuple[int, int]) -> np.ndarray:
    m = np.zeros(shape, bool)
    for r, c in coords:
        m[r, c] = True
    return m


def test_single_pixels_3_4_5() -> None:
    # a single pixel is its own boundary; distance between (0, 0) and (3, 4) is 5 both ways
    pred, target = _pixels((8, 8), (0, 0)), _pixels((8, 8), (3, 4))
    assert hd95(pred, target) == pytest.approx(5.0)
    assert hd95(pred, target, reduction="max") == pytest.approx(5.0)
    # spacing (row 2, col 1): sqrt((3 * 2)^2 + 4^2)
    assert hd95(pred, target, spacing=(2, 1)) == pytest.approx(np.sqrt(52))
    assert hd95(pred, target, spacing=0.5) == pytest.approx(2.5)


def test_pooled_vs_max_hand_computed() -> None:
    # pred {(0,0)}, target {(0,3), (0,10)}: pred->target [3], target->pred [3, 10].
    # pooled [3, 3, 10]: position 0.95 * 2 = 1.9 -> 3 + 0.9 * 7 = 9.3
    # max: p95([3]) = 3, p95([3, 10]) = 3 + 0.95 * 7 = 9.65 -> 9.65 (MONAI's definition)
    pred, target = _pixels((1, 12), (0, 0)), _pixels((1, 12), (0, 3), (0, 10))
    assert hd95(pred, target) == pytest.approx(9.3)
    assert hd95(pred, target, reduction="max") == pytest.approx(9.65)
    assert hd95(pred, target, percentile=100) == pytest.approx(10.0)  # plain Hausdorff
    d_pt, d_tp = surface_distances(pred, target)
    np.testing.assert_allclose(d_pt, [3.0])
    np.testing.assert_allclose(np.sort(d_tp), [3.0, 10.0])


def test_empty_rules() -> None:
    empty = np.zeros((30, 40), bool)
    blob = np.zeros((30, 40), bool)
    blob[5:10, 5:10] = True
    assert hd95(empty, empty) == 0.0
    assert hd95(empty, blob) == pytest.approx(50.0)  # diagonal sqrt(30^2 + 40^2)
    assert hd95(blob, empty) == pytest.approx(50.0)
    assert hd95(blob, empty, spacing=(2.0, 0.5)) == pytest.approx(np.hypot(60, 20))
    assert hd95(blob, blob) == 0.0


def _blobs(rng: np.random.Generator, n: int, size: int = 40) -> np.ndarray:
    """Smooth random blobs (possibly several components, some touching the border)."""
    out = ndimage.gaussian_filter(rng.random((n, size, size)), sigma=(0, 3, 3)) > 0.5
    return out


def test_pooled_matches_brute_force_oracle() -> None:
    rng = np.random.default_rng(0)
    pred, target = _blobs(rng, 8), _blobs(rng, 8)
    spacing = (1.5, 0.7)
    for p, t in zip(pred, target):
        if not p.any() or not t.any():
            continue
        pc = np.argwhere(mask_boundary(p)) * spacing
        tc = np.argwhere(mask_boundary(t)) * spacing
        d = cdist(pc, tc)  # (N_p, N_t) all pairwise distances
        pooled = np.concatenate([d.min(1), d.min(0)])
        assert hd95(p, t, spacing=spacing) == pytest.approx(np.percentile(pooled, 95), abs=1e-9)


def test_max_reduction_agrees_with_monai() -> None:
    monai_metrics = pytest.importorskip("monai.metrics")
    rng = np.random.default_rng(1)
    pred, target = _blobs(rng, 12), _blobs(rng, 12)
    keep = pred.any((1, 2)) & target.any((1, 2))  # MONAI gives inf/nan on empty masks
    pred, target = pred[keep], target[keep]
    assert len(pred) >= 8
    for spacing in (None, (1.5, 0.7)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = monai_metrics.compute_hausdorff_distance(
                torch.from_numpy(pred)[:, None].float(),  # (B, 1, H, W) one channel, no background
                torch.from_numpy(target)[:, None].float(),
                include_background=True,
                percentile=95,
                spacing=spacing,
            )[:, 0].numpy()
        ours = hd95(pred, target, spacing=spacing, reduction="max")
        # MONAI computes in float32, we in float64: agreement to float32 precision
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)
        # the pooled definition is a different number on most cases (documented difference)
        pooled = hd95(pred, target, spacing=spacing)
        assert np.mean(np.abs(pooled - ours) > 1e-3) > 0.5


def test_batch_and_torch_consistency() -> None:
    rng = np.random.default_rng(2)
    pred, target = _blobs(rng, 5), _blobs(rng, 5)
    pred[0] = False
    batch = hd95(pred, target)
    assert isinstance(batch, np.ndarray) and batch.shape == (5,)
    np.testing.assert_allclose(batch, [hd95(p, t) for p, t in zip(pred, target)])
    np.testing.assert_allclose(hd95(torch.from_numpy(pred), torch.from_numpy(target).long()), batch)
    assert batch[0] == pytest.approx(np.hypot(40, 40))


def test_bad_arguments() -> None:
    m = _pixels((4, 4), (1, 1))
    with pytest.raises(ConfigError, match="spacing"):
        hd95(m, m, spacing=(1, 2, 3))
    with pytest.raises(ConfigError, match="spacing"):
        hd95(m, m, spacing=0)
    with pytest.raises(ConfigError, match="reduction"):
        hd95(m, m, reduction="mean")
    with pytest.raises(ConfigError, match="percentile"):
        hd95(m, m, percentile=101)
    with pytest.raises(ConfigError, match="one case"):
        surface_distances(m[None], m[None])
