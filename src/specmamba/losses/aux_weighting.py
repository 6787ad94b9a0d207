"""Weights of a model's auxiliary (deep-supervision) outputs: a fixed schedule, or learned by a KAN.

Used by :class:`~specmamba.losses.criterion.SegCriterion` when the model asks for it
(``aux_weighting = "fixed"`` or ``"kan"``, VMAML-UNet's ``deep_supervision`` option). Each auxiliary
output i comes with its loss L_i (the criterion's pixel loss on the output upsampled to the target) and
its scale s_i (target side / output side). The weights are normalised: they sum to ``budget`` (1).

* ``fixed``: nnU-Net's halving by resolution, w_i proportional to 1 / s_i (scales 4, 8, 16 give
  4/7, 2/7, 1/7), the static schedule deep supervision usually uses.
* ``kan``: VMAML-UNet's "KAN-regulated" weights. The paper publishes no equations (REFERENCE.md
  section 6); specmamba's design: a KANLinear(2 -> 1), shared by the heads, scores each head from
  (log(L_i / L_main), log2(s_i) / 4), the loss ratios detached; w = budget * softmax(scores). Why
  these inputs: how far a head lags the main output, and how coarse it is, are what a schedule should
  weigh, and a KAN can learn any smooth function of them. The KAN is trained with the model, by the
  total loss, plus two terms: ``temperature`` times the weights' negative entropy, without which
  minimising sum w_i L_i over normalised weights puts all the weight on the head of lowest loss (with
  it the optimum is w_i proportional to exp(-budget L_i / temperature): heads that already fit, often
  the fine ones, weigh more, as in nnU-Net's halving, but adapted as training goes), and
  ``regularization`` times efficient-KAN's regulariser of the KAN.

Shape letters: n auxiliary outputs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..kan import KANLinear

__all__ = ["AUX_WEIGHTINGS", "FixedAuxWeights", "KANAuxWeights", "build_aux_weighting"]

AUX_WEIGHTINGS = ("fixed", "kan")


class FixedAuxWeights(nn.Module):
    """nnU-Net's halving: w_i proportional to 1 / s_i, summing to ``budget``."""

    def __init__(self, budget: float = 1.0) -> None:
        super().__init__()
        self.budget = float(budget)

    def forward(
        self, aux_losses: Tensor, main_loss: Tensor, scales: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        inverse = 1.0 / scales  # (n,)
        return self.budget * inverse / inverse.sum(), {}


class KANAuxWeights(nn.Module):
    """KAN-scored, softmax-normalised weights (see the module docstring); ``self.kan`` is learned."""

    def __init__(
        self, budget: float = 1.0, temperature: float = 0.1, regularization: float = 1e-3, grid_size: int = 5
    ) -> None:
        super().__init__()
        self.budget, self.temperature, self.regularization = (
            float(budget),
            float(temperature),
            float(regularization),
        )
        self.kan = KANLinear(2, 1, grid_size=grid_size)

    def forward(
        self, aux_losses: Tensor, main_loss: Tensor, scales: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        tiny = torch.finfo(aux_losses.dtype).tiny
        lag = torch.log(aux_losses.detach().clamp_min(tiny) / main_loss.detach().clamp_min(tiny))  # (n,)
        features = torch.stack([lag, torch.log2(scales) / 4], dim=1)  # (n, 2)
        share = torch.softmax(self.kan(features)[:, 0], dim=0)  # (n,), sums to 1
        terms = {}
        if self.temperature:
            terms["aux_entropy"] = self.temperature * (share * share.clamp_min(tiny).log()).sum()
        if self.regularization:
            terms["aux_kan_regularization"] = self.regularization * self.kan.regularization_loss()
        return self.budget * share, terms


def build_aux_weighting(name: str, **options: float) -> nn.Module:
    """The weighting ``name`` (``fixed`` | ``kan``) with its options (``budget``; for kan also
    ``temperature`` and ``regularization``)."""
    if name not in AUX_WEIGHTINGS:
        raise ConfigError(f"aux weighting {name!r}: choose one of {', '.join(AUX_WEIGHTINGS)}.")
    for key, value in options.items():
        if not (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and value >= 0
        ):
            raise ConfigError(f"aux weighting option {key} is {value!r}; it must be a finite number >= 0.")
    if options.get("budget", 1.0) <= 0:
        raise ConfigError("aux weighting option budget must be > 0 (the sum of the auxiliary weights).")
    if name == "fixed":
        unknown = set(options) - {"budget"}
        if unknown:
            raise ConfigError(f"the fixed aux weighting takes budget only; got {', '.join(sorted(unknown))}.")
        return FixedAuxWeights(**options)
    return KANAuxWeights(**options)
