"""VM-UNet: Vision Mamba UNet for medical image segmentation (Ruan et al. 2024, arXiv:2402.02491).

A U-shaped network of visual state-space (VSS) blocks (REFERENCE.md section 2), built on the
channels-last U-Net skeleton (``unet_skeleton.py``) with the VSS block and additive skips:

* patch embed: conv 4x4 stride 4 (in_chans -> C0), LayerNorm, channels last;
* encoder: four stages at widths C0 * (1, 2, 4, 8); stage i = depths[i] VSS blocks, then (i < 3)
  patch merging to the next width at half resolution;
* decoder: stage 0 = depths_decoder[0] blocks at the deepest width (no upsample); stage i = 1..3:
  x = x + skip (additive; the skips are the *inputs* of encoder stages 3, 2, 1, so the patch-embed
  output is never a skip), patch expanding x2 (Linear 2c -> 4c, pixel shuffle, LayerNorm), blocks;
* final expanding x4 (Linear C0 -> 4 C0, 4x4 pixel shuffle to C0/4 channels, LayerNorm) and a 1x1
  conv to the class logits.

The number of stages follows ``depths`` and the final expanding follows ``patch_size``, so other
configurations than the paper's (three stages, patch 2) also return logits at the input size.

Stochastic depth (drop path 0.2 by default) rises linearly over the encoder blocks and falls linearly
over the decoder blocks. The official wrapper applies a sigmoid inside ``forward`` for one class;
specmamba returns logits. Paper configuration (``vmunet``): depths [2, 2, 2, 2], decoder [2, 2, 2, 1],
27,427,561 parameters (3 -> 1); the configuration of the spectral audit and of the official
constructor's defaults (``vmunet_deep``): [2, 2, 9, 2] / [2, 9, 2, 2], 44,273,833 parameters.

Module names are the official ones (``patch_embed``, ``layers.{i}.blocks.{j}.ln_1/self_attention``,
``layers.{i}.downsample``, ``layers_up.{i}.upsample/blocks``, ``final_up``, ``final_conv``), so the
official state dict loads once its ``vmunet.`` prefix is removed; :meth:`VMUNet.convert_state_dict`
(see ``vmunet_convert.py``) also loads VMamba-v0 classification checkpoints into the encoder.

``feature_info`` names, per encoder stage, a parameter-free ``layers.{i}.stage_out`` whose output is
the stage's VSS-block output before patch merging, as (B, C, H, W).

Shape letters: B batch, H/W input height/width (multiples of 32 in the paper's configuration), h/w
map size of a stage, C/c widths, K classes (``num_classes``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..layers.scan_backend import check_scan_backend
from ..layers.ss2d import SS2D, init_linear_
from ..layers.vss_block import VSSBlock
from .registry import register_model
from .unet_skeleton import ChannelsLastUNet
from .weights import ConvertedStateDict

__all__ = ["VMUNet", "test_vmunet", "vmunet", "vmunet_deep"]


class VMUNet(ChannelsLastUNet):
    """VM-UNet; returns logits (B, num_classes, H, W) for H and W multiples of p * 2^(S-1) (32 for the
    paper's four stages and p = 4).

    Args:
        in_chans: input channels (any positive int).
        num_classes: 1 for binary segmentation (one logit channel), K >= 2 for K classes.
        dims: encoder widths, an int C0 (-> C0 * 2^i) or one width per stage, each twice the last;
            C0 must be divisible by ``patch_size`` (the final expanding).
        depths: VSS blocks per encoder stage; its length is the number of stages S (4 in the paper).
        depths_decoder: VSS blocks per decoder stage (deepest first), S of them.
        d_state: SS2D state size N.
        drop_path_rate: largest stochastic-depth rate (linear over the encoder, reversed over the decoder).
        patch_size: patch embedding stride (4), undone by the final expanding.
        scan_backend: selective-scan backend of every SS2D: ``auto`` | ``ref`` | ``cpu`` | ``triton`` |
            ``mamba_ssm`` (see :func:`specmamba.ops.selective_scan`); changeable later with
            :meth:`set_scan_backend`.
        model_name: registry name used in error messages.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1,
        dims: int | Sequence[int] = 96,
        depths: Sequence[int] = (2, 2, 2, 2),
        depths_decoder: Sequence[int] = (2, 2, 2, 1),
        d_state: int = 16,
        drop_path_rate: float = 0.2,
        patch_size: int = 4,
        scan_backend: str = "auto",
        model_name: str | None = None,
    ) -> None:
        label = model_name or type(self).model_name or type(self).__name__
        if isinstance(d_state, bool) or not isinstance(d_state, int) or d_state < 1:
            raise ConfigError(
                f"{label}: d_state must be a positive integer (16 in VM-UNet); got {d_state!r}."
            )
        # read by make_block during the skeleton's construction
        self.d_state, self._scan_backend = d_state, check_scan_backend(scan_backend)
        super().__init__(
            in_chans, num_classes, dims, depths, depths_decoder, drop_path_rate, patch_size, model_name
        )
        init_vmunet_weights(self)

    def make_block(self, dim: int, drop_path: float, stage: int, decoder: bool) -> nn.Module:
        return VSSBlock(dim, drop_path, d_state=self.d_state, scan_backend=self._scan_backend)

    def convert_state_dict(self, state_dict: Mapping[str, Tensor]) -> dict[str, Tensor] | ConvertedStateDict:
        """Hook of :func:`specmamba.models.weights.load_checkpoint` for foreign layouts.

        Official VM-UNet state dicts (``vmunet.`` prefix) -> plain dict, loaded strictly; VMamba-v0
        classification checkpoints -> the encoder plus mirrored decoder blocks (partial). See
        ``vmunet_convert.py``.
        """
        from .vmunet_convert import convert_vmunet_state_dict

        return convert_vmunet_state_dict(state_dict, self.state_dict())


@torch.no_grad()
def init_vmunet_weights(model: nn.Module) -> None:
    """The official init: Linear trunc-normal std 0.02 (bias 0), LayerNorm (1, 0); raw SS2D parameters
    and the convolutions keep their own initialisation. SS2D layers initialise themselves the same way
    (``SS2D.reset_parameters``), so they are not drawn twice."""
    inside_ss2d = {id(sub) for m in model.modules() if isinstance(m, SS2D) for sub in m.modules()}
    for m in model.modules():
        if id(m) in inside_ss2d:
            continue
        if isinstance(m, nn.Linear):
            init_linear_(m, 0.02)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@register_model
def vmunet(in_chans: int = 3, num_classes: int = 1, **kwargs: Any) -> VMUNet:
    """VM-UNet, paper configuration: depths [2, 2, 2, 2], decoder [2, 2, 2, 1], 27,427,561 parameters."""
    return VMUNet(in_chans=in_chans, num_classes=num_classes, model_name="vmunet", **kwargs)


@register_model
def vmunet_deep(in_chans: int = 3, num_classes: int = 1, **kwargs: Any) -> VMUNet:
    """VM-UNet with depths [2, 2, 9, 2] / decoder [2, 9, 2, 2] (the spectral audit's): 44,273,833 params."""
    kwargs.setdefault("depths", (2, 2, 9, 2))
    kwargs.setdefault("depths_decoder", (2, 9, 2, 2))
    return VMUNet(in_chans=in_chans, num_classes=num_classes, model_name="vmunet_deep", **kwargs)


@register_model
def test_vmunet(in_chans: int = 3, num_classes: int = 1, **kwargs: Any) -> VMUNet:
    """Tiny VM-UNet (widths 16..128, one block per stage, d_state 4, no drop path) for fast CPU tests."""
    kwargs.setdefault("dims", 16)
    kwargs.setdefault("depths", (1, 1, 1, 1))
    kwargs.setdefault("depths_decoder", (1, 1, 1, 1))
    kwargs.setdefault("d_state", 4)
    kwargs.setdefault("drop_path_rate", 0.0)
    return VMUNet(in_chans=in_chans, num_classes=num_classes, model_name="test_vmunet", **kwargs)
