"""Patch embedding, patch merging and patch expanding of Swin Transformer and Swin-Unet.

- :class:`SwinPatchEmbed` (Liu et al., ICCV 2021): a p x p stride-p convolution turns the image into
  a map of patch tokens, then LayerNorm.
- :class:`SwinPatchMerging` (same paper, section 3.1): each 2 x 2 group of tokens is concatenated
  (4C channels), normalised and projected to 2C: half the resolution, twice the width.
- :class:`SwinPatchExpand` (Cao et al., "Swin-Unet: Unet-like Pure Transformer for Medical Image
  Segmentation", 2021, section 3.4): the reverse, a linear layer widens every token to r*r*C_out
  channels, which are rearranged into an r x r block of tokens, then LayerNorm. Swin-Unet uses
  r = 2, C_out = C / 2 between decoder stages ("patch expanding") and r = 4, C_out = C at the end
  ("final patch expanding" back to the input resolution).

Module names (``proj``, ``norm``, ``reduction``, ``expand``) follow the Swin / Swin-Unet code so that
their checkpoints load strictly. All maps are channels-last.

Shape letters: B batch, H/W map height/width, C channels, p patch size, r expansion factor.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["SwinPatchEmbed", "SwinPatchExpand", "SwinPatchMerging"]


class SwinPatchEmbed(nn.Module):
    """Image (B, C_in, H, W) -> patch tokens (B, H/p, W/p, C): conv p x p stride p, then LayerNorm."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int = 4, norm: bool = True) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim) if norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W), H and W multiples of p -> (B, H/p, W/p, C)."""
        return self.norm(self.proj(x).permute(0, 2, 3, 1))  # (B, H/p, W/p, C)


class SwinPatchMerging(nn.Module):
    """(B, H, W, C) -> (B, H/2, W/2, 2C): concatenate 2 x 2 neighbours, LayerNorm(4C), Linear 4C -> 2C."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """(B, H, W, C), H and W even -> (B, H/2, W/2, 2C)."""
        # The Swin order of the four neighbours: (even row, even col), (odd, even), (even, odd), (odd, odd).
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))  # (B, H/2, W/2, 4C) -> (B, H/2, W/2, 2C)


class SwinPatchExpand(nn.Module):
    """(B, H, W, C) -> (B, rH, rW, C_out): Linear C -> r*r*C_out (no bias), rearrange, LayerNorm(C_out).

    Channel ``(i * r + j) * C_out + c`` of a token becomes channel c of the token at offset (i, j) of
    its r x r block (the Swin-Unet rearrangement ``b h w (p1 p2 c) -> b (h p1) (w p2) c``).
    """

    def __init__(self, dim: int, out_dim: int, scale: int = 2) -> None:
        super().__init__()
        self.scale = scale
        self.out_dim = out_dim
        self.expand = nn.Linear(dim, scale * scale * out_dim, bias=False)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, x: Tensor) -> Tensor:
        """(B, H, W, C) -> (B, rH, rW, C_out)."""
        b, h, w, _ = x.shape
        r = self.scale
        x = self.expand(x).view(b, h, w, r, r, self.out_dim)  # (B, H, W, r, r, C_out)
        x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, h * r, w * r, self.out_dim)  # (B, rH, rW, C_out)
        return self.norm(x)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, out_dim={self.out_dim}"
