"""VM-UNet: Vision Mamba UNet for medical image segmentation (Ruan et al. 2024, arXiv:2402.02491).

A U-shaped network of visual state-space (VSS) blocks (REFERENCE.md section 2):

* patch embed: conv 4x4 stride 4 (in_chans -> C0), LayerNorm, channels last;
* encoder: four stages at widths C0 * (1, 2, 4, 8); stage i = depths[i] VSS blocks, then (i < 3)
  patch merging to the next width at half resolution;
* decoder: stage 0 = depths_decoder[0] blocks at the deepest width (no upsample); stage i = 1..3:
  x = x + skip (additive; the skips are the *inputs* of encoder stages 3, 2, 1, so the patch-embed
  output is never a skip), patch expanding x2 (Linear 2c -> 4c, pixel shuffle, LayerNorm), blocks;
* final expanding x4 (Linear C0 -> 4 C0, 4x4 pixel shuffle to C0/4 channels, LayerNorm) and a 1x1
  conv to the class logits.

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

Shape letters: B batch, H/W input height/width (multiples of 32), h/w map size of a stage, C/c widths,
K classes (``num_classes``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..layers.drop_path import linear_drop_path_rates
from ..layers.patch import FinalPatchExpand2D, PatchEmbed2D, PatchExpand2D, PatchMerging2D
from ..layers.scan_backend import check_scan_backend
from ..layers.ss2d import SS2D, init_linear_
from ..layers.vss_block import VSSBlock
from .hook_points import ChannelsFirst
from .interface import SegmentationModel, make_feature_info, run_encoder_stages
from .registry import register_model
from .weights import ConvertedStateDict

__all__ = ["VMUNet", "VSSStage", "VSSUpStage", "test_vmunet", "vmunet", "vmunet_deep"]


class VSSStage(nn.Module):
    """Encoder stage: VSS blocks, then optional patch merging -> (stage map (B, C, h, w), next input)."""

    def __init__(
        self,
        dim: int,
        depth: int,
        drop_path: Sequence[float],
        d_state: int,
        scan_backend: str,
        downsample: bool,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            [VSSBlock(dim, drop_path[j], d_state=d_state, scan_backend=scan_backend) for j in range(depth)]
        )
        self.stage_out = ChannelsFirst()
        self.downsample = PatchMerging2D(dim) if downsample else None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        for block in self.blocks:
            x = block(x)
        feature = self.stage_out(x)  # (B, C, h, w) view of the channels-last map
        return feature, (self.downsample(x) if self.downsample is not None else x)


class VSSUpStage(nn.Module):
    """Decoder stage: optional patch expanding x2 (2c -> c), then VSS blocks; channels last."""

    def __init__(
        self,
        dim: int,
        depth: int,
        drop_path: Sequence[float],
        d_state: int,
        scan_backend: str,
        upsample: bool,
    ) -> None:
        super().__init__()
        self.upsample = PatchExpand2D(2 * dim, dim, 2) if upsample else None
        self.blocks = nn.ModuleList(
            [VSSBlock(dim, drop_path[j], d_state=d_state, scan_backend=scan_backend) for j in range(depth)]
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.upsample is not None:
            x = self.upsample(x)
        for block in self.blocks:
            x = block(x)
        return x


def _as_list(name: str, value: Any, label: str, length: int = 4, minimum: int = 0) -> list[int]:
    try:
        out = [int(v) for v in value]
    except (TypeError, ValueError):
        out = []
    if len(out) != length or any(v < minimum for v in out) or any(isinstance(v, bool) for v in value):
        raise ConfigError(
            f"{label}: {name} must be {length} integers >= {minimum} (one per stage); got {value!r}."
        )
    return out


class VMUNet(SegmentationModel):
    """VM-UNet; returns logits (B, num_classes, H, W) for H and W multiples of 32.

    Args:
        in_chans: input channels (any positive int).
        num_classes: 1 for binary segmentation (one logit channel), K >= 2 for K classes.
        dims: encoder widths, an int C0 (-> C0 * (1, 2, 4, 8)) or four widths each twice the last;
            C0 must be divisible by 4 (the final x4 expanding).
        depths: VSS blocks per encoder stage.
        depths_decoder: VSS blocks per decoder stage (deepest first).
        d_state: SS2D state size N.
        drop_path_rate: largest stochastic-depth rate (linear over the encoder, reversed over the decoder).
        patch_size: patch embedding stride (4).
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
        super().__init__(in_chans, num_classes, model_name)
        label = self.model_name or type(self).__name__
        if isinstance(dims, int) and not isinstance(dims, bool):
            dims = [dims * 2**i for i in range(4)]
        dims = _as_list("dims", dims, label, minimum=1)
        if any(dims[i + 1] != 2 * dims[i] for i in range(3)) or dims[0] % 4:
            raise ConfigError(
                f"{label}: dims must double from stage to stage (patch merging maps c to 2c) and start with "
                f"a multiple of 4 (the final x4 expanding), e.g. 96 or [96, 192, 384, 768]; got {dims}."
            )
        depths = _as_list("depths", depths, label, minimum=1)
        depths_decoder = _as_list("depths_decoder", depths_decoder, label)
        if isinstance(d_state, bool) or not isinstance(d_state, int) or d_state < 1:
            raise ConfigError(
                f"{label}: d_state must be a positive integer (16 in VM-UNet); got {d_state!r}."
            )
        if not 0.0 <= float(drop_path_rate) < 1.0:
            raise ConfigError(f"{label}: drop_path_rate must lie in [0, 1); got {drop_path_rate!r}.")
        if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
            raise ConfigError(
                f"{label}: patch_size must be a positive integer (4 in VM-UNet); got {patch_size!r}."
            )
        check_scan_backend(scan_backend)
        self.dims, self.depths, self.depths_decoder = dims, depths, depths_decoder
        self.d_state, self.drop_path_rate, self.patch_size = d_state, float(drop_path_rate), patch_size
        self.input_multiple = patch_size * 2 ** (len(dims) - 1)

        self.patch_embed = PatchEmbed2D(patch_size, in_chans, dims[0])
        enc_rates = linear_drop_path_rates(self.drop_path_rate, depths)
        self.layers = nn.ModuleList(
            [
                VSSStage(dims[i], depths[i], enc_rates[i], d_state, scan_backend, downsample=i < 3)
                for i in range(4)
            ]
        )
        # Decoder rates: the encoder rule over the decoder's blocks, reversed (largest first).
        flat = [r for stage in linear_drop_path_rates(self.drop_path_rate, depths_decoder) for r in stage]
        flat.reverse()
        dec_rates, start = [], 0
        for depth in depths_decoder:
            dec_rates.append(flat[start : start + depth])
            start += depth
        dims_decoder = dims[::-1]
        self.layers_up = nn.ModuleList(
            [
                VSSUpStage(
                    dims_decoder[i], depths_decoder[i], dec_rates[i], d_state, scan_backend, upsample=i > 0
                )
                for i in range(4)
            ]
        )
        self.final_up = FinalPatchExpand2D(dims[0], 4)
        self.final_conv = nn.Conv2d(dims[0] // 4, num_classes, kernel_size=1)
        _init_weights(self)
        self.feature_info = make_feature_info(
            dims, [patch_size * 2**i for i in range(4)], [f"layers.{i}.stage_out" for i in range(4)]
        )

    # -- forward -------------------------------------------------------------------------------------

    def _encode(self, x: Tensor) -> tuple[list[Tensor], list[Tensor], Tensor]:
        """(stage maps (B, C_i, h_i, w_i), stage inputs (channels last), deepest output (channels last))."""
        return run_encoder_stages(self.layers, self.patch_embed(x))  # stages start at (B, H/4, W/4, C0)

    def forward_intermediates(self, x: Tensor) -> list[Tensor]:
        """The four encoder stage maps (VSS-block outputs before patch merging), (B, C_i, H/r_i, W/r_i)."""
        self.check_input(x)
        return self._encode(x)[0]

    def forward(self, x: Tensor) -> Tensor:
        """Image batch (B, in_chans, H, W), H and W multiples of 32 -> logits (B, num_classes, H, W)."""
        self.check_input(x)
        _, skips, x = self._encode(x)
        for i, stage in enumerate(self.layers_up):
            # Stage i >= 1 adds the input of encoder stage 4 - i (same width and size as x).
            x = stage(x if i == 0 else x + skips[-i])
        x = self.final_up(x)  # (B, H, W, C0 / 4)
        return self.final_conv(x.permute(0, 3, 1, 2)).contiguous()  # (B, K, H, W)

    # -- checkpoints ---------------------------------------------------------------------------------

    def convert_state_dict(self, state_dict: Mapping[str, Tensor]) -> dict[str, Tensor] | ConvertedStateDict:
        """Hook of :func:`specmamba.models.weights.load_checkpoint` for foreign layouts.

        Official VM-UNet state dicts (``vmunet.`` prefix) -> plain dict, loaded strictly; VMamba-v0
        classification checkpoints -> the encoder plus mirrored decoder blocks (partial). See
        ``vmunet_convert.py``.
        """
        from .vmunet_convert import convert_vmunet_state_dict

        return convert_vmunet_state_dict(state_dict, self.state_dict())


@torch.no_grad()
def _init_weights(model: nn.Module) -> None:
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
