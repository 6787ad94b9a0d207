"""Vim and Vim-F: plain (non-hierarchical) bidirectional-Mamba backbones for classification.

Vim (Zhu et al. 2024, "Vision Mamba"; public code hustvl/Vim) and Vim-F (public code yws-wxs/Vim-F),
REFERENCE.md section 5:

* embedding: a 16x16 patch conv (``patch_embed.proj``, stride 16, or 8 in the long-sequence "ft"
  checkpoints), or Vim-F's conv stem (``layers/conv_stem.py``);
* a class token inserted in the MIDDLE of the M patch tokens, at index M // 2, then (Vim only) the
  learned position embedding (1, M + 1, C); Vim-F has none;
* ``depth`` residual blocks of RMSNorm + the bidirectional Mamba mixer on a float32 residual stream
  (``layers/vim_block.py``), stochastic depth rising linearly from 0 over the mixer outputs;
* ``norm_f`` (RMSNorm) and the class token's vector -> ``head`` Linear(C, classes).

Vim-F's frequency mixing (``layers/frequency_mixing.py``) in the published generations:
``frequency_version="v1"`` once after the conv stem (``patch_embed.sup_c``), ``"v2"`` in blocks
0..``frequency_blocks``-1 after the block's norm (``layers.{i}.stack`` / ``.mlp``);
``frequency_form`` picks the published code's FFT over the token and channel axes (default, the
checkpoints') or the paper's 2D FFT over the patch grid (``"spatial"``).

Any input size whose side fits the patch grid is accepted (upstream asserts the training size): the
position embedding is interpolated to the grid with the class token's own vector kept apart
(``pos_embed.py``). Module names are the official ones, so the released checkpoints load strictly
through :meth:`VisionMamba.convert_state_dict` (wrappers, a Namespace and optimizer state in the file
are left unbuilt by ``checkpoint_file``); it also resizes the position embedding to other grids and
strides, adds or removes the class token's vector, adapts the input channels and leaves out a head
of another number of classes (reported).

These are classification networks, outside the segmentation registry; build them with the factories
here (:func:`vim_tiny` ... :func:`vimf_small`). ``vim_seg.py`` turns them into segmentation models.

Parameter counts at the published sizes (3 -> 1000, 224 px, patch 16): Vim-Ti 7,148,008, Vim-S
25,796,584, Vim-B 97,598,440 (REFERENCE.md: about 7.15M / 25.8M / 97.6M); Vim-F-Ti 7,109,130 (V1) and
7,405,592 (V2), Vim-F-S 25,951,242 (V1) and 27,133,976 (V2) (the paper: 7M / 26M).

Shape letters: B batch, H/W input size, h/w patch grid, M = h*w patches, L tokens (M + class token),
C model width (``embed_dim``), K classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from ..errors import CheckpointError, ConfigError
from ..layers.conv_stem import ConvStem, lecun_normal_
from ..layers.drop_path import linear_drop_path_rates
from ..layers.frequency_mixing import check_frequency_form
from ..layers.precision import at_least_fp32
from ..layers.rms_norm import RMSNorm
from ..layers.scan_backend import check_scan_backend, set_scan_backend
from ..layers.vim_block import VimBlock
from .interface import check_input_channels, check_input_size
from .pos_embed import middle_index, resize_pos_embed, split_class
from .weights import ConvertedStateDict, adapt_input_conv

__all__ = [
    "FREQUENCY_VERSIONS",
    "VimTokens",
    "VisionMamba",
    "vim_base",
    "vim_small",
    "vim_tiny",
    "vimf_options",
    "vimf_small",
    "vimf_tiny",
]

#: Vim-F's generations of frequency mixing; "none" (or None) builds the conv-stem network without it.
FREQUENCY_VERSIONS = ("none", "v1", "v2")
#: Vim-F's conv-stem widths by model width (Ti, S); other widths get (C/4, C/2, C).
_STEM_DIMS = {192: (48, 96, 192), 384: (48, 192, 384)}


class _PatchEmbed(nn.Module):
    """Vim's patch conv: (B, in, H, W) -> tokens (B, h*w, C), grid (h, w); ``proj`` as upstream."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=stride)
        lecun_normal_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        x = self.proj(x)  # (B, C, h, w)
        return x.flatten(2).transpose(1, 2), (x.shape[2], x.shape[3])  # (B, h*w, C)


class VimTokens(NamedTuple):
    """What :meth:`VisionMamba.forward_tokens` returns."""

    #: (B, L, C) the residual stream after the last block
    residual: Tensor
    #: block index -> that block's mixer output (B, L, C)
    block_outputs: dict[int, Tensor]
    #: the patch grid (h, w)
    grid: tuple[int, int]
    #: positions of the extra tokens (the class token) in the sequence
    extra_positions: tuple[int, ...]


class VisionMamba(nn.Module):
    """Vim / Vim-F classifier: (B, in_chans, H, W) -> logits (B, num_classes).

    Args:
        img_size: the side the position embedding is learned for (other sides are interpolated).
        patch_size, stride: the patch conv (16, 16; stride 8 for the "ft" checkpoints). Sides must be
            ``patch_size + k * stride``. With the conv stem, ``stride`` is its total stride.
        depth, embed_dim: number of blocks and model width C.
        d_state, expand: mixer state size N (16) and inner width E / C (2).
        in_chans, num_classes: channels in; classes out (0: no head, ``forward`` returns features).
        drop_path_rate: stochastic depth of the last block (linear from 0 over the blocks).
        norm_eps: RMSNorm eps (1e-5).
        class_token: insert the middle class token (True for the classifiers).
        pos_embed: learn an absolute position embedding (Vim True, Vim-F False).
        final_norm: keep ``norm_f`` (False for a segmentation backbone, which reads mixer outputs).
        stem: ``"patch"`` (Vim) or ``"conv"`` (Vim-F); ``stem_dims`` the conv stem's three widths.
        frequency_version: ``"none"`` (or None), ``"v1"`` or ``"v2"`` (see the module docstring);
            ``frequency_form``: ``"token_channel"`` or ``"spatial"``; ``frequency_blocks``: V2's blocks.
        scan_backend: selective-scan backend of every mixer.
        model_name: name used in messages.
    """

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        stride: int = 16,
        depth: int = 24,
        embed_dim: int = 192,
        d_state: int = 16,
        expand: float = 2,
        in_chans: int = 3,
        num_classes: int = 1000,
        drop_path_rate: float = 0.1,
        norm_eps: float = 1e-5,
        class_token: bool = True,
        pos_embed: bool = True,
        final_norm: bool = True,
        stem: str = "patch",
        stem_dims: Sequence[int] | None = None,
        frequency_version: str | None = None,
        frequency_form: str = "token_channel",
        frequency_blocks: int = 8,
        scan_backend: str = "auto",
        model_name: str | None = None,
    ) -> None:
        super().__init__()
        self.model_name = model_name or type(self).__name__
        label = self.model_name
        if stem not in ("patch", "conv"):
            raise ConfigError(f"{label}: stem must be 'patch' (Vim) or 'conv' (Vim-F); got {stem!r}.")
        frequency_version = "none" if frequency_version is None else frequency_version
        if frequency_version not in FREQUENCY_VERSIONS:
            raise ConfigError(
                f"{label}: frequency_version must be 'none', 'v1' (one spectrum mix after the conv stem) or "
                f"'v2' (in the first frequency_blocks blocks); got {frequency_version!r}."
            )
        if frequency_version == "v1" and stem != "conv":
            raise ConfigError(f"{label}: frequency_version 'v1' mixes after the conv stem; use stem='conv'.")
        for name, value, low in (
            ("depth", depth, 1),
            ("embed_dim", embed_dim, 1),
            ("patch_size", patch_size, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{label}: {name} must be a positive integer; got {value!r}.")
        if stem == "patch" and (stride < 1 or patch_size % stride):
            raise ConfigError(
                f"{label}: the patch conv's stride ({stride}) must divide patch_size ({patch_size}) "
                "(16/16 or 16/8)."
            )
        check_frequency_form(frequency_form)
        self.in_chans, self.num_classes, self.embed_dim, self.depth = in_chans, num_classes, embed_dim, depth
        self.img_size, self.stride = img_size, stride
        self.patch_size = patch_size if stem == "patch" else stride
        self.frequency_version, self.frequency_form = frequency_version, frequency_form
        self.has_class_token = bool(class_token)
        self._scan_backend = check_scan_backend(scan_backend)

        if stem == "patch":
            self.patch_embed: nn.Module = _PatchEmbed(in_chans, embed_dim, patch_size, stride)
        else:
            dims = (
                tuple(stem_dims)
                if stem_dims is not None
                else _STEM_DIMS.get(embed_dim, (embed_dim // 4, embed_dim // 2, embed_dim))
            )
            if dims[-1] != embed_dim:
                raise ConfigError(
                    f"{label}: the conv stem's last width {dims[-1]} must be embed_dim {embed_dim}."
                )
            form = frequency_form if frequency_version == "v1" else None
            self.patch_embed = ConvStem(in_chans, dims, stride, frequency_form=form)
        self.pos_grid = self.grid_for(img_size, img_size)
        if self.has_class_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        if pos_embed:
            tokens = self.pos_grid[0] * self.pos_grid[1] + int(self.has_class_token)
            self.pos_embed = nn.Parameter(torch.zeros(1, tokens, embed_dim))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        else:
            self.pos_embed = None
        (rates,) = linear_drop_path_rates(drop_path_rate, [depth])
        self.layers = nn.ModuleList(
            VimBlock(
                embed_dim,
                drop_path=rates[i],
                norm_eps=norm_eps,
                frequency_form=frequency_form if frequency_version == "v2" and i < frequency_blocks else None,
                d_state=d_state,
                expand=expand,
                n_layers=depth,
                scan_backend=self._scan_backend,
            )
            for i in range(depth)
        )
        if final_norm:
            self.norm_f = RMSNorm(embed_dim, eps=norm_eps)
        if num_classes > 0:
            self.head = nn.Linear(embed_dim, num_classes)
            nn.init.trunc_normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)

    # -- sizes ------------------------------------------------------------------------------------

    def grid_for(self, h: int, w: int) -> tuple[int, int]:
        """The patch grid of an h x w input."""
        return ((h - self.patch_size) // self.stride + 1, (w - self.patch_size) // self.stride + 1)

    def check_input(self, x: Tensor) -> None:
        """InputSizeError unless x is (B, in_chans, H, W) with sides ``patch_size + k * stride``."""
        check_input_size(x, self.stride, self.model_name, min_size=self.patch_size)
        check_input_channels(x, self.in_chans, self.model_name)

    def set_scan_backend(self, scan_backend: str) -> VisionMamba:
        """Switch every mixer to ``scan_backend`` (weights unchanged); returns the model."""
        return set_scan_backend(self, scan_backend)

    # -- forward ----------------------------------------------------------------------------------

    def embed(self, x: Tensor) -> tuple[Tensor, tuple[int, int], tuple[int, ...]]:
        """(B, in, H, W) -> the token sequence (B, L, C), its grid and its extra-token positions."""
        tokens, grid = self.patch_embed(x)  # (B, M, C)
        m = grid[0] * grid[1]
        extra: tuple[int, ...] = ()
        if self.has_class_token:
            index = middle_index(m)
            cls = self.cls_token.expand(tokens.shape[0], -1, -1).to(tokens.dtype)
            tokens = torch.cat([tokens[:, :index], cls, tokens[:, index:]], dim=1)  # (B, M + 1, C)
            extra = (index,)
        if self.pos_embed is not None:
            pos = self.pos_embed
            if grid != self.pos_grid:
                learned = middle_index(self.pos_grid[0] * self.pos_grid[1]) if self.has_class_token else None
                pos = resize_pos_embed(pos, self.pos_grid, grid, learned)
            tokens = tokens + pos.to(tokens.dtype)
        return tokens, grid, extra

    def forward_tokens(self, x: Tensor, out_indices: Sequence[int] = ()) -> VimTokens:
        """Run the blocks; also keep the mixer outputs of the blocks in ``out_indices``."""
        self.check_input(x)
        tokens, grid, extra = self.embed(x)
        residual = at_least_fp32(tokens)  # the float32 residual stream (float64 for a float64 model)
        wanted, outputs = set(out_indices), {}
        for i, block in enumerate(self.layers):
            residual, y = block(residual, grid, extra)
            if i in wanted:
                outputs[i] = y
        return VimTokens(residual, outputs, grid, extra)

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, in, H, W) -> (B, C): norm_f of the class token (the mean token without one)."""
        out = self.forward_tokens(x)
        normed = self.norm_f(out.residual)
        return normed[:, out.extra_positions[0]] if self.has_class_token else normed.mean(dim=1)

    def forward(self, x: Tensor) -> Tensor:
        features = self.forward_features(x)
        return self.head(features) if self.num_classes > 0 else features

    # -- official checkpoints ---------------------------------------------------------------------

    def convert_state_dict(self, state_dict: Mapping[str, Tensor]) -> dict[str, Tensor] | ConvertedStateDict:
        """Hook of :func:`specmamba.models.weights.load_checkpoint`: a Vim / Vim-F state dict (official
        names) fitted to this model. Resizes ``pos_embed`` to this grid (class vector kept apart at
        M // 2 and put back at the new middle, or dropped when this model has no class token), adapts the
        first conv to ``in_chans``, and leaves out a head this model lacks or sizes differently (then the
        load is partial and the head keeps its init). Everything else must match: loaded strictly."""
        sd = dict(state_dict)
        own = self.state_dict()
        skipped: dict[str, str] = {}
        notes: list[str] = []
        partial = False
        for key in [k for k in sd if k.startswith("rope.")]:
            skipped[key] = "rotary-embedding buffers (not used by these models)"
            del sd[key]
        if "head.weight" in sd:
            own_head = own.get("head.weight")
            why = None
            if own_head is None:
                why = "this model has no classification head"
            elif own_head.shape != sd["head.weight"].shape:
                why, partial = "a head for another number of classes (this model's keeps its init)", True
            for key in ("head.weight", "head.bias") if why else ():
                if sd.pop(key, None) is not None:
                    skipped[key] = why
        if "norm_f.weight" in sd and "norm_f.weight" not in own:
            skipped["norm_f.weight"] = "this backbone has no final norm (its features are mixer outputs)"
            del sd["norm_f.weight"]
        has_cls = "cls_token" in sd
        if has_cls and not self.has_class_token:
            skipped["cls_token"] = "this model has no class token"
            del sd["cls_token"]
        if "pos_embed" in sd and self.pos_embed is not None:
            sd["pos_embed"] = self._fit_pos_embed(sd["pos_embed"], has_cls, notes)
        for key in ("patch_embed.proj.weight", "patch_embed.cnn_downsample_layers.0.0.weight"):
            if key in sd and key in own and sd[key].shape[1] != own[key].shape[1]:
                notes.append(f"{key}: {sd[key].shape[1]} input channels adapted to {own[key].shape[1]}.")
                sd[key] = adapt_input_conv(sd[key], own[key].shape[1])
        return ConvertedStateDict(
            sd, "Vim / Vim-F (official names)", partial=partial, skipped=skipped, notes=notes
        )

    def _fit_pos_embed(self, pos: Tensor, has_cls: bool, notes: list[str]) -> Tensor:
        m_old = pos.shape[1] - int(has_cls)
        side = int(round(m_old**0.5))
        if side * side != m_old:
            raise CheckpointError(
                f"pos_embed has {pos.shape[1]} vectors: {m_old} patch vectors are not a square grid."
            )
        old_index = middle_index(m_old) if has_cls else None
        if has_cls and not self.has_class_token:
            pos, _ = split_class(pos, old_index)
            old_index = None
        if old_index is None and self.has_class_token:
            raise CheckpointError("pos_embed has no class-token vector but this model has a class token.")
        if (side, side) != self.pos_grid:
            notes.append(
                f"pos_embed resized from a {side}x{side} to a {self.pos_grid[0]}x{self.pos_grid[1]} grid."
            )
        return resize_pos_embed(pos, (side, side), self.pos_grid, old_index)


def _vim(name: str, embed_dim: int, kwargs: dict[str, Any]) -> VisionMamba:
    kwargs.setdefault("embed_dim", embed_dim)
    return VisionMamba(model_name=name, **kwargs)


def vimf_options(kwargs: dict[str, Any], version: str | None = "v1") -> dict[str, Any]:
    """``kwargs`` with Vim-F's defaults filled in: the conv stem, no position embedding, ``version``'s
    frequency mixing (the classifiers here and the segmentation models of ``vim_seg.py`` share them)."""
    kwargs.setdefault("stem", "conv")
    kwargs.setdefault("pos_embed", False)
    kwargs.setdefault("frequency_version", version)
    return kwargs


def _vimf(name: str, embed_dim: int, version: str | None, kwargs: dict[str, Any]) -> VisionMamba:
    kwargs.setdefault("embed_dim", embed_dim)
    return VisionMamba(model_name=name, **vimf_options(kwargs, version))


def vim_tiny(**kwargs: Any) -> VisionMamba:
    """Vim-Ti: C 192, depth 24, patch 16 (``stride=8`` for vim_t_midclstok_ft_78p3acc.pth); 7,148,008
    parameters."""
    return _vim("vim_tiny", 192, kwargs)


def vim_small(**kwargs: Any) -> VisionMamba:
    """Vim-S: C 384, depth 24, patch 16; 25,796,584 parameters."""
    return _vim("vim_small", 384, kwargs)


def vim_base(**kwargs: Any) -> VisionMamba:
    """Vim-B: C 768, depth 24, patch 16; 97,598,440 parameters."""
    return _vim("vim_base", 768, kwargs)


def vimf_tiny(version: str = "v1", **kwargs: Any) -> VisionMamba:
    """Vim-F-Ti: conv stem (48, 96, 192), no position embedding; ``version="v1"`` (Ti_pre_checkpoint.pth,
    7,109,130 params) or ``"v2"`` (v2-ti-f-ckp.pth, 7,405,592)."""
    return _vimf("vimf_tiny", 192, version, kwargs)


def vimf_small(version: str = "v1", **kwargs: Any) -> VisionMamba:
    """Vim-F-S: conv stem (48, 192, 384), no position embedding; ``version="v1"`` (S_pre_checkpoint.pth,
    25,951,242 params) or ``"v2"`` (27,133,976)."""
    return _vimf("vimf_small", 384, version, kwargs)
