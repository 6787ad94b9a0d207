"""Shared helpers of the selective-scan tests: an input factory, a runner and the REFERENCE.md tolerances.

Shape letters: b batch, d channels, l length, n state size, g groups of B/C.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from specmamba.ops import selective_scan

NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")

# REFERENCE.md section 1 (mamba-ssm's own test): fp32 outputs rtol 6e-4 / atol 2e-3; gradients looser,
# du 2x, ddelta 5x rtol / 10x atol. Parameter gradients are sums over batch and time, so their atol is
# taken relative to the largest reference value (at least 1).
RTOL, ATOL = 6e-4, 2e-3
GRAD_TOL = {"u": (2 * RTOL, 2 * ATOL), "delta": (5 * RTOL, 10 * ATOL)}


def make_case(
    b: int = 2,
    d: int = 8,
    length: int = 16,
    n: int = 4,
    g: int = 1,
    *,
    D: bool = True,
    z: bool = True,
    bias: bool = True,
    softplus: bool = True,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    device: str = "cpu",
) -> dict:
    """Random inputs in the regime of a trained Mamba layer (stable A < 0, positive step sizes)."""
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen)

    raw = rnd(b, d, length) * 0.5 - 1.0 if softplus else torch.rand(b, d, length, generator=gen) * 0.5 + 0.01
    case = {
        "u": rnd(b, d, length),
        "delta": raw,
        "A": -torch.rand(d, n, generator=gen) * 2 - 0.05,
        "B": rnd(b, g, n, length),
        "C": rnd(b, g, n, length),
        "D": rnd(d) if D else None,
        "z": rnd(b, d, length) if z else None,
        "delta_bias": rnd(d) * 0.1 if bias else None,
    }
    out = {k: (v.to(device=device, dtype=dtype) if v is not None else None) for k, v in case.items()}
    out["delta_softplus"] = softplus
    return out


def run_case(case: dict, backend: str, seed: int = 1) -> dict:
    """Forward with last state, backward of a random projection of both; returns outputs and grads."""
    leaves = {
        k: (case[k].detach().clone().requires_grad_(True) if case[k] is not None else None) for k in NAMES
    }
    out, last = selective_scan(
        **leaves, delta_softplus=case["delta_softplus"], return_last_state=True, backend=backend
    )
    gen = torch.Generator().manual_seed(seed)
    g_out = torch.randn(out.shape, generator=gen).to(out)
    g_last = torch.randn(last.shape, generator=gen).to(last)
    ((out * g_out).float().sum() + (last * g_last).float().sum()).backward()
    res = {"out": out.detach(), "last": last.detach()}
    res.update({f"d{k}": v.grad for k, v in leaves.items() if v is not None})
    return res


def assert_matches(ref: dict, got: dict, scale: float = 1.0) -> None:
    """Compare every output and gradient with the REFERENCE.md tolerances (times ``scale``)."""
    assert ref.keys() == got.keys()
    for key, r in ref.items():
        a = got[key]
        assert a.shape == r.shape and a.dtype == r.dtype, key
        r, a = r.double(), a.double()
        if key in ("out", "last"):
            rtol, atol = RTOL, ATOL
        elif key in ("du", "ddelta"):
            rtol, atol = GRAD_TOL[key[1:]]
        else:
            rtol, atol = RTOL, ATOL * max(1.0, r.abs().max().item())
        torch.testing.assert_close(
            a, r, rtol=rtol * scale, atol=atol * scale, msg=lambda m, k=key: f"{k}: {m}"
        )


@pytest.fixture
def scan_case() -> Callable[..., dict]:
    return make_case


@pytest.fixture
def scan_run() -> Callable[..., dict]:
    return run_case


@pytest.fixture
def scan_assert() -> Callable[..., None]:
    return assert_matches


def make_directional_case(k: int, b: int, d: int, h: int, w: int, n: int, seed: int = 0) -> dict:
    """Inputs of the fused directional scan (``ss2d_selective_scan``) for K = ``k`` directions."""
    gen = torch.Generator().manual_seed(seed)
    length = h * w
    return {
        "x": torch.randn(b, d, h, w, generator=gen),
        "delta": torch.randn(b, k, d, length, generator=gen) * 0.5 - 1.0,
        "A": -torch.rand(k * d, n, generator=gen) * 2 - 0.05,
        "B": torch.randn(b, k, n, length, generator=gen),
        "C": torch.randn(b, k, n, length, generator=gen),
        "D": torch.randn(k * d, generator=gen),
        "delta_bias": torch.randn(k * d, generator=gen) * 0.1,
    }


def run_directional(inputs: dict, backend: str, directions=None) -> list[torch.Tensor]:
    """[y, d(every input)] of the fused directional scan under a fixed random output gradient."""
    from specmamba.ops import SS2D, ss2d_selective_scan

    leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items()}
    y = ss2d_selective_scan(**leaves, delta_softplus=True, backend=backend, directions=directions or SS2D)
    y.backward(torch.randn(y.shape, generator=torch.Generator().manual_seed(9)))
    return [y.detach()] + [leaves[k].grad for k in inputs]


@pytest.fixture
def directional_case() -> Callable[..., dict]:
    return make_directional_case


@pytest.fixture
def directional_run() -> Callable[..., list[torch.Tensor]]:
    return run_directional
