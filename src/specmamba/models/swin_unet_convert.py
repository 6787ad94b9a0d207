"""Checkpoint conversion for Swin-Unet: the authors' layout and Swin Transformer ImageNet weights.

Two foreign layouts load into :class:`~specmamba.models.swin_unet.SwinUNet` (REFERENCE.md section 7):

* Swin-Unet checkpoints (the authors' ``swin_unet.`` wrapper prefix is removed): loaded strictly,
  after the depths and the relative-position index are checked;
* Swin Transformer ImageNet checkpoints (``swin_tiny_patch4_window7_224.pth``, ``{'model': ...}``):
  the encoder by name and each encoder stage i also into decoder stage 3 - i where the names exist
  and the shapes match (``mirrored_decoder.py``, the authors' loader's rule); the classifier head and
  the blocks beyond the model's depths are skipped with the reason. A checkpoint of another width,
  head count, window, patch or MLP size is refused with a CheckpointError that names both
  architectures.

The buffers ``relative_position_index`` and ``attn_mask`` that some checkpoints carry are rebuilt from
the window size and input size instead of being stored, so they are dropped (the index is checked
against the rebuilt one).

Shape letters: none (this file moves named tensors).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..errors import CheckpointError
from ..layers.window_attention import relative_position_index
from .checkpoint_file import strip_prefixes
from .interface import model_display_name
from .mirrored_decoder import STAGE_BLOCK, block_depths, encoder_and_mirrored_decoder
from .weights import ConvertedStateDict

if TYPE_CHECKING:
    from .swin_unet import SwinUNet

__all__ = [
    "COMPUTED_BUFFERS",
    "KNOWN_SWIN",
    "OFFICIAL_PREFIX",
    "convert_swin_unet_state_dict",
    "describe_swin_state_dict",
]

#: The authors' wrapper ``SwinUnet`` keeps the network as ``self.swin_unet``.
OFFICIAL_PREFIX = "swin_unet."
#: Buffers that some Swin checkpoints store and specmamba rebuilds (window size / input size only).
COMPUTED_BUFFERS = ("relative_position_index", "attn_mask")
#: (width, depths) of the published Swin Transformer ImageNet models, for messages.
KNOWN_SWIN = {
    (96, (2, 2, 6, 2)): "Swin-T",
    (96, (2, 2, 18, 2)): "Swin-S",
    (128, (2, 2, 18, 2)): "Swin-B",
    (192, (2, 2, 18, 2)): "Swin-L",
}

_REBUILT = "buffer rebuilt from the window and input size"
_TOO_DEEP = "block beyond the model's depth in its stage"


def convert_swin_unet_state_dict(
    model: SwinUNet, state_dict: Mapping[str, Tensor]
) -> dict[str, Tensor] | ConvertedStateDict:
    """Hook of :func:`specmamba.models.weights.load_checkpoint` for foreign layouts.

    Swin-Unet state dicts (``swin_unet.`` prefix optional) -> plain dict, loaded strictly; Swin
    Transformer ImageNet checkpoints -> encoder plus mirrored decoder (partial). Raises
    CheckpointError for Swin checkpoints of another architecture.
    """
    sd = strip_prefixes(state_dict, (OFFICIAL_PREFIX, "module.", "_orig_mod."))
    if any(k.startswith("layers_up.") for k in sd):
        _check_swin_unet_layout(model, sd)
        return {k: v for k, v in sd.items() if not k.endswith(COMPUTED_BUFFERS)}
    if "patch_embed.proj.weight" in sd and any(STAGE_BLOCK.match(k) for k in sd):
        return _convert_imagenet(model, sd)
    return sd  # another layout: the strict load names what does not match


def _check_rel_index(model: SwinUNet, sd: Mapping[str, Tensor]) -> None:
    want = relative_position_index(model.window_size)
    for key, value in sd.items():
        if key.endswith("relative_position_index") and not torch.equal(value.to(want.dtype), want):
            raise CheckpointError(
                f"its {key} is not the Swin relative-position index of a {model.window_size}x"
                f"{model.window_size} window (shape {tuple(value.shape)}): it holds another attention "
                "layout."
            )


def _check_swin_unet_layout(model: SwinUNet, sd: Mapping[str, Tensor]) -> None:
    got = (block_depths(sd, "layers"), block_depths(sd, "layers_up"))
    want = (model.depths, [model.depths[3 - i] for i in (1, 2, 3)])
    if got[0] != want[0] or got[1][1:] != want[1]:
        raise CheckpointError(
            f"it holds a Swin-Unet with encoder depths {got[0]} and decoder depths {got[1][1:]} (decoder "
            f"stages 1-3), but the model has {want[0]} / {want[1]}. Build the model with "
            f"depths={got[0]}."
        )
    _check_rel_index(model, sd)


def _convert_imagenet(model: SwinUNet, sd: Mapping[str, Tensor]) -> ConvertedStateDict:
    """Swin Transformer ImageNet state dict -> encoder + mirrored decoder, as the Swin-Unet loader."""
    arch = describe_swin_state_dict(sd)
    want = {
        "width": model.embed_dim,
        "patch": model.patch_size,
        "heads": list(model.num_heads),
        "window": model.window_size,
        "mlp_ratio": model.mlp_ratio,
    }
    differ = [k for k, v in want.items() if arch.get(k) != v]
    if differ or len(arch["depths"]) != 4:
        variant = KNOWN_SWIN.get((arch["width"], tuple(arch["depths"])), "a Swin Transformer")
        raise CheckpointError(
            f"it holds {variant} with width {arch['width']}, depths {arch['depths']}, heads "
            f"{arch['heads']}, window {arch['window']}, patch {arch['patch']}, MLP ratio "
            f"{_fmt(arch['mlp_ratio'])}; {model_display_name(model)} needs width {model.embed_dim}, heads "
            f"{list(model.num_heads)}, window {model.window_size}, patch {model.patch_size}, MLP ratio "
            f"{model.mlp_ratio:g} (for swin_unet: a Swin-T or Swin-S checkpoint such as "
            "swin_tiny_patch4_window7_224.pth). Use such a checkpoint, or build the model with the "
            f"checkpoint's embed_dim={arch['width']}, num_heads={tuple(arch['heads'])}, "
            f"window_size={arch['window']}, patch_size={arch['patch']}."
        )
    _check_rel_index(model, sd)
    # The Swin-Unet loader's rule: the encoder by name, layers.{i}.X also into layers_up.{3-i}.X.
    out, used, notes = encoder_and_mirrored_decoder(
        sd, model.state_dict(), ignore=lambda key: key.endswith(COMPUTED_BUFFERS)
    )
    skipped = {}
    for key in sd:
        if key in used:
            continue
        m = STAGE_BLOCK.match(key)
        if key.endswith(COMPUTED_BUFFERS):
            skipped[key] = _REBUILT
        elif key.startswith("head."):
            skipped[key] = "ImageNet classifier head (not part of Swin-Unet)"
        elif m and int(m.group(3)) >= model.depths[int(m.group(2))]:
            skipped[key] = _TOO_DEEP
        else:
            skipped[key] = "no tensor of this name in Swin-Unet"
    # Reports list the first few skipped tensors: the informative ones go before the buffers.
    rank = {"ImageNet classifier head (not part of Swin-Unet)": 0, _TOO_DEEP: 1, _REBUILT: 3}
    skipped = dict(sorted(skipped.items(), key=lambda item: rank.get(item[1], 2)))
    for i, (have, want_depth) in enumerate(zip(arch["depths"], model.depths)):
        if have > want_depth:
            notes.append(
                f"stage {i}: the checkpoint has {have} blocks, the model {want_depth}; blocks "
                f"{want_depth}..{have - 1} skipped (as the Swin-Unet authors' loader does)."
            )
    return ConvertedStateDict(
        state_dict=out,
        layout="Swin Transformer ImageNet checkpoint: encoder, decoder mirrored from it",
        partial=True,
        skipped=skipped,
        notes=notes,
    )


def describe_swin_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Any]:
    """Architecture of a Swin Transformer / Swin-Unet state dict, read from its tensor shapes.

    Returns ``{"width", "patch", "in_chans", "depths", "heads", "window", "mlp_ratio"}`` (encoder
    stages ``layers.{i}``); values that cannot be read are None.
    """
    proj = state_dict.get("patch_embed.proj.weight")
    depths = block_depths(state_dict, "layers")
    heads, window = [], None
    for i in range(len(depths)):
        table = state_dict.get(f"layers.{i}.blocks.0.attn.relative_position_bias_table")
        heads.append(int(table.shape[1]) if table is not None and table.ndim == 2 else None)
        if i == 0 and table is not None:
            side = round(table.shape[0] ** 0.5)  # (2w - 1)^2 rows
            window = (side + 1) // 2 if side * side == table.shape[0] else None
    width = int(proj.shape[0]) if proj is not None and proj.ndim == 4 else None
    fc1 = state_dict.get("layers.0.blocks.0.mlp.fc1.weight")
    return {
        "width": width,
        "patch": int(proj.shape[-1]) if width is not None else None,
        "in_chans": int(proj.shape[1]) if width is not None else None,
        "depths": depths,
        "heads": heads,
        "window": window,
        "mlp_ratio": fc1.shape[0] / width if fc1 is not None and width else None,
    }


def _fmt(value: float | None) -> str:
    return "unknown" if value is None else f"{value:g}"
