"""Patch embed / merging / expanding of VM-UNet (``specmamba.layers.patch``)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from specmamba.layers import (
    FinalPatchExpand2D,
    PatchEmbed2D,
    PatchExpand2D,
    PatchMerging2D,
    pixel_shuffle_last,
)


def test_patch_embed_is_conv_then_layernorm_channels_last():
    torch.manual_seed(0)
    embed = PatchEmbed2D(patch_size=4, in_chans=3, embed_dim=8)
    assert embed.proj.weight.shape == (8, 3, 4, 4) and embed.proj.stride == (4, 4)
    assert embed.proj.bias is not None and embed.norm.weight.shape == (8,)
    x = torch.randn(2, 3, 32, 64)
    y = embed(x)
    assert y.shape == (2, 8, 16, 8)
    expected = F.layer_norm(embed.proj(x).permute(0, 2, 3, 1), (8,), embed.norm.weight, embed.norm.bias)
    torch.testing.assert_close(y, expected)


def test_patch_merging_sub_grid_order():
    merge = PatchMerging2D(3)
    assert merge.reduction.weight.shape == (6, 12) and merge.reduction.bias is None
    assert merge.norm.weight.shape == (12,)
    merge.norm, merge.reduction = nn.Identity(), nn.Identity()  # expose the concatenation itself
    x = torch.randn(2, 4, 6, 3)
    y = merge(x)
    assert y.shape == (2, 2, 3, 12)
    for i in range(2):
        for j in range(3):
            # x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2] in that order (rows first).
            assert torch.equal(y[:, i, j, 0:3], x[:, 2 * i, 2 * j])
            assert torch.equal(y[:, i, j, 3:6], x[:, 2 * i + 1, 2 * j])
            assert torch.equal(y[:, i, j, 6:9], x[:, 2 * i, 2 * j + 1])
            assert torch.equal(y[:, i, j, 9:12], x[:, 2 * i + 1, 2 * j + 1])


def test_patch_merging_is_norm_then_reduction():
    torch.manual_seed(0)
    merge = PatchMerging2D(4)
    x = torch.randn(1, 2, 2, 4)
    cat = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
    expected = merge.reduction(F.layer_norm(cat, (16,), merge.norm.weight, merge.norm.bias))
    torch.testing.assert_close(merge(x), expected)
    with pytest.raises(ValueError, match="even"):
        merge(torch.randn(1, 3, 2, 4))


@pytest.mark.parametrize("scale", [2, 4])
def test_pixel_shuffle_last_channel_order(scale):
    b, h, w, c = 2, 2, 3, 5
    x = torch.randn(b, h, w, scale * scale * c)
    y = pixel_shuffle_last(x, scale)
    assert y.shape == (b, h * scale, w * scale, c)
    for i in range(h):
        for j in range(w):
            for s1 in range(scale):
                for s2 in range(scale):
                    # einops "(p1 p2 c)": position-major channel blocks.
                    block = x[:, i, j, (s1 * scale + s2) * c : (s1 * scale + s2 + 1) * c]
                    assert torch.equal(y[:, scale * i + s1, scale * j + s2], block)
    # Not torch's PixelShuffle order "(c p1 p2)" (which the official weights do not use).
    torch_order = F.pixel_shuffle(x.permute(0, 3, 1, 2), scale).permute(0, 2, 3, 1)
    assert not torch.equal(torch_order, y)
    with pytest.raises(ValueError, match="divisible"):
        pixel_shuffle_last(torch.randn(1, 2, 2, 6), 2)


def test_patch_expand_shapes_and_layers():
    torch.manual_seed(0)
    up = PatchExpand2D(16)  # decoder x2: 2c -> 4c Linear, c = 8 out
    assert up.expand.weight.shape == (32, 16) and up.expand.bias is None
    assert up.norm.weight.shape == (8,)
    x = torch.randn(2, 3, 5, 16)
    y = up(x)
    assert y.shape == (2, 6, 10, 8)
    expected = F.layer_norm(pixel_shuffle_last(up.expand(x), 2), (8,), up.norm.weight, up.norm.bias)
    torch.testing.assert_close(y, expected)


def test_final_patch_expand_x4():
    final = FinalPatchExpand2D(96)
    assert final.expand.weight.shape == (384, 96) and final.norm.weight.shape == (24,)
    assert final(torch.randn(1, 2, 3, 96)).shape == (1, 8, 12, 24)
    with pytest.raises(ValueError, match="divisible"):
        FinalPatchExpand2D(10)


# The expanding as Swin-Unet uses it too (one set of patch layers serves both U-Nets).


def _norm_input(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What ``module.norm`` receives when ``module`` runs on ``x``."""
    seen = {}
    handle = module.norm.register_forward_hook(lambda m, inp, out: seen.setdefault("x", inp[0]))
    module(x)
    handle.remove()
    return seen["x"]


@pytest.mark.parametrize("scale,dim,out_dim", [(2, 8, 4), (4, 4, 4), (3, 2, 5)])
def test_patch_expand_places_channel_groups_for_any_scale_and_width(scale, dim, out_dim):
    torch.manual_seed(2)
    expand = PatchExpand2D(dim, out_dim, scale)
    x = torch.randn(2, 3, 2, dim)
    y = expand(x)
    assert y.shape == (2, 3 * scale, 2 * scale, out_dim)
    wide = x @ expand.expand.weight.T  # (B, H, W, r*r*C_out)
    before_norm = _norm_input(expand, x)
    for h in range(3):
        for w in range(2):
            for i in range(scale):
                for j in range(scale):
                    group = wide[:, h, w, (i * scale + j) * out_dim : (i * scale + j + 1) * out_dim]
                    assert torch.allclose(before_norm[:, h * scale + i, w * scale + j], group, atol=1e-6)
    assert torch.allclose(y, F.layer_norm(before_norm, (out_dim,), expand.norm.weight, expand.norm.bias))
    assert expand.expand.bias is None


def test_swin_unet_expanding_widths():
    # Between decoder stages: C -> 2C by the linear, 2 x 2 tokens of C/2; final: C -> 16C, 4 x 4 of C.
    assert PatchExpand2D(96, 48, 2).expand.weight.shape == (192, 96)
    assert PatchExpand2D(96, 96, 4).expand.weight.shape == (1536, 96)
