"""Input contract shared by the segmentation losses: raw logits and an integer label map.

``logits`` (B, K, H, W) are the model's raw outputs (before sigmoid / softmax), any float dtype;
``target`` (B, H, W) is an integer label map (int64 preferred). K == 1 is the binary case (sigmoid
of channel 0, target in {0, 1}); K >= 2 is multi-class (softmax over K, target in [0, K)).

Shape letters: B batch, K logit channels (classes), H height, W width.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError


def check_logits_target(logits: torch.Tensor, target: torch.Tensor, num_classes: int | None = None) -> int:
    """Validate a logits/target pair and return K, the number of logit channels.

    ``num_classes`` (when the loss was built for a given K) must equal ``logits.shape[1]``. Label
    values are checked too (one device sync), except while torch.compile traces the loss.
    """
    if not isinstance(logits, torch.Tensor) or logits.ndim != 4 or not logits.is_floating_point():
        got = (
            f"shape {tuple(logits.shape)} dtype {logits.dtype}"
            if isinstance(logits, torch.Tensor)
            else logits
        )
        raise ConfigError(f"`logits` must be a float tensor (B, K, H, W) of raw scores; got {got}.")
    b, k, h, w = logits.shape
    if num_classes is not None and k != num_classes:
        raise ConfigError(
            f"`logits` has {k} channels but the loss was built for num_classes={num_classes}; the model's "
            "num_classes and the loss's must match (1 = binary with sigmoid, >= 2 = softmax)."
        )
    if not isinstance(target, torch.Tensor) or target.is_floating_point() or target.is_complex():
        got = f"dtype {target.dtype}" if isinstance(target, torch.Tensor) else type(target).__name__
        raise ConfigError(f"`target` must be an integer (int64) label map tensor (B, H, W); got {got}.")
    if tuple(target.shape) != (b, h, w):
        raise ConfigError(
            f"`target` has shape {tuple(target.shape)} but logits {tuple(logits.shape)} need a label map "
            f"of shape {(b, h, w)} (no channel dim; class indices, not one-hot)."
        )
    if not torch.compiler.is_compiling() and target.numel():
        high = max(k, 2)  # K == 1 is binary: labels 0 and 1
        lo, hi = int(target.min()), int(target.max())
        if lo < 0 or hi >= high:
            raise ConfigError(
                f"`target` holds labels in [{lo}, {hi}] but logits with K={k} channels allow only "
                f"0..{high - 1}."
            )
    return k


def compute_dtype(logits: torch.Tensor) -> torch.Tensor:
    """Logits in float32 at least: half-precision sums and exps lose too much for a loss."""
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


def class_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Per-class probabilities (B, max(K, 2), H, W): softmax for K >= 2, [1 - sigmoid, sigmoid] for K == 1.

    Writing the binary case as two classes lets Dice treat both cases with one code path, and makes
    K == 1 with logit x identical to K == 2 with logits (0, x).
    """
    x = compute_dtype(logits)
    if x.shape[1] == 1:
        fg = torch.sigmoid(x)  # (B, 1, H, W)
        return torch.cat([1 - fg, fg], dim=1)  # (B, 2, H, W)
    return torch.softmax(x, dim=1)  # (B, K, H, W)
