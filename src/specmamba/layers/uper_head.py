"""UPerNet's decode head (Xiao et al. 2018, "Unified Perceptual Parsing") and the auxiliary FCN head,
as mmsegmentation defines them and Vim's segmentation configs use them (REFERENCE.md section 5).

UPerHead on four maps x_0..x_3 (finest first):

1. pyramid pooling on x_3: for each pool scale s (1, 2, 3, 6) adaptive-average-pool to s x s,
   1x1 conv-BN-ReLU to ``channels``, bilinear back; concatenated with x_3, 3x3 conv-BN-ReLU -> p_3;
2. lateral 1x1 conv-BN-ReLU on x_0..x_2; top-down: l_{i-1} += upsample(l_i), from p_3 down;
3. 3x3 conv-BN-ReLU on each of l_0..l_2, all four upsampled to x_0's size, concatenated, a 3x3
   conv-BN-ReLU (``fpn_bottleneck``), dropout 0.1, 1x1 conv to the classes.

FCNHead (the auxiliary head, weight 0.4 in training): one 3x3 conv-BN-ReLU, dropout 0.1, 1x1 conv.
Upsampling is bilinear with ``align_corners=False`` (mmsegmentation's setting). Init as
mmsegmentation's: convs kaiming-normal (fan_out, ReLU), BN (1, 0), the classifiers ``conv_seg``
normal(0, 0.01) with zero bias. BatchNorm stands for
upstream's SyncBN; ``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` converts it for multi-GPU runs.

Shape letters: B batch, C_i input widths, K classes, h_i/w_i map sizes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ConvBNReLU", "FCNHead", "UPerHead"]


class ConvBNReLU(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> ReLU, mmsegmentation's ConvModule."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int) -> None:
        super().__init__(
            nn.Conv2d(in_chs, out_chs, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_chs),
            nn.ReLU(inplace=True),
        )
        nn.init.kaiming_normal_(self[0].weight, mode="fan_out", nonlinearity="relu")


def _init_classifier(conv: nn.Conv2d) -> nn.Conv2d:
    nn.init.normal_(conv.weight, 0.0, 0.01)
    nn.init.zeros_(conv.bias)
    return conv


def _resize(x: Tensor, size: Sequence[int]) -> Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class UPerHead(nn.Module):
    """Four maps (B, C_i, h_i, w_i), finest first -> logits (B, K, h_0, w_0); see the module docstring."""

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        channels: int = 512,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        in_channels = list(in_channels)
        self.pool_scales = tuple(pool_scales)
        self.psp_modules = nn.ModuleList(ConvBNReLU(in_channels[-1], channels, 1) for _ in self.pool_scales)
        self.bottleneck = ConvBNReLU(in_channels[-1] + len(self.pool_scales) * channels, channels, 3)
        self.lateral_convs = nn.ModuleList(ConvBNReLU(c, channels, 1) for c in in_channels[:-1])
        self.fpn_convs = nn.ModuleList(ConvBNReLU(channels, channels, 3) for _ in in_channels[:-1])
        self.fpn_bottleneck = ConvBNReLU(len(in_channels) * channels, channels, 3)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.conv_seg = _init_classifier(nn.Conv2d(channels, num_classes, 1))

    def _pyramid_pooling(self, x: Tensor) -> Tensor:
        pooled = [
            _resize(module(F.adaptive_avg_pool2d(x, scale)), x.shape[-2:])
            for scale, module in zip(self.pool_scales, self.psp_modules)
        ]
        return self.bottleneck(torch.cat([x, *pooled], dim=1))

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, features)]
        laterals.append(self._pyramid_pooling(features[-1]))
        for i in range(len(laterals) - 1, 0, -1):  # top-down
            laterals[i - 1] = laterals[i - 1] + _resize(laterals[i], laterals[i - 1].shape[-2:])
        outs = [conv(lat) for conv, lat in zip(self.fpn_convs, laterals[:-1])] + [laterals[-1]]
        size = outs[0].shape[-2:]
        fused = self.fpn_bottleneck(torch.cat([_resize(o, size) for o in outs], dim=1))
        return self.conv_seg(self.dropout(fused))


class FCNHead(nn.Module):
    """One map (B, C, h, w) -> logits (B, K, h, w): 3x3 conv-BN-ReLU, dropout, 1x1 conv."""

    def __init__(self, in_channels: int, num_classes: int, channels: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.convs = ConvBNReLU(in_channels, channels, 3)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.conv_seg = _init_classifier(nn.Conv2d(channels, num_classes, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_seg(self.dropout(self.convs(x)))
