"""The fused SS2D scan with its dt projection (``ss2d_selective_scan(..., dt_proj=W)``).

With ``dt_proj`` the caller hands the scan the low-rank dt (b, K, R, l) and the (K, d, R) projection;
where no gradient is needed the ``cpu`` kernel forms delta = W @ dt per tile itself. The oracle is the
same scan on the product taken first by torch (``torch.matmul(W, dt)``, what SS2D did before): the
kernel's R-term sums run in r order with FMAs, torch's GEMM may sum in another order, so the two
deltas differ by float32 rounding (a few ulp), which the scan carries through softplus and the
decays; 1e-5 relative is two orders above what that leaves and three below any real error (a
wrong lane or row of W moves outputs by O(1)). The composition with the ``ref`` scan is checked at
the fused-scan tolerances of ``test_cross_scan.py``.
"""

from __future__ import annotations

import importlib

import pytest
import torch

from specmamba.errors import ConfigError
from specmamba.ops import SS2D, ss2d_selective_scan

pytest.importorskip("numba")


def _case(b: int, d: int, h: int, w: int, n: int, r: int, dtype=torch.float32, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    k, length = SS2D.k, h * w
    case = {
        "x": torch.randn(b, d, h, w, generator=gen),
        "delta": torch.randn(b, k, r, length, generator=gen),  # the low-rank dt
        "A": -torch.rand(k * d, n, generator=gen) * 2 - 0.05,
        "B": torch.randn(b, k, n, length, generator=gen),
        "C": torch.randn(b, k, n, length, generator=gen),
        "D": torch.randn(k * d, generator=gen),
        "delta_bias": torch.randn(k * d, generator=gen) * 0.1 - 1.0,
        "dt_proj": torch.randn(k, d, r, generator=gen) * r**-0.5,
    }
    for name in ("x", "delta", "B", "C"):
        case[name] = case[name].to(dtype)
    return case


def _product_first(case: dict, backend: str) -> torch.Tensor:
    """The scan on delta = dt_proj @ dt taken by torch: the oracle."""
    rest = {key: value for key, value in case.items() if key not in ("delta", "dt_proj")}
    delta = torch.matmul(case["dt_proj"].to(case["delta"].dtype), case["delta"])  # (b, K, d, l)
    return ss2d_selective_scan(**rest, delta=delta, delta_softplus=True, backend=backend)


@pytest.fixture
def low_rank_calls(monkeypatch) -> list[bool]:
    """Whether each forward kernel call of this test got a dt projection (the fused low-rank path)."""
    scan_cpu = importlib.import_module("specmamba.ops.scan_cpu")
    calls, forward = [], scan_cpu._forward

    def spy(*args, **kwargs):
        calls.append((args[11] if len(args) > 11 else kwargs.get("dt_proj")) is not None)
        return forward(*args, **kwargs)

    monkeypatch.setattr(scan_cpu, "_forward", spy)
    return calls


@pytest.mark.parametrize(
    ("b", "d", "h", "w", "n", "r"),
    [(1, 192, 16, 16, 16, 6), (2, 20, 6, 7, 8, 3), (1, 70, 5, 9, 16, 1), (1, 8, 1, 1, 4, 2)],
    ids=["vmunet-stage1-width", "ragged-block", "two-blocks-rank1", "one-step"],
)
def test_the_kernel_forms_delta_from_the_low_rank_dt(b, d, h, w, n, r, low_rank_calls):
    case = _case(b, d, h, w, n, r, seed=d + r)
    with torch.no_grad():
        got = ss2d_selective_scan(**case, delta_softplus=True, backend="cpu")
        want = _product_first(case, "cpu")
        composed = _product_first(case, "ref")
    assert low_rank_calls == [True, False]  # the fused path ran, then the oracle's full-delta path
    scale = want.abs().max().item()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * scale)
    torch.testing.assert_close(got, composed, rtol=6e-4, atol=2e-3 * max(1.0, scale))


def test_bfloat16_dt_is_widened_and_projected_in_float32(low_rank_calls):
    case = _case(1, 40, 7, 6, 16, 6, dtype=torch.bfloat16, seed=5)
    widened = {key: value.float() for key, value in case.items()}
    with torch.no_grad():
        got = ss2d_selective_scan(**case, delta_softplus=True, backend="cpu")
        want = _product_first(widened, "cpu")  # float32 product of the widened dt, float32 scan
    assert low_rank_calls[0] and got.dtype == torch.bfloat16
    torch.testing.assert_close(got, want.bfloat16(), rtol=1e-2, atol=1e-2 * want.abs().max().item())


def test_with_gradients_the_product_is_taken_first_and_differentiated(low_rank_calls):
    case = _case(2, 20, 5, 6, 8, 3, seed=1)
    leaves = {key: value.clone().requires_grad_(True) for key, value in case.items()}
    y = ss2d_selective_scan(**leaves, delta_softplus=True, backend="cpu")
    g_out = torch.randn(y.shape, generator=torch.Generator().manual_seed(9))
    y.backward(g_out)
    ref_leaves = {key: value.clone().requires_grad_(True) for key, value in case.items()}
    y_ref = _product_first(ref_leaves, "ref")
    y_ref.backward(g_out)
    assert not any(low_rank_calls)  # autograd needs the full delta: the fused low-rank path stays off
    torch.testing.assert_close(y, y_ref, rtol=6e-4, atol=2e-3)
    for key in case:
        want = ref_leaves[key].grad
        torch.testing.assert_close(
            leaves[key].grad, want, rtol=6e-4, atol=2e-3 * max(1.0, want.abs().max().item()), msg=key
        )


def test_dt_proj_and_low_rank_dt_shapes_are_checked():
    case = _case(1, 8, 3, 3, 4, 2)
    with pytest.raises(ConfigError, match=r"dt_proj must be \(4, d, R\) with d = 8"):
        ss2d_selective_scan(**{**case, "dt_proj": case["dt_proj"][:, :5]}, backend="cpu")
    with pytest.raises(ConfigError, match="low-rank dt"):
        ss2d_selective_scan(**{**case, "delta": case["delta"][:, :, :1]}, backend="cpu")
    with pytest.raises(ConfigError, match="dt_proj"):
        ss2d_selective_scan(**{**case, "dt_proj": case["dt_proj"][0]}, backend="cpu")
