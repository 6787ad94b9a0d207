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
        else:
            out[i] = scan_cpu.fsigmoid(x[i])


def _run(kind: int, x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    _apply(kind, x, out)
    return out


def _ulps(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    return np.abs(got.astype(np.float64) - want) / np.spacing(want.astype(np.float32)).astype(np.float64)


def test_exp2_accuracy_over_the_float32_range():
    y = np.linspace(-125.5, 127.99, 2_000_001, dtype=np.float32)  # up to just below the overflow
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


def test_exp2_outside_the_range_is_zero_below_and_inf_from_the_overflow():
    low = np.array([-125.6, -150.0, -1e30, -np.inf], dtype=np.float32)
    high = np.array([128.0, 128.5, 200.0, 1e30, np.inf], dtype=np.float32)
    assert np.all(_run(0, low) == 0.0)  # true values < 2**-125.5 ~ 1.7e-38
    assert np.all(_run(0, high) == np.inf)  # 2**128 > the largest float32
    edge = np.array([127.0, 127.5, 127.9], dtype=np.float32)  # finite, as 2**y is there
    assert np.all(np.isfinite(_run(0, edge)))


def test_softplus_relative_accuracy_everywhere():
    x = np.concatenate(
        [np.linspace(-87, 100, 1_000_001), -np.logspace(-8, 1.9, 1001), np.logspace(-8, 2, 1001)]
    )
    x = x.astype(np.float32)
    want = np.logaddexp(0.0, x.astype(np.float64))
    assert (np.abs(_run(1, x) - want) / want).max() < 4e-7
    # far below: e**x < 1.7e-38 comes out as 0 (the absolute error is below the float32 normal range)
    assert np.all(_run(1, np.array([-88.0, -200.0], np.float32)) <= 1.7e-38)


def test_sigmoid_matches_float64():
    x = np.linspace(-80, 80, 1_000_001, dtype=np.float32)
    sig = 1 / (1 + np.exp(-x.astype(np.float64)))
    assert (np.abs(_run(2, x) - sig) / sig).max() < 4e-7


@numba.njit
def _transpose_rows(src, dst, rev):
    scan_cpu._rows_to_tile(dst, 0, src, 1, 3, 21, 5, 37, rev)


@numba.njit
def _transpose_back(tile, dst):
    scan_cpu._tile_to_rows(dst, 1, 3, 21, 5, 37, tile, 0, 0)


@numba.njit
def _store_tile(tile, dst, stream):
    scan_cpu._tile_to_rows(dst, 0, 0, 32, 16, 32, tile, 0, stream)
    scan_cpu._sfence()


def _aligned(shape, dtype):
    # A C-contiguous array whose first element is 64-byte aligned (numpy promises less).
    count = int(np.prod(shape))
    raw = np.zeros(count + 64, dtype)
    skip = (-raw.ctypes.data % 64) // raw.itemsize
    return raw[skip : skip + count].reshape(shape)


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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_streamed_tile_stores_equal_cached_ones(dtype):
    # Rows of 64 values from a 64-byte boundary, steps 16..48: every 16-value store is line-aligned, as
    # the backward guarantees before it streams its outputs (float64 falls back to element copies).
    tile = np.random.default_rng(1).standard_normal((1, 32, 32)).astype(dtype)
    cached, streamed = _aligned((1, 32, 64), dtype), _aligned((1, 32, 64), dtype)
    _store_tile(tile, cached, 0)
    _store_tile(tile, streamed, 1)
    np.testing.assert_array_equal(streamed, cached)
    np.testing.assert_array_equal(cached[0, :, 16:48], tile[0].T)


def _bf16_bits(values: np.ndarray) -> np.ndarray:
    """torch's float32 -> bfloat16 rounding (nearest even), as int16 bit patterns; NaN as the kernels
    write it, 0x7FC0 (torch's own NaN bits differ between its scalar and vector paths)."""
    import torch

    bits = torch.from_numpy(values).to(torch.bfloat16).view(torch.int16).numpy()
    return np.where(np.isnan(values), np.int16(0x7FC0), bits)


def _special_float32(count: int) -> np.ndarray:
    # Ties (bit 15 set, the rest of the low half 0) of both parities, just above and below them, signed
    # zeros, the largest finite values (which round to inf), infinities, NaNs, denormals, random values.
    rng = np.random.default_rng(3)
    bits = rng.integers(0, 2**32, count, dtype=np.uint64).astype(np.uint32)
    bits[0::7] = (bits[0::7] & 0xFFFF0000) | 0x8000
    bits[1::7] = (bits[1::7] & 0xFFFF0000) | 0x8001
    bits[2::7] = (bits[2::7] & 0xFFFF0000) | 0x7FFF
    special = np.array(
        [
            0,
            0x80000000,
            0x7F7FFFFF,
            0xFF7FFFFF,
            0x7F800000,
            0xFF800000,
            0x7FC00000,
            0xFFFFFFFF,
            0x7F800001,
            0x00000001,
            0x007FFFFF,
            0x3F808000,
            0x3F818000,
        ],
        np.uint32,
    )
    bits[3 : 3 + special.size] = special
    return bits.view(np.float32)


@pytest.mark.parametrize("rev", [False, True], ids=["forward", "reversed"])
def test_bfloat16_tiles_widen_and_round_as_torch(rev):
    # int16 rows are bfloat16 bits: into float32 tiles exactly (both the register block and the ragged
    # element copies of the 21 x 37 window), and back rounded as torch rounds, specials included.
    import torch

    values = _special_float32(2 * 30 * 50).reshape(2, 30, 50)
    src = _bf16_bits(values)
    tile = np.zeros((1, 40, 64), np.float32)
    _transpose_rows(src, tile, rev)
    wide = torch.from_numpy(src).view(torch.bfloat16).float().numpy()
    last = src.shape[2] - 1
    cols = last - (5 + np.arange(37)) if rev else 5 + np.arange(37)
    np.testing.assert_array_equal(tile[0, :37, :21].view(np.uint32), wide[1, 3:24][:, cols].T.view(np.uint32))
    tile[0, :37, :21] = _special_float32(37 * 21).reshape(37, 21)
    back = np.zeros(src.shape, np.int16)
    _transpose_back(tile, back)
    np.testing.assert_array_equal(back[1, 3:24, 5:42], _bf16_bits(np.ascontiguousarray(tile[0, :37, :21].T)))
    back[1, 3:24, 5:42] = 0
    assert not back.any()


def test_streamed_bfloat16_stores_equal_cached_ones():
    tile = _special_float32(32 * 32).reshape(1, 32, 32)
    cached, streamed = _aligned((1, 32, 64), np.int16), _aligned((1, 32, 64), np.int16)
    _store_tile(tile, cached, 0)
    _store_tile(tile, streamed, 1)
    np.testing.assert_array_equal(streamed, cached)
    np.testing.assert_array_equal(cached[0, :, 16:48], _bf16_bits(np.ascontiguousarray(tile[0].T)))


# The backward's register values (scan_cpu._Vec: BWD_STATES x LANES values, value s * LANES + c).
_VW = scan_cpu.BWD_STATES * scan_cpu.LANES


@numba.njit
def _vec_exp2(y, out):
    for i in range(0, y.shape[0], _VW):
        scan_cpu._vstore(out, (i,), scan_cpu._vexp2(scan_cpu._vload(y, (i,))))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vector_exp2_is_the_scalar_one(dtype):
    # float32: the same operations as fexp2, so bitwise equal, out-of-range inputs included; float64: libm.
    y = np.concatenate([np.linspace(-130, 130, 64 * 4000), [-np.inf, np.inf] * 32]).astype(dtype)
    out = np.empty_like(y)
    _vec_exp2(y, out)
    if dtype == np.float32:
        np.testing.assert_array_equal(out, _run(0, y))
    else:
        np.testing.assert_allclose(out, np.exp2(y), rtol=1e-15)


@numba.njit
def _vec_softplus_sigmoid(x, sp, sg):
    for i in range(0, x.shape[0], _VW):
        v = scan_cpu._vload(x, (i,))
        e = scan_cpu._vexp_negabs32(v)
        scan_cpu._vstore(sp, (i,), scan_cpu._vsoftplus_e(v, e))
        scan_cpu._vstore(sg, (i,), scan_cpu._vsigmoid_e(v, e))


def test_vector_softplus_and_sigmoid_are_the_scalar_ones():
    # The kernels' delta tiles: fsoftplus's and fsigmoid's float32 operations one for one, so bitwise
    # equal over any pre-activation, the exp's cut-off at -87 and non-finite inputs included.
    edges = [-np.inf, np.inf, np.nan, -0.0, 0.0, -87.0, -87.5, 87.0, 1e30, -1e30]
    x = np.concatenate([np.linspace(-120, 120, 64 * 4000), edges * 64]).astype(np.float32)[: 64 * 4010]
    sp, sg = np.empty_like(x), np.empty_like(x)
    _vec_softplus_sigmoid(x, sp, sg)
    np.testing.assert_array_equal(sp, _run(1, x))
    np.testing.assert_array_equal(sg, _run(2, x))


@numba.njit
def _vec_moves(rows, states, acc, first, out):
    # out[0] = rows[0] repeated per state; out[1] = states[0, :4] spread over lanes; out[2] = the load of
    # out[1] dropped (first = 0) or kept (first != 0); acc[0] = (acc[0] kept or dropped the same way) + the
    # state-wise fold of out[1] * out[0].
    rep = scan_cpu._vrep(rows, (0, 0))
    spread = scan_cpu._vspread(states, (0, 0))
    scan_cpu._vstore(out, (0, 0), rep)
    scan_cpu._vstore(out, (1, 0), spread)
    scan_cpu._vstore(out, (2, 0), scan_cpu._vload_if(out, (1, 0), first))
    scan_cpu._vfold_add_if(acc, (0, 0), scan_cpu._vmul(spread, rep), first)


def test_vector_moves_and_the_state_fold():
    rng = np.random.default_rng(1)
    rows = rng.standard_normal((1, scan_cpu.LANES)).astype(np.float32)
    states = rng.standard_normal((1, 8)).astype(np.float32)
    acc = rng.standard_normal((1, scan_cpu.LANES)).astype(np.float32)
    for first in (0, 1):
        out = np.full((3, _VW), np.nan, np.float32)
        got = acc.copy()
        _vec_moves(rows, states, got, first, out)
        per_state = out[1].reshape(4, -1)
        np.testing.assert_array_equal(out[0].reshape(4, -1), np.tile(rows[0], (4, 1)))
        np.testing.assert_array_equal(per_state, np.repeat(states[0, :4, None], scan_cpu.LANES, axis=1))
        np.testing.assert_array_equal(out[2], 0 if first == 0 else out[1])
        prod = per_state * rows[0]  # float32, as the kernel rounds each product
        want = (acc[0] if first else np.float32(0)) + ((prod[0] + prod[1]) + (prod[2] + prod[3]))
        np.testing.assert_array_equal(got[0], want)


@numba.njit
def _trees(G, n, out):
    red = np.empty((1, 2 * scan_cpu.LANES), G.dtype)
    for t in range(G.shape[1]):
        scan_cpu._lane_trees(G, 0, t, n, red, out, 0, 0, 0, 0)


@numba.njit
def _scalar_trees(G, n, out):
    red = np.empty((1, 2 * scan_cpu.LANES), G.dtype)
    for t in range(G.shape[1]):
        for s in range(n):
            out[0, 0, 0, t, s] = scan_cpu._lane_tree(G, 0, t, s, red)


@pytest.mark.parametrize("states", [16, 12])
def test_register_lane_trees_are_bitwise_the_scalar_tree(states):
    # 16 states take the in-register path, 12 (padded to 12 by the kernel) the scalar one.
    G = np.random.default_rng(2).standard_normal((1, 5, states, scan_cpu.LANES)).astype(np.float32) * 1e3
    got = np.zeros((1, 1, 1, 5, states), np.float32)
    want = np.zeros_like(got)
    _trees(G, states, got)
    _scalar_trees(G, states, want)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(want[0, 0, 0], G[0].astype(np.float64).sum(-1), rtol=1e-5, atol=1e-2)
