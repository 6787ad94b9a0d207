"""Loading a pretrained classification encoder into a U-Net whose decoder mirrors it.

The official loaders of VM-UNet (VMamba-v0 checkpoints) and Swin-Unet (Swin Transformer ImageNet
checkpoints) do the same thing (REFERENCE.md sections 2 and 7): the checkpoint's tensors whose names
exist in the model fill the encoder, and encoder stage i (``layers.{i}.*``) is also copied into
decoder stage S-1-i (``layers_up.{S-1-i}.*``) wherever that name exists and the shape matches (a
decoder stage of fewer blocks takes the first ones). This module is that rule, once; the two model
families add only their own layout checks and the reasons they give for skipped tensors. Unlike the
official loaders, a first convolution of another input-channel count is adapted
(:func:`~specmamba.models.weights.adapt_input_conv`) rather than rejected.

Shape letters: none (this file moves named tensors).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

from torch import Tensor

from .weights import adapt_input_conv

__all__ = ["STAGE_BLOCK", "FIRST_CONV", "block_depths", "encoder_and_mirrored_decoder"]

#: ``layers.{stage}.blocks.{block}.{rest}`` (encoder) and ``layers_up...`` (decoder) tensor names.
STAGE_BLOCK = re.compile(r"^(layers|layers_up)\.(\d+)\.blocks\.(\d+)\.(.+)$")
#: The patch embedding's convolution, adapted to the model's input channels.
FIRST_CONV = "patch_embed.proj.weight"
_ENCODER = re.compile(r"^layers\.(\d+)\.(.+)$")


def block_depths(keys: Iterable[str], prefix: str = "layers") -> list[int]:
    """Blocks per stage under ``prefix`` (``layers`` = encoder, ``layers_up`` = decoder), read from names."""
    counts: dict[int, int] = {}
    for key in keys:
        m = STAGE_BLOCK.match(key)
        if m and m.group(1) == prefix:
            stage, block = int(m.group(2)), int(m.group(3))
            counts[stage] = max(counts.get(stage, 0), block + 1)
    return [counts.get(i, 0) for i in range(max(counts) + 1)] if counts else []


def encoder_and_mirrored_decoder(
    state_dict: Mapping[str, Tensor],
    model_state: Mapping[str, Tensor],
    ignore: Callable[[str], bool] = lambda key: False,
) -> tuple[dict[str, Tensor], set[str], list[str]]:
    """(tensors for the model, checkpoint names used, notes) by the module docstring's rule.

    Encoder tensors are taken by name; a shape mismatch is kept, so that the load raises an error
    naming it (another width is another architecture), except :data:`FIRST_CONV` of another
    input-channel count, which is adapted. ``ignore`` names checkpoint tensors to leave out (buffers
    the model rebuilds). The number of stages S is the model's.
    """
    n_stages = len(block_depths(model_state, "layers"))
    out: dict[str, Tensor] = {}
    used: set[str] = set()
    notes: list[str] = []
    for key, value in state_dict.items():
        if ignore(key) or key not in model_state:
            continue
        want = tuple(model_state[key].shape)
        if key == FIRST_CONV and value.ndim == 4 and tuple(value.shape) != want:
            if tuple(value.shape[:1] + value.shape[2:]) == (want[0], *want[2:]):
                notes.append(f"{FIRST_CONV} adapted from {value.shape[1]} to {want[1]} input channel(s).")
                value = adapt_input_conv(value, want[1])
        out[key] = value
        used.add(key)
    for key, value in state_dict.items():
        m = _ENCODER.match(key)
        if not m or ignore(key) or int(m.group(1)) >= n_stages:
            continue
        target = f"layers_up.{n_stages - 1 - int(m.group(1))}.{m.group(2)}"
        if target in model_state and tuple(model_state[target].shape) == tuple(value.shape):
            out[target] = value
            used.add(key)
    return out, used, notes
