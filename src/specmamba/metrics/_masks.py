"""Input contract shared by the segmentation metrics: binary masks as numpy arrays or torch tensors.

Every metric takes a prediction and a target of the same shape, either one case (H, W) or a batch
(B, H, W), with values in {0, 1} (dtype bool, any integer dtype, or a float dtype holding exactly
0.0 / 1.0). Probabilities and logits are refused: the evaluator binarises first (threshold 0.5 or
argmax), so a metric never has to guess a threshold.

Shape letters: B batch (cases), H height, W width.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import ConfigError

MaskLike = Any  # np.ndarray | torch.Tensor (bool or 0/1); kept loose for array-likes such as lists


def _describe(x: Any) -> str:
    kind = "torch tensor" if isinstance(x, torch.Tensor) else "numpy array"
    return f"{kind} of shape {tuple(x.shape)} and dtype {x.dtype}"


def _to_bool(x: np.ndarray | torch.Tensor, name: str) -> np.ndarray | torch.Tensor:
    """Return ``x`` as a bool mask, refusing anything other than {0, 1} values."""
    if x.dtype in (torch.bool, np.bool_):
        return x
    if isinstance(x, torch.Tensor):
        if x.is_complex():
            raise ConfigError(f"`{name}` is a complex {_describe(x)}; pass a binary mask (bool or 0/1).")
        binary = bool(((x == 0) | (x == 1)).all())
    else:
        if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
            raise ConfigError(f"`{name}` is a {_describe(x)}; pass a binary mask (bool or 0/1 integers).")
        binary = bool(np.isin(x, (0, 1)).all())
    if not binary:
        raise ConfigError(
            f"`{name}` ({_describe(x)}) holds values other than 0 and 1. Metrics take binarised masks: "
            "threshold probabilities at 0.5 (or take the argmax of logits) before calling them, and "
            "for label maps with several classes use case_metrics_multiclass."
        )
    return x != 0


def as_binary_pair(
    pred: MaskLike, target: MaskLike
) -> tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor, bool]:
    """Validate a prediction/target pair and return them as bool masks plus ``batched``.

    If either input is a torch tensor both come back as tensors on that tensor's device (torch in,
    torch out); otherwise both are numpy arrays. ``batched`` is True for (B, H, W) input.
    """
    if isinstance(pred, torch.Tensor) or isinstance(target, torch.Tensor):
        device = pred.device if isinstance(pred, torch.Tensor) else target.device
        pred, target = torch.as_tensor(pred, device=device), torch.as_tensor(target, device=device)
    else:
        pred, target = np.asarray(pred), np.asarray(target)
    if pred.ndim not in (2, 3):
        raise ConfigError(
            f"`pred` is a {_describe(pred)}; metrics take one mask (H, W) or a batch (B, H, W)."
        )
    if tuple(pred.shape) != tuple(target.shape):
        raise ConfigError(
            f"`pred` has shape {tuple(pred.shape)} but `target` has shape {tuple(target.shape)}; "
            "both must be the same (H, W) or (B, H, W)."
        )
    return _to_bool(pred, "pred"), _to_bool(target, "target"), pred.ndim == 3


def as_numpy_batch(pred: MaskLike, target: MaskLike) -> tuple[np.ndarray, np.ndarray, bool]:
    """Like :func:`as_binary_pair` but always numpy bool arrays of shape (B, H, W) (for scipy)."""
    p, t, batched = as_binary_pair(pred, target)
    if isinstance(p, torch.Tensor):
        p, t = p.detach().cpu().numpy(), t.detach().cpu().numpy()
    if not batched:
        p, t = p[None], t[None]  # (H, W) -> (1, H, W)
    return p, t, batched
