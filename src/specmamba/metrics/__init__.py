"""Segmentation metrics: overlap (Dice, IoU, precision, recall), boundary F1, HD95, per-case tables.

Every metric takes binarised masks (bool or 0/1, numpy or torch) of shape (H, W) or (B, H, W) and
states its empty-mask rule in its docstring.
"""

from __future__ import annotations

from .boundary import CROSS_3X3, boundary_f1, boundary_precision_recall, mask_boundary
from .distance import hd95, surface_distances
from .overlap import confusion_counts, dice, iou, pooled_dice_iou, precision, recall
from .table import CASE_METRICS, FLAGS, MetricTable, case_metrics, case_metrics_multiclass

__all__ = [
    "CASE_METRICS",
    "CROSS_3X3",
    "FLAGS",
    "MetricTable",
    "boundary_f1",
    "boundary_precision_recall",
    "case_metrics",
    "case_metrics_multiclass",
    "confusion_counts",
    "dice",
    "hd95",
    "iou",
    "mask_boundary",
    "pooled_dice_iou",
    "precision",
    "recall",
    "surface_distances",
]
