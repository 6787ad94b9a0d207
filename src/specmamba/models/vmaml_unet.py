"""VMAML-UNet: VM-UNet with wavelet-convolution Mamba blocks, wavelet attention skips and KAN-weighted
deep supervision (the seed "vision Mamba and adaptive multiscale loss"; REFERENCE.md section 6).

The paper publishes no code and no equations, so every component below is specmamba's design, each
documented in its own module and each switchable, so what it buys can be measured:

* the U-shape, widths and depths are VM-UNet's paper configuration (``unet_skeleton.py``: patch embed
  4, widths 96 .. 768, depths [2, 2, 2, 2] / decoder [2, 2, 2, 1], patch merging and expanding);
* blocks: WCVM (``layers/wcvm_block.py``), x + DropPath(SS2D(LN(x)) + WTConv2d(LN(x)));
  ``wavelet=False`` gives VM-UNet's VSS block;
* skips: WCAA (``layers/wcaa_skip.py``), wavelet features of the skip refined by CBAM channel and
  spatial attention, added with a learned per-channel scale; ``wcaa=False`` gives VM-UNet's addition;
* deep supervision (``deep_supervision="kan" | "fixed" | "none"``): a KAN-convolution head on each of
  the last three decoder stages (1/16, 1/8, 1/4 of the input for four stages) gives logits at its scale
  (a 1x1 conv to ``head_channels`` (8) channels, then a 3x3 KANConv2d to the classes: a KAN kernel over
  the full decoder width would hold 9 * C B-spline bases per pixel, hundreds of MB at 256 px). The model
  returns them in train mode as ``SegOutput.aux`` and asks the criterion (``aux_weighting``) to weigh
  them: by a KAN of each head's loss lag and scale ("kan"), or by nnU-Net's halving ("fixed"); see
  ``losses/aux_weighting.py``. The heads' efficient-KAN regulariser, times ``kan_regularization``, is
  returned as the term ``kan_heads_regularization``. Eval mode returns the main logits only.

``ddp_find_unused_parameters`` is True: on maps too small for every wavelet level (deep stages of small
inputs) the deepest levels' weights are not used, which DistributedDataParallel must be told.

Shape letters: B batch, H/W input size (multiples of 32), C/c widths, K classes.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..errors import ConfigError
from ..layers.kan_conv import KANConv2d
from ..layers.scan_backend import check_scan_backend
from ..layers.wcaa_skip import WCAASkip
from ..layers.wcvm_block import WCVMBlock
from ..output import SegOutput
from .registry import register_model
from .unet_skeleton import AdditiveSkip, ChannelsLastUNet
from .vmunet import init_vmunet_weights

__all__ = ["DEEP_SUPERVISION", "VMAMLUNet", "test_vmaml_unet", "vmaml_unet"]

DEEP_SUPERVISION = ("kan", "fixed", "none")
#: Decoder stages (counted from the last) that carry a deep-supervision head.
SUPERVISED_STAGES = 3


class KANHead(nn.Module):
    """Deep-supervision head: 1x1 conv (C -> h), 3x3 KAN convolution (h -> K); channels first."""

    def __init__(self, dim: int, num_classes: int, hidden: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(dim, hidden, kernel_size=1)
        self.kan = KANConv2d(hidden, num_classes, kernel_size=3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.kan(self.reduce(x))


class VMAMLUNet(ChannelsLastUNet):
    """VMAML-UNet; returns logits (B, num_classes, H, W) in eval mode, a SegOutput in train mode when
    deep supervision is on. H and W multiples of 32 (four stages, patch 4).

    Args:
        in_chans, num_classes, dims, depths, depths_decoder, d_state, drop_path_rate, patch_size,
        scan_backend: as :class:`~specmamba.models.vmunet.VMUNet`.
        wavelet: WCVM blocks (True) or VM-UNet's VSS blocks.
        wcaa: WCAA skips (True) or VM-UNet's additive skips.
        deep_supervision: ``"kan"`` (KAN-weighted), ``"fixed"`` (nnU-Net's halving) or ``"none"``.
        wt_kernel_size, wt_levels: the WCVM blocks' wavelet convolution (the WCAA skips use wt_levels too).
        head_channels: width of the deep-supervision heads' KAN convolution input.
        kan_regularization: weight of the heads' KAN regulariser in the loss (0: none).
        model_name: registry name used in error messages.
    """

    ddp_find_unused_parameters = True

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1,
        dims: int | list[int] = 96,
        depths: tuple[int, ...] = (2, 2, 2, 2),
        depths_decoder: tuple[int, ...] = (2, 2, 2, 1),
        d_state: int = 16,
        drop_path_rate: float = 0.2,
        patch_size: int = 4,
        wavelet: bool = True,
        wcaa: bool = True,
        deep_supervision: str = "kan",
        wt_kernel_size: int = 5,
        wt_levels: int = 2,
        head_channels: int = 8,
        kan_regularization: float = 1e-4,
        scan_backend: str = "auto",
        model_name: str | None = None,
    ) -> None:
        label = model_name or type(self).model_name or type(self).__name__
        if deep_supervision not in DEEP_SUPERVISION:
            raise ConfigError(
                f"{label}: deep_supervision {deep_supervision!r}: choose one of "
                f"{', '.join(DEEP_SUPERVISION)}."
            )
        if not (isinstance(kan_regularization, int | float) and kan_regularization >= 0):
            raise ConfigError(
                f"{label}: kan_regularization must be a number >= 0; got {kan_regularization!r}."
            )
        # read by make_block / make_skip during the skeleton's construction
        self.d_state, self._scan_backend = d_state, check_scan_backend(scan_backend)
        self.wavelet, self.wcaa = bool(wavelet), bool(wcaa)
        self.wt_kernel_size, self.wt_levels = wt_kernel_size, wt_levels
        super().__init__(
            in_chans, num_classes, dims, depths, depths_decoder, drop_path_rate, patch_size, model_name
        )
        self.deep_supervision = deep_supervision
        self.aux_weighting = None if deep_supervision == "none" else deep_supervision
        self.kan_regularization = float(kan_regularization)
        n = len(self.depths)
        supervised = list(range(max(1, n - SUPERVISED_STAGES), n))  # decoder stages with a head
        self.supervised_stages = supervised if self.aux_weighting else []
        widths = self.dims[::-1]
        self.aux_heads = nn.ModuleList(
            [KANHead(widths[j], num_classes, head_channels) for j in self.supervised_stages]
        )
        init_vmunet_weights(self)

    def make_block(self, dim: int, drop_path: float, stage: int, decoder: bool) -> nn.Module:
        return WCVMBlock(
            dim,
            drop_path,
            d_state=self.d_state,
            scan_backend=self._scan_backend,
            wavelet=self.wavelet,
            kernel_size=self.wt_kernel_size,
            wt_levels=self.wt_levels,
        )

    def make_skip(self, dim: int, stage: int) -> nn.Module:
        return WCAASkip(dim, wt_levels=self.wt_levels) if self.wcaa else AdditiveSkip()

    def forward(self, x: Tensor) -> Tensor | SegOutput:
        """Image batch (B, in_chans, H, W) -> logits (B, K, H, W); in train mode with deep supervision a
        SegOutput with the heads' logits (finest first) and their KAN regulariser."""
        self.check_input(x)
        _, skips, x = self._encode(x)
        x = self.layers_up[0](x)
        decoded = {}
        for j in range(1, len(self.layers_up)):
            x = self.layers_up[j](self.skips[j - 1](x, skips[-j]))  # input of encoder stage n - j
            decoded[j] = x
        logits = self.final_conv(self.final_up(x).permute(0, 3, 1, 2)).contiguous()  # (B, K, H, W)
        if not self.training or not self.aux_heads:
            return logits
        aux = [
            head(decoded[j].permute(0, 3, 1, 2)) for head, j in zip(self.aux_heads, self.supervised_stages)
        ]
        terms = {}
        if self.kan_regularization:
            reg = sum(head.kan.regularization_loss() for head in self.aux_heads)
            terms["kan_heads_regularization"] = self.kan_regularization * reg
        return SegOutput(logits, aux[::-1], terms)


@register_model
def vmaml_unet(in_chans: int = 3, num_classes: int = 1, **kwargs: Any) -> VMAMLUNet:
    """VMAML-UNet at VM-UNet's paper widths and depths, WCVM blocks, WCAA skips, KAN deep supervision."""
    return VMAMLUNet(in_chans=in_chans, num_classes=num_classes, model_name="vmaml_unet", **kwargs)


@register_model
def test_vmaml_unet(in_chans: int = 3, num_classes: int = 1, **kwargs: Any) -> VMAMLUNet:
    """Tiny VMAML-UNet (widths 16..128, one block per stage, d_state 4, one wavelet level, 3x3 kernels)."""
    kwargs.setdefault("dims", 16)
    kwargs.setdefault("depths", (1, 1, 1, 1))
    kwargs.setdefault("depths_decoder", (1, 1, 1, 1))
    kwargs.setdefault("d_state", 4)
    kwargs.setdefault("drop_path_rate", 0.0)
    kwargs.setdefault("wt_kernel_size", 3)
    kwargs.setdefault("wt_levels", 1)
    kwargs.setdefault("head_channels", 4)
    return VMAMLUNet(in_chans=in_chans, num_classes=num_classes, model_name="test_vmaml_unet", **kwargs)
