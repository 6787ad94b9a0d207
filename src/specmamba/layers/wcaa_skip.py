"""The WCAA skip of VMAML-UNet: wavelet-convolution features of the skip, refined by channel and
spatial attention, fused into the decoder.

VMAML-UNet's paper describes the module ("wavelet convolution attention aggregation": multi-scale
features, spatial and channel attention, then fusion) without equations (REFERENCE.md section 6); the
design is specmamba's. For the decoder map x and the encoder skip s (both (B, H, W, C), channels last):

    f = WTConv2d(s)                                         multi-scale wavelet features (levels L)
    f = f * sigmoid(MLP(avgpool(f)) + MLP(maxpool(f)))      channel attention (CBAM)
    f = f * sigmoid(conv7x7([mean_c(f), max_c(f)]))         spatial attention (CBAM)
    out = x + s + gamma * f,                                 gamma (C,) learnable, init 0.01

Why: the attention is CBAM's (Woo et al., ECCV 2018), channel then spatial, with its shared MLP
(reduction 4 here, for the narrow widths of a U-Net's first stages) and 7x7 spatial conv, which is
what VM-UNetV2 applies to every encoder level before its skips; the multi-scale features come from a
WTConv2d (two Haar levels by default: three scales of context at the cost of depthwise kernels). The
fusion stays VM-UNet's addition x + s, with the refined features added through a small per-channel
scale (layer-scale style, 0.01: small, so the skip starts close to VM-UNet's; not 0, which would give
the attention no gradient at the first step), and ``wcaa=False`` (the additive skip) is the exact
ablation.

Shape letters: B batch, H/W map size, C channels.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .wavelet_conv import WTConv2d

__all__ = ["WCAASkip"]

#: Initial per-channel scale of the refined skip features.
GAMMA_INIT = 0.01


class WCAASkip(nn.Module):
    """(x, skip), both (B, H, W, C) -> (B, H, W, C): x + skip + gamma * attention(WTConv2d(skip)).

    Args:
        dim: C.
        reduction: the channel MLP's reduction (hidden max(C // reduction, 1)).
        kernel_size, wt_levels: the WTConv2d's kernel and levels.
        spatial_kernel: the spatial attention's conv kernel (7, as CBAM).
    """

    def __init__(
        self, dim: int, reduction: int = 4, kernel_size: int = 3, wt_levels: int = 2, spatial_kernel: int = 7
    ) -> None:
        super().__init__()
        hidden = max(dim // reduction, 1)
        self.wavelet = WTConv2d(dim, dim, kernel_size, wt_levels=wt_levels, adapt_levels=True)
        self.channel_mlp = nn.Sequential(nn.Conv2d(dim, hidden, 1), nn.GELU(), nn.Conv2d(hidden, dim, 1))
        self.spatial_conv = nn.Conv2d(2, 1, spatial_kernel, padding=spatial_kernel // 2)
        self.gamma = nn.Parameter(torch.full((dim,), GAMMA_INIT))

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        s = skip.permute(0, 3, 1, 2)  # (B, C, H, W)
        f = self.wavelet(s)
        avg, peak = f.mean((2, 3), keepdim=True), f.amax((2, 3), keepdim=True)  # (B, C, 1, 1)
        f = f * torch.sigmoid(self.channel_mlp(avg) + self.channel_mlp(peak))
        pooled = torch.cat([f.mean(1, keepdim=True), f.amax(1, keepdim=True)], dim=1)  # (B, 2, H, W)
        f = f * torch.sigmoid(self.spatial_conv(pooled))
        return x + skip + self.gamma * f.permute(0, 2, 3, 1)
