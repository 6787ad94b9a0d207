"""Spec-VMamba's SpectralVSSBlock: a stack of VSS blocks and a spectral gating, fused by a learned weight.

REFERENCE.md section 4 ("Dual-Global Awareness"): on a channels-last map x (B, H, W, C),

    out = s * VSS_d(... VSS_1(x)) + (1 - s) * SpectralGating(x),    s = sigmoid(alpha),

with a depth-d stack of real VSS (SS2D) blocks on the spatial path (the seed's code stepped a GRU
instead, defects 1-3), the gating on the frequency path, and alpha a learnable scalar initialised to
0.5 (s = 0.62 at the start). There is no residual around the gating path, as in the seed; with the
gating's identity init it starts as s * VSS(x) + (1 - s) * x.

``spectral=False`` drops the frequency path and alpha: out = VSS_d(... VSS_1(x)), the same block with
the spatial path only, so the spectral path's effect can be measured and audited.

Shape letters: B batch, H/W map size, C channels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .spectral_gating import SpectralGating
from .vss_block import VSSBlock

__all__ = ["SpectralVSSBlock"]

#: alpha's initial value (the seed's); s = sigmoid(0.5) = 0.62 on the spatial path.
ALPHA_INIT = 0.5


class SpectralVSSBlock(nn.Module):
    """(B, H, W, C) -> (B, H, W, C): VSS stack and spectral gating fused by sigmoid(alpha).

    Args:
        dim: C.
        depth: VSS blocks on the spatial path (d >= 1).
        ref_size: the gating filter's reference map size (h, w), or an int for h = w.
        drop_path: stochastic-depth rate of each VSS block (one number, or one per block).
        d_state: SS2D state size.
        scan_backend: selective-scan backend of the SS2D layers.
        spectral: False drops the frequency path (see the module docstring).
        **gating_kwargs: :class:`SpectralGating` options (``init``, ``threshold``, ``tau``, ``temperature``).
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        ref_size: int | tuple[int, int],
        drop_path: float | Sequence[float] = 0.0,
        d_state: int = 16,
        scan_backend: str = "auto",
        spectral: bool = True,
        **gating_kwargs: Any,
    ) -> None:
        super().__init__()
        rates = [float(drop_path)] * depth if isinstance(drop_path, int | float) else list(drop_path)
        self.blocks = nn.ModuleList(
            [VSSBlock(dim, rate, d_state=d_state, scan_backend=scan_backend) for rate in rates]
        )
        self.spectral = bool(spectral)
        if self.spectral:
            self.gating = SpectralGating(dim, ref_size, **gating_kwargs)
            self.alpha = nn.Parameter(torch.tensor(ALPHA_INIT))

    def forward(self, x: Tensor) -> Tensor:
        spatial = x
        for block in self.blocks:
            spatial = block(spatial)
        if not self.spectral:
            return spatial
        s = torch.sigmoid(self.alpha)
        return s * spatial + (1 - s) * self.gating(x)
