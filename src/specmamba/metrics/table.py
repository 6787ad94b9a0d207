"""Per-case metric rows and their summary: the table behind ``per_case.csv`` and ``summary.json``.

Metrics are buffered per case and aggregated at the end (never averaged batch by batch), so the
summary is the same whatever the batch size, and empty-target cases stay visible through their
flags.

Input contract: masks are binary (bool or 0/1), numpy or torch, one case (H, W); multi-class
label maps are integer (H, W) arrays with values in [0, num_classes).

Shape letters: H height, W width; K number of classes including background (label 0).
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..atomic import write_csv as write_table
from ..atomic import write_json
from ..errors import ConfigError
from ._masks import MaskLike, as_binary_pair
from .boundary import boundary_f1
from .distance import Spacing, hd95
from .overlap import dice, iou, precision, recall

#: The metric columns of :func:`case_metrics`, in order.
CASE_METRICS = ("dice", "iou", "precision", "recall", "bf1", "hd95")
#: 0/1 flag columns of :func:`case_metrics`; counted, not averaged, in the summary.
FLAGS = ("target_empty", "pred_empty")


def case_metrics(
    pred: MaskLike, target: MaskLike, *, tolerance: float = 2, spacing: Spacing = None
) -> dict[str, float]:
    """All metrics of one case from binary (H, W) masks (bool or 0/1, numpy or torch).

    Keys: dice, iou, precision, recall, bf1 (``tolerance`` px), hd95 (``spacing`` units, pooled
    definition), then ``target_empty`` / ``pred_empty`` as 0.0 / 1.0 flags. Each metric applies the
    empty rule stated in its own docstring.
    """
    p, t, batched = as_binary_pair(pred, target)
    if batched:
        raise ConfigError(
            f"case_metrics takes one case (H, W), got shape {tuple(p.shape)}; call it per case, "
            "e.g. through MetricTable.add_case."
        )
    if isinstance(p, torch.Tensor):
        p, t = p.detach().cpu().numpy(), t.detach().cpu().numpy()
    return {
        "dice": dice(p, t),
        "iou": iou(p, t),
        "precision": precision(p, t),
        "recall": recall(p, t),
        "bf1": boundary_f1(p, t, tolerance),
        "hd95": hd95(p, t, spacing),
        "target_empty": float(not t.any()),
        "pred_empty": float(not p.any()),
    }


def _as_label_map(x: Any, name: str, num_classes: int) -> np.ndarray:
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim != 2:
        raise ConfigError(f"`{name}` has shape {arr.shape}; pass one (H, W) label map.")
    if arr.dtype != np.bool_ and not np.issubdtype(arr.dtype, np.integer):
        raise ConfigError(
            f"`{name}` has dtype {arr.dtype}; pass an integer label map (take the argmax of logits first)."
        )
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        raise ConfigError(
            f"`{name}` holds labels in [{arr.min()}, {arr.max()}] but num_classes={num_classes} "
            f"allows only 0..{num_classes - 1}."
        )
    return arr


def case_metrics_multiclass(
    pred_labels: Any,
    target_labels: Any,
    num_classes: int,
    *,
    tolerance: float = 2,
    spacing: Spacing = None,
) -> dict[str, float]:
    """Per-class and class-mean metrics of one case from integer (H, W) label maps (0 = background).

    For each foreground class c = 1..K-1 the binary metrics of ``pred == c`` vs ``target == c`` are
    reported with suffix ``_c<c>`` (e.g. ``dice_c1``, ``target_empty_c2``); the plain names
    (``dice``, ...) hold the unweighted mean over the foreground classes, where a class absent
    from both maps scores by the empty rules (e.g. Dice 1.0). The plain flags ``target_empty`` /
    ``pred_empty`` are 1.0 when the map has no foreground label at all.
    """
    if not isinstance(num_classes, numbers.Integral) or num_classes < 2:
        raise ConfigError(
            f"`num_classes` is {num_classes!r}; it counts background too and must be an integer >= 2 "
            "(for one foreground class pass binary masks to case_metrics)."
        )
    p = _as_label_map(pred_labels, "pred_labels", int(num_classes))
    t = _as_label_map(target_labels, "target_labels", int(num_classes))
    if p.shape != t.shape:
        raise ConfigError(f"`pred_labels` has shape {p.shape} but `target_labels` has shape {t.shape}.")
    per_class = [
        case_metrics(p == c, t == c, tolerance=tolerance, spacing=spacing) for c in range(1, num_classes)
    ]
    out: dict[str, float] = {k: float(np.mean([m[k] for m in per_class])) for k in CASE_METRICS}
    out["target_empty"] = float(not (t > 0).any())
    out["pred_empty"] = float(not (p > 0).any())
    for c, m in enumerate(per_class, start=1):
        out.update({f"{k}_c{c}": v for k, v in m.items()})
    return out


def _as_number(case: str, key: str, value: Any) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    elif isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if isinstance(value, bool | numbers.Real):
        return float(value)
    raise ConfigError(f"metric {key!r} of case {case!r} is {value!r}; metric values must be numbers.")


def _json_safe(value: Any) -> Any:
    """NaN / inf are not JSON: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


class MetricTable:
    """Buffer of per-case metric rows with a summary and atomic CSV / JSON writers.

    >>> table = MetricTable()
    >>> table.add_case("ISIC_0000000", pred_mask, target_mask)
    >>> table.summary()["metrics"]["dice"]["mean"]
    """

    def __init__(self) -> None:
        self._rows: list[dict[str, Any]] = []
        self._cases: set[str] = set()

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, case: str, metrics: Mapping[str, Any]) -> None:
        """Append one row: ``case`` (a unique name) and its metrics (numbers, 0-d tensors/arrays)."""
        case = str(case)
        if case in self._cases:
            raise ConfigError(f"case {case!r} is already in the table; case names must be unique.")
        if "case" in metrics:
            raise ConfigError(f"metrics of case {case!r} use the reserved column name 'case'.")
        row: dict[str, Any] = {"case": case}
        row.update({str(k): _as_number(case, str(k), v) for k, v in metrics.items()})
        self._rows.append(row)
        self._cases.add(case)

    def add_case(self, case: str, pred: MaskLike, target: MaskLike, **kwargs: Any) -> dict[str, float]:
        """Score one binary (H, W) case with :func:`case_metrics` (``kwargs`` go to it), add, return it."""
        metrics = case_metrics(pred, target, **kwargs)
        self.add(case, metrics)
        return metrics

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The rows as dicts ``{"case": name, metric: value, ...}`` (copies), in insertion order."""
        return [dict(r) for r in self._rows]

    @property
    def columns(self) -> list[str]:
        """``case`` then every metric column, in order of first appearance."""
        cols: dict[str, None] = {"case": None}
        for r in self._rows:
            cols.update(dict.fromkeys(r))
        return list(cols)

    def summary(self) -> dict[str, Any]:
        """Aggregate the rows.

        Returns ``{"n_cases", "n_empty_target", "n_empty_pred", "std_ddof": 0, "metrics":
        {name: {"mean", "std", "median", "n"}}}``. Statistics are per metric column over the rows
        that have a finite value (``n`` counts them); std is the population standard deviation
        (ddof=0: the evaluated set is described, not sampled). Flag columns (``target_empty``,
        ``pred_empty`` and their per-class ``_c<k>`` forms) are counted, not averaged: the
        ``n_empty_*`` counts use the plain flags. With no rows the statistics are NaN.
        """
        metrics: dict[str, dict[str, float]] = {}
        for col in self.columns[1:]:
            if col in FLAGS or any(col.startswith(f + "_c") for f in FLAGS):
                continue
            vals = np.array([r[col] for r in self._rows if col in r], dtype=np.float64)
            vals = vals[np.isfinite(vals)]
            if vals.size:
                stats = {
                    "mean": float(vals.mean()),
                    "std": float(vals.std(ddof=0)),
                    "median": float(np.median(vals)),
                }
            else:
                stats = {"mean": math.nan, "std": math.nan, "median": math.nan}
            metrics[col] = {**stats, "n": int(vals.size)}
        return {
            "n_cases": len(self._rows),
            "n_empty_target": int(sum(r.get("target_empty", 0.0) > 0 for r in self._rows)),
            "n_empty_pred": int(sum(r.get("pred_empty", 0.0) > 0 for r in self._rows)),
            "std_ddof": 0,
            "metrics": metrics,
        }

    def write_csv(self, path: str | os.PathLike[str]) -> None:
        """Write one row per case (header ``case,<metrics...>``), atomically; missing cells are empty."""
        write_table(path, self._rows, self.columns)

    def write_summary_json(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`summary` as indented JSON, atomically; non-finite values become null."""
        write_json(path, _json_safe(self.summary()))
