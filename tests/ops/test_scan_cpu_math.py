"""The CPU kernels' own float32 math and register transposes, against float64 numpy over whole ranges.

The accuracy figures asserted here are the ones ``ops/scan_cpu.py`` states: 2**y <= 2.3 ulp (asserted
<= 3), e**x for x <= 0 and softplus / sigmoid to a few 1e-7 relative, each over every input the scan can
give them (the decay exponent delta * A * log2(e) over the whole float32 exponent range, softplus over
any pre-activation, the sigmoid of any gate).
"""

from __future__ import annotations

import numpy as np
import pytest

numba = pytest.importorskip("numba")

from specmamba.ops import scan_cpu  # noqa: E402


@numba.njit
def _apply(kind, x, out):
    for i in range(x.shape[0]):
        if kind == 0:
            out[i] = scan_cpu.fexp2(x[i])
        elif kind == 1:
            out[i] = scan_cpu.fsoftplus(x[i])
        elif kind == 2:
            out[i] = scan_cpu.fsigmoid(x[i])
        else:
            sp, sg = scan_cpu.fsoftplus_sigmoid(x[i])
            out[i] = sp - sg


def _run(kind: int, x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    _apply(kind, x, out)
    return out


def _ulps(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    return np.abs(got.astype(np.float64) - want) / np.spacing(want.astype(np.float32)).astype(np.float64)


def test_exp2_accuracy_over_the_float32_range():
    y = np.linspace(-125.5, 127.0, 2_000_001, dtype=np.float32)
    assert _ulps(_run(0, y), np.exp2(y.astype(np.float64))).max() <= 3.0


def test_exp2_near_zero_is_unbiased_and_monotone():
    # Decays close to 1 (small delta * A) are every step of a long-memory channel: a bias of the same
    # sign in each would compound over the sequence, so the mean signed error must vanish, not only the
    # largest one be small.
    y = -np.logspace(-9, -1, 200_001).astype(np.float32)
    got = _run(0, y)
    want = np.exp2(y.astype(np.float64))
    assert _run(0, np.zeros(1, np.float32))[0] == 1.0
    signed = (got.astype(np.float64) - want) / np.spacing(want.astype(np.float32)).astype(np.float64)
    assert np.abs(signed).max() <= 1.5
    assert abs(signed.mean()) < 0.05
    assert np.all(np.diff(got) <= 0)  # y decreases along the array


def test_exp2_outside_the_range_is_zero_below_and_inf_above():
    low = np.array([-125.6, -150.0, -1e30, -np.inf], dtype=np.float32)
    high = np.array([127.5, 200.0, 1e30, np.inf], dtype=np.float32)
    assert np.all(_run(0, low) == 0.0)  # true values < 2**-125.5 ~ 1.7e-38
    assert np.all(np.isinf(_run(0, high)))


def test_softplus_relative_accuracy_everywhere():
    x = np.concatenate(
        [np.linspace(-87, 100, 1_000_001), -np.logspace(-8, 1.9, 1001), np.logspace(-8, 2, 1001)]
    )
    x = x.astype(np.float32)
    want = np.logaddexp(0.0, x.astype(np.float64))
    assert (np.abs(_run(1, x) - want) / want).max() < 4e-7
    # far below: e**x < 1.7e-38 comes out as 0 (the absolute error is below the float32 normal range)
    assert np.all(_run(1, np.array([-88.0, -200.0], np.float32)) <= 1.7e-38)


def test_sigmoid_and_the_fused_pair_match_float64():
    x = np.linspace(-80, 80, 1_000_001, dtype=np.float32)
    x64 = x.astype(np.float64)
    sig = 1 / (1 + np.exp(-x64))
    assert (np.abs(_run(2, x) - sig) / sig).max() < 4e-7
    both = np.logaddexp(0.0, x64) - sig
    np.testing.assert_allclose(_run(3, x), both, rtol=1e-6, atol=1e-7)


@numba.njit
def _transpose_rows(src, dst, rev):
    scan_cpu._rows_to_tile(dst, 0, src, 1, 3, 21, 5, 37, rev)


@numba.njit
def _transpose_back(tile, dst):
    scan_cpu._tile_to_rows(dst, 1, 3, 21, 5, 37, tile, 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rev", [False, True], ids=["forward", "reversed"])
def test_tile_transposes_equal_element_copies(dtype, rev):
    # 21 rows x 37 steps: one full 16 x 16 register block and ragged edges on both axes (element copies).
    src = np.random.default_rng(0).standard_normal((2, 30, 50)).astype(dtype)
    tile = np.zeros((1, 40, 64), dtype)
    _transpose_rows(src, tile, rev)
    last = src.shape[2] - 1
    cols = last - (5 + np.arange(37)) if rev else 5 + np.arange(37)
    np.testing.assert_array_equal(tile[0, :37, :21], src[1, 3:24][:, cols].T)
    assert not tile[0, 37:].any() and not tile[0, :, 21:].any()  # nothing written outside
    back = np.zeros_like(src)
    _transpose_back(tile, back)
    np.testing.assert_array_equal(back[1, 3:24, 5:42], tile[0, :37, :21].T)
    back[1, 3:24, 5:42] = 0
    assert not back.any()
