"""Soft Dice loss on predicted probabilities (Milletari et al., "V-Net", 3DV 2016).

loss = 1 - mean over (images, classes) of (2 sum(p t) + smooth) / (sum(p) + sum(t) + smooth),
with p the sigmoid (K == 1) or softmax (K >= 2) probabilities and t the one-hot target. With
``per_image=True`` (default) the sums run over each image's pixels and the Dice values are
averaged over images, as in VM-UNet's ``DiceLoss`` (smooth = 1); ``per_image=False`` pools the
sums over the whole batch.

Background is excluded by default (``include_background=False``): only the foreground channel of
the binary case, classes 1..K-1 of the multi-class case. The binary case is written as the two
classes [1 - sigmoid, sigmoid], so K == 1 with logit x gives exactly the loss of K == 2 with
logits (0, x), with or without background.

Shape letters: B batch, K logit channels, C classes scored, H height, W width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ._inputs import check_logits_target, class_probabilities
from .registry import register_loss


@register_loss("dice")
class DiceLoss(nn.Module):
    """Soft Dice loss.

    Args:
        smooth: added to numerator and denominator; keeps an empty target with an empty prediction
            at loss 0 and the gradient finite. Must be >= 0 (> 0 is advisable).
        per_image: Dice per image then mean (True), or one Dice over the pooled batch (False).
        include_background: also score the background class (label 0).
        num_classes: if given, the K that ``logits`` must have.

    forward(logits (B, K, H, W) raw scores, target (B, H, W) int64 labels) -> scalar loss.
    """

    def __init__(
        self,
        smooth: float = 1.0,
        per_image: bool = True,
        include_background: bool = False,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        if not (isinstance(smooth, int | float) and 0 <= smooth < float("inf")):
            raise ConfigError(f"DiceLoss `smooth` is {smooth!r}; it must be >= 0 (VM-UNet uses 1).")
        self.smooth = float(smooth)
        self.per_image = bool(per_image)
        self.include_background = bool(include_background)
        self.num_classes = num_classes

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_logits_target(logits, target, self.num_classes)
        probs = class_probabilities(logits)  # (B, K', H, W), K' = max(K, 2)
        onehot = F.one_hot(target.long(), probs.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)  # (B, K', H, W)
        if not self.include_background:
            probs, onehot = probs[:, 1:], onehot[:, 1:]  # (B, C, H, W)
        dims = (2, 3) if self.per_image else (0, 2, 3)
        inter = (probs * onehot).sum(dims)  # (B, C) or (C,)
        denom = probs.sum(dims) + onehot.sum(dims)  # (B, C) or (C,)
        score = (2 * inter + self.smooth) / (denom + self.smooth).clamp_min(torch.finfo(probs.dtype).tiny)
        return 1 - score.mean()

    def extra_repr(self) -> str:
        return (
            f"smooth={self.smooth}, per_image={self.per_image}, "
            f"include_background={self.include_background}, num_classes={self.num_classes}"
        )
