"""Segmentation losses on raw logits (B, K, H, W) and int64 label maps (B, H, W).

K == 1 is binary (sigmoid of channel 0), K >= 2 is softmax over K classes. ``build_loss(name,
num_classes, **kwargs)`` builds any of them by name (:data:`LOSS_NAMES`).
"""

from __future__ import annotations

from .bce import BCEDiceLoss, BCELoss
from .dice import DiceLoss
from .factory import LOSS_NAMES, build_loss
from .focal import FocalLoss

__all__ = ["LOSS_NAMES", "BCEDiceLoss", "BCELoss", "DiceLoss", "FocalLoss", "build_loss"]
