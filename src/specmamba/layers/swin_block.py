"""Swin Transformer block with (shifted) window attention, its attention mask, and a stack of blocks.

Liu et al., "Swin Transformer: Hierarchical Vision Transformer using Shifted Windows", ICCV 2021,
section 3.2. A block is ``x + MSA(LN(x))`` then ``x + MLP(LN(x))`` where the attention runs inside
w x w windows. Every second block shifts the window grid by s = w // 2: the map is rolled by
(-s, -s) (a cyclic shift), attended window by window, and rolled back. After the roll, the windows
along the bottom and right border hold pixels from opposite sides of the image; the mask of
:func:`shifted_window_mask` keeps each such window split into the sub-windows that were contiguous
in the image (-100 on the logits between tokens of different sub-windows, as in the Swin code).

As in the Swin code, a map whose shorter side is not larger than the window is attended as one
window without shift (Swin-T at 224x224: the 7x7 map of the last stage).

Blocks work on channels-last maps (B, H, W, C); module names follow Swin / Swin-Unet (``norm1``,
``attn``, ``norm2``, ``mlp.fc1``, ``mlp.fc2``) so their checkpoints load strictly. (MONAI's
``swin_unetr.SwinTransformerBlock`` computes the same function but names its MLP ``mlp.linear1/2``,
stores the index buffer and pads maps to whole windows, so it would need renaming both ways and would
hide the input-size rule of Swin-Unet; hence these blocks.)

Shape letters: B batch, H/W map height/width, C channels, w window side, s shift, N = w*w tokens per
window, nW = (H/w) * (W/w) windows per image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .drop_path import DropPath
from .window_attention import WindowAttention, window_partition, window_reverse

__all__ = ["SwinBlock", "SwinBlocks", "SwinMlp", "shifted_window_mask"]

#: Logit added between tokens that must not attend to each other (the Swin code's value: relative to an
#: unmasked token such a token weighs about e^-100 ~ 4e-44, below the resolution of any float format).
MASK_VALUE = -100.0


def shifted_window_mask(
    height: int, width: int, window_size: int, shift_size: int, device: torch.device | str | None = None
) -> Tensor:
    """Additive attention mask (nW, N, N) of a window grid shifted by ``shift_size``.

    Rows of the rolled map fall in three regions, [0, H-w), [H-w, H-s) and [H-s, H) (the last one
    wrapped round from the top), likewise columns; two tokens of a window may attend to each other
    only when they lie in the same row region and the same column region. Entries are 0 (attend) or
    -100 (masked). Windows are ordered as :func:`window_partition` orders them.
    """
    ws, s = window_size, shift_size
    if not 0 < s < ws:
        raise ValueError(f"shift_size must lie in (0, window_size); got {s} with window {ws}")

    def regions(n: int) -> Tensor:
        r = torch.zeros(n, dtype=torch.long, device=device)
        r[n - ws : n - s] = 1
        r[n - s :] = 2
        return r

    labels = regions(height)[:, None] * 3 + regions(width)[None, :]  # (H, W) region of every pixel
    windows = window_partition(labels[None, :, :, None], ws).reshape(-1, ws * ws)  # (nW, N)
    different = windows[:, :, None] != windows[:, None, :]  # (nW, N, N): query region != key region
    return torch.zeros(different.shape, device=device).masked_fill(different, MASK_VALUE)


class SwinMlp(nn.Module):
    """Token-wise MLP: Linear(C, rC) - GELU - Linear(rC, C), with dropout after each linear."""

    def __init__(self, dim: int, hidden_dim: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        """(..., C) -> (..., C)."""
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class SwinBlock(nn.Module):
    """One Swin Transformer block on a channels-last map (B, H, W, C); H and W multiples of the window.

    Args:
        dim: channels C.
        num_heads: attention heads.
        window_size: window side w.
        shift_size: 0 for a regular block, w // 2 for a shifted one.
        mlp_ratio: MLP hidden width / C.
        qkv_bias, drop, attn_drop: see :class:`WindowAttention`; ``drop`` also after the MLP.
        drop_path: stochastic-depth probability of both residual branches.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int = 7,
        shift_size: int = 0,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0 <= shift_size < window_size:
            raise ValueError(f"shift_size must lie in [0, window_size); got {shift_size} with {window_size}")
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads, qkv_bias, attn_drop, drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = SwinMlp(dim, int(dim * mlp_ratio), drop)

    def effective_shift(self, height: int, width: int) -> int:
        """The shift used on an H x W map: none when the map is no larger than one window."""
        return self.shift_size if min(height, width) > self.window_size else 0

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """(B, H, W, C) -> (B, H, W, C).

        ``mask``: the (nW, N, N) mask of :func:`shifted_window_mask` for this map size, used when
        the block shifts (computed here when not given); ignored otherwise.
        """
        b, h, w, c = x.shape
        ws = self.window_size
        shift = self.effective_shift(h, w)
        if shift and mask is None:
            mask = shifted_window_mask(h, w, ws, shift, device=x.device)
        y = self.norm1(x)
        if shift:
            y = torch.roll(y, shifts=(-shift, -shift), dims=(1, 2))
        windows = window_partition(y, ws).reshape(-1, ws * ws, c)  # (B * nW, N, C)
        windows = self.attn(windows, mask if shift else None)
        y = window_reverse(windows.reshape(-1, ws, ws, c), ws, h, w)  # (B, H, W, C)
        if shift:
            y = torch.roll(y, shifts=(shift, shift), dims=(1, 2))
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class SwinBlocks(nn.ModuleList):
    """``depth`` Swin blocks alternating regular and shifted (by w // 2) windows.

    A ModuleList (children ``0``, ``1``, ... as ``blocks.{j}`` in the Swin code) that also runs its
    blocks in order, building the shifted-window mask once per map size.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float | Sequence[float] = 0.0,
    ) -> None:
        rates = [float(drop_path)] * depth if isinstance(drop_path, (int, float)) else list(drop_path)
        if len(rates) != depth:
            raise ValueError(f"got {len(rates)} drop-path rates for {depth} blocks")
        super().__init__(
            SwinBlock(
                dim,
                num_heads,
                window_size,
                shift_size=0 if j % 2 == 0 else window_size // 2,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                drop=drop,
                attn_drop=attn_drop,
                drop_path=rates[j],
            )
            for j in range(depth)
        )
        self.window_size = window_size

    def forward(self, x: Tensor) -> Tensor:
        """(B, H, W, C) -> (B, H, W, C); H and W multiples of the window size."""
        h, w = x.shape[1], x.shape[2]
        mask = None
        shifts = {blk.effective_shift(h, w) for blk in self} - {0}
        if shifts:  # one shift size (w // 2) for every shifted block
            mask = shifted_window_mask(h, w, self.window_size, shifts.pop(), device=x.device)
        for blk in self:
            x = blk(x, mask)
        return x
