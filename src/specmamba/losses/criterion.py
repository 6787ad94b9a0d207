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
  keeps thin structures that a downsampled label map would lose); a model that asks for an
  auxiliary weighting (``aux_weighting`` ``fixed`` or ``kan``, see ``aux_weighting.py``) gets its
  normalised, possibly learned, weights instead, logged through :meth:`SegCriterion.diagnostics`;
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
from .aux_weighting import build_aux_weighting
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

    def __init__(
        self, loss: nn.Module, aux_weight: float = DEFAULT_AUX_WEIGHT, aux_weighting: nn.Module | None = None
    ) -> None:
        super().__init__()
        if not (isinstance(aux_weight, int | float) and math.isfinite(aux_weight) and aux_weight >= 0):
            raise ConfigError(f"loss option aux_weight is {aux_weight!r}; it must be a finite number >= 0.")
        self.loss = loss
        self.aux_weight = float(aux_weight)
        self.aux_weighting = aux_weighting
        self.structured = bool(getattr(loss, "takes_seg_output", False))
        self.last_aux_weights: Tensor | None = None  # the weights of the last call, for the logs

    def forward(self, output: Tensor | SegOutput, target: Tensor) -> LossResult:
        out = as_seg_output(output)
        if self.structured:
            terms = dict(self.loss(out, target))
        else:
            main = self.loss(out.logits, target)
            terms = dict(main) if isinstance(main, Mapping) else {"main": main}
            terms.update(self._aux_terms(out.aux, target, _total(main)))
        for name, term in out.terms.items():
            if name in terms:
                raise ConfigError(
                    f"the model's loss term {name!r} has the name of a term of the criterion "
                    f"({', '.join(terms)}); rename it in the model's SegOutput.terms."
                )
            terms[name] = term.reshape(())
        total = torch.stack([t.float() for t in terms.values()]).sum()
        return LossResult(total, terms)

    def _aux_terms(self, aux_outputs: list[Tensor], target: Tensor, main: Tensor) -> dict[str, Tensor]:
        """The weighted terms of the auxiliary outputs: ``aux_weight`` each, or the weighting's."""
        size = tuple(target.shape[-2:])
        losses, scales = [], []
        for aux in aux_outputs:
            scales.append(size[0] / aux.shape[-2])
            if tuple(aux.shape[-2:]) != size:
                aux = F.interpolate(aux.float(), size=size, mode="bilinear", align_corners=False)
            losses.append(_total(self.loss(aux, target)))
        if not losses:
            return {}
        if self.aux_weighting is None:
            return {f"aux{i}": self.aux_weight * value for i, value in enumerate(losses)}
        stacked = torch.stack([v.float() for v in losses])  # (n,)
        weights, extra = self.aux_weighting(
            stacked, main.float(), torch.tensor(scales, device=stacked.device)
        )
        self.last_aux_weights = weights.detach()
        return {**{f"aux{i}": weights[i] * value for i, value in enumerate(losses)}, **extra}

    def diagnostics(self) -> dict[str, float]:
        """Values worth logging that are not loss terms: the auxiliary weights of the last call."""
        if self.last_aux_weights is None:
            return {}
        return {f"aux_weight{i}": float(w) for i, w in enumerate(self.last_aux_weights)}

    def extra_repr(self) -> str:
        if self.structured:
            return "structured"
        return f"aux_weight={self.aux_weight}" if self.aux_weighting is None else "aux_weighting"


def _total(value: Tensor | Mapping[str, Tensor]) -> Tensor:
    """A loss's scalar: itself, or the sum of its named terms."""
    return torch.stack([v.float() for v in value.values()]).sum() if isinstance(value, Mapping) else value


#: ``loss_kwargs`` options of the auxiliary weighting (see ``aux_weighting.py``), without the prefix.
AUX_WEIGHTING_OPTIONS = {
    "aux_budget": "budget",
    "aux_temperature": "temperature",
    "aux_regularization": "regularization",
}


def criterion_options(name: str) -> list[str]:
    """Options ``loss_kwargs`` may hold for loss ``name``: the loss's own, then ``aux_weight`` and the
    auxiliary weighting's (used when the model asks for one)."""
    return [*loss_options(name), "aux_weight", *AUX_WEIGHTING_OPTIONS]


def build_criterion(
    name: str, num_classes: int, aux_weighting: str | None = None, **loss_kwargs: Any
) -> SegCriterion:
    """The training criterion of loss ``name`` with ``loss_kwargs`` (the loss's options, and for pixel
    losses ``aux_weight``). ``aux_weighting`` (``fixed`` | ``kan``, a model's deep-supervision
    setting) weighs the auxiliary outputs instead of ``aux_weight``, with the ``aux_budget``,
    ``aux_temperature`` and ``aux_regularization`` options. Unknown options raise ConfigError listing
    the valid ones."""
    key = canonical_loss_name(name)
    unknown = sorted(set(loss_kwargs) - set(criterion_options(key)))
    if unknown:
        raise ConfigError(
            f"loss {key!r} got unknown option(s) {', '.join(unknown)}; it accepts: "
            f"{', '.join(criterion_options(key))}."
        )
    kwargs = dict(loss_kwargs)
    aux_weight = kwargs.pop("aux_weight", None)
    weighting_options = {
        AUX_WEIGHTING_OPTIONS[k]: kwargs.pop(k) for k in list(kwargs) if k in AUX_WEIGHTING_OPTIONS
    }
    loss = build_loss(key, num_classes, **kwargs)
    structured = getattr(loss, "takes_seg_output", False)
    if (aux_weight is not None or aux_weighting is not None) and structured:
        raise ConfigError(
            f"loss {key!r} weights the auxiliary outputs itself; aux_weight and an aux weighting apply to "
            "pixel losses only."
        )
    if weighting_options and aux_weighting is None:
        raise ConfigError(
            f"{', '.join(sorted(weighting_options))} set the auxiliary weighting of deep supervision, but "
            "the model asks for none (e.g. vmaml_unet with deep_supervision kan or fixed)."
        )
    if aux_weight is not None and aux_weighting is not None:
        raise ConfigError(
            f"aux_weight is the fixed weight of every auxiliary output, but the model weighs them by "
            f"{aux_weighting!r}; leave aux_weight out."
        )
    weighting = build_aux_weighting(aux_weighting, **weighting_options) if aux_weighting else None
    return SegCriterion(loss, DEFAULT_AUX_WEIGHT if aux_weight is None else aux_weight, weighting)
