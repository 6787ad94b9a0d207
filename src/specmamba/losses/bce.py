"""Cross-entropy on logits: binary cross-entropy for K == 1, softmax cross-entropy for K >= 2.

Both are means over pixels. Registered as ``bce`` and, for the multi-class reading, ``ce``.

Shape letters: B batch, K logit channels, H height, W width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._inputs import check_logits_target, compute_dtype
from .registry import register_loss


@register_loss("bce", "ce")
class BCELoss(nn.Module):
    """BCE with logits (K == 1) or cross-entropy (K >= 2), mean over pixels.

    Args:
        num_classes: if given, the K that ``logits`` must have.

    forward(logits (B, K, H, W) raw scores, target (B, H, W) int64 labels) -> scalar loss.
    """

    def __init__(self, num_classes: int | None = None) -> None:
        super().__init__()
        self.num_classes = num_classes

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        k = check_logits_target(logits, target, self.num_classes)
        x = compute_dtype(logits)
        if k == 1:
            return F.binary_cross_entropy_with_logits(x[:, 0], target.to(x.dtype))  # (B, H, W) pair
        return F.cross_entropy(x, target.long())

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}"
