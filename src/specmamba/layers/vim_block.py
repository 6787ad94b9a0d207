"""Vim's residual block, with Vim-F's optional frequency mixing before the mixer.

REFERENCE.md section 5. The block works on a float32 residual stream r (B, L, C):

    h = RMSNorm(r);  [Vim-F V2: h = mlp(stack[0] h + stack[1] |F(h)|)];  y = mixer(h)
    r = r + drop_path(y)

which is upstream's "add -> norm -> mixer" chain regrouped (upstream adds block i's output at the
start of block i + 1 and the last one before ``norm_f``; the sums, the drop-path rates per mixer output
and the parameters are the same). The stream stays in float32 (float64 for a float64 model) whatever
the autocast dtype (upstream's ``residual_in_fp32``). The block also returns the mixer output y,
which Vim's segmentation backbone takes as its stage features.

Module names are the official ones: ``norm``, ``mixer``, and for V2 ``stack`` (the two mixing
weights) and ``mlp`` (Linear C -> C with bias; upstream's default Linear weight init, zero bias).

Shape letters: B batch, L tokens, C channels, h/w patch grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .bimamba import BiMambaMixer
from .drop_path import DropPath
from .frequency_mixing import check_frequency_form, mix_spectrum
from .rms_norm import RMSNorm

__all__ = ["VimBlock"]


class VimBlock(nn.Module):
    """(residual (B, L, C), grid, extra token positions) -> (new residual, mixer output (B, L, C)).

    Args:
        dim: C. drop_path: stochastic-depth rate of this block's mixer output.
        norm_eps: RMSNorm eps (1e-5).
        frequency_form: None (a plain Vim block) or a Vim-F V2 mixing form, ``"token_channel"`` (the
            published code's) or ``"spatial"`` (the paper's), see ``frequency_mixing.py``.
        **mixer_kwargs: :class:`~specmamba.layers.bimamba.BiMambaMixer` arguments (d_state, expand,
            n_layers, scan_backend, ...).
    """

    def __init__(
        self,
        dim: int,
        drop_path: float = 0.0,
        norm_eps: float = 1e-5,
        frequency_form: str | None = None,
        **mixer_kwargs: Any,
    ) -> None:
        super().__init__()
        self.norm = RMSNorm(dim, eps=norm_eps)
        self.mixer = BiMambaMixer(dim, **mixer_kwargs)
        self.drop_path = DropPath(drop_path)
        self.frequency_form = None if frequency_form is None else check_frequency_form(frequency_form)
        if self.frequency_form is not None:
            self.stack = nn.Parameter(torch.ones(2))
            self.mlp = nn.Linear(dim, dim, bias=True)
            nn.init.zeros_(self.mlp.bias)

    def forward(
        self, residual: Tensor, grid: tuple[int, int], extra_positions: Sequence[int] = ()
    ) -> tuple[Tensor, Tensor]:
        h = self.norm(residual)
        if self.frequency_form is not None:
            h = self.mlp(mix_spectrum(h, self.stack, self.frequency_form, grid, extra_positions))
        y = self.mixer(h)
        return residual + self.drop_path(y).to(residual.dtype), y

    def extra_repr(self) -> str:
        return "" if self.frequency_form is None else f"frequency_form={self.frequency_form!r}"
