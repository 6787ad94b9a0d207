"""The fused numba backend ``cpu`` against the oracle ``ref``: outputs, last state, every gradient."""

from __future__ import annotations

import itertools

import pytest
import torch

from specmamba.bench.timing import peak_extra_bytes
from specmamba.ops import selective_scan
from specmamba.ops.scan_cpu import chunk_len

pytest.importorskip("numba")

LENGTHS = [1, 2, 7, 64, 257, 1024]
GROUPS = [1, 2, 4]


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("g", GROUPS)
@pytest.mark.parametrize(
    "opts", [(True, True, True, True), (False, False, False, False)], ids=["all", "none"]
)
def test_cpu_matches_ref_grid(length, g, opts, scan_case, scan_run, scan_assert):
    D, z, bias, softplus = opts
    # d = 24: groups of 24 / 12 / 6 channels, i.e. full and partial 16-lane blocks and several splits.
    case = scan_case(
        b=2, d=24, length=length, n=8, g=g, D=D, z=z, bias=bias, softplus=softplus, seed=length + g
    )
    scan_assert(scan_run(case, "ref"), scan_run(case, "cpu"))


def _opt_id(opts: tuple[bool, ...]) -> str:
    return "".join(flag if on else "-" for flag, on in zip("DzbS", opts))


@pytest.mark.parametrize("opts", list(itertools.product([False, True], repeat=4)), ids=_opt_id)
def test_cpu_matches_ref_every_option(opts, scan_case, scan_run, scan_assert):
    D, z, bias, softplus = opts
    case = scan_case(b=1, d=12, length=65, n=4, g=2, D=D, z=z, bias=bias, softplus=softplus, seed=7)
    scan_assert(scan_run(case, "ref"), scan_run(case, "cpu"))


@pytest.mark.parametrize(
    "shape",
    [(1, 160, 200, 40, 1), (3, 64, 100, 16, 4), (2, 20, 33, 5, 5)],
    ids=["many-blocks-n40", "batch3-g4", "odd-group"],
)
def test_cpu_matches_ref_other_shapes(shape, scan_case, scan_run, scan_assert):
    b, d, length, n, g = shape
    case = scan_case(b=b, d=d, length=length, n=n, g=g, seed=3)
    scan_assert(scan_run(case, "ref"), scan_run(case, "cpu"))


def test_cpu_three_dim_bc_is_one_group(scan_case):
    case = scan_case(b=2, d=8, length=20, n=4, g=1)
    args = dict(case, B=case["B"][:, 0], C=case["C"][:, 0])
    torch.testing.assert_close(
        selective_scan(**args, backend="cpu"), selective_scan(**case, backend="cpu"), rtol=0, atol=0
    )


def test_cpu_gradcheck_float64(scan_case):
    case = scan_case(b=2, d=4, length=6, n=3, g=2, dtype=torch.float64)
    leaves = [case[k].requires_grad_(True) for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")]

    def fn(*xs):
        return selective_scan(
            *xs[:5],
            D=xs[5],
            z=xs[6],
            delta_bias=xs[7],
            delta_softplus=True,
            return_last_state=True,
            backend="cpu",
        )

    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-6, rtol=1e-5)


def test_cpu_backward_is_deterministic_across_runs_and_threads(scan_case, scan_run):
    case = scan_case(b=1, d=64, length=300, n=16, g=2, seed=11)
    first = scan_run(case, "cpu")
    again = scan_run(case, "cpu")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = scan_run(case, "cpu")
    finally:
        torch.set_num_threads(threads)
    for key in first:
        assert torch.equal(first[key], again[key]), key
        assert torch.equal(first[key], single[key]), key


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cpu_low_precision_inputs(dtype, scan_case, scan_run):
    case = scan_case(b=2, d=16, length=50, n=8, g=2, dtype=dtype, seed=5)
    ref, got = scan_run(case, "ref"), scan_run(case, "cpu")
    assert got["out"].dtype == dtype and got["last"].dtype == torch.float32
    for key in ref:
        assert got[key].dtype == ref[key].dtype, key
        r, a = ref[key].double(), got[key].double()
        # both compute in fp32 from the same inputs; differences come from the final rounding
        assert (a - r).abs().max() <= 2e-2 * max(1.0, r.abs().max().item()), key


def test_cpu_saved_memory_does_not_scale_with_n(scan_case):
    b, d, length = 2, 32, 640
    for n in (4, 16, 64):
        case = scan_case(b=b, d=d, length=length, n=n, g=2)
        leaves = {k: (v.requires_grad_(True) if isinstance(v, torch.Tensor) else v) for k, v in case.items()}
        out = selective_scan(**leaves, backend="cpu")
        input_ptrs = {t.data_ptr() for t in leaves.values() if isinstance(t, torch.Tensor)}
        extra = [t for t in out.grad_fn.saved_tensors if t.data_ptr() not in input_ptrs]
        # only the chunk-start states are saved: b*d*n*l/T values with T = chunk_len(n) >= 2n
        assert sum(t.numel() for t in extra) <= b * d * length // 2 + 16  # + 1-element dummies
        assert all(t.numel() < b * d * n * length for t in extra)
        assert chunk_len(n) >= 2 * n


def test_cpu_peak_memory_is_order_bdl():
    b, d, length, n = 1, 1024, 2048, 32
    gen = torch.Generator().manual_seed(0)
    args = {
        "u": torch.randn(b, d, length, generator=gen),
        "delta": torch.randn(b, d, length, generator=gen),
        "A": -torch.rand(d, n, generator=gen) - 0.1,
        "B": torch.randn(b, 1, n, length, generator=gen),
        "C": torch.randn(b, 1, n, length, generator=gen),
        "D": torch.ones(d),
    }
    leaves = {k: v.requires_grad_(True) for k, v in args.items()}

    def fwd_bwd() -> None:
        for v in leaves.values():
            v.grad = None
        out = selective_scan(**leaves, delta_softplus=True, backend="cpu")
        out.backward(torch.ones_like(out))

    fwd_bwd()  # compile / warm up
    extra = peak_extra_bytes(fwd_bwd)
    if extra is None:
        pytest.skip("peak memory needs /proc (Linux)")
    bdl_bytes = 4 * b * d * length
    # outputs, gradients, saved states and scratch: a handful of (b, d, l) buffers; one (b, d, n, l)
    # tensor alone would be n = 32 of them
    assert extra < 12 * bdl_bytes, f"{extra / 2**20:.1f} MiB"


def test_cpu_float64_computes_in_float64(scan_case):
    case = scan_case(b=1, d=4, length=5, dtype=torch.float64)
    out, last = selective_scan(**case, return_last_state=True, backend="cpu")
    assert out.dtype == torch.float64 and last.dtype == torch.float64
