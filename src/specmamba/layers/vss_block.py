"""The visual state-space (VSS) block of VM-UNet (Ruan et al. 2024, arXiv:2402.02491).

VSS block = x + DropPath(SS2D(LayerNorm(x))), on channels-last maps; VM-UNet's block has no MLP branch
(REFERENCE.md section 2). Module names (``ln_1``, ``self_attention``) are the official ones.

Shape letters: B batch, H/W map size, C channels.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from .drop_path import DropPath
from .ss2d import SS2D

__all__ = ["VSSBlock"]


class VSSBlock(nn.Module):
    """Pre-norm residual SS2D block: (B, H, W, C) -> (B, H, W, C).

    Args:
        hidden_dim: C.
        drop_path: stochastic-depth probability of the SS2D branch.
        d_state: SS2D state size.
        scan_backend: selective-scan backend of the SS2D.
        **ss2d_kwargs: other :class:`~specmamba.layers.ss2d.SS2D` arguments.
    """

    def __init__(
        self,
        hidden_dim: int,
        drop_path: float = 0.0,
        d_state: int = 16,
        scan_backend: str = "auto",
        **ss2d_kwargs: Any,
    ) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(hidden_dim)
        self.self_attention = SS2D(hidden_dim, d_state=d_state, scan_backend=scan_backend, **ss2d_kwargs)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.drop_path(self.self_attention(self.ln_1(x)))
