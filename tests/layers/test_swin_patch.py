"""Swin patch embedding, merging and expanding: shapes and where every channel goes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from specmamba.layers.swin_patch import SwinPatchEmbed, SwinPatchExpand, SwinPatchMerging


def _norm_input(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What ``module.norm`` receives when ``module`` runs on ``x``."""
    seen = {}
    handle = module.norm.register_forward_hook(lambda m, inp, out: seen.setdefault("x", inp[0]))
    module(x)
    handle.remove()
    return seen["x"]


def test_patch_embed_is_a_strided_conv_then_layer_norm():
    torch.manual_seed(0)
    embed = SwinPatchEmbed(in_chans=2, embed_dim=6, patch_size=4)
    x = torch.randn(3, 2, 8, 12)
    y = embed(x)
    assert y.shape == (3, 2, 3, 6)  # channels last
    # Token (i, j) sees exactly the 4 x 4 pixel patch at (4i, 4j).
    patch = x[1, :, 4:8, 8:12]
    token = (embed.proj.weight * patch).sum(dim=(1, 2, 3)) + embed.proj.bias
    assert torch.allclose(
        y[1, 1, 2], F.layer_norm(token, (6,), embed.norm.weight, embed.norm.bias), atol=1e-5
    )
    assert set(embed.state_dict()) == {"proj.weight", "proj.bias", "norm.weight", "norm.bias"}


def test_patch_merging_neighbour_order():
    torch.manual_seed(1)
    merge = SwinPatchMerging(dim=3)
    x = torch.randn(2, 4, 6, 3)
    y = merge(x)
    assert y.shape == (2, 2, 3, 6)
    cat = _norm_input(merge, x)  # (B, H/2, W/2, 4C)
    for i in range(2):
        for j in range(3):
            # Swin order: (2i, 2j), (2i+1, 2j), (2i, 2j+1), (2i+1, 2j+1).
            corners = [(2 * i, 2 * j), (2 * i + 1, 2 * j), (2 * i, 2 * j + 1), (2 * i + 1, 2 * j + 1)]
            want = torch.cat([x[:, r, c] for r, c in corners], dim=-1)
            assert torch.equal(cat[:, i, j], want)
    assert merge.reduction.bias is None and merge.reduction.weight.shape == (6, 12)
    assert merge.norm.normalized_shape == (12,)


@pytest.mark.parametrize("scale,dim,out_dim", [(2, 8, 4), (4, 4, 4), (3, 2, 5)])
def test_patch_expand_places_channel_groups(scale, dim, out_dim):
    torch.manual_seed(2)
    expand = SwinPatchExpand(dim, out_dim, scale)
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
    assert SwinPatchExpand(96, 48, 2).expand.weight.shape == (192, 96)
    assert SwinPatchExpand(96, 96, 4).expand.weight.shape == (1536, 96)
