"""Spec-VMamba: the SpectralVMUNet of the "Spectral Mamba" seed, on real selective scans.

The seed's network (REFERENCE.md section 4), with its defects removed (the scan is SS2D through
``specmamba.ops``, any input size, norms for any width, logits at the input size). All maps are
channels-last inside; S stages (4), widths C_i = C0 * 2^i (C0 = 64):

* patch embed: conv 4x4 stride 4, LayerNorm -> (B, H/4, W/4, C0);
* encoder stage i: a SpectralVSSBlock (``depth`` VSS blocks + spectral gating) at width C_i, then
  (i < S-1) patch merging: conv 2x2 stride 2 (C_i -> 2 C_i), LayerNorm. The stage map (the block's
  output, before merging) is ``layers.{i}.stage_out`` in ``feature_info``;
* bottleneck: one more SpectralVSSBlock of depth ``bottleneck_depth`` (``depth + 1``) at 1/(4 * 2^(S-1));
* decoder stage j = 1..S-1: upsampling (bilinear x2, align_corners=True as the seed, then conv 1x1
  c -> c/2, LayerNorm), concatenation with the map of encoder stage S-1-j, conv 1x1 (c -> c/2) +
  GroupNorm, a SpectralVSSBlock of depth ``depth``;
* head at 1/4: conv 3x3 (C0 -> C0/2) -> GroupNorm -> GELU -> conv 1x1 to the K logits, then bilinear
  x4 (align_corners=True) to the *input* size (the seed resized to its construction size).

GroupNorm uses gcd(32, c) groups: the seed's 32 for its power-of-two widths, and a valid count for any
width (the seed's hard-wired GroupNorm(32) crashes for widths not divisible by 32, defect 8).

The gating filters are stored at the map sizes of a ``img_size`` input (256, the seed's) and resampled
for other inputs (``layers/spectral_gating.py``). ``spectral=False`` builds the same network with the
spatial path only (every SpectralVSSBlock without its gating and alpha). ``gating_init`` and
``gating_threshold`` choose the gating's init and threshold. Default ``num_classes`` is the package's
(1, binary); the seed's 1 -> 3 classes is the preset ``spec_vmamba_multiclass``.

Shape letters: B batch, H/W input size (multiples of 4 * 2^(S-1) = 32), h/w map size, C/c widths,
K classes, S stages.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..layers.drop_path import linear_drop_path_rates
from ..layers.patch import PatchEmbed2D
from ..layers.scan_backend import check_scan_backend
from ..layers.spectral_vss_block import SpectralVSSBlock
from .hook_points import ChannelsFirst
from .interface import SegmentationModel, make_feature_info
from .registry import register_model

__all__ = ["SpecVMUNet", "spec_vmamba", "test_spec_vmamba"]

PATCH = 4


def norm_groups(channels: int) -> int:
    """GroupNorm groups for ``channels``: gcd(32, channels) (32 for multiples of 32, always valid)."""
    return math.gcd(32, channels)


class ConvMerging(nn.Module):
    """Seed patch merging: conv 2x2 stride 2 (c -> 2c), LayerNorm; (B, h, w, c) -> (B, h/2, w/2, 2c)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, 2 * dim, kernel_size=2, stride=2)
        self.norm = nn.LayerNorm(2 * dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))


class UpConv(nn.Module):
    """Seed upsampling: bilinear x2, conv 1x1 (c -> c/2), LayerNorm; (B, h, w, c) -> (B, 2h, 2w, c/2)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim // 2, kernel_size=1)
        self.norm = nn.LayerNorm(dim // 2)

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x.permute(0, 3, 1, 2), scale_factor=2, mode="bilinear", align_corners=True)
        return self.norm(self.conv(x).permute(0, 2, 3, 1))


class ConcatFusion(nn.Module):
    """Skip fusion: concatenate, conv 1x1 (2c -> c), GroupNorm; channels-last in and out."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2 * dim, dim, kernel_size=1)
        self.norm = nn.GroupNorm(norm_groups(dim), dim, eps=1e-6)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        fused = torch.cat([x, skip], dim=-1).permute(0, 3, 1, 2)  # (B, h, w, 2c) -> (B, 2c, h, w)
        return self.norm(self.conv(fused)).permute(0, 2, 3, 1)


class SegHead(nn.Module):
    """Seed head: conv 3x3 (C0 -> C0/2), GroupNorm, GELU, conv 1x1 -> K; channels first."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        hidden = max(dim // 2, 1)
        self.conv = nn.Conv2d(dim, hidden, kernel_size=3, padding=1)
        self.norm = nn.GroupNorm(norm_groups(hidden), hidden, eps=1e-6)
        self.act = nn.GELU()
        self.classifier = nn.Conv2d(hidden, num_classes, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.act(self.norm(self.conv(x))))


class SpecVMUNet(SegmentationModel):
    """Spec-VMamba's SpectralVMUNet; returns logits (B, num_classes, H, W), H and W multiples of 32.

    Args:
        in_chans: input channels. num_classes: 1 (binary) or K >= 2.
        embed_dim: C0, the first stage's width (64); stage i has C0 * 2^i.
        num_stages: S (4).
        depth: VSS blocks in each SpectralVSSBlock of the encoder and decoder (2).
        bottleneck_depth: VSS blocks of the bottleneck's SpectralVSSBlock (None: depth + 1).
        img_size: the input side the gating filters are stored for (256); other sizes resample them.
        d_state: SS2D state size (16).
        drop_path_rate: largest stochastic-depth rate, rising linearly over the encoder and bottleneck
            blocks; a decoder stage takes its level's encoder rates reversed (0: the seed has none).
        spectral: False builds the spatial path only (no gating, no alpha).
        gating_init, gating_threshold: the gating's init (``identity`` | ``seed``) and threshold
            (``none`` | ``soft`` | ``hard``).
        scan_backend: selective-scan backend of every SS2D.
        model_name: registry name used in error messages.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1,
        embed_dim: int = 64,
        num_stages: int = 4,
        depth: int = 2,
        bottleneck_depth: int | None = None,
        img_size: int = 256,
        d_state: int = 16,
        drop_path_rate: float = 0.0,
        spectral: bool = True,
        gating_init: str = "identity",
        gating_threshold: str = "none",
        scan_backend: str = "auto",
        model_name: str | None = None,
    ) -> None:
        super().__init__(in_chans, num_classes, model_name)
        label = self.model_name or type(self).__name__
        bottleneck_depth = depth + 1 if bottleneck_depth is None else bottleneck_depth
        for name, value, low in (
            ("embed_dim", embed_dim, 2),
            ("num_stages", num_stages, 1),
            ("depth", depth, 1),
            ("bottleneck_depth", bottleneck_depth, 1),
            ("d_state", d_state, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{label}: {name} must be an integer >= {low}; got {value!r}.")
        self.input_multiple = PATCH * 2 ** (num_stages - 1)
        if isinstance(img_size, bool) or not isinstance(img_size, int) or img_size % self.input_multiple:
            raise ConfigError(
                f"{label}: img_size (the size the gating filters are stored for) must be a multiple of "
                f"{self.input_multiple}; got {img_size!r}."
            )
        if not 0.0 <= float(drop_path_rate) < 1.0:
            raise ConfigError(f"{label}: drop_path_rate must lie in [0, 1); got {drop_path_rate!r}.")
        check_scan_backend(scan_backend)
        dims = [embed_dim * 2**i for i in range(num_stages)]
        sizes = [img_size // (PATCH * 2**i) for i in range(num_stages)]
        self.dims, self.spectral = dims, bool(spectral)

        def block(i: int, depth_: int, rates: list[float]) -> SpectralVSSBlock:
            return SpectralVSSBlock(
                dims[i],
                depth_,
                sizes[i],
                drop_path=rates,
                d_state=d_state,
                scan_backend=scan_backend,
                spectral=spectral,
                init=gating_init,
                threshold=gating_threshold,
            )

        # rising over the encoder and bottleneck blocks; a decoder stage mirrors its level's encoder stage
        rates = linear_drop_path_rates(float(drop_path_rate), [depth] * num_stages + [bottleneck_depth])
        self.patch_embed = PatchEmbed2D(PATCH, in_chans, dims[0])
        self.layers = nn.ModuleList()
        for i in range(num_stages):
            stage = nn.Module()
            stage.block = block(i, depth, rates[i])
            stage.stage_out = ChannelsFirst()
            stage.downsample = ConvMerging(dims[i]) if i < num_stages - 1 else None
            self.layers.append(stage)
        self.bottleneck = block(num_stages - 1, bottleneck_depth, rates[-1])
        self.layers_up = nn.ModuleList()
        for i in range(num_stages - 2, -1, -1):  # decoder stages, deepest first, at encoder level i
            stage = nn.Module()
            stage.upsample = UpConv(dims[i + 1])
            stage.fusion = ConcatFusion(dims[i])
            stage.block = block(i, depth, rates[i][::-1])
            self.layers_up.append(stage)
        self.head = SegHead(dims[0], num_classes)
        self.feature_info = make_feature_info(
            dims,
            [PATCH * 2**i for i in range(num_stages)],
            [f"layers.{i}.stage_out" for i in range(num_stages)],
        )

    def _encode(self, x: Tensor) -> tuple[list[Tensor], list[Tensor], Tensor]:
        """(stage maps (B, C_i, h_i, w_i), channels-last skips, deepest channels-last output)."""
        x = self.patch_embed(x)  # (B, H/4, W/4, C0)
        features, skips = [], []
        for stage in self.layers:
            x = stage.block(x)
            features.append(stage.stage_out(x))
            skips.append(x)
            if stage.downsample is not None:
                x = stage.downsample(x)
        return features, skips, x

    def forward_intermediates(self, x: Tensor) -> list[Tensor]:
        """The encoder stage maps (SpectralVSSBlock outputs before merging), (B, C_i, H/r_i, W/r_i)."""
        self.check_input(x)
        return self._encode(x)[0]

    def forward(self, x: Tensor) -> Tensor:
        """Image batch (B, in_chans, H, W) -> logits (B, num_classes, H, W)."""
        self.check_input(x)
        size = x.shape[-2:]
        _, skips, x = self._encode(x)
        x = self.bottleneck(x)
        for j, stage in enumerate(self.layers_up):
            skip = skips[-2 - j]  # the map of encoder stage S-2-j
            x = stage.block(stage.fusion(stage.upsample(x), skip))
        logits = self.head(x.permute(0, 3, 1, 2))  # (B, K, H/4, W/4)
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=True)


@register_model
def spec_vmamba(in_chans: int = 3, num_classes: int = 1, **kwargs: Any) -> SpecVMUNet:
    """Spec-VMamba (the seed's SpectralVMUNet: width 64, four stages, depth 2, bottleneck depth 3)."""
    return SpecVMUNet(in_chans=in_chans, num_classes=num_classes, model_name="spec_vmamba", **kwargs)


@register_model
def test_spec_vmamba(in_chans: int = 3, num_classes: int = 1, **kwargs: Any) -> SpecVMUNet:
    """Tiny Spec-VMamba: width 8, three stages, one VSS block per SpectralVSSBlock, d_state 4, filters
    stored for 64x64 inputs. Three stages keep the deepest map of a 64 px input at 4x4, which has bins
    other than DC and Nyquist (on those a filter's imaginary part cannot move a real output)."""
    kwargs.setdefault("embed_dim", 8)
    kwargs.setdefault("num_stages", 3)
    kwargs.setdefault("depth", 1)
    kwargs.setdefault("bottleneck_depth", 1)
    kwargs.setdefault("d_state", 4)
    kwargs.setdefault("img_size", 64)
    return SpecVMUNet(in_chans=in_chans, num_classes=num_classes, model_name="test_spec_vmamba", **kwargs)
