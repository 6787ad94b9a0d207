"""KAN convolution: a convolution whose kernel is a KANLinear (REFERENCE.md section 6).

One :class:`~specmamba.kan.KANLinear` over the unfolded (C_in * k * k) patch vector of every output
pixel, as a single batched call (``F.unfold``, then one KANLinear over all B * L patches). Public KAN
convolutions loop over every (in, out) channel pair in Python, which is what makes them unusably slow.

Shape letters: B batch, C channels, H/W map size, L output pixels, k kernel size.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..kan import KANLinear

__all__ = ["KANConv2d"]


class KANConv2d(nn.Module):
    """A convolution with a KANLinear kernel: (B, C_in, H, W) -> (B, C_out, H', W') (``F.conv2d``'s sizes).

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation: as ``nn.Conv2d`` (ints).
        **kan_kwargs: :class:`KANLinear` options.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        **kan_kwargs,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding, self.dilation = kernel_size, stride, padding, dilation
        self.kan = KANLinear(in_channels * kernel_size * kernel_size, out_channels, **kan_kwargs)

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        k, s, p, d = self.kernel_size, self.stride, self.padding, self.dilation
        patches = F.unfold(x, k, dilation=d, padding=p, stride=s)  # (B, C_in * k * k, L)
        out = self.kan(patches.transpose(1, 2))  # (B, L, C_out): one call over every patch
        h_out = (h + 2 * p - d * (k - 1) - 1) // s + 1
        w_out = (w + 2 * p - d * (k - 1) - 1) // s + 1
        return out.transpose(1, 2).reshape(b, self.out_channels, h_out, w_out)

    def regularization_loss(
        self, regularize_activation: float = 1.0, regularize_entropy: float = 1.0
    ) -> Tensor:
        return self.kan.regularization_loss(regularize_activation, regularize_entropy)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}"
        )
