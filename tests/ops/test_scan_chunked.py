"""The tensor-op backend ``chunked`` against the oracle ``ref``: outputs, last state, every gradient.

Chunk lengths are chosen to hit every layout: one chunk (T >= l), T = 1 (every step its own chunk), T
dividing l, and a padded last chunk. Tolerances are REFERENCE.md's (``scan_assert``); in float64 the
two formulations agree to rounding (1e-10), which shows the difference is only the summation order.
"""

from __future__ import annotations

import pytest
import torch

from specmamba.errors import ConfigError
from specmamba.ops import selective_scan
from specmamba.ops.scan_chunked import auto_chunk_length, chunk_length


@pytest.mark.parametrize("length, steps", [(1, 4), (7, 16), (16, 1), (64, 8), (100, 16), (257, 64)])
@pytest.mark.parametrize("g", [1, 2])
def test_chunked_matches_ref(length, steps, g, scan_case, scan_run, scan_assert):
    case = scan_case(b=2, d=8, length=length, n=4, g=g, seed=length + g)
    with chunk_length(steps):
        got = scan_run(case, "chunked")
    scan_assert(scan_run(case, "ref"), got)


@pytest.mark.parametrize("opts", [(False,) * 4, (True, False, True, False)], ids=["none", "Db"])
def test_chunked_matches_ref_without_options(opts, scan_case, scan_run, scan_assert):
    D, z, bias, softplus = opts
    case = scan_case(b=1, d=6, length=50, n=3, g=3, D=D, z=z, bias=bias, softplus=softplus, seed=5)
    with chunk_length(8):
        got = scan_run(case, "chunked")
    scan_assert(scan_run(case, "ref"), got)


def test_chunked_equals_ref_to_rounding_in_float64(scan_case):
    case = scan_case(b=2, d=8, length=90, n=4, g=2, dtype=torch.float64, seed=11)
    with chunk_length(16):
        got = selective_scan(**case, return_last_state=True, backend="chunked")
    want = selective_scan(**case, return_last_state=True, backend="ref")
    for a, b in zip(got, want):
        assert a.dtype == torch.float64
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_steep_decays_neither_overflow_nor_lose_the_recent_steps(scan_case):
    # dt up to ~8 and A down to -16: log decays of -130 a step, chunk sums of -8000. The suffix-sum
    # exponents stay <= 0, so nothing overflows and the last steps keep full precision.
    case = scan_case(b=1, d=4, length=80, n=16, g=1, seed=2)
    case["delta"] = case["delta"] * 4 + 6
    case["A"] = -torch.linspace(1, 16, 16).repeat(4, 1)
    with chunk_length(32):
        out, last = selective_scan(**case, return_last_state=True, backend="chunked")
    ref_out, ref_last = selective_scan(**case, return_last_state=True, backend="ref")
    assert torch.isfinite(out).all() and torch.isfinite(last).all()
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(last, ref_last, rtol=1e-5, atol=1e-5)


def test_chunk_length_is_checked_and_restored():
    from specmamba.ops import scan_chunked

    with pytest.raises(ConfigError, match="--chunk-length must be a whole number >= 1"):
        with chunk_length(0):
            pass
    with chunk_length(5):
        assert scan_chunked._chunk == 5
    assert scan_chunked._chunk is None
    assert [auto_chunk_length(n) for n in (1, 3, 64, 100, 197, 1024, 4096)] == [1, 2, 8, 8, 16, 32, 64]


def test_the_default_chunk_length_matches_ref(scan_case, scan_run, scan_assert):
    case = scan_case(b=1, d=8, length=197, n=4, g=2, seed=9)  # Vim's 14 x 14 + 1: 16 chunks of 16 (padded)
    scan_assert(scan_run(case, "ref"), scan_run(case, "chunked"))
