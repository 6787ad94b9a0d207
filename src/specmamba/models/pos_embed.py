"""Resizing a learned position embedding to another patch grid, with a class token at any index.

A ViT-style embedding (1, P + h*w, C) holds one vector per token: the h*w patch vectors on their grid
in row-major order and P extra vectors (class tokens) at fixed indices. Resizing interpolates the grid
bicubically (``align_corners=False``, as timm does) and leaves the extra vectors as they are. Vim puts
its class token in the MIDDLE of the sequence, at index M // 2 of the M patch tokens (REFERENCE.md
section 5), so its embedding sits at that index, not at 0 where upstream's resize looks for it (which
interpolates the class vector into the grid and gives the users' shape errors): here the caller names
the index, and the class vector goes back at the middle of the new sequence.

Shape letters: C channels, h/w grid, M = h*w patches, P extra tokens (0 or 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import CheckpointError
from ..layers.precision import at_least_fp32

__all__ = ["middle_index", "resize_pos_embed", "split_class"]


def middle_index(num_patches: int) -> int:
    """Index of Vim's middle class token in a sequence of ``num_patches`` patch tokens plus it."""
    return num_patches // 2


def resize_pos_embed(
    pos_embed: Tensor,
    old_grid: tuple[int, int],
    new_grid: tuple[int, int],
    class_index: int | None,
    new_class_index: int | None = None,
) -> Tensor:
    """(1, P + old h*w, C) -> (1, P' + new h*w, C).

    ``class_index``: where the old embedding's class vector is (None: it has none). ``new_class_index``:
    where to put it in the result (default: the middle of the new grid; ignored without a class
    vector). To drop the class vector, take the patch vectors of :func:`split_class` and resize those.
    """
    patches, cls = split_class(pos_embed, class_index)
    (oh, ow), (nh, nw) = old_grid, new_grid
    if patches.shape[1] != oh * ow:
        raise CheckpointError(
            f"position embedding has {patches.shape[1]} patch vectors, not the {oh}x{ow} = {oh * ow} of "
            "its grid."
        )
    if (oh, ow) != (nh, nw):
        c = patches.shape[2]
        grid = at_least_fp32(patches).reshape(1, oh, ow, c).permute(0, 3, 1, 2)  # (1, M, C) -> (1, C, h, w)
        grid = F.interpolate(grid, size=(nh, nw), mode="bicubic", align_corners=False)
        # (1, C, h', w') -> (1, M', C)
        patches = grid.permute(0, 2, 3, 1).reshape(1, nh * nw, c).to(pos_embed.dtype)
    if cls is None:
        return patches
    index = middle_index(nh * nw) if new_class_index is None else new_class_index
    return torch.cat([patches[:, :index], cls, patches[:, index:]], dim=1)


def split_class(pos_embed: Tensor, class_index: int | None) -> tuple[Tensor, Tensor | None]:
    """(1, P + M, C) -> the patch vectors (1, M, C) and the class vector (1, 1, C) at ``class_index``
    (None when there is none)."""
    if class_index is None:
        return pos_embed, None
    if not 0 <= class_index < pos_embed.shape[1]:
        raise CheckpointError(
            f"class-token index {class_index} is outside a {pos_embed.shape[1]}-token embedding."
        )
    patches = torch.cat([pos_embed[:, :class_index], pos_embed[:, class_index + 1 :]], dim=1)
    return patches, pos_embed[:, class_index : class_index + 1]
