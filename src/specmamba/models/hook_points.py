"""Parameter-free modules that turn a stage's native layout into the (B, C, h, w) map ``feature_info``
names.

The spectral audit hooks the output of the module each ``feature_info`` entry names, and
``forward_intermediates`` returns the same tensors, so every model exposes its stage maps through one
of these, whatever its layout:

* :class:`ChannelsFirst`: a channels-last map (B, h, w, C), as VM-UNet and Swin keep them;
* :class:`TokenMap`: a token sequence (B, P + h*w, C) of a plain (non-hierarchical) backbone with P
  extra tokens (class, distillation or register tokens) at any positions, e.g. Vim's class token in
  the middle of the sequence (REFERENCE.md section 5). The extra tokens are dropped and the patch
  tokens laid out on their h x w grid in row-major order.

Shape letters: B batch, C channels, h/w map size, P extra tokens, L = P + h*w sequence length.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError

__all__ = ["ChannelsFirst", "TokenMap", "patch_tokens"]


class ChannelsFirst(nn.Module):
    """(B, h, w, C) -> (B, C, h, w) view."""

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(0, 3, 1, 2)


def patch_tokens(tokens: Tensor, extra_positions: Sequence[int]) -> Tensor:
    """(B, L, C) -> (B, L - P, C): the sequence without the P tokens at ``extra_positions``.

    Positions may be negative (counted from the end) and in any order; the patch tokens keep theirs.
    """
    length = tokens.shape[1]
    inside = all(-length <= p < length for p in extra_positions)
    drop = sorted({p % length for p in extra_positions}) if inside else []
    if not inside or len(drop) != len(extra_positions):
        raise ConfigError(
            f"extra token positions {list(extra_positions)} must be distinct positions of a sequence of "
            f"{length} tokens."
        )
    if not drop:
        return tokens
    # An index of known length, not a boolean mask: the size stays static for torch.export / ONNX.
    keep = torch.tensor([i for i in range(length) if i not in drop], device=tokens.device)
    return tokens.index_select(1, keep)


class TokenMap(nn.Module):
    """Token sequence -> stage map: forward(tokens (B, P + h*w, C), grid (h, w)) -> (B, C, h, w).

    Args:
        extra_positions: positions of the P extra tokens in the sequence (e.g. ``[M // 2]`` for a
            class token in the middle of M patch tokens); fixed at construction or, for models whose
            class-token index depends on the input size, given per call.
    """

    def __init__(self, extra_positions: Sequence[int] = ()) -> None:
        super().__init__()
        self.extra_positions = tuple(int(p) for p in extra_positions)

    def forward(
        self, tokens: Tensor, grid: tuple[int, int], extra_positions: Sequence[int] | None = None
    ) -> Tensor:
        h, w = int(grid[0]), int(grid[1])
        positions = self.extra_positions if extra_positions is None else tuple(extra_positions)
        patches = patch_tokens(tokens, positions)  # (B, h*w, C)
        b, n, c = patches.shape
        if n != h * w:
            raise ConfigError(
                f"TokenMap: {n} patch tokens (sequence of {tokens.shape[1]} minus {len(positions)} extra) do "
                f"not fill a {h}x{w} grid."
            )
        return patches.transpose(1, 2).reshape(b, c, h, w)  # (B, h*w, C) -> (B, C, h, w)

    def extra_repr(self) -> str:
        return f"extra_positions={self.extra_positions}"
