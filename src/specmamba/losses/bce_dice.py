"""The VM-UNet recipe loss: bce_weight * BCE + dice_weight * Dice.

The ``BceDiceLoss`` of VM-UNet (Ruan & Xiang, "VM-UNet: Vision Mamba UNet for Medical Image
Segmentation", 2024; weights 1 and 1, Dice per image with smooth 1) for binary lesion segmentation,
and its CE + Dice counterpart for K >= 2.

Shape letters: B batch, K logit channels, H height, W width.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError
from .bce import BCELoss
from .dice import DiceLoss
from .registry import register_loss


@register_loss("bce_dice")
class BCEDiceLoss(nn.Module):
    """bce_weight * BCELoss + dice_weight * DiceLoss (VM-UNet's training loss).

    Args:
        bce_weight, dice_weight: non-negative weights of the two terms.
        smooth, per_image, include_background: passed to :class:`DiceLoss`.
        num_classes: if given, the K that ``logits`` must have.

    forward(logits (B, K, H, W) raw scores, target (B, H, W) int64 labels) -> scalar loss.
    """

    def __init__(
        self,
        bce_weight: float = 1.0,
        dice_weight: float = 1.0,
        smooth: float = 1.0,
        per_image: bool = True,
        include_background: bool = False,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("bce_weight", bce_weight), ("dice_weight", dice_weight)):
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"BCEDiceLoss `{name}` is {value!r}; it must be a finite number >= 0.")
        self.bce_weight = float(bce_weight)
        self.dice_weight = float(dice_weight)
        self.num_classes = num_classes
        self.bce = BCELoss(num_classes=num_classes)
        self.dice = DiceLoss(
            smooth=smooth, per_image=per_image, include_background=include_background, num_classes=num_classes
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.bce_weight * self.bce(logits, target) + self.dice_weight * self.dice(logits, target)

    def extra_repr(self) -> str:
        return f"bce_weight={self.bce_weight}, dice_weight={self.dice_weight}"
