"""Build a loss by name: the one place where configs and the CLI turn ``loss: bce_dice`` into a module.

The factory is a plain dict of builders; every builder takes ``num_classes`` plus its own keyword
arguments, and every built loss maps (logits (B, K, H, W), target (B, H, W) int64) to a scalar.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from ..errors import ConfigError
from .bce import BCEDiceLoss, BCELoss
from .dice import DiceLoss
from .focal import FocalLoss

_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "bce": BCELoss,
    "ce": BCELoss,  # alias: BCELoss is cross-entropy for num_classes >= 2
    "dice": DiceLoss,
    "bce_dice": BCEDiceLoss,
    "focal": FocalLoss,
}

#: Valid names for :func:`build_loss`.
LOSS_NAMES: tuple[str, ...] = tuple(sorted(_BUILDERS))


def build_loss(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """Return the loss ``name`` (one of :data:`LOSS_NAMES`; case and '-' vs '_' do not matter).

    ``num_classes`` is the model's number of logit channels K (1 = binary with sigmoid, >= 2 =
    softmax); the loss checks that logits have it. ``kwargs`` are the loss's own options, e.g.
    ``build_loss("bce_dice", 1, dice_weight=0.5)``.
    """
    key = str(name).strip().lower().replace("-", "_")
    if key not in _BUILDERS:
        raise ConfigError(f"unknown loss {name!r}; valid names are: {', '.join(LOSS_NAMES)}.")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(
            f"`num_classes` for loss {key!r} is {num_classes!r}; it must be an integer >= 1 "
            "(1 = binary with sigmoid, >= 2 = softmax over classes)."
        )
    builder = _BUILDERS[key]
    accepted = [p for p in inspect.signature(builder).parameters if p != "num_classes"]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ConfigError(
            f"loss {key!r} got unknown option(s) {', '.join(unknown)}; it accepts: "
            f"{', '.join(accepted) or 'no options'}."
        )
    return builder(num_classes=num_classes, **kwargs)
