"""The WCVM block and the WCAA skip of VMAML-UNet, against their documented equations."""

from __future__ import annotations

import torch

from specmamba.layers.vss_block import VSSBlock
from specmamba.layers.wcaa_skip import GAMMA_INIT, WCAASkip
from specmamba.layers.wcvm_block import WCVMBlock


def test_wcvm_is_vss_plus_the_wavelet_branch():
    torch.manual_seed(0)
    block = WCVMBlock(8, d_state=4, scan_backend="ref", kernel_size=3, wt_levels=2)
    x = torch.randn(2, 8, 8, 8)
    y = block.ln_1(x)
    wavelet = block.wavelet(y.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    torch.testing.assert_close(block(x), x + block.self_attention(y) + wavelet)


def test_wcvm_without_wavelet_is_vmunets_vss_block():
    torch.manual_seed(0)
    vss = VSSBlock(8, d_state=4, scan_backend="ref")
    block = WCVMBlock(8, d_state=4, scan_backend="ref", wavelet=False)
    block.load_state_dict(vss.state_dict(), strict=True)
    x = torch.randn(1, 6, 6, 8)
    torch.testing.assert_close(block(x), vss(x))


def test_wcvm_takes_maps_smaller_than_its_levels_need():
    block = WCVMBlock(4, d_state=4, scan_backend="ref", kernel_size=3, wt_levels=3)
    for size in ((1, 1), (2, 2), (3, 5)):
        assert block(torch.randn(1, *size, 4)).shape == (1, *size, 4)


def test_wcaa_follows_its_equations():
    torch.manual_seed(0)
    skip_module = WCAASkip(8, wt_levels=2)
    assert torch.all(skip_module.gamma == GAMMA_INIT)
    with torch.no_grad():
        skip_module.gamma.normal_()
    x, skip = torch.randn(2, 8, 8, 8), torch.randn(2, 8, 8, 8)
    f = skip_module.wavelet(skip.permute(0, 3, 1, 2))
    mlp = skip_module.channel_mlp
    f = f * torch.sigmoid(mlp(f.mean((2, 3), keepdim=True)) + mlp(f.amax((2, 3), keepdim=True)))
    pooled = torch.cat([f.mean(1, keepdim=True), f.amax(1, keepdim=True)], 1)
    f = f * torch.sigmoid(skip_module.spatial_conv(pooled))
    expected = x + skip + skip_module.gamma * f.permute(0, 2, 3, 1)
    torch.testing.assert_close(skip_module(x, skip), expected)


def test_wcaa_with_zero_scale_is_the_additive_skip():
    skip_module = WCAASkip(4)
    with torch.no_grad():
        skip_module.gamma.zero_()
    x, skip = torch.randn(1, 4, 4, 4), torch.randn(1, 4, 4, 4)
    torch.testing.assert_close(skip_module(x, skip), x + skip)
