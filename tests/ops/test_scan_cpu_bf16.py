"""bfloat16 inputs of the ``cpu`` kernels (what CPU bf16 autocast hands the scan): read and written as
bfloat16 in the kernels, with the same float32 arithmetic as on their float32 widening.

The oracle is the float32 kernel run on the exactly widened inputs, its outputs and gradients then
rounded to each input's dtype: that is what the kernels computed before they read bfloat16 directly,
and widening bfloat16 is exact, so the two must agree bit for bit (nothing here is a tolerance).
"""

from __future__ import annotations

import pytest
import torch

from specmamba.ops import SS2D, selective_scan, ss2d_selective_scan

pytest.importorskip("numba")


def _grads(fn, inputs: dict, g_out: torch.Tensor, widen: bool) -> dict:
    """Output and input gradients of ``fn(**inputs)`` under output gradient ``g_out``; with ``widen``
    every bfloat16 input runs as its float32 widening and the results are rounded back afterwards."""
    leaves = {
        k: (v.float() if widen else v).clone().requires_grad_(True) if v is not None else None
        for k, v in inputs.items()
    }
    out = fn(**leaves)
    if widen:
        out = out.to(inputs[next(iter(inputs))].dtype)  # the output in the first input's (u's) dtype
    (out.float() * g_out.float()).sum().backward()
    res = {"out": out.detach()}
    for k, v in leaves.items():
        if v is not None:
            res[f"d{k}"] = v.grad.to(inputs[k].dtype)
    return res


def _bf16(case: dict, keep_fp32=("A", "D", "delta_bias")) -> dict:
    return {k: (v if v is None or k in keep_fp32 else v.bfloat16()) for k, v in case.items()}


@pytest.mark.parametrize(
    ("b", "d", "length", "n", "g", "z"),
    [(2, 40, 67, 16, 1, True), (1, 64, 256, 16, 2, False), (2, 20, 50, 8, 2, True), (1, 16, 1, 4, 1, True)],
    ids=["ragged-n16-gate", "aligned-streamed", "n8-groups", "one-step"],
)
def test_bf16_plain_scan_is_the_float32_scan_of_the_widened_inputs(b, d, length, n, g, z, scan_case):
    case = scan_case(b=b, d=d, length=length, n=n, g=g, z=z, seed=length)
    softplus = case.pop("delta_softplus")
    inputs = _bf16(case)

    def fn(**kw):
        return selective_scan(**kw, delta_softplus=softplus, backend="cpu")

    g_out = torch.randn(b, d, length, generator=torch.Generator().manual_seed(2)).bfloat16()
    got, want = _grads(fn, inputs, g_out, widen=False), _grads(fn, inputs, g_out, widen=True)
    assert got["out"].dtype == torch.bfloat16 and got["ddelta"].dtype == torch.bfloat16
    for key in want:
        assert torch.equal(got[key], want[key]), key


@pytest.mark.parametrize(("h", "w"), [(8, 8), (5, 7)], ids=["aligned", "ragged"])
def test_bf16_fused_ss2d_is_the_float32_one_of_the_widened_inputs(h, w, directional_case):
    inputs = _bf16(directional_case(4, 2, 24, h, w, 16, seed=h * w))

    def fn(**kw):
        return ss2d_selective_scan(**kw, delta_softplus=True, backend="cpu", directions=SS2D)

    g_out = torch.randn(2, 24, h * w, generator=torch.Generator().manual_seed(3)).bfloat16()
    got, want = _grads(fn, inputs, g_out, widen=False), _grads(fn, inputs, g_out, widen=True)
    for key in want:
        assert torch.equal(got[key], want[key]), key


def test_mixed_input_dtypes_take_the_float32_path(scan_case):
    # u float32 among bfloat16 others: the kernels then get float32 copies of everything, as before.
    case = scan_case(b=1, d=16, length=40, n=8, g=1, seed=4)
    softplus = case.pop("delta_softplus")
    inputs = {**_bf16(case), "u": case["u"]}

    def fn(**kw):
        return selective_scan(**kw, delta_softplus=softplus, backend="cpu")

    g_out = torch.randn(1, 16, 40, generator=torch.Generator().manual_seed(5))
    got, want = _grads(fn, inputs, g_out, widen=False), _grads(fn, inputs, g_out, widen=True)
    assert got["out"].dtype == torch.float32 and got["dz"].dtype == torch.bfloat16
    for key in want:
        assert torch.equal(got[key], want[key]), key
