"""Wavelet convolution, WTConv2d (Finder et al., "Wavelet Convolutions for Large Receptive Fields",
ECCV 2024; REFERENCE.md section 6), with the original module's parameter names and layout.

A depthwise convolution whose receptive field grows with the number of wavelet levels L at the cost of
small kernels: on (B, C, H, W),

    out = base_scale * base_conv(x) + wavelet path(x),

where level i = 1..L takes the low band LL of level i - 1 (x itself for i = 1), pads odd sides by one
on the right / bottom, splits it by the 2-D Haar analysis (a grouped stride-2 conv with the four
2x2 filters, channel layout ``c * 4 + band``) into (B, C, 4, h/2, w/2), and filters all four bands with
its own depthwise conv ``wavelet_convs[i]`` times ``wavelet_scale[i]`` (init 0.1). The next level
decomposes the *unfiltered* low band. The levels are then reconstructed from the deepest up: each
level's filtered low band plus the reconstruction from below, with its filtered high bands, through
the Haar synthesis (the transposed conv), cropped to the size that level had before its padding.
``stride > 1`` subsamples the sum with a frozen ones filter (``stride_filter``), as the original.

State-dict keys and shapes are the original's, so its checkpoints load strictly: ``wt_filter`` and
``iwt_filter`` (4C, 1, 2, 2) frozen parameters, ``base_conv.weight`` (C, 1, k, k) and ``.bias``,
``base_scale.weight`` (1, C, 1, 1), ``wavelet_convs.{i}.weight`` (4C, 1, k, k),
``wavelet_scale.{i}.weight`` (1, 4C, 1, 1), and ``stride_filter`` (C, 1, 1, 1) when stride > 1.

Only the Haar wavelet (``wt_type="db1"``, alias ``"haar"``) is built in: its filters are exact
(analysis 0.5 * [[1, 1], [1, 1]], [[1, 1], [-1, -1]], [[1, -1], [1, -1]], [[1, -1], [-1, 1]]; synthesis
the same), and analysis followed by synthesis is the identity. Longer wavelets reconstruct wrongly
in the original (its "same" padding for 2x2 strides does not cover their support), so they are
refused rather than repeated.

Shape letters: B batch, C channels (in = out), H/W map size, h/w a level's size, k kernel size,
L levels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, InputSizeError

__all__ = ["WAVELETS", "WTConv2d", "haar_analysis", "haar_filters", "haar_synthesis"]

WAVELETS = ("db1", "haar")


def haar_filters(channels: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """(4C, 1, 2, 2) Haar analysis (= synthesis) filters, repeated per channel: LL, LH, HL, HH."""
    # the taps are (1, 1) / sqrt(2) and (1, -1) / sqrt(2); their products are exactly +-1/2
    lo = torch.tensor([1.0, 1.0], dtype=dtype)
    hi = torch.tensor([1.0, -1.0], dtype=dtype)
    bands = 0.5 * torch.stack(
        [lo[None] * lo[:, None], lo[None] * hi[:, None], hi[None] * lo[:, None], hi[None] * hi[:, None]]
    )
    return bands[:, None].repeat(channels, 1, 1, 1)  # (4, 1, 2, 2) -> (4C, 1, 2, 2), index c * 4 + band


def haar_analysis(x: Tensor, filters: Tensor) -> Tensor:
    """(B, C, h, w) with h, w even -> (B, C, 4, h/2, w/2): the four Haar bands of each channel."""
    b, c, h, w = x.shape
    bands = F.conv2d(x, filters.to(x.dtype), stride=2, groups=c)  # (B, 4C, h/2, w/2)
    return bands.reshape(b, c, 4, h // 2, w // 2)


def haar_synthesis(bands: Tensor, filters: Tensor) -> Tensor:
    """(B, C, 4, h, w) -> (B, C, 2h, 2w), the inverse of :func:`haar_analysis`."""
    b, c, _, h, w = bands.shape
    return F.conv_transpose2d(bands.reshape(b, 4 * c, h, w), filters.to(bands.dtype), stride=2, groups=c)


class _ScaleModule(nn.Module):
    """Elementwise learnable scale (the original's ``_ScaleModule``: ``weight``, no bias)."""

    def __init__(self, shape: tuple[int, ...], init_scale: float = 1.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full(shape, float(init_scale)))

    def forward(self, x: Tensor) -> Tensor:
        return self.weight * x


class WTConv2d(nn.Module):
    """Depthwise wavelet convolution: (B, C, H, W) -> (B, C, ceil(H / stride), ceil(W / stride)).

    Args:
        in_channels, out_channels: C (depthwise: they must be equal).
        kernel_size: the base and wavelet convs' kernel (odd; 5).
        stride: subsampling of the output (1).
        bias: bias of the base conv.
        wt_levels: L >= 1. Every level must decompose a band of at least 2x2 (odd sides rounded up),
            so a side needs at least 2^(L-1) + 1 pixels; smaller inputs raise InputSizeError.
        wt_type: ``"db1"`` / ``"haar"`` (see the module docstring).
        adapt_levels: run maps too small for every level with the levels they can take, instead of
            raising (not in the original; for networks whose deepest maps can be tiny).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 5,
        stride: int = 1,
        bias: bool = True,
        wt_levels: int = 1,
        wt_type: str = "db1",
        adapt_levels: bool = False,
    ) -> None:
        super().__init__()
        if in_channels != out_channels:
            raise ConfigError(
                f"WTConv2d is depthwise: in_channels ({in_channels}) and out_channels ({out_channels}) must "
                "be equal; follow it with a 1x1 conv to change the width."
            )
        if wt_type not in WAVELETS:
            raise ConfigError(
                f"WTConv2d wt_type {wt_type!r}: only the Haar wavelet ('db1' or 'haar') is built in (longer "
                "wavelets reconstruct wrongly in the original implementation)."
            )
        for name, value, low in (
            ("kernel_size", kernel_size, 1),
            ("stride", stride, 1),
            ("wt_levels", wt_levels, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"WTConv2d {name} must be an integer >= {low}; got {value!r}.")
        self.in_channels, self.wt_levels, self.stride = in_channels, wt_levels, stride
        self.adapt_levels = bool(adapt_levels)
        filters = haar_filters(in_channels)
        self.wt_filter = nn.Parameter(filters.clone(), requires_grad=False)
        self.iwt_filter = nn.Parameter(filters.clone(), requires_grad=False)
        self.base_conv = nn.Conv2d(
            in_channels, in_channels, kernel_size, padding="same", groups=in_channels, bias=bias
        )
        self.base_scale = _ScaleModule((1, in_channels, 1, 1))
        self.wavelet_convs = nn.ModuleList(
            [
                nn.Conv2d(
                    4 * in_channels,
                    4 * in_channels,
                    kernel_size,
                    padding="same",
                    groups=4 * in_channels,
                    bias=False,
                )
                for _ in range(wt_levels)
            ]
        )
        self.wavelet_scale = nn.ModuleList(
            [_ScaleModule((1, 4 * in_channels, 1, 1), init_scale=0.1) for _ in range(wt_levels)]
        )
        if stride > 1:
            self.stride_filter = nn.Parameter(torch.ones(in_channels, 1, 1, 1), requires_grad=False)

    def levels_for(self, height: int, width: int) -> int:
        """How many of the levels a (height, width) map can take: level n + 1 decomposes a band of
        ceil(side / 2^n) pixels per side, which must be at least 2."""
        levels = 0
        while levels < self.wt_levels and min(-(-height // 2**levels), -(-width // 2**levels)) >= 2:
            levels += 1
        return levels

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        levels = self.levels_for(height, width)
        if levels < self.wt_levels and not self.adapt_levels:
            h, w = -(-height // 2**levels), -(-width // 2**levels)
            raise InputSizeError(
                f"WTConv2d with wt_levels={self.wt_levels} cannot take a {height}x{width} map: level "
                f"{levels + 1} would decompose a {h}x{w} band (each level needs at least 2x2). Use at "
                f"most {levels} level(s) for this size, or sides of at least "
                f"{2 ** (self.wt_levels - 1) + 1} pixels."
            )
        c = self.in_channels
        filtered: list[Tensor] = []  # each level's filtered bands (B, C, 4, h/2, w/2)
        sizes: list[tuple[int, int]] = []
        low = x
        for i in range(levels):
            h, w = low.shape[-2:]
            sizes.append((h, w))
            low = F.pad(low, (0, w % 2, 0, h % 2))  # odd sides: one pixel right / bottom
            bands = haar_analysis(low, self.wt_filter)  # (B, C, 4, h', w')
            low = bands[:, :, 0]  # the next level decomposes the raw low band
            b, _, _, hh, ww = bands.shape
            conv = self.wavelet_scale[i](self.wavelet_convs[i](bands.reshape(b, 4 * c, hh, ww)))
            filtered.append(conv.reshape(b, c, 4, hh, ww))
        below: Tensor | float = 0.0
        for i in range(levels - 1, -1, -1):
            bands = filtered[i]
            bands = torch.cat([(bands[:, :, 0] + below).unsqueeze(2), bands[:, :, 1:]], dim=2)
            h, w = sizes[i]
            below = haar_synthesis(bands, self.iwt_filter)[..., :h, :w]  # crop the level's padding
        out = self.base_scale(self.base_conv(x)) + below
        if self.stride > 1:
            out = F.conv2d(out, self.stride_filter.to(out.dtype), stride=self.stride, groups=c)
        return out

    def extra_repr(self) -> str:
        return f"channels={self.in_channels}, wt_levels={self.wt_levels}, stride={self.stride}"
