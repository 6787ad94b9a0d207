"""The channels-last U-Net skeleton of VM-UNet, with pluggable blocks and skip fusions.

The U-shape of VM-UNet (Ruan et al. 2024, arXiv:2402.02491; REFERENCE.md section 2), for S >= 1
stages, all maps channels-last:

* patch embed: conv p x p stride p, LayerNorm -> (B, H/p, W/p, C0);
* encoder stage i (widths C_i = C0 * 2^i): ``depths[i]`` blocks, then (i < S-1) patch merging to
  half the resolution and twice the width; the stage map is the blocks' output;
* decoder stage 0: ``depths_decoder[0]`` blocks at the deepest width (no upsample); stage j = 1..S-1:
  the skip of encoder stage S-j (the *input* of that encoder stage, so the patch-embed output is never
  a skip) fused into x, patch expanding x2 (2c -> c), then blocks;
* final expanding x p (Linear C0 -> p C0, p x p pixel shuffle to C0 / p channels, LayerNorm) and a
  1x1 conv to the class logits, at the input resolution for every patch size p.

Stochastic depth rises linearly over the encoder blocks and falls linearly over the decoder blocks.
What differs between the models built on it is two constructors, overridden by subclasses:
:meth:`ChannelsLastUNet.make_block` (VM-UNet: the VSS block; Spec-VMamba and VMAML-UNet: their own)
and :meth:`ChannelsLastUNet.make_skip` (VM-UNet: addition; others may attend or concatenate). A
subclass sets the attributes its constructors read before calling ``super().__init__``.

Module names are VM-UNet's official ones (``patch_embed``, ``layers.{i}.blocks.{j}``,
``layers.{i}.downsample``, ``layers_up.{j}.upsample/blocks``, ``final_up``, ``final_conv``); the skip
fusions live in ``skips.{j}`` (parameter-free for addition, so VM-UNet's state dict is the official
one). Modules are built in that order, which fixes the order in which initialisation draws random
numbers (a seeded build gives the same weights as before this skeleton existed).

Shape letters: B batch, H/W input size (multiples of p * 2^(S-1)), h/w map size of a stage,
C/c widths, K classes, S stages, p patch size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn

from ..errors import ConfigError
from ..layers.drop_path import linear_drop_path_rates
from ..layers.patch import FinalPatchExpand2D, PatchEmbed2D, PatchExpand2D, PatchMerging2D
from .hook_points import ChannelsFirst
from .interface import SegmentationModel, make_feature_info, run_encoder_stages, stage_ints

__all__ = ["AdditiveSkip", "ChannelsLastUNet", "DecoderStage", "EncoderStage"]


BlockMaker = Callable[[int], nn.Module]  # block index within the stage -> block


class EncoderStage(nn.Module):
    """Blocks, then optional patch merging -> (stage map (B, C, h, w), next input (channels last))."""

    def __init__(self, dim: int, depth: int, make_block: BlockMaker, downsample: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([make_block(j) for j in range(depth)])
        self.stage_out = ChannelsFirst()
        self.downsample = PatchMerging2D(dim) if downsample else None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        for block in self.blocks:
            x = block(x)
        feature = self.stage_out(x)  # (B, C, h, w) view of the channels-last map
        return feature, (self.downsample(x) if self.downsample is not None else x)


class DecoderStage(nn.Module):
    """Optional patch expanding x2 (2c -> c), then blocks; channels last."""

    def __init__(self, dim: int, depth: int, make_block: BlockMaker, upsample: bool) -> None:
        super().__init__()
        self.upsample = PatchExpand2D(2 * dim, dim, 2) if upsample else None
        self.blocks = nn.ModuleList([make_block(j) for j in range(depth)])

    def forward(self, x: Tensor) -> Tensor:
        if self.upsample is not None:
            x = self.upsample(x)
        for block in self.blocks:
            x = block(x)
        return x


class AdditiveSkip(nn.Module):
    """VM-UNet's skip fusion: x + skip (same width and size), no parameters."""

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return x + skip


class ChannelsLastUNet(SegmentationModel):
    """The U-Net skeleton of the module docstring; returns logits (B, num_classes, H, W).

    Args:
        in_chans, num_classes: channels in, logit channels out (1 = binary).
        dims: encoder widths, an int C0 (-> C0 * 2^i) or one width per stage, each twice the last;
            C0 must be divisible by ``patch_size`` (the final expanding).
        depths: blocks per encoder stage (its length is the stage count S).
        depths_decoder: blocks per decoder stage, deepest first (S of them).
        drop_path_rate: largest stochastic-depth rate (linear over the encoder, reversed over the decoder).
        patch_size: patch embedding stride p, undone by the final expanding.
        model_name: registry name used in error messages.
    """

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        dims: int | Sequence[int],
        depths: Sequence[int],
        depths_decoder: Sequence[int],
        drop_path_rate: float,
        patch_size: int,
        model_name: str | None = None,
    ) -> None:
        super().__init__(in_chans, num_classes, model_name)
        label = self.model_name or type(self).__name__
        depths = stage_ints("depths", depths, label, minimum=1)
        n = len(depths)
        depths_decoder = stage_ints("depths_decoder", depths_decoder, label, length=n)
        if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
            raise ConfigError(
                f"{label}: patch_size must be a positive integer (4 in VM-UNet); got {patch_size!r}."
            )
        if isinstance(dims, int) and not isinstance(dims, bool):
            dims = [dims * 2**i for i in range(n)]
        dims = stage_ints("dims", dims, label, length=n, minimum=1)
        if any(dims[i + 1] != 2 * dims[i] for i in range(n - 1)) or dims[0] % patch_size:
            raise ConfigError(
                f"{label}: dims must double from stage to stage (patch merging maps c to 2c) and start with "
                f"a multiple of {patch_size} (patch_size: the final x{patch_size} expanding), e.g. 96 or "
                f"[96, 192, 384, 768]; got {dims}."
            )
        if not 0.0 <= float(drop_path_rate) < 1.0:
            raise ConfigError(f"{label}: drop_path_rate must lie in [0, 1); got {drop_path_rate!r}.")
        self.dims, self.depths, self.depths_decoder = dims, depths, depths_decoder
        self.drop_path_rate, self.patch_size = float(drop_path_rate), patch_size
        self.input_multiple = patch_size * 2 ** (n - 1)

        self.patch_embed = PatchEmbed2D(patch_size, in_chans, dims[0])
        enc_rates = linear_drop_path_rates(self.drop_path_rate, depths)
        self.layers = nn.ModuleList(
            [
                EncoderStage(
                    dims[i],
                    depths[i],
                    lambda j, i=i: self.make_block(dims[i], enc_rates[i][j], i, decoder=False),
                    downsample=i < n - 1,
                )
                for i in range(n)
            ]
        )
        dec_rates = _reversed_rates(self.drop_path_rate, depths_decoder)
        dims_decoder = dims[::-1]
        self.layers_up = nn.ModuleList(
            [
                DecoderStage(
                    dims_decoder[j],
                    depths_decoder[j],
                    lambda i, j=j: self.make_block(dims_decoder[j], dec_rates[j][i], n - 1 - j, decoder=True),
                    upsample=j > 0,
                )
                for j in range(n)
            ]
        )
        # skips[j - 1] fuses the input of encoder stage n - j into decoder stage j (j = 1..n-1)
        self.skips = nn.ModuleList([self.make_skip(dims_decoder[j - 1], n - j) for j in range(1, n)])
        self.final_up = FinalPatchExpand2D(dims[0], patch_size)
        self.final_conv = nn.Conv2d(dims[0] // patch_size, num_classes, kernel_size=1)
        self.feature_info = make_feature_info(
            dims, [patch_size * 2**i for i in range(n)], [f"layers.{i}.stage_out" for i in range(n)]
        )

    # -- the pluggable constructors --------------------------------------------------------------

    def make_block(self, dim: int, drop_path: float, stage: int, decoder: bool) -> nn.Module:
        """One channels-last block (B, h, w, dim) -> (B, h, w, dim) of encoder or decoder ``stage``."""
        raise NotImplementedError(f"{type(self).__name__} must define make_block")

    def make_skip(self, dim: int, stage: int) -> nn.Module:
        """The fusion ``(x, skip) -> x`` of encoder ``stage``'s input (width ``dim``) into the decoder."""
        return AdditiveSkip()

    # -- forward ---------------------------------------------------------------------------------

    def _encode(self, x: Tensor) -> tuple[list[Tensor], list[Tensor], Tensor]:
        """(stage maps (B, C_i, h_i, w_i), stage inputs (channels last), deepest output (channels last))."""
        return run_encoder_stages(self.layers, self.patch_embed(x))  # stages start at (B, H/p, W/p, C0)

    def forward_intermediates(self, x: Tensor) -> list[Tensor]:
        """The encoder stage maps (block outputs before patch merging), (B, C_i, H/r_i, W/r_i)."""
        self.check_input(x)
        return self._encode(x)[0]

    def forward(self, x: Tensor) -> Tensor:
        """Image batch (B, in_chans, H, W) -> logits (B, num_classes, H, W)."""
        self.check_input(x)
        _, skips, x = self._encode(x)
        x = self.layers_up[0](x)
        for j in range(1, len(self.layers_up)):
            x = self.layers_up[j](self.skips[j - 1](x, skips[-j]))  # input of encoder stage n - j
        x = self.final_up(x)  # (B, H, W, C0 / p)
        return self.final_conv(x.permute(0, 3, 1, 2)).contiguous()  # (B, K, H, W)


def _reversed_rates(rate: float, depths: Sequence[int]) -> list[list[float]]:
    """The encoder's linear rule over the decoder's blocks, reversed (largest first), per stage."""
    flat = [r for stage in linear_drop_path_rates(rate, depths) for r in stage]
    flat.reverse()
    out, start = [], 0
    for depth in depths:
        out.append(flat[start : start + depth])
        start += depth
    return out
