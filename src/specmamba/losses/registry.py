"""Loss registry: the one place where configs and the CLI turn ``loss: bce_dice`` into a module.

Like the model registry, one file per loss registers its class with :func:`register_loss` (a name
plus optional aliases). Every registered loss takes ``num_classes`` plus its own keyword options
(``loss_kwargs`` in a config, ``--loss-kwarg KEY=VALUE`` on the command line). A *pixel loss* maps
(logits (B, K, H, W), target (B, H, W) int64) to a scalar, or to a dict of named weighted terms; a
*structured loss* sets the class attribute ``takes_seg_output = True`` and scores a whole
:class:`~specmamba.output.SegOutput` (deep supervision), returning a dict of named scalar terms.
The trainer never calls a registered loss directly: :func:`specmamba.losses.criterion.build_criterion`
wraps it (see there for the rule that turns any loss into the training criterion).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from ..errors import ConfigError

__all__ = ["build_loss", "canonical_loss_name", "list_losses", "loss_options", "register_loss"]

_LOSSES: dict[str, type[nn.Module]] = {}
_ALIASES: dict[str, str] = {}

L = TypeVar("L", bound=type[nn.Module])


def register_loss(name: str, *aliases: str) -> Callable[[L], L]:
    """Class decorator: register the loss class under ``name`` (and ``aliases``)."""

    def decorate(cls: L) -> L:
        for key in (name, *aliases):
            if key in _LOSSES or key in _ALIASES:
                raise ValueError(f"loss {key!r} is registered twice ({cls.__module__})")
        _LOSSES[name] = cls
        _ALIASES.update({alias: name for alias in aliases})
        return cls

    return decorate


def list_losses() -> list[str]:
    """Sorted registered loss names, aliases included."""
    return sorted([*_LOSSES, *_ALIASES])


def canonical_loss_name(name: str) -> str:
    """The registered name ``name`` means (case and '-' vs '_' do not matter; aliases resolved).

    An unknown name raises ConfigError listing the valid names and the closest ones.
    """
    key = str(name).strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in _LOSSES:
        close = difflib.get_close_matches(key, list_losses(), n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown loss {name!r};{hint} valid names are: {', '.join(list_losses())}.")
    return key


def loss_options(name: str) -> list[str]:
    """Keyword options of the loss ``name`` (besides ``num_classes``), in signature order."""
    cls = _LOSSES[canonical_loss_name(name)]
    return [p for p in inspect.signature(cls).parameters if p != "num_classes"]


def build_loss(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """The registered loss ``name`` built for ``num_classes`` logit channels with its ``kwargs``.

    ``num_classes`` is the model's number of logit channels K (1 = binary with sigmoid, >= 2 =
    softmax); the loss checks that logits have it. ``kwargs`` are the loss's own options, e.g.
    ``build_loss("bce_dice", 1, dice_weight=0.5)``; an unknown one raises ConfigError listing them.
    """
    key = canonical_loss_name(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(
            f"`num_classes` for loss {key!r} is {num_classes!r}; it must be an integer >= 1 "
            "(1 = binary with sigmoid, >= 2 = softmax over classes)."
        )
    accepted = loss_options(key)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ConfigError(
            f"loss {key!r} got unknown option(s) {', '.join(unknown)}; it accepts: "
            f"{', '.join(accepted) or 'no options'}."
        )
    return _LOSSES[key](num_classes=num_classes, **kwargs)
