"""Plain U-Net: the small convolutional baseline behind ``test_unet`` and ``unet_small``.

Ronneberger, Fischer & Brox, "U-Net: Convolutional Networks for Biomedical Image Segmentation"
(MICCAI 2015), with the now-usual changes: padded 3x3 convolutions (output size = input size), batch
norm after every convolution, nearest-neighbour upsampling instead of transposed convolutions, and
four resolution levels instead of five so that it trains in minutes on a CPU.

Encoder: four stages, stage i at 1 / 2**i of the input resolution with ``base_width * 2**i``
channels (max-pool 2x2, then two conv3x3-BN-ReLU). Decoder: three :class:`UpBlock` (upsample x2,
concatenate the encoder map of the same resolution, two conv3x3-BN-ReLU), then a 1x1 convolution to
the class logits. Height and width must be multiples of 8.

The building blocks (:class:`ConvBNReLU`, :class:`DoubleConv`, :class:`UpBlock`) are also the decoder
of the ResNet U-Net (``unet_resnet.py``).

Shape letters: B batch, C channels, H/W input height/width, K classes (``num_classes``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from .interface import SegmentationModel, make_feature_info
from .registry import register_model

__all__ = ["ConvBNReLU", "DoubleConv", "UNet", "UpBlock", "test_unet", "unet_small"]


class ConvBNReLU(nn.Sequential):
    """conv3x3 (no bias: the batch norm that follows has one) - BatchNorm - ReLU; keeps H and W."""

    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__(
            nn.Conv2d(in_chs, out_chs, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_chs),
            nn.ReLU(inplace=True),
        )


class DoubleConv(nn.Sequential):
    """Two :class:`ConvBNReLU`: ``in_chs -> out_chs -> out_chs``."""

    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__(ConvBNReLU(in_chs, out_chs), ConvBNReLU(out_chs, out_chs))


class UpBlock(nn.Module):
    """U-Net decoder block: nearest upsample x2, concatenate the skip (if any), :class:`DoubleConv`.

    (B, in_chs, h, w) + skip (B, skip_chs, 2h, 2w) -> (B, out_chs, 2h, 2w). ``skip_chs=0`` builds a
    block without skip connection (the last block of the ResNet U-Net).
    """

    def __init__(self, in_chs: int, skip_chs: int, out_chs: int) -> None:
        super().__init__()
        self.skip_chs = skip_chs
        self.conv = DoubleConv(in_chs + skip_chs, out_chs)

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        if skip is None:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        else:
            # Upsample straight to the skip's size: identical to x2 for valid input sizes.
            x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
            x = torch.cat([x, skip], dim=1)  # (B, in_chs + skip_chs, 2h, 2w)
        return self.conv(x)


def init_conv_bn(module: nn.Module) -> None:
    """He-normal init (fan_out, ReLU) for convolutions, BN weight 1 / bias 0, conv biases 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class UNet(SegmentationModel):
    """Four-level plain U-Net returning logits (B, num_classes, H, W).

    Args:
        in_chans: input channels (any positive int).
        num_classes: 1 for binary segmentation (one logit channel), K >= 2 for K classes.
        base_width: channels of the first stage; stage i has ``base_width * 2**i``.
        model_name: registry name used in error messages.
    """

    input_multiple = 8

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1,
        base_width: int = 8,
        model_name: str | None = None,
    ) -> None:
        super().__init__(in_chans, num_classes, model_name)
        if isinstance(base_width, bool) or not isinstance(base_width, int) or base_width < 1:
            raise ConfigError(
                f"{self.model_name or 'UNet'}: base_width must be a positive integer; got {base_width!r}."
            )
        widths = [base_width * 2**i for i in range(4)]
        stages: list[nn.Module] = [DoubleConv(in_chans, widths[0])]
        for i in range(1, 4):
            stages.append(nn.Sequential(nn.MaxPool2d(2), DoubleConv(widths[i - 1], widths[i])))
        self.stages = nn.ModuleList(stages)
        # Decoder from the deepest stage up: (8w + 4w -> 4w), (4w + 2w -> 2w), (2w + w -> w).
        self.decoder = nn.ModuleList([UpBlock(widths[i + 1], widths[i], widths[i]) for i in (2, 1, 0)])
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=1)
        self.feature_info = make_feature_info(widths, [1, 2, 4, 8], [f"stages.{i}" for i in range(4)])
        self.base_width = base_width
        init_conv_bn(self)

    def _encode(self, x: Tensor) -> list[Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats

    def forward_intermediates(self, x: Tensor) -> list[Tensor]:
        """The four encoder stage maps (B, base_width * 2**i, H / 2**i, W / 2**i), i = 0..3."""
        self.check_input(x)
        return self._encode(x)

    def forward(self, x: Tensor) -> Tensor:
        """Image batch (B, in_chans, H, W), H and W multiples of 8 -> logits (B, num_classes, H, W)."""
        self.check_input(x)
        feats = self._encode(x)
        y = feats[-1]
        for block, skip in zip(self.decoder, feats[-2::-1]):
            y = block(y, skip)
        return self.head(y)


@register_model
def test_unet(in_chans: int = 3, num_classes: int = 1, **kwargs: Any) -> UNet:
    """Tiny plain U-Net (base width 8, about 0.12M parameters) for fast CPU tests."""
    kwargs.setdefault("base_width", 8)
    return UNet(in_chans=in_chans, num_classes=num_classes, model_name="test_unet", **kwargs)


@register_model
def unet_small(in_chans: int = 3, num_classes: int = 1, **kwargs: Any) -> UNet:
    """Small plain U-Net (base width 16, about 0.49M parameters): the CPU demo's model."""
    kwargs.setdefault("base_width", 16)
    return UNet(in_chans=in_chans, num_classes=num_classes, model_name="unet_small", **kwargs)
