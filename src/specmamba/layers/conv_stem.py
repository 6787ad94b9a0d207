"""Vim-F's convolutional stem ("Vim-F(H)"), the patch embedding that replaces Vim's 16x16 conv.

REFERENCE.md section 5: Conv2d(in, d0, 7, stride s/4, padding 3) -> LayerNorm over channels
(eps 1e-6), then twice [Conv2d(d_i, d_i+1, 2, stride 2) -> LayerNorm -> Conv2d 1x1 -> GELU]; total
stride s (16; 8 for the long-sequence variant). Widths: Ti (48, 96, 192), S (48, 192, 384). The
output is the token sequence (B, h*w, C) in row-major order with its grid (h, w).

Generation V1 mixes the spectrum once, right after the stem (``patch_embed.sup_c``); that mixing
lives here because its parameter does. Module names are the official ones
(``cnn_downsample_layers.{0,1,2}.{k}``, ``sup_c``), so checkpoints load unchanged. Init: the convs
LeCun-normal with zero bias (upstream's ``segm_init_weights`` on the patch embedding), the norms (1, 0).

Shape letters: B batch, H/W input size, h/w = H/s, W/s grid, C channels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from .frequency_mixing import check_frequency_form, mix_spectrum

__all__ = ["ConvStem", "LayerNorm2d", "lecun_normal_"]


@torch.no_grad()
def lecun_normal_(weight: Tensor) -> Tensor:
    """LeCun normal init (timm's ``lecun_normal_``): truncated normal at +-2 std of variance 1 / fan_in,
    the std corrected for the truncation (0.87962566 is the std of a unit normal truncated at +-2)."""
    fan_in = weight[0].numel()
    std = (1.0 / fan_in) ** 0.5 / 0.87962566103423978
    return nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a channels-first map (B, C, H, W), with weight and bias."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, self.eps).permute(
            0, 3, 1, 2
        )


class ConvStem(nn.Module):
    """(B, in_chans, H, W) -> tokens (B, h*w, C), grid (h, w); see the module docstring.

    Args:
        in_chans: input channels. dims: the three widths (the last is the model width C).
        stride: total stride, a multiple of 4 (16; 8 for the long-sequence variant).
        frequency_form: None, or the V1 spectrum mix after the stem in that form (``frequency_mixing``).
    """

    def __init__(
        self,
        in_chans: int,
        dims: Sequence[int],
        stride: int = 16,
        frequency_form: str | None = None,
    ) -> None:
        super().__init__()
        dims = [int(d) for d in dims]
        if len(dims) != 3 or stride % 4 or stride < 4:
            raise ConfigError(
                f"Vim-F conv stem: stem_dims must be three widths and stride a multiple of 4 (16 or 8); got "
                f"{dims} and {stride}."
            )
        self.stride = stride
        first = nn.Sequential(
            nn.Conv2d(in_chans, dims[0], 7, stride=stride // 4, padding=3), LayerNorm2d(dims[0])
        )
        layers = [first]
        for i in range(2):
            layers.append(
                nn.Sequential(
                    nn.Conv2d(dims[i], dims[i + 1], 2, stride=2),
                    LayerNorm2d(dims[i + 1]),
                    nn.Conv2d(dims[i + 1], dims[i + 1], 1),
                    nn.GELU(),
                )
            )
        self.cnn_downsample_layers = nn.ModuleList(layers)
        self.frequency_form = None if frequency_form is None else check_frequency_form(frequency_form)
        if self.frequency_form is not None:
            self.sup_c = nn.Parameter(torch.ones(2))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                lecun_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        for layer in self.cnn_downsample_layers:
            x = layer(x)
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, C, h, w) -> (B, h*w, C)
        if self.frequency_form is not None:
            tokens = mix_spectrum(tokens, self.sup_c, self.frequency_form, (h, w), shift=True)
        return tokens, (h, w)
