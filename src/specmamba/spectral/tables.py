"""The audit's tables: per-image rows aggregated per checkpoint, per architecture, and correlated.

Every table has a ``level`` column. ``checkpoint`` rows summarise one trained network over the
audit's images (``*_std`` is the spread over images, ``*_ci_low`` / ``*_ci_high`` a seeded 95%
bootstrap interval of the mean). ``architecture`` rows summarise the checkpoints of one architecture
(training seeds): ``*_mean`` is the mean of their means and ``*_std`` the standard deviation over
checkpoints (empty for a single checkpoint). The ``std_over`` column says which.

Correlations (REFERENCE.md section 3): each image's AVR (mean over stages, and per stage) against its
BF1 and Dice, per checkpoint; per architecture as the mean and spread of the checkpoints' r; pooled
over all checkpoints; and partial, controlling for the checkpoint (one-hot least squares). Pooled and
partial rows need at least two architectures.

Missing values (a stage that is not measurable, a statistic that is undefined) are None.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .collect import QUALITY, STAGE_MEASURES, CheckpointResult, finite_or_none
from .shift import ShiftSpec
from .statistics import bootstrap_ci, correlate

__all__ = [
    "band_rows",
    "boundary_rows",
    "channel_rows",
    "correlation_rows",
    "per_image_rows",
    "shift_rows",
    "stage_rows",
]

Row = dict[str, Any]


def _clean(values: Iterable[Any]) -> np.ndarray:
    """Finite floats of ``values`` (None and NaN / inf dropped)."""
    out = np.array([float(v) for v in values if v is not None], dtype=np.float64)
    return out[np.isfinite(out)]


def _stat(prefix: str, values: Iterable[Any], n_boot: int = 0, seed: int = 0) -> Row:
    """``{prefix}_mean``, ``{prefix}_std`` (and the bootstrap interval when n_boot > 0) over images."""
    v = _clean(values)
    row: Row = {
        f"{prefix}_mean": finite_or_none(v.mean()) if len(v) else None,
        f"{prefix}_std": finite_or_none(v.std(ddof=1)) if len(v) > 1 else None,
    }
    if n_boot:
        low, high = bootstrap_ci(np.mean, v, n_boot=n_boot, seed=seed) if len(v) > 1 else (np.nan, np.nan)
        row[f"{prefix}_ci_low"], row[f"{prefix}_ci_high"] = finite_or_none(low), finite_or_none(high)
    return row


def _head(result: CheckpointResult, **keys: Any) -> Row:
    return {
        "level": "checkpoint",
        "architecture": result.architecture,
        "checkpoint": result.label,
        "n_checkpoints": 1,
        **keys,
    }


def _architecture_rows(rows: Sequence[Row], keys: Sequence[str]) -> list[Row]:
    """One row per (architecture, *keys): mean of the checkpoints' ``*_mean`` and their std."""
    groups: dict[tuple, list[Row]] = {}
    for row in rows:
        groups.setdefault((row["architecture"], *(str(row[k]) for k in keys)), []).append(row)
    out = []
    for members in groups.values():
        first = members[0]
        arch: Row = {
            "level": "architecture",
            "architecture": first["architecture"],
            "checkpoint": first["architecture"],
            "n_checkpoints": len(members),
        }
        for column, value in first.items():
            if column in arch or column == "std_over":
                continue
            if column.endswith("_mean"):
                means = _clean(m[column] for m in members)
                arch[column] = finite_or_none(means.mean()) if len(means) else None
                spread = finite_or_none(means.std(ddof=1)) if len(means) > 1 else None
                arch[column[: -len("_mean")] + "_std"] = spread
            elif column.endswith(("_std", "_ci_low", "_ci_high", "_min")):
                arch.setdefault(column, None)  # a spread over images does not carry over
            else:
                arch[column] = value  # keys and descriptive columns (stage, map size, n_images)
        arch["std_over"] = "checkpoints"
        out.append({k: arch.get(k) for k in first})  # same columns, same order
    return out


def _with_architectures(rows: list[Row], keys: Sequence[str]) -> list[Row]:
    return rows + _architecture_rows(rows, keys)


def per_image_rows(results: Sequence[CheckpointResult]) -> list[Row]:
    """Every image of every checkpoint, with the same columns (missing stages left empty)."""
    n_stages = max((len(r.stage_sizes) for r in results), default=0)
    columns = ["checkpoint", "architecture", "image", *QUALITY, "avr_mean"]
    columns += [f"{m}_s{k}" for k in range(1, n_stages + 1) for m in STAGE_MEASURES]
    rows = []
    for result in results:
        for row in result.rows:
            full = {"checkpoint": result.label, "architecture": result.architecture, **row}
            rows.append({c: full.get(c) for c in columns})
    return rows


def boundary_rows(results: Sequence[CheckpointResult], n_boot: int = 1000, seed: int = 0) -> list[Row]:
    """Dice, IoU, BF1 and HD95 per checkpoint (intervals for Dice and BF1) and per architecture."""
    rows = []
    for result in results:
        row = _head(result, n_images=len(result.rows), std_over="images")
        for metric in QUALITY:
            boot = n_boot if metric in ("dice", "bf1") else 0
            row.update(_stat(metric, (r[metric] for r in result.rows), boot, seed))
        rows.append(row)
    return _with_architectures(rows, [])


def _stage_labels(result: CheckpointResult) -> list[tuple[int, tuple[int, int], bool]]:
    return [(k, size, ok) for k, (size, ok) in enumerate(zip(result.stage_sizes, result.measurable), start=1)]


def stage_rows(
    results: Sequence[CheckpointResult], points: Sequence[Sequence[dict]], n_boot: int = 1000, seed: int = 0
) -> list[Row]:
    """Stage-wise AVR and axis-energy ratio (plus the mean over stages) per checkpoint and architecture.

    ``points``: each result's feature_info entries (the hooked module of every stage).
    """
    rows = []
    for result, pts in zip(results, points):
        for k, (h, w), ok in _stage_labels(result):
            row = _head(result, stage=k, module=pts[k - 1]["module"], map_size=f"{h}x{w}", measurable=ok)
            row.update(n_images=len(result.rows), std_over="images")
            row.update(_stat("avr", (r.get(f"avr_s{k}") for r in result.rows), n_boot if ok else 0, seed))
            if not ok:
                row.update(avr_ci_low=None, avr_ci_high=None)
            row.update(_stat("axis", (r.get(f"axis_s{k}") for r in result.rows)))
            rows.append(row)
        row = _head(result, stage="mean", module="", map_size="", measurable=any(result.measurable))
        row.update(n_images=len(result.rows), std_over="images")
        row.update(_stat("avr", (r["avr_mean"] for r in result.rows), n_boot, seed))
        row.update(axis_mean=None, axis_std=None)
        rows.append(row)
    return _with_architectures(rows, ["stage"])


def band_rows(results: Sequence[CheckpointResult]) -> list[Row]:
    """Low / mid / high energy shares per stage, per checkpoint and architecture."""
    rows = []
    for result in results:
        for k, (h, w), ok in _stage_labels(result):
            row = _head(result, stage=k, map_size=f"{h}x{w}", measurable=ok, n_images=len(result.rows))
            row["std_over"] = "images"
            for band in ("low", "mid", "high"):
                row.update(_stat(band, (r.get(f"{band}_s{k}") for r in result.rows)))
            rows.append(row)
    return _with_architectures(rows, ["stage"])


def shift_rows(results: Sequence[CheckpointResult], specs: Sequence[ShiftSpec]) -> list[Row]:
    """IoU with the unshifted prediction per (direction, mode, shift), per checkpoint and architecture."""
    rows = []
    for result in results:
        for spec in specs:
            values = _clean(result.shift_iou.get(spec, []))
            row = _head(result, direction=spec.direction, mode=spec.mode, shift=spec.amount)
            row.update(n_images=len(values), std_over="images", **_stat("iou", values))
            row["iou_min"] = finite_or_none(values.min()) if len(values) else None
            rows.append(row)
    return _with_architectures(rows, ["direction", "mode", "shift"])


def channel_rows(results: Sequence[CheckpointResult], threshold: float = 0.5) -> list[Row]:
    """Distribution over channels of each channel's AVR (energy pooled over images), per stage."""
    rows = []
    for result in results:
        for k, (h, w), ok in _stage_labels(result):
            values = _clean(result.channel_avr[k - 1]) if ok else np.empty(0)
            row = _head(result, stage=k, map_size=f"{h}x{w}", measurable=ok, n_channels=len(values))
            if len(values):
                q = np.quantile(values, [0.0, 0.25, 0.5, 0.75, 1.0])
                row.update(zip(("min", "q25", "median", "q75", "max"), map(float, q)))
                row["share_above_threshold"] = float((values > threshold).mean())
            else:
                row.update(dict.fromkeys(("min", "q25", "median", "q75", "max", "share_above_threshold")))
            rows.append(row)
    return rows


def _corr_row(scope: str, name: str, stage: Any, y: str, **values: Any) -> Row:
    row: Row = {"scope": scope, "name": name, "stage": stage, "x": "avr", "y": y}
    keys = ("n", "pearson_r", "pearson_r_std", "pearson_p", "pearson_ci_low", "pearson_ci_high")
    row.update({k: values.get(k) for k in (*keys, "spearman_r", "spearman_p")})
    return row


def _correlation_values(corr: Any) -> Row:
    fields = ("pearson_r", "pearson_p", "pearson_ci_low", "pearson_ci_high", "spearman_r", "spearman_p")
    return {"n": corr.n, **{f: finite_or_none(getattr(corr, f)) for f in fields}}


def correlation_rows(
    results: Sequence[CheckpointResult], n_boot: int = 1000, seed: int = 0
) -> tuple[list[Row], list[str]]:
    """AVR (mean over stages, and per measurable stage) against BF1 and Dice; returns (rows, notes)."""
    notes: list[str] = []
    architectures = sorted({r.architecture for r in results})
    pooled_ok = len(architectures) >= 2
    if not pooled_ok:
        notes.append(
            "Pooled and partial correlations are skipped: the audit has a single architecture "
            f"({architectures[0] if architectures else 'none'}); they compare architectures."
        )
    n_stages = max((len(r.stage_sizes) for r in results), default=0)
    x_columns: list[tuple[Any, str]] = [("mean", "avr_mean")]
    x_columns += [(k, f"avr_s{k}") for k in range(1, n_stages + 1)]
    rows: list[Row] = []
    for y in ("bf1", "dice"):
        for stage, column in x_columns:
            xs, ys, groups = [], [], []
            per_checkpoint: dict[str, list[float]] = {}
            for result in results:
                x = [r.get(column) for r in result.rows]
                yv = [r[y] for r in result.rows]
                xf = np.array([np.nan if v is None else v for v in x], dtype=np.float64)
                if not np.isfinite(xf).any():
                    continue  # this stage is not measurable for this checkpoint
                corr = correlate(xf, yv, n_boot=n_boot, seed=seed)
                rows.append(_corr_row("checkpoint", result.label, stage, y, **_correlation_values(corr)))
                per_checkpoint.setdefault(result.architecture, []).append(corr.pearson_r)
                xs.extend(xf)
                ys.extend(yv)
                groups.extend([result.label] * len(xf))
            for arch, rs in per_checkpoint.items():
                if len(rs) > 1:
                    r = _clean(rs)
                    rows.append(
                        _corr_row(
                            "architecture",
                            arch,
                            stage,
                            y,
                            n=len(rs),
                            pearson_r=finite_or_none(r.mean()) if len(r) else None,
                            pearson_r_std=finite_or_none(r.std(ddof=1)) if len(r) > 1 else None,
                        )
                    )
            if pooled_ok and len(per_checkpoint) >= 2:  # two architectures measured at this stage
                pooled = correlate(xs, ys, n_boot=n_boot, seed=seed)
                rows.append(_corr_row("pooled", "all", stage, y, **_correlation_values(pooled)))
                partial = correlate(xs, ys, groups=groups, n_boot=n_boot, seed=seed)
                values = _correlation_values(partial)
                rows.append(_corr_row("partial", "all given checkpoint", stage, y, **values))
    return rows, notes
