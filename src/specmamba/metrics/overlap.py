"""Overlap metrics of binary segmentation: Dice, IoU, precision, recall, and pooled confusion counts.

Per-case functions reduce over the last two dims. A single mask (H, W) gives a Python float; a
batch (B, H, W) gives one value per case, as a numpy float64 array for numpy input or as a float32
tensor on the input's device for torch input (torch in, torch out: the trainer can score GPU
batches without a host copy).

Pooled metrics follow the official VM-UNet evaluation, which accumulates one confusion matrix over
every pixel of the evaluation set and reports "mIoU" as the foreground IoU of that pooled matrix
(and "DSC" as its foreground Dice): use :func:`confusion_counts` per batch, sum, then
:func:`pooled_dice_iou`.

Input contract (all functions): ``pred`` and ``target`` are binary masks, bool or 0/1 (ints or
floats holding 0/1), numpy or torch, same shape (H, W) or (B, H, W). Predictions are already
binarised.

Shape letters: B batch (cases), H height, W width.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ._masks import MaskLike, as_binary_pair

Scores = Any  # float for (H, W); np.ndarray (B,) or torch.Tensor (B,) for (B, H, W)


def _per_case_counts(pred: MaskLike, target: MaskLike) -> tuple[Any, Any, Any, bool]:
    """tp, fp, fn per case (reduced over H, W) and whether the input was batched."""
    p, t, batched = as_binary_pair(pred, target)
    if isinstance(p, torch.Tensor):
        dims = (-2, -1)
        tp = (p & t).sum(dim=dims).float()  # (B,) or ()
        fp = (p & ~t).sum(dim=dims).float()
        fn = (~p & t).sum(dim=dims).float()
        return tp, fp, fn, batched
    tp = (p & t).sum(axis=(-2, -1)).astype(np.float64)  # (B,) or ()
    fp = (p & ~t).sum(axis=(-2, -1)).astype(np.float64)
    fn = (~p & t).sum(axis=(-2, -1)).astype(np.float64)
    return tp, fp, fn, batched


def _ratio(num: Any, den: Any, fallback: Any) -> Any:
    """num / den where den > 0, else ``fallback`` (a number or an array/tensor like num)."""
    if isinstance(num, torch.Tensor):
        fallback = torch.as_tensor(fallback, dtype=num.dtype, device=num.device)
        return torch.where(den > 0, num / den.clamp_min(1.0), fallback)
    return np.where(den > 0, num / np.maximum(den, 1.0), fallback)


def _finish(value: Any, batched: bool) -> Scores:
    return value if batched else float(value)


def dice(pred: MaskLike, target: MaskLike) -> Scores:
    """Dice = 2 TP / (2 TP + FP + FN) per case.

    Empty rule: prediction and target both empty -> 1.0 (a correct "no lesion"); exactly one empty
    -> 0.0 (follows from the formula).
    """
    tp, fp, fn, batched = _per_case_counts(pred, target)
    return _finish(_ratio(2 * tp, 2 * tp + fp + fn, 1.0), batched)


def iou(pred: MaskLike, target: MaskLike) -> Scores:
    """IoU (Jaccard) = TP / (TP + FP + FN) per case.

    Empty rule: both empty -> 1.0; exactly one empty -> 0.0.
    """
    tp, fp, fn, batched = _per_case_counts(pred, target)
    return _finish(_ratio(tp, tp + fp + fn, 1.0), batched)


def precision(pred: MaskLike, target: MaskLike) -> Scores:
    """Precision = TP / (TP + FP) per case.

    Empty rule: with no predicted foreground (TP + FP == 0) precision is 1.0 if the target is empty
    too and 0.0 otherwise.
    """
    tp, fp, fn, batched = _per_case_counts(pred, target)
    target_empty = (tp + fn) == 0
    fallback = target_empty.float() if isinstance(tp, torch.Tensor) else target_empty.astype(np.float64)
    return _finish(_ratio(tp, tp + fp, fallback), batched)


def recall(pred: MaskLike, target: MaskLike) -> Scores:
    """Recall (sensitivity) = TP / (TP + FN) per case.

    Empty rule: with an empty target (TP + FN == 0) recall is 1.0 if the prediction is empty too
    and 0.0 otherwise.
    """
    tp, fp, fn, batched = _per_case_counts(pred, target)
    pred_empty = (tp + fp) == 0
    fallback = pred_empty.float() if isinstance(tp, torch.Tensor) else pred_empty.astype(np.float64)
    return _finish(_ratio(tp, tp + fn, fallback), batched)


def confusion_counts(pred: MaskLike, target: MaskLike) -> tuple[Any, Any, Any, Any]:
    """Pixel confusion counts ``(tp, fp, fn, tn)`` pooled over every pixel of the input.

    A batch (B, H, W) is pooled over all B cases. Numpy input gives Python ints; torch input gives
    0-d int64 tensors on the input's device (no host sync), so counts can be summed across batches
    and handed to :func:`pooled_dice_iou` at the end.
    """
    p, t, _ = as_binary_pair(pred, target)
    total = p.numel() if isinstance(p, torch.Tensor) else p.size
    tp = (p & t).sum()
    fp = (p & ~t).sum()
    fn = (~p & t).sum()
    tn = total - tp - fp - fn
    if isinstance(p, torch.Tensor):
        return tp, fp, fn, tn
    return int(tp), int(fp), int(fn), int(tn)


def pooled_dice_iou(tp: Any, fp: Any, fn: Any) -> tuple[Any, Any]:
    """Foreground Dice and IoU of pooled counts (numbers or tensors, e.g. from :func:`confusion_counts`).

    Returns ``(dice, iou)`` as floats for numeric input, as float tensors for tensor input. Empty
    rule: no foreground anywhere (TP + FP + FN == 0) -> (1.0, 1.0).
    """
    if any(isinstance(v, torch.Tensor) for v in (tp, fp, fn)):
        ref = next(v for v in (tp, fp, fn) if isinstance(v, torch.Tensor))
        dtype = torch.float32 if ref.device.type == "mps" else torch.float64  # mps has no float64
        tp, fp, fn = (torch.as_tensor(v, device=ref.device).to(dtype) for v in (tp, fp, fn))
        return _ratio(2 * tp, 2 * tp + fp + fn, 1.0), _ratio(tp, tp + fp + fn, 1.0)
    tp, fp, fn = float(tp), float(fp), float(fn)
    den = tp + fp + fn
    if den == 0:
        return 1.0, 1.0
    return 2 * tp / (2 * tp + fp + fn), tp / den
