"""The benchmarks' machine peak and FLOP counts (``specmamba.bench.peak``)."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from specmamba.bench.peak import UPDATE_FLOPS, gemm_peak, model_flops, rate, scan_flops, share
from specmamba.layers.bimamba import BiMambaMixer
from specmamba.layers.ss2d import SS2D


def test_scan_flops_count_28_per_state_update_and_3x_with_the_backward():
    assert UPDATE_FLOPS == 28
    assert scan_flops(1, 768, 4096, 16) == 768 * 4096 * 16 * 28  # VM-UNet stage 1: 1.41 GFLOP
    assert scan_flops(2, 8, 10, 4, backward=True) == 3 * 2 * 8 * 10 * 4 * 28


def _aten_flops(module, x):
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(x)
    return counter.get_total_flops()


def test_model_flops_add_the_scan_updates_to_the_aten_count():
    torch.manual_seed(0)
    ss2d = SS2D(16, d_state=4, scan_backend="ref")
    x = torch.randn(2, 3, 5, 16)  # (B, H, W, C): 4 directions x 32 channels x 15 positions x 4 states
    assert model_flops(ss2d, x) == _aten_flops(ss2d, x) + 2 * 4 * 32 * 15 * 4 * UPDATE_FLOPS
    mixer = BiMambaMixer(16, d_state=4, scan_backend="ref")
    h = torch.randn(1, 7, 16)  # (B, L, C): 2 directions x 32 channels x 7 tokens x 4 states
    assert model_flops(mixer, h, backward=True) == 3 * (_aten_flops(mixer, h) + 2 * 32 * 7 * 4 * UPDATE_FLOPS)


def test_gemm_peak_and_share():
    peak = gemm_peak("cpu", side=64, repeats=1)
    assert peak["side"] == 64 and peak["ms"] > 0
    assert peak["gflops"] == 2 * 64**3 / (peak["ms"] * 1e6)
    assert share(peak["gflops"] / 2, peak) == 0.5 and share(1.0, None) is None


def test_rate_is_gflops_and_share_of_the_peak():
    assert rate(3e9, 1.5, {"gflops": 4.0}) == (2.0, 0.5)
    assert rate(3e9, 0.0, {"gflops": 4.0}) == (None, None)
