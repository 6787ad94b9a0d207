"""The oracle ``ref`` against the definition of REFERENCE.md section 1, written out element by element."""

from __future__ import annotations

import math

import numpy as np
import torch

from specmamba.ops import selective_scan


def _definition(case: dict) -> tuple[np.ndarray, np.ndarray]:
    """REFERENCE.md section 1 as scalar loops in float64 (channel i uses group i // (d / g))."""
    u, delta, A, B, C = (case[k].double().numpy() for k in ("u", "delta", "A", "B", "C"))
    D, z, bias = case["D"].double().numpy(), case["z"].double().numpy(), case["delta_bias"].double().numpy()
    b, d, length = u.shape
    g, n = B.shape[1], A.shape[1]
    out = np.zeros((b, d, length))
    last = np.zeros((b, d, n))
    for bi in range(b):
        for i in range(d):
            grp = i // (d // g)
            x = np.zeros(n)
            for t in range(length):
                dt = delta[bi, i, t] + bias[i]
                dt = math.log1p(math.exp(dt)) if case["delta_softplus"] else dt
                x = np.exp(dt * A[i]) * x + dt * B[bi, grp, :, t] * u[bi, i, t]
                y = float(x @ C[bi, grp, :, t]) + u[bi, i, t] * D[i]
                zz = z[bi, i, t]
                out[bi, i, t] = y * zz / (1.0 + math.exp(-zz))
            last[bi, i] = x
    return out, last


def test_ref_equals_definition(scan_case):
    case = scan_case(b=2, d=6, length=9, n=3, g=3, dtype=torch.float64, seed=4)
    out, last = selective_scan(**case, return_last_state=True, backend="ref")
    want_out, want_last = _definition(case)
    np.testing.assert_allclose(out.numpy(), want_out, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(last.numpy(), want_last, rtol=1e-12, atol=1e-12)


def test_ref_gradcheck_float64(scan_case):
    case = scan_case(b=2, d=4, length=5, n=3, g=2, dtype=torch.float64, seed=2)
    leaves = [case[k].requires_grad_(True) for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")]

    def fn(*xs):
        return selective_scan(
            *xs[:5],
            D=xs[5],
            z=xs[6],
            delta_bias=xs[7],
            delta_softplus=True,
            return_last_state=True,
            backend="ref",
        )

    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-7, rtol=1e-6)


def test_ref_dtypes_state_in_fp32(scan_case):
    case = scan_case(b=1, d=4, length=6, n=2, dtype=torch.bfloat16)
    out, last = selective_scan(**case, return_last_state=True, backend="ref")
    assert out.dtype == torch.bfloat16 and last.dtype == torch.float32
    case64 = scan_case(b=1, d=4, length=6, n=2, dtype=torch.float64)
    out64, last64 = selective_scan(**case64, return_last_state=True, backend="ref")
    assert out64.dtype == torch.float64 and last64.dtype == torch.float64
