"""Spec-VMamba's training loss: a spatial term (Dice + focal), a frequency term and a boundary term.

    loss = dice_weight * Dice + focal_weight * focal + frequency_weight * frequency
           + boundary_weight * boundary,

the seed's SpectralDualLoss (REFERENCE.md section 4) with weights 1, 1, 0.1 and the boundary term off
(0; the seed's value when on is 0.05), on the corrected components of this package:
:class:`~specmamba.losses.dice.DiceLoss` (background excluded by default; the seed included it),
:class:`~specmamba.losses.focal.FocalLoss` (gamma 2; ``focal_alpha`` None is what the seed computed,
since it stored alpha and never applied it), :class:`~specmamba.losses.frequency.FrequencyLoss` on
probabilities and :class:`~specmamba.losses.boundary.BoundaryAwareLoss` on a real boundary band.
It returns its weighted terms by name, so each gets its own ``train_loss_<name>`` column.

Shape letters: B batch, K logit channels, H/W map size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from ..errors import ConfigError
from .boundary import BoundaryAwareLoss
from .dice import DiceLoss
from .focal import FocalLoss
from .frequency import FrequencyLoss
from .registry import register_loss

__all__ = ["SpectralDualLoss"]


@register_loss("spectral_dual")
class SpectralDualLoss(nn.Module):
    """Weighted Dice + focal + frequency (+ boundary) loss; returns its weighted terms by name.

    Args:
        dice_weight, focal_weight, frequency_weight, boundary_weight: term weights >= 0 (a term of
            weight 0 is not computed).
        include_background: Dice also scores the background class.
        focal_gamma, focal_alpha: the focal term's gamma and alpha (see FocalLoss).
        band_weights: the frequency term's band weights (see FrequencyLoss).
        band_width, band_weight: the boundary term's band (see BoundaryAwareLoss).
        num_classes: if given, the K that ``logits`` must have.

    forward(logits (B, K, H, W) raw scores, target (B, H, W) int64 labels) -> {term name: scalar}.
    """

    def __init__(
        self,
        dice_weight: float = 1.0,
        focal_weight: float = 1.0,
        frequency_weight: float = 0.1,
        boundary_weight: float = 0.0,
        include_background: bool = False,
        focal_gamma: float = 2.0,
        focal_alpha: float | Sequence[float] | None = None,
        band_weights: Sequence[float] | None = None,
        band_width: int = 2,
        band_weight: float = 1.0,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        weights = {
            "dice": dice_weight,
            "focal": focal_weight,
            "frequency": frequency_weight,
            "boundary": boundary_weight,
        }
        for name, value in weights.items():
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"SpectralDualLoss {name}_weight is {value!r}; it must be a number >= 0.")
        if not any(weights.values()):
            raise ConfigError("SpectralDualLoss: every term weight is 0; give at least one a weight > 0.")
        self.weights = {name: float(value) for name, value in weights.items() if value > 0}
        self.terms = nn.ModuleDict(
            {
                "dice": DiceLoss(include_background=include_background, num_classes=num_classes),
                "focal": FocalLoss(gamma=focal_gamma, alpha=focal_alpha, num_classes=num_classes),
                "frequency": FrequencyLoss(band_weights=band_weights, num_classes=num_classes),
                "boundary": BoundaryAwareLoss(band_width, band_weight, num_classes=num_classes),
            }
        )

    def forward(self, logits: Tensor, target: Tensor) -> dict[str, Tensor]:
        return {name: weight * self.terms[name](logits, target) for name, weight in self.weights.items()}

    def extra_repr(self) -> str:
        return ", ".join(f"{name}_weight={weight}" for name, weight in self.weights.items())
