"""Focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017).

FL = -alpha_t (1 - p_t)^gamma log(p_t), averaged over all pixels, where p_t is the probability
given to the true class: sigmoid of the logit (K == 1; p_t = sigmoid(x) for label 1 and
sigmoid(-x) for label 0) or softmax over K classes (K >= 2). log(p_t) comes from log-sigmoid /
log-softmax and 1 - p_t from -expm1(log p_t), so neither saturates for confident logits.

alpha: None (no class weighting); a number a in [0, 1], weighting the foreground by a and the
background (label 0) by 1 - a (for K >= 2 every label >= 1 is foreground: this makes K == 2 with
logits (0, x) equal K == 1 with logit x); or a sequence of max(K, 2) per-class weights. With
gamma = 0 and alpha None the loss equals binary cross-entropy (K == 1) / cross-entropy (K >= 2).

Shape letters: B batch, K logit channels, H height, W width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ._inputs import check_logits_target, compute_dtype
from .registry import register_loss


@register_loss("focal")
class FocalLoss(nn.Module):
    """Sigmoid (K == 1) or softmax (K >= 2) focal loss, mean over pixels.

    Args:
        gamma: focusing exponent >= 0 (0 = cross-entropy).
        alpha: None, a foreground weight in [0, 1] (background gets 1 - alpha), or per-class weights.
        num_classes: if given, the K that ``logits`` must have.

    forward(logits (B, K, H, W) raw scores, target (B, H, W) int64 labels) -> scalar loss.
    """

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: float | Sequence[float] | None = 0.25,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        if not (isinstance(gamma, int | float) and math.isfinite(gamma) and gamma >= 0):
            raise ConfigError(f"FocalLoss `gamma` is {gamma!r}; it must be a finite number >= 0 (usually 2).")
        self.gamma = float(gamma)
        self.num_classes = num_classes
        self.alpha: float | tuple[float, ...] | None
        if alpha is None:
            self.alpha = None
        elif isinstance(alpha, int | float):
            if not 0 <= alpha <= 1:
                raise ConfigError(f"FocalLoss `alpha` is {alpha!r}; a single alpha must lie in [0, 1].")
            self.alpha = float(alpha)
        else:
            weights = tuple(float(a) for a in alpha)
            expected = max(num_classes, 2) if num_classes is not None else None
            if (
                not weights
                or any(not (math.isfinite(a) and a >= 0) for a in weights)
                or (expected is not None and len(weights) != expected)
            ):
                raise ConfigError(
                    f"FocalLoss `alpha` is {alpha!r}; per-class weights must be finite numbers >= 0, one "
                    f"per class ({expected if expected is not None else 'max(K, 2)'} values)."
                )
            self.alpha = weights

    def _alpha_t(self, target: torch.Tensor, k: int, like: torch.Tensor) -> torch.Tensor:
        """Weight of each pixel's true class, (B, H, W)."""
        if isinstance(self.alpha, float):
            return torch.where(target > 0, self.alpha, 1 - self.alpha).to(like.dtype)
        weights = torch.tensor(self.alpha, dtype=like.dtype, device=like.device)  # (max(K, 2),)
        if weights.numel() != max(k, 2):
            raise ConfigError(
                f"FocalLoss has {weights.numel()} per-class alpha weights but the logits have K={k} "
                f"channels; give {max(k, 2)} weights."
            )
        return weights[target]

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        k = check_logits_target(logits, target, self.num_classes)
        x = compute_dtype(logits)
        target = target.long()
        if k == 1:
            z = x[:, 0]  # (B, H, W)
            log_pt = torch.where(target == 1, F.logsigmoid(z), F.logsigmoid(-z))  # (B, H, W)
        else:
            log_pt = F.log_softmax(x, dim=1).gather(1, target[:, None])[:, 0]  # (B, 1, H, W) -> (B, H, W)
        loss = -log_pt
        if self.gamma != 0:
            # 1 - p_t without cancellation; clamped away from 0 so gamma < 1 keeps a finite gradient.
            one_minus_pt = (-torch.expm1(log_pt)).clamp_min(torch.finfo(log_pt.dtype).tiny)
            loss = loss * one_minus_pt.pow(self.gamma)
        if self.alpha is not None:
            loss = loss * self._alpha_t(target, k, loss)
        return loss.mean()

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, alpha={self.alpha}, num_classes={self.num_classes}"
