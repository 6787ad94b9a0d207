"""What a model returns in train mode: the main logits, auxiliary logits and extra loss terms.

A neutral module (like ``errors``): models produce it, losses consume it, neither imports the other;
it is exported as ``specmamba.models.SegOutput``.

The training contract (DESIGN.md, "Public interface"):

* in eval mode ``forward(x)`` returns logits (B, K, H, W) and nothing else, so evaluation,
  prediction, the audit and the benchmarks never need a model's internals;
* in train mode a model may return a :class:`SegOutput` instead: ``logits`` (B, K, H, W) at the
  input resolution, ``aux`` a list of auxiliary logits (B, K, h_i, w_i) at any resolution (deep
  supervision heads, an auxiliary head), ``terms`` a dict of extra scalar loss terms (a regulariser,
  already weighted by the model). The trainer hands the whole output to the criterion
  (``specmamba.losses.criterion``), which scores it and logs every term.

Shape letters: B batch, K logit channels, H/W input size, h_i/w_i size of auxiliary output i.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from .errors import ConfigError

__all__ = ["SegOutput", "as_seg_output"]


@dataclass
class SegOutput:
    """A model's training output. ``logits`` (B, K, H, W); ``aux`` list of (B, K, h, w); ``terms``
    name -> scalar tensor (added to the loss as they are)."""

    logits: Tensor
    aux: list[Tensor] = field(default_factory=list)
    terms: dict[str, Tensor] = field(default_factory=dict)


def as_seg_output(output: Tensor | SegOutput, where: str = "the model") -> SegOutput:
    """``output`` as a :class:`SegOutput` (a bare logits tensor becomes one without aux or terms).

    Raises ConfigError naming ``where`` for anything else, or for a term that is not a scalar.
    """
    if isinstance(output, Tensor):
        return SegOutput(output)
    if not isinstance(output, SegOutput):
        raise ConfigError(
            f"{where} returned a {type(output).__name__}; a model returns logits (B, K, H, W) or, in train "
            "mode, a specmamba.models.SegOutput(logits, aux=[...], terms={...})."
        )
    for name, term in output.terms.items():
        if not isinstance(term, Tensor) or term.numel() != 1:
            raise ConfigError(
                f"{where} returned the loss term {name!r} as {type(term).__name__} of shape "
                f"{tuple(getattr(term, 'shape', ()))}; SegOutput.terms holds scalar tensors."
            )
    return output
