"""Segmentation losses on raw logits (B, K, H, W) and int64 label maps (B, H, W).

K == 1 is binary (sigmoid of channel 0), K >= 2 is softmax over K classes. Every loss registers
itself (``registry.py``: ``register_loss``, ``build_loss(name, num_classes, **kwargs)``,
``list_losses()``); ``build_criterion`` (``criterion.py``) wraps one into the training criterion that
scores a model's whole output (main logits, auxiliary logits, the model's own terms).
"""

from __future__ import annotations

from .registry import build_loss, canonical_loss_name, list_losses, loss_options, register_loss

# Importing the loss modules registers them.
from .bce import BCELoss  # noqa: E402  isort: skip
from .bce_dice import BCEDiceLoss  # noqa: E402  isort: skip
from .dice import DiceLoss  # noqa: E402  isort: skip
from .focal import FocalLoss  # noqa: E402  isort: skip
from .frequency import FrequencyLoss  # noqa: E402  isort: skip
from .boundary import BoundaryAwareLoss  # noqa: E402  isort: skip
from .spectral_dual import SpectralDualLoss  # noqa: E402  isort: skip
from .criterion import LossResult, SegCriterion, build_criterion, criterion_options  # noqa: E402  isort: skip

#: Registered loss names (aliases included), for help texts.
LOSS_NAMES: tuple[str, ...] = tuple(list_losses())

__all__ = [
    "LOSS_NAMES",
    "BCEDiceLoss",
    "BCELoss",
    "BoundaryAwareLoss",
    "DiceLoss",
    "FocalLoss",
    "FrequencyLoss",
    "LossResult",
    "SegCriterion",
    "SpectralDualLoss",
    "build_criterion",
    "build_loss",
    "canonical_loss_name",
    "criterion_options",
    "list_losses",
    "loss_options",
    "register_loss",
]
