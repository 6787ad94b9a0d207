"""Frequency loss: the distance between predicted and target class maps in the 2-D Fourier domain.

    loss = mean over (images, scored classes, frequency bins) of w(f) |P(f) - T(f)|^2,

with P and T the centred 2-D FFT (``norm="ortho"``) of the class probability maps (sigmoid for K == 1,
softmax for K >= 2) and of the one-hot target, and w(f) the weight of the band of bin f (low, mid,
high at the Chebyshev edges ``band_edges``, as :mod:`specmamba.fourier` defines them; all 1 without
``band_weights``). The scored classes are the foreground ones: channel 1 of the binary case, classes
1..K-1 otherwise (the background map is one minus their sum, so it adds no information but DC).

Unlike the seed's loss (REFERENCE.md section 4, defect 4), it is computed on probabilities, so it is
differentiable, and class maps are compared as maps, never as label intensities. Note that with all
weights 1 the ortho FFT preserves energy (Parseval), so the loss equals the pixel-space mean squared
error of the probabilities (the Brier score); the frequency view adds something through
``band_weights`` (e.g. (0, 1, 2) to stress boundaries and fine structure).

Shape letters: B batch, K logit channels, C scored classes, H/W map size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..fourier import band_masks
from ._inputs import check_logits_target, class_probabilities
from .registry import register_loss

__all__ = ["FrequencyLoss"]


@register_loss("frequency")
class FrequencyLoss(nn.Module):
    """Mean (band-weighted) squared distance of the centred FFTs of probability and one-hot maps.

    Args:
        band_weights: None (every bin weighs 1) or three weights >= 0 for the low, mid and high bands.
        band_edges: the two Chebyshev frequency edges of the bands (0.25, 0.75: the audit's).
        num_classes: if given, the K that ``logits`` must have.

    forward(logits (B, K, H, W) raw scores, target (B, H, W) int64 labels) -> scalar loss.
    """

    def __init__(
        self,
        band_weights: Sequence[float] | None = None,
        band_edges: Sequence[float] = (0.25, 0.75),
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        edges = tuple(float(e) for e in band_edges)
        if len(edges) != 2 or not 0 < edges[0] < edges[1] < 1:
            raise ConfigError(f"FrequencyLoss band_edges {band_edges!r}: give two edges 0 < e0 < e1 < 1.")
        self.band_edges = edges
        self.band_weights: tuple[float, float, float] | None = None
        if band_weights is not None:
            weights = tuple(float(w) for w in band_weights)
            if (
                len(weights) != 3
                or any(not (math.isfinite(w) and w >= 0) for w in weights)
                or not any(weights)
            ):
                raise ConfigError(
                    f"FrequencyLoss band_weights {band_weights!r}: give three weights >= 0 (low, mid, high), "
                    "not all 0."
                )
            self.band_weights = weights
        self.num_classes = num_classes

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        check_logits_target(logits, target, self.num_classes)
        probs = class_probabilities(logits)  # (B, K', H, W), K' = max(K, 2)
        onehot = F.one_hot(target.long(), probs.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)  # (B, K', H, W)
        return self.spectral_distance(probs[:, 1:], onehot[:, 1:])  # foreground classes (B, C, H, W)

    def spectral_distance(self, probs: Tensor, maps: Tensor) -> Tensor:
        """The loss between two stacks of class maps (B, C, H, W) (0 exactly when they are equal)."""
        diff = torch.fft.fftshift(torch.fft.fft2(probs - maps, norm="ortho"), dim=(-2, -1))  # FFT is linear
        power = diff.real.square() + diff.imag.square()  # (B, C, H, W)
        if self.band_weights is None:
            return power.mean()
        h, w = power.shape[-2:]
        masks = band_masks(h, w, self.band_edges, device=power.device).to(power.dtype)  # (3, H, W)
        weight = torch.tensordot(
            torch.tensor(self.band_weights, dtype=power.dtype, device=power.device), masks, 1
        )
        return (power * weight).mean()  # weight (H, W) broadcast over (B, C)

    def extra_repr(self) -> str:
        return (
            f"band_weights={self.band_weights}, band_edges={self.band_edges}, num_classes={self.num_classes}"
        )
