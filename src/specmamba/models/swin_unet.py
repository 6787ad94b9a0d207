"""Swin-Unet: a U-shaped pure Transformer (Cao et al., "Swin-Unet: Unet-like Pure Transformer for
Medical Image Segmentation", ECCV Workshops 2022, arXiv:2105.05537).

The Transformer baseline of the spectral audit (REFERENCE.md sections 3 and 7), built from Swin
Transformer blocks (Liu et al., ICCV 2021; ``layers/swin_block.py``):

* patch embed: conv p x p stride p (p = 4), LayerNorm -> C tokens at 1/p resolution;
* encoder: four stages of widths C * (1, 2, 4, 8) (heads (3, 6, 12, 24) for C = 96); stage i =
  depths[i] Swin blocks alternating regular and shifted w x w windows (w = 7), then (i < 3) patch
  merging; a LayerNorm (``norm``) closes the bottleneck;
* decoder (mirror of the encoder): ``layers_up.0`` = patch expanding x2; for i = 1..3, the input of
  encoder stage 3 - i (so the patch-embed output for i = 3) is concatenated and projected back
  (``concat_back_dim.{i}``: Linear 2c -> c), then depths[3 - i] Swin blocks and (i < 3) patch
  expanding x2; LayerNorm (``norm_up``), final patch expanding x p (``up``) and a 1x1 convolution
  without bias (``output``) to the class logits.

Swin-T configuration (``swin_unet``): C = 96, depths [2, 2, 2, 2], heads [3, 6, 12, 24], window 7,
MLP ratio 4, stochastic depth 0.1, 27,168,132 parameters for 3 -> 1 at 224x224 (27.17M).

**Valid input sizes.** Every stage map must be a whole number of windows and every patch merging
needs even sides, so height and width must be multiples of p * 2^3 * w, 224 for Swin-T (see
:func:`swin_input_multiple`; with p = 4, w = 7 no other size can work). The last-stage map of a 224
input is exactly one window: as in the Swin code it is attended without shift. The authors' code
builds its masks for one fixed size; here they are computed per input, so any multiple of 224,
square or not, works. Other sizes raise InputSizeError naming the nearest valid one; the predictor
resizes every image to the checkpoint's training size, so prediction takes images of any size.

**Weights.** Module and tensor names are those of the authors' code (``patch_embed``,
``layers.{i}.blocks.{j}.(norm1|attn.(relative_position_bias_table|qkv|proj)|norm2|mlp.fc1|mlp.fc2)``,
``layers.{i}.downsample``, ``norm``, ``layers_up``, ``concat_back_dim``, ``norm_up``, ``up``,
``output``), so :meth:`SwinUNet.convert_state_dict` (``swin_unet_convert.py``) reads Swin-Unet
checkpoints strictly and Swin Transformer ImageNet checkpoints into the encoder and the mirrored
decoder. ImageNet weights expect ImageNet-normalised inputs (``normalization: imagenet``).

``feature_info`` names, per encoder stage, a parameter-free ``layers.{i}.stage_out`` whose output is
the stage's Swin-block output before patch merging, as (B, C, H, W): reductions p, 2p, 4p, 8p.

Shape letters: B batch, H/W input height/width, h/w map size of a stage, C/c widths, K classes
(``num_classes``), p patch size, w window size.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError, InputSizeError
from ..layers.drop_path import linear_drop_path_rates
from ..layers.patch import PatchEmbed2D, PatchExpand2D, PatchMerging2D
from ..layers.swin_block import SwinBlocks
from .hook_points import ChannelsFirst
from .interface import (
    SegmentationModel,
    check_input_channels,
    check_input_size,
    make_feature_info,
    model_display_name,
    run_encoder_stages,
    stage_ints,
)
from .registry import register_model
from .weights import ConvertedStateDict, LoadReport, load_checkpoint

__all__ = [
    "SwinDecoderStage",
    "SwinEncoderStage",
    "SwinUNet",
    "swin_input_multiple",
    "swin_unet",
    "test_swin_unet",
]


def swin_input_multiple(patch_size: int, window_size: int, num_stages: int = 4) -> int:
    """The side lengths a Swin-Unet accepts: the multiples of p * 2^(S-1) * w (224 for Swin-T).

    Stage i's map has side / (p * 2^i) pixels a side; it must be even before each of the S - 1 patch
    mergings and a whole number of w x w windows at every stage, which holds at every stage exactly
    when the last map, side / (p * 2^(S-1)), is a multiple of w. (The Swin code also attends a map no
    larger than one window as a single window; with p = 4, w = 7, S = 4 that adds no size, since the
    first map, 8 times the last, is then larger than 7 and so must be a multiple of 7. For other
    configurations specmamba keeps the one rule.)
    """
    return patch_size * 2 ** (num_stages - 1) * window_size


class SwinEncoderStage(nn.Module):
    """Swin blocks, then optional patch merging. Returns (stage map (B, C, h, w), next input)."""

    def __init__(self, blocks: SwinBlocks, dim: int, downsample: bool) -> None:
        super().__init__()
        self.blocks = blocks
        self.stage_out = ChannelsFirst()
        self.downsample = PatchMerging2D(dim) if downsample else None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, h, w, C) -> ((B, C, h, w), (B, h/2, w/2, 2C) or (B, h, w, C) for the last stage)."""
        x = self.blocks(x)
        feature = self.stage_out(x)
        if self.downsample is not None:
            x = self.downsample(x)
        return feature, x


class SwinDecoderStage(nn.Module):
    """Swin blocks, then optional patch expanding x2 (C -> C/2 channels)."""

    def __init__(self, blocks: SwinBlocks, dim: int, upsample: bool) -> None:
        super().__init__()
        self.blocks = blocks
        self.upsample = PatchExpand2D(dim, dim // 2, 2) if upsample else None

    def forward(self, x: Tensor) -> Tensor:
        """(B, h, w, C) -> (B, 2h, 2w, C/2), or (B, h, w, C) without upsampling."""
        x = self.blocks(x)
        return self.upsample(x) if self.upsample is not None else x


class SwinUNet(SegmentationModel):
    """Swin-Unet; returns logits (B, num_classes, H, W) for H and W multiples of p * 8 * w (224).

    Args:
        in_chans: input channels (any positive int).
        num_classes: 1 for binary segmentation (one logit channel), K >= 2 for K classes.
        embed_dim: width C of the first stage (stages: C, 2C, 4C, 8C).
        depths: Swin blocks per encoder stage; decoder stage i has depths[3 - i] (as in the authors'
            code, whose separate decoder-depth option is unused).
        num_heads: attention heads per stage (each width divisible by its heads).
        window_size: attention window side w.
        patch_size: patch embedding size p (also the final expanding factor).
        mlp_ratio: MLP hidden width / block width.
        qkv_bias: bias on the query/key/value projections.
        drop_rate: dropout after the patch embedding, attention projection and MLP.
        attn_drop_rate: dropout on attention weights.
        drop_path_rate: largest stochastic-depth rate, rising linearly over the encoder blocks;
            decoder stage i uses the rates of encoder stage 3 - i (the authors' rule).
        encoder_weights: local path (or loaded dict) of a Swin Transformer ImageNet checkpoint, or
            of a Swin-Unet one, to initialise from (never downloaded); what loaded is logged and kept
            in ``pretrained_report`` (a :class:`~specmamba.models.weights.LoadReport`).
        model_name: registry name used in error messages.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 2, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int = 7,
        patch_size: int = 4,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        encoder_weights: str | os.PathLike[str] | Mapping[str, Any] | None = None,
        model_name: str | None = None,
    ) -> None:
        super().__init__(in_chans, num_classes, model_name)
        label = model_display_name(self)
        depths = stage_ints("depths", depths, label, length=4, minimum=1)
        num_heads = stage_ints("num_heads", num_heads, label, length=4, minimum=1)
        for arg, value in (
            ("embed_dim", embed_dim),
            ("window_size", window_size),
            ("patch_size", patch_size),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{label}: {arg} must be a positive integer; got {value!r}.")
        dims = [embed_dim * 2**i for i in range(4)]
        bad = [(d, h) for d, h in zip(dims, num_heads) if d % h]
        if bad or embed_dim % 2:
            raise ConfigError(
                f"{label}: every stage width must be divisible by its number of heads and embed_dim must be "
                f"even; widths {dims} with num_heads {num_heads} do not fit ({bad or 'odd embed_dim'})."
            )
        if not 0.0 <= drop_path_rate < 1.0:
            raise ConfigError(f"{label}: drop_path_rate must lie in [0, 1); got {drop_path_rate!r}.")

        self.embed_dim, self.depths, self.num_heads = embed_dim, depths, num_heads
        self.window_size, self.patch_size, self.mlp_ratio = window_size, patch_size, float(mlp_ratio)
        self.input_multiple = swin_input_multiple(patch_size, window_size, 4)

        rates = linear_drop_path_rates(drop_path_rate, depths)

        def blocks(stage: int) -> SwinBlocks:
            return SwinBlocks(
                dims[stage],
                depths[stage],
                num_heads[stage],
                window_size,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                drop=drop_rate,
                attn_drop=attn_drop_rate,
                drop_path=rates[stage],
            )

        self.patch_embed = PatchEmbed2D(patch_size, in_chans, embed_dim)
        self.pos_drop = nn.Dropout(drop_rate)
        self.layers = nn.ModuleList(SwinEncoderStage(blocks(i), dims[i], downsample=i < 3) for i in range(4))
        self.norm = nn.LayerNorm(dims[3])
        # Decoder stage i works at the width of encoder stage 3 - i.
        self.layers_up = nn.ModuleList([PatchExpand2D(dims[3], dims[2], 2)])
        self.layers_up.extend(SwinDecoderStage(blocks(3 - i), dims[3 - i], upsample=i < 3) for i in (1, 2, 3))
        self.concat_back_dim = nn.ModuleList([nn.Identity()])
        self.concat_back_dim.extend(nn.Linear(2 * dims[3 - i], dims[3 - i]) for i in (1, 2, 3))
        self.norm_up = nn.LayerNorm(embed_dim)
        self.up = PatchExpand2D(embed_dim, embed_dim, patch_size)
        self.output = nn.Conv2d(embed_dim, num_classes, kernel_size=1, bias=False)
        self.apply(_init_weights)

        self.feature_info = make_feature_info(
            dims, [patch_size * 2**i for i in range(4)], [f"layers.{i}.stage_out" for i in range(4)]
        )
        self.pretrained_report: LoadReport | None = None
        if encoder_weights is not None:
            self.pretrained_report = load_checkpoint(self, encoder_weights)

    # -- input checks --------------------------------------------------------------------------------

    def check_input(self, x: Tensor) -> None:
        """Raise InputSizeError unless ``x`` is (B, in_chans, H, W) with H, W multiples of p * 8 * w."""
        name = model_display_name(self)
        try:
            check_input_size(x, self.input_multiple, name, self.min_input_size)
        except InputSizeError as err:
            if x.ndim != 4:
                raise
            raise InputSizeError(
                f"{err} (Swin-Unet: patch {self.patch_size} x 2^3 for the three patch mergings x window "
                f"{self.window_size} = {self.input_multiple}: every stage map must be a whole number of "
                "attention windows.)"
            ) from None
        check_input_channels(x, self.in_chans, name)

    # -- forward -------------------------------------------------------------------------------------

    def _encode(self, x: Tensor) -> tuple[list[Tensor], list[Tensor], Tensor]:
        """(stage maps (B, C_i, h_i, w_i), stage inputs and normed bottleneck (both channels last))."""
        x = self.pos_drop(self.patch_embed(x))  # (B, H/p, W/p, C)
        features, inputs, x = run_encoder_stages(self.layers, x)
        return features, inputs, self.norm(x)

    def forward_intermediates(self, x: Tensor) -> list[Tensor]:
        """The four encoder stage maps (Swin-block outputs before merging), (B, C_i, H / r_i, W / r_i)."""
        self.check_input(x)
        return self._encode(x)[0]

    def forward(self, x: Tensor) -> Tensor:
        """Images (B, in_chans, H, W), H and W multiples of p * 8 * w -> logits (B, num_classes, H, W)."""
        self.check_input(x)
        _, skips, x = self._encode(x)
        for i, stage in enumerate(self.layers_up):
            if i > 0:
                # The input of encoder stage 3 - i has x's size and width: concat, project 2c -> c.
                x = self.concat_back_dim[i](torch.cat([x, skips[3 - i]], dim=-1))
            x = stage(x)
        x = self.up(self.norm_up(x))  # (B, H, W, C)
        # A conv on the permuted view would return channels-last strides: hand back plain NCHW logits.
        return self.output(x.permute(0, 3, 1, 2)).contiguous()  # (B, K, H, W)

    # -- checkpoints ---------------------------------------------------------------------------------

    def convert_state_dict(self, state_dict: Mapping[str, Tensor]) -> dict[str, Tensor] | ConvertedStateDict:
        """Hook of :func:`specmamba.models.weights.load_checkpoint` for foreign layouts.

        Swin-Unet state dicts (``swin_unet.`` prefix optional) -> plain dict, loaded strictly; Swin
        Transformer ImageNet checkpoints -> encoder plus mirrored decoder (partial). Raises
        CheckpointError for Swin checkpoints of another architecture. See ``swin_unet_convert.py``.
        """
        from .swin_unet_convert import convert_swin_unet_state_dict

        return convert_swin_unet_state_dict(self, state_dict)


def _init_weights(m: nn.Module) -> None:
    """The authors' init: Linear trunc-normal std 0.02 (bias 0), LayerNorm (1, 0); convolutions and the
    relative-position tables keep their own initialisation."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


@register_model
def swin_unet(in_chans: int = 3, num_classes: int = 1, **kwargs: Any) -> SwinUNet:
    """Swin-Unet on Swin-T (C 96, depths [2, 2, 2, 2], heads [3, 6, 12, 24], window 7), 27.17M params.

    Input sides: multiples of 224. ``encoder_weights``: optional local Swin-T ImageNet checkpoint
    (``swin_tiny_patch4_window7_224.pth``).
    """
    return SwinUNet(in_chans=in_chans, num_classes=num_classes, model_name="swin_unet", **kwargs)


@register_model
def test_swin_unet(in_chans: int = 3, num_classes: int = 1, **kwargs: Any) -> SwinUNet:
    """Tiny Swin-Unet (C 16, heads (2, 2, 4, 8), window 4, patch 2, no drop path) for fast CPU tests.

    Input sides: multiples of 2 * 8 * 4 = 64; at 64x64 the stage maps are 32, 16, 8 and 4 (one window).
    """
    kwargs.setdefault("embed_dim", 16)
    kwargs.setdefault("depths", (2, 2, 2, 2))
    kwargs.setdefault("num_heads", (2, 2, 4, 8))
    kwargs.setdefault("window_size", 4)
    kwargs.setdefault("patch_size", 2)
    kwargs.setdefault("drop_path_rate", 0.0)
    return SwinUNet(in_chans=in_chans, num_classes=num_classes, model_name="test_swin_unet", **kwargs)
