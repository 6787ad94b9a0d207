"""Vim and Vim-F as segmentation networks: a plain backbone, a four-level pyramid and a UPerNet head.

Vim's dense-prediction recipe (hustvl/Vim ``seg/``; REFERENCE.md section 5), for either backbone of
``vim.py``:

* the mixer outputs of four blocks spread over the depth (``out_indices``; 5, 11, 17, 23 at depth 24)
  laid out as (B, C, H/16, W/16) maps (``token_maps.{j}``, class token dropped if there is one);
* a pyramid at strides 4, 8, 16, 32: ``fpn1`` ConvTranspose 2x2 -> BatchNorm -> GELU ->
  ConvTranspose 2x2 (x4), ``fpn2`` one ConvTranspose (x2), ``fpn3`` identity, ``fpn4`` max-pool /2;
* UPerNet's head (pool scales 1, 2, 3, 6; ``head_channels``, 192 in upstream's Tiny config = C) on
  the four levels, logits upsampled bilinearly to the input size; in training also the auxiliary FCN
  head on the stride-16 level (256 channels), returned as ``SegOutput.aux`` for the criterion, whose
  default auxiliary weight is upstream's 0.4 (``aux_head=False`` turns it off).

Decisions where upstream's code is not a design: the segmentation backbone has no class token by
default (upstream's configs set ``if_cls_token=False``), and an ImageNet checkpoint's position
embedding loses the class token's vector at its true index M // 2 (upstream drops index 0, a patch
vector); ``class_token=True`` keeps the token in the sequence instead. The backbone has no ``norm_f``
(its features are mixer outputs), and the last out index must be the last block (blocks after it
would be dead weight). ``encoder_weights=PATH`` loads a local Vim / Vim-F classification checkpoint
into the backbone strictly (head and final norm left out, position embedding resized to
``pos_embed_size``), reported in ``pretrained_report``.

``feature_info`` names the four token maps (stride 16 each: a plain backbone), which the spectral
audit hooks. Inputs: sides multiples of 16, at least 32; the position embedding (Vim) is learned for
``pos_embed_size`` and interpolated to other sizes.

Shape letters: B batch, H/W input size, C model width, K classes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import CheckpointError, ConfigError
from ..layers.uper_head import FCNHead, UPerHead
from ..output import SegOutput
from .hook_points import TokenMap
from .interface import SegmentationModel, make_feature_info
from .registry import register_model
from .vim import VisionMamba, vimf_options
from .weights import load_checkpoint

__all__ = [
    "VimSeg",
    "spread_out_indices",
    "test_vim_seg",
    "test_vimf_seg",
    "vim_seg_small",
    "vim_seg_tiny",
    "vimf_seg_small",
    "vimf_seg_tiny",
]

_STRIDE = 16


def spread_out_indices(depth: int, count: int = 4) -> tuple[int, ...]:
    """``count`` block indices spread evenly over ``depth`` blocks, ending at the last (24: 5, 11, 17, 23)."""
    return tuple(round((j + 1) * depth / count) - 1 for j in range(count))


class VimSeg(SegmentationModel):
    """Vim / Vim-F segmentation network; returns logits (B, num_classes, H, W) for sides that are multiples
    of 16 (at least 32).

    Args:
        in_chans, num_classes: channels in; 1 (binary) or K classes out.
        embed_dim, depth, d_state, expand, drop_path_rate: the backbone (``vim.VisionMamba``).
        pos_embed_size: the side the position embedding is learned for (224, the ImageNet checkpoints').
        stem, stem_dims, pos_embed, class_token: backbone options (Vim: patch stem with position
            embedding; Vim-F: conv stem without).
        frequency_version, frequency_form, frequency_blocks: Vim-F's frequency mixing (``vim.py``).
        out_indices: the four blocks whose outputs feed the pyramid (default spread over the depth).
        head_channels: UPerNet width (default C). aux_head: the auxiliary FCN head in training.
        aux_channels: its width (256). dropout: before the classifiers (0.1).
        encoder_weights: local path (or loaded dict) of a Vim / Vim-F classification checkpoint.
        scan_backend: selective-scan backend of every mixer. model_name: name used in messages.
    """

    input_multiple = _STRIDE
    min_input_size = 2 * _STRIDE

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1,
        embed_dim: int = 192,
        depth: int = 24,
        pos_embed_size: int = 224,
        d_state: int = 16,
        expand: float = 2,
        drop_path_rate: float = 0.1,
        stem: str = "patch",
        stem_dims: Sequence[int] | None = None,
        pos_embed: bool = True,
        class_token: bool = False,
        frequency_version: str | None = None,
        frequency_form: str = "token_channel",
        frequency_blocks: int = 8,
        out_indices: Sequence[int] | None = None,
        head_channels: int | None = None,
        aux_head: bool = True,
        aux_channels: int = 256,
        dropout: float = 0.1,
        encoder_weights: str | os.PathLike[str] | Mapping[str, Any] | None = None,
        scan_backend: str = "auto",
        model_name: str | None = None,
    ) -> None:
        super().__init__(in_chans, num_classes, model_name)
        label = self.model_name or type(self).__name__
        indices = tuple(spread_out_indices(depth) if out_indices is None else (int(i) for i in out_indices))
        if (
            len(indices) != 4
            or list(indices) != sorted(set(indices))
            or indices[0] < 0
            or indices[-1] != depth - 1
        ):
            raise ConfigError(
                f"{label}: out_indices must be four increasing block indices ending at the last block "
                f"({depth - 1}); got {list(indices)} (default for depth {depth}: "
                f"{list(spread_out_indices(depth))})."
            )
        self.out_indices = indices
        self.backbone = VisionMamba(
            img_size=pos_embed_size,
            patch_size=_STRIDE,
            stride=_STRIDE,
            depth=depth,
            embed_dim=embed_dim,
            d_state=d_state,
            expand=expand,
            in_chans=in_chans,
            num_classes=0,
            drop_path_rate=drop_path_rate,
            class_token=class_token,
            pos_embed=pos_embed,
            final_norm=False,
            stem=stem,
            stem_dims=stem_dims,
            frequency_version=frequency_version,
            frequency_form=frequency_form,
            frequency_blocks=frequency_blocks,
            scan_backend=scan_backend,
            model_name=f"{label} backbone",
        )
        self.interpolates_pos_embed = pos_embed
        self.pos_embed_size = pos_embed_size if pos_embed else None
        c = embed_dim
        self.token_maps = nn.ModuleList(TokenMap() for _ in indices)
        self.fpn1 = nn.Sequential(
            nn.ConvTranspose2d(c, c, 2, stride=2),
            nn.BatchNorm2d(c),
            nn.GELU(),
            nn.ConvTranspose2d(c, c, 2, stride=2),
        )
        self.fpn2 = nn.ConvTranspose2d(c, c, 2, stride=2)
        self.fpn3 = nn.Identity()
        self.fpn4 = nn.MaxPool2d(2)
        self.decode_head = UPerHead([c] * 4, num_classes, channels=head_channels or c, dropout=dropout)
        self.auxiliary_head = (
            FCNHead(c, num_classes, channels=aux_channels, dropout=dropout) if aux_head else None
        )
        self.feature_info = make_feature_info(
            [c] * 4, [_STRIDE] * 4, [f"token_maps.{j}" for j in range(len(indices))]
        )
        self.pretrained_report = None
        if encoder_weights is not None:
            self.pretrained_report = load_checkpoint(self.backbone, encoder_weights)

    def convert_state_dict(self, state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Hook of :func:`specmamba.models.weights.load_checkpoint`: a specmamba state dict passes as it
        is; a Vim / Vim-F classifier (official names at the top level) is refused with the option that
        loads it, ``encoder_weights``."""
        if "layers.0.mixer.in_proj.weight" in state_dict:
            raise CheckpointError(
                "it holds a Vim / Vim-F classification network, not this segmentation model; load it into "
                f"the backbone with create_model({self.model_name!r}, encoder_weights=PATH)."
            )
        return dict(state_dict)

    def forward_intermediates(self, x: Tensor) -> list[Tensor]:
        """The four token maps (B, C, H/16, W/16) of ``feature_info``."""
        self.check_input(x)
        out = self.backbone.forward_tokens(x, self.out_indices)
        return [
            token_map(out.block_outputs[i], out.grid, out.extra_positions)
            for token_map, i in zip(self.token_maps, self.out_indices)
        ]

    def forward(self, x: Tensor) -> Tensor | SegOutput:
        maps = self.forward_intermediates(x)
        levels = [fpn(m) for fpn, m in zip((self.fpn1, self.fpn2, self.fpn3, self.fpn4), maps)]
        logits = F.interpolate(
            self.decode_head(levels), size=x.shape[-2:], mode="bilinear", align_corners=False
        )
        if self.training and self.auxiliary_head is not None:
            return SegOutput(logits, aux=[self.auxiliary_head(levels[2])])
        return logits


def _seg(name: str, embed_dim: int, kwargs: dict[str, Any]) -> VimSeg:
    kwargs.setdefault("embed_dim", embed_dim)
    return VimSeg(model_name=name, **kwargs)


def _seg_f(name: str, embed_dim: int, kwargs: dict[str, Any]) -> VimSeg:
    return _seg(name, embed_dim, vimf_options(kwargs))


def _tiny_test(kwargs: dict[str, Any]) -> None:
    kwargs.setdefault("embed_dim", 32)
    kwargs.setdefault("depth", 4)
    kwargs.setdefault("d_state", 4)
    kwargs.setdefault("pos_embed_size", 64)
    kwargs.setdefault("drop_path_rate", 0.0)
    kwargs.setdefault("aux_channels", 16)


@register_model
def vim_seg_tiny(in_chans: int = 3, num_classes: int = 1, **kwargs: Any) -> VimSeg:
    """Vim-Ti (C 192, depth 24) + UPerNet (192 channels): 12,085,058 parameters (3 -> 1)."""
    return _seg("vim_seg_tiny", 192, {"in_chans": in_chans, "num_classes": num_classes, **kwargs})


@register_model
def vim_seg_small(in_chans: int = 3, num_classes: int = 1, **kwargs: Any) -> VimSeg:
    """Vim-S (C 384, depth 24) + UPerNet (384 channels): 45,034,370 parameters."""
    return _seg("vim_seg_small", 384, {"in_chans": in_chans, "num_classes": num_classes, **kwargs})


@register_model
def vimf_seg_tiny(in_chans: int = 3, num_classes: int = 1, **kwargs: Any) -> VimSeg:
    """Vim-F-Ti (conv stem, no position embedding, V1 spectrum mix; ``frequency_version="v2"`` for V2) +
    UPerNet (192 channels): 12,046,372 parameters."""
    return _seg_f("vimf_seg_tiny", 192, {"in_chans": in_chans, "num_classes": num_classes, **kwargs})


@register_model
def vimf_seg_small(in_chans: int = 3, num_classes: int = 1, **kwargs: Any) -> VimSeg:
    """Vim-F-S (conv stem, no position embedding, V1 spectrum mix) + UPerNet (384 channels): 45,189,412
    parameters."""
    return _seg_f("vimf_seg_small", 384, {"in_chans": in_chans, "num_classes": num_classes, **kwargs})


@register_model
def test_vim_seg(in_chans: int = 3, num_classes: int = 1, **kwargs: Any) -> VimSeg:
    """Tiny Vim segmenter (C 32, depth 4, d_state 4) for fast CPU tests."""
    _tiny_test(kwargs)
    return _seg("test_vim_seg", 32, {"in_chans": in_chans, "num_classes": num_classes, **kwargs})


@register_model
def test_vimf_seg(in_chans: int = 3, num_classes: int = 1, **kwargs: Any) -> VimSeg:
    """Tiny Vim-F segmenter (C 32, depth 4, stem (8, 16, 32), V2 mixing in blocks 0-1) for fast CPU tests."""
    _tiny_test(kwargs)
    kwargs.setdefault("stem_dims", (8, 16, 32))
    kwargs.setdefault("frequency_version", "v2")
    kwargs.setdefault("frequency_blocks", 2)
    return _seg_f("test_vimf_seg", 32, {"in_chans": in_chans, "num_classes": num_classes, **kwargs})
