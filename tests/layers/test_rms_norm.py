"""RMSNorm (``specmamba.layers.rms_norm``) against its formula (REFERENCE.md section 5: eps 1e-5,
weight only), and its dtype rule (statistics in float32, result in the input's dtype)."""

from __future__ import annotations

import torch

from specmamba.layers.rms_norm import RMSNorm


def test_formula_and_parameters():
    norm = RMSNorm(6).double()
    with torch.no_grad():
        norm.weight.copy_(torch.arange(1.0, 7.0))
    x = torch.randn(3, 4, 6, dtype=torch.float64)
    expected = (
        x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * torch.arange(1.0, 7.0, dtype=torch.float64)
    )
    torch.testing.assert_close(norm(x), expected)
    assert [name for name, _ in norm.named_parameters()] == ["weight"]  # no bias


def test_low_precision_input_is_normalised_in_float32():
    norm = RMSNorm(64)
    x = (torch.randn(2, 64) * 300).to(torch.bfloat16)  # squares overflow bf16's precision, not its range
    out = norm(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), norm(x.float()), rtol=1e-2, atol=1e-2)
