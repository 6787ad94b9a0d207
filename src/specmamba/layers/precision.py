"""The one precision rule of the Mamba layers: compute in float32 at least, keep float64 as it is.

The scan's parameters (A, D, delta bias), Vim's residual stream, RMSNorm's statistics, the FFTs of
the frequency mixing and the position-embedding interpolation all run in float32 whatever the
autocast dtype (bf16 / fp16 lose the small differences these accumulate), while a float64 model (the
gradient checks) stays in float64.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["at_least_fp32"]


def at_least_fp32(t: Tensor) -> Tensor:
    """``t`` in float32, or as it is when it is float64 (``torch.promote_types(dtype, float32)``)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))
