"""Patch embedding, patch merging and patch expanding of the channels-last U-Nets (VM-UNet, Swin-Unet).

The resolution changes of the VMamba / VM-UNet U-shape (Ruan et al. 2024, arXiv:2402.02491;
REFERENCE.md section 2), which are also Swin Transformer's and Swin-Unet's (Liu et al. 2021;
Cao et al. 2021: the same sub-grid order, the same "(p1 p2 c)" expanding), all on channels-last maps:

* :class:`PatchEmbed2D`: conv p x p stride p (``proj``), then LayerNorm (``norm``): (B, C_in, H, W)
  -> (B, H/p, W/p, C).
* :class:`PatchMerging2D`: the four sub-grids x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2],
  x[1::2, 1::2] concatenated in that order (4C), LayerNorm (``norm``), Linear 4C -> 2C without bias
  (``reduction``): (B, H, W, C) -> (B, H/2, W/2, 2C).
* :class:`PatchExpand2D`: Linear C_in -> s*s*C_out without bias (``expand``), a pixel shuffle that
  reads the channel vector as (s1, s2, C_out), LayerNorm(C_out) (``norm``): (B, H, W, C_in) ->
  (B, s*H, s*W, C_out). The decoders use s = 2, C_in = 2 C_out; VM-UNet's final expanding
  (:class:`FinalPatchExpand2D`) s = p, C_out = C_in / p; Swin-Unet's s = p, C_out = C_in.

The channel order of the shuffle (position-major: channel ``(s1 * s + s2) * C_out + c`` goes to pixel
``(s * h + s1, s * w + s2)``, channel ``c``) is the official one (einops ``(p1 p2 c)``), which differs
from ``torch.nn.PixelShuffle``'s ``(c p1 p2)``: official weights only give the official output with it.

The module names (``proj``, ``norm``, ``reduction``, ``expand``) are the official ones, so official
state dicts load without renaming.

Shape letters: B batch, H/W map height/width, C channels, p patch size, s expanding scale.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["FinalPatchExpand2D", "PatchEmbed2D", "PatchExpand2D", "PatchMerging2D", "pixel_shuffle_last"]


def pixel_shuffle_last(x: Tensor, scale: int) -> Tensor:
    """(B, H, W, s*s*C) -> (B, s*H, s*W, C), channel vector read as (s1, s2, C) (einops ``(p1 p2 c)``)."""
    b, h, w, c = x.shape
    if c % (scale * scale):
        raise ValueError(f"pixel_shuffle_last: {c} channels are not divisible by scale**2 = {scale * scale}")
    out = c // (scale * scale)
    x = x.reshape(b, h, w, scale, scale, out)  # (B, H, W, s1, s2, C)
    x = x.permute(0, 1, 3, 2, 4, 5)  # (B, H, s1, W, s2, C)
    return x.reshape(b, h * scale, w * scale, out)  # (B, s*H, s*W, C)


class PatchEmbed2D(nn.Module):
    """Patch embedding: (B, in_chans, H, W) -> (B, H/p, W/p, embed_dim); H, W multiples of p."""

    def __init__(
        self, patch_size: int = 4, in_chans: int = 3, embed_dim: int = 96, norm: bool = True
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim) if norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))  # (B, E, H/p, W/p) -> (B, H/p, W/p, E)


class PatchMerging2D(nn.Module):
    """2x2 patch merging: (B, H, W, C) -> (B, H/2, W/2, 2C), H and W even."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[1], x.shape[2]
        if h % 2 or w % 2:
            raise ValueError(f"PatchMerging2D needs an even map size, got {h}x{w}")
        # Sub-grid order of the paper's code: (even row, even col), (odd, even), (even, odd), (odd, odd).
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))  # (B, H/2, W/2, 4C) -> (B, H/2, W/2, 2C)


class PatchExpand2D(nn.Module):
    """Patch expanding: (B, H, W, in_dim) -> (B, s*H, s*W, out_dim) by Linear, pixel shuffle, LayerNorm.

    Defaults to the decoder's x2 expanding (out_dim = in_dim / 2, i.e. Linear 2C -> 4C, C = out_dim).
    """

    def __init__(self, in_dim: int, out_dim: int | None = None, scale: int = 2) -> None:
        super().__init__()
        out_dim = in_dim // 2 if out_dim is None else out_dim
        self.in_dim, self.out_dim, self.scale = in_dim, out_dim, scale
        self.expand = nn.Linear(in_dim, scale * scale * out_dim, bias=False)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(pixel_shuffle_last(self.expand(x), self.scale))

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}, out_dim={self.out_dim}, scale={self.scale}"


class FinalPatchExpand2D(PatchExpand2D):
    """The final x4 expanding back to input resolution: (B, H, W, C) -> (B, 4H, 4W, C/4) (Linear C -> 4C)."""

    def __init__(self, dim: int, scale: int = 4) -> None:
        if dim % scale:
            raise ValueError(f"FinalPatchExpand2D: dim {dim} must be divisible by the scale {scale}")
        super().__init__(dim, dim // scale, scale)
