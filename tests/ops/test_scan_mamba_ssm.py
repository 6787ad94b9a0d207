"""The ``mamba_ssm`` adapter against ``ref`` (needs the mamba-ssm package and a CUDA device)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from specmamba.ops import selective_scan

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
    pytest.mark.skipif(importlib.util.find_spec("mamba_ssm") is None, reason="mamba-ssm not installed"),
]

NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def _run(case: dict, backend: str) -> list[torch.Tensor]:
    # the loss uses the output only: mamba-ssm's backward ignores gradients through the last state
    leaves = {k: case[k].clone().requires_grad_(True) for k in NAMES}
    out, last = selective_scan(**leaves, delta_softplus=True, return_last_state=True, backend=backend)
    out.backward(torch.randn(out.shape, generator=torch.Generator().manual_seed(0)).to(out))
    return [out.detach(), last.detach()] + [leaves[k].grad for k in NAMES]


@pytest.mark.parametrize("g", [1, 4])
def test_mamba_ssm_matches_ref(g, scan_case):
    case = scan_case(b=2, d=32, length=300, n=16, g=g, device="cuda")
    for a, r in zip(_run(case, "mamba_ssm"), _run(case, "ref")):
        torch.testing.assert_close(a, r, rtol=3e-3, atol=2e-2 * max(1.0, r.abs().max().item()))
