"""RMSNorm (Zhang & Sennrich 2019, arXiv:1910.07467), the normalisation of Vim's blocks.

y = x / sqrt(mean(x^2 over the last axis) + eps) * weight: no mean subtraction and no bias
(REFERENCE.md section 5: eps 1e-5, weight only). The statistics are computed in float32 (float64 for a
float64 input), as the fused kernel of mamba-ssm does, and the result has the input's dtype, so a
bf16 model stays bf16 while its residual stream (float32) is normalised accurately.

Shape letters: "..." any leading axes, C channels.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .precision import at_least_fp32

__all__ = ["RMSNorm"]


class RMSNorm(nn.Module):
    """(..., C) -> (..., C) root-mean-square normalisation with a learned per-channel ``weight``."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.ones(dim))

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        xf = at_least_fp32(x)
        normed = xf * torch.rsqrt(xf.square().mean(dim=-1, keepdim=True) + self.eps)
        return (normed * self.weight.to(xf.dtype)).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"
