"""The training criterion: a registered loss applied to a model's whole output.

The trainer hands every model output, a logits tensor or a :class:`~specmamba.output.SegOutput`, to
one :class:`SegCriterion`, which returns the total to back-propagate and its named terms (the trainer
logs each term as a ``train_loss_<name>`` column of ``metrics.csv``). The rule:

* a *pixel loss* (bce, dice, bce_dice, focal, ...) scores the main logits as term ``main`` (a pixel
  loss made of several weighted terms, such as spectral_dual, may return them as a dict instead: they
  become the terms, and its aux scores are their sums); each
  auxiliary output i is upsampled bilinearly to the target's size and scored by the same loss, as
  term ``aux<i>`` with weight ``aux_weight`` (0.4 by default, the weight of Vim's auxiliary head,
  REFERENCE.md section 5; resizing the logits rather than the labels is mmsegmentation's rule, and
  keeps thin structures that a downsampled label map would lose);
* a *structured loss* (class attribute ``takes_seg_output = True``: deep supervision with its own,
  possibly learnable, weights) receives the SegOutput and returns its terms itself;
* the model's own ``terms`` (a regulariser it already weighted) are added under their names.

The terms always sum to the total. A criterion may have parameters and buffers (learnable loss
weights): the trainer moves it to the device, optimises its parameters with the model's (in their
own parameter group, without weight decay: a loss weight is not model capacity), averages their
gradients over DDP ranks, and saves and restores its state in every checkpoint like the model's.

Shape letters: B batch, K logit channels, H/W target size, h/w size of an auxiliary output.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..output import SegOutput, as_seg_output
from .registry import build_loss, canonical_loss_name, loss_options

__all__ = ["DEFAULT_AUX_WEIGHT", "LossResult", "SegCriterion", "build_criterion", "criterion_options"]

#: Weight of each auxiliary output under a pixel loss (Vim's auxiliary-head weight).
DEFAULT_AUX_WEIGHT = 0.4


class LossResult(NamedTuple):
    """The scalar to back-propagate and its named terms (which sum to it)."""

    total: Tensor
    terms: dict[str, Tensor]


class SegCriterion(nn.Module):
    """A registered loss (``self.loss``) applied to logits or a SegOutput by the module docstring's rule.

    forward(output: logits (B, K, H, W) or SegOutput, target (B, H, W) int64) -> :class:`LossResult`.
    """

    def __init__(self, loss: nn.Module, aux_weight: float = DEFAULT_AUX_WEIGHT) -> None:
        super().__init__()
        if not (isinstance(aux_weight, int | float) and math.isfinite(aux_weight) and aux_weight >= 0):
            raise ConfigError(f"loss option aux_weight is {aux_weight!r}; it must be a finite number >= 0.")
        self.loss = loss
        self.aux_weight = float(aux_weight)
        self.structured = bool(getattr(loss, "takes_seg_output", False))

    def forward(self, output: Tensor | SegOutput, target: Tensor) -> LossResult:
        out = as_seg_output(output)
        if self.structured:
            terms = dict(self.loss(out, target))
        else:
            main = self.loss(out.logits, target)
            terms = dict(main) if isinstance(main, Mapping) else {"main": main}
            size = tuple(target.shape[-2:])
            for i, aux in enumerate(out.aux):
                if tuple(aux.shape[-2:]) != size:
                    aux = F.interpolate(aux.float(), size=size, mode="bilinear", align_corners=False)
                value = self.loss(aux, target)
                value = torch.stack(list(value.values())).sum() if isinstance(value, Mapping) else value
                terms[f"aux{i}"] = self.aux_weight * value
        for name, term in out.terms.items():
            if name in terms:
                raise ConfigError(
                    f"the model's loss term {name!r} has the name of a term of the criterion "
                    f"({', '.join(terms)}); rename it in the model's SegOutput.terms."
                )
            terms[name] = term.reshape(())
        total = torch.stack([t.float() for t in terms.values()]).sum()
        return LossResult(total, terms)

    def extra_repr(self) -> str:
        return f"aux_weight={self.aux_weight}" if not self.structured else "structured"


def criterion_options(name: str) -> list[str]:
    """Options ``loss_kwargs`` may hold for loss ``name``: the loss's own, then ``aux_weight``."""
    return [*loss_options(name), "aux_weight"]


def build_criterion(name: str, num_classes: int, **loss_kwargs: Any) -> SegCriterion:
    """The training criterion of loss ``name`` with ``loss_kwargs`` (the loss's options, and for pixel
    losses ``aux_weight``). Unknown options raise ConfigError listing the valid ones."""
    key = canonical_loss_name(name)
    unknown = sorted(set(loss_kwargs) - set(criterion_options(key)))
    if unknown:
        raise ConfigError(
            f"loss {key!r} got unknown option(s) {', '.join(unknown)}; it accepts: "
            f"{', '.join(criterion_options(key))}."
        )
    kwargs = dict(loss_kwargs)
    aux_weight = kwargs.pop("aux_weight", None)
    loss = build_loss(key, num_classes, **kwargs)
    if aux_weight is not None and getattr(loss, "takes_seg_output", False):
        raise ConfigError(
            f"loss {key!r} weights the auxiliary outputs itself; aux_weight applies to pixel losses only."
        )
    return SegCriterion(loss, DEFAULT_AUX_WEIGHT if aux_weight is None else aux_weight)
