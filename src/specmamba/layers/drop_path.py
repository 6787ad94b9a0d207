"""Stochastic depth ("drop path", Huang et al., ECCV 2016): drop a residual branch per sample.

During training each sample's branch output is zeroed with probability ``p`` and the kept ones are
scaled by 1 / (1 - p), so the expectation is unchanged; in eval mode the branch passes through.
"""

from __future__ import annotations

import torch
from torch import nn


def drop_path(x: torch.Tensor, p: float = 0.0, training: bool = False) -> torch.Tensor:
    """Zero whole samples of ``x`` (any shape, batch first) with probability ``p`` while training."""
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


class DropPath(nn.Module):
    """Module form of :func:`drop_path`."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop path probability must lie in [0, 1); got {p}")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def linear_drop_path_rates(rate: float, depths: list[int] | tuple[int, ...]) -> list[list[float]]:
    """Per-stage lists of rates rising linearly from 0 to ``rate`` over all blocks (timm/Swin/VMamba rule)."""
    total = sum(depths)
    # On the CPU explicitly: the rates are Python floats, also when the model is built on the meta device.
    rates = torch.linspace(0, rate, total, device="cpu").tolist() if total > 1 else [0.0] * total
    out, start = [], 0
    for depth in depths:
        out.append(rates[start : start + depth])
        start += depth
    return out
