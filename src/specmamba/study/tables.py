"""The study's tables, figures and report, rebuilt from the files of its finished steps.

Everything here reads what the runs, the speed measurements and the audits wrote (per_case.csv,
speed/*.json, the audits' per_image.csv) and derives the rest with seeded statistics, so calling it
twice, or after a resumed study, writes the same bytes.

- ``leaderboard.csv`` / ``leaderboard.md``: one row per model entry, ranked by validation Dice.
  With k folds, a seed's validation scores are its folds' validation parts side by side (every case
  scored once, by the fold that held it out) and its external scores each case's mean over the folds;
  everything below then treats that seed as without folds.
  For every scored set (``val``, then each external set) and metric (Dice, IoU, BF1, HD95 in px):
  ``_mean`` over seeds and cases, ``_std`` over seeds of the per-seed means (training noise; empty with
  one seed), and ``_ci_low`` / ``_ci_high``, the 95% bootstrap interval over seeds and cases
  (:func:`~specmamba.study.stats.bootstrap_interval`). Then parameters, GFLOPs at the study's size,
  CPU s/image and GPU ms/image (empty where not measured).
- ``pairwise.csv``: every pair of models on every set and metric: the Wilcoxon signed-rank test on
  the per-case values averaged over seeds (each model's expected score on that case), p corrected
  over the pairs of that set and metric (``statistics.correction``).
- ``families.csv``: the cross-family audit per model and stage (1..K, then ``mean``, ``early`` = the
  first half of the stages, ``late`` = the second half): AVR with its interval over seeds and images,
  the same of the raw (uncentred) maps, and the low / mid / high energy shares. ``early`` against
  ``late`` is the dual-stage fingerprint: VM-UNet's published stage AVR falls from 0.46 / 0.38 to
  0.14 / 0.13, Swin's stays level (REFERENCE.md section 3).
- ``correlations.csv``: r(AVR, BF1) of the per-image mean AVR, centred and uncentred side by side:
  per family (controlling for the checkpoint: the within-seed association; plain Pearson with one
  seed), pooled over every checkpoint, and partial (controlling for the checkpoint, the audit's rule).
- ``report.html``: all of these with the figures, self-contained.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..atomic import atomic_write_text, write_csv
from ..spectral.report import software_versions, write_report
from ..spectral.statistics import correlate
from .spec import ModelEntry, RunSpec, StudySpec
from .stats import adjust_pvalues, bootstrap_interval, signed_rank_test

if TYPE_CHECKING:  # pragma: no cover
    from .runner import StudyFolder

__all__ = ["METRICS", "write_tables"]

METRICS = ("dice", "iou", "bf1", "hd95")
METRIC_NAMES = {"dice": "Dice", "iou": "IoU", "bf1": "BF1", "hd95": "HD95 (px)"}
SIGNIFICANCE = 0.05


def _number(text: str | None) -> float:
    if text is None or text == "":
        return math.nan
    return float(text)


def _read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _cell(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _sets(spec: StudySpec) -> list[str]:
    return ["val", *(e.name for e in spec.external)]


def _finite_mean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _seed_scores(folder: StudyFolder, runs: Sequence[RunSpec], set_name: str) -> dict[str, dict[str, float]]:
    """case -> metric -> value of one seed's runs (one run, or one per fold) on one scored set."""
    per_run = [
        {row["case"]: row for row in _read_rows(folder.evaluation(r, set_name) / "per_case.csv")}
        for r in runs
    ]
    if set_name == "val":  # the folds' validation parts are disjoint: side by side
        merged: dict[str, dict[str, str]] = {}
        for run, rows in zip(runs, per_run):
            twice = sorted(merged.keys() & rows.keys())
            if twice:
                raise ValueError(f"{folder.evaluation(run, 'val')}: cases {twice[:3]} scored by two folds")
            merged.update(rows)
        return {c: {m: _number(row.get(m)) for m in METRICS} for c, row in merged.items()}
    cases = sorted(per_run[0])
    for run, rows in zip(runs, per_run):
        if sorted(rows) != cases:
            raise ValueError(f"{folder.evaluation(run, set_name)}: scored other cases than {runs[0].name}")
    return {c: {m: _finite_mean([_number(r[c].get(m)) for r in per_run]) for m in METRICS} for c in cases}


def case_tables(
    folder: StudyFolder, spec: StudySpec, entry: ModelEntry, set_name: str
) -> tuple[list[str], dict[str, np.ndarray]]:
    """(case names, metric -> (S seeds, N cases) table) of ``entry`` on one scored set."""
    runs = [r for r in spec.runs if r.entry is entry]
    seeds = sorted({r.seed for r in runs}, key=[r.seed for r in runs].index)
    by_seed = [_seed_scores(folder, [r for r in runs if r.seed == seed], set_name) for seed in seeds]
    cases = sorted(by_seed[0])
    for seed, scores in zip(seeds, by_seed):
        if sorted(scores) != cases:
            raise ValueError(f"{entry.label} seed {seed}: scored other {set_name} cases than seed {seeds[0]}")
    tables = {m: np.array([[scores[c][m] for c in cases] for scores in by_seed]) for m in METRICS}
    return cases, tables


def _summary_cells(prefix: str, table: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    mean, low, high = bootstrap_interval(table, n_boot=n_boot, seed=seed)
    seed_means = np.array([np.nanmean(row) if np.isfinite(row).any() else np.nan for row in table])
    seed_means = seed_means[np.isfinite(seed_means)]
    std = float(seed_means.std(ddof=1)) if len(seed_means) > 1 else math.nan
    return {
        f"{prefix}_mean": _cell(mean),
        f"{prefix}_std": _cell(std),
        f"{prefix}_ci_low": _cell(low),
        f"{prefix}_ci_high": _cell(high),
    }


def leaderboard_rows(folder: StudyFolder, spec: StudySpec) -> list[dict[str, Any]]:
    stats = spec.statistics
    rows = []
    for entry in spec.models:
        row: dict[str, Any] = {
            "rank": None,
            "label": entry.label,
            "model": entry.model,
            "model_kwargs": json.dumps(entry.model_kwargs, sort_keys=True),
            "n_seeds": len({r.seed for r in spec.runs if r.entry is entry}),
        }
        for set_name in _sets(spec):
            cases, tables = case_tables(folder, spec, entry, set_name)
            row[f"{set_name}_n_cases"] = len(cases)
            for metric in METRICS:
                row.update(
                    _summary_cells(f"{set_name}_{metric}", tables[metric], stats["n_boot"], stats["seed"])
                )
        speed_file = folder.speed_file(entry.slug)
        speed = json.loads(speed_file.read_text(encoding="utf-8")) if speed_file.is_file() else {}
        for key in ("parameters", "gflops", "cpu_s_per_image", "gpu_ms_per_image"):
            row[key] = speed.get(key)
        rows.append(row)
    rows.sort(
        key=lambda r: (-(r["val_dice_mean"] if r["val_dice_mean"] is not None else -math.inf), r["label"])
    )
    for k, row in enumerate(rows, start=1):
        row["rank"] = k
    return rows


def _case_means(table: np.ndarray) -> np.ndarray:
    """(N,) each case's mean over the seeds where it is finite (NaN where it is finite for none)."""
    finite = np.isfinite(table)
    count = finite.sum(axis=0)
    total = np.where(finite, table, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def pairwise_rows(folder: StudyFolder, spec: StudySpec) -> list[dict[str, Any]]:
    rows = []
    for set_name in _sets(spec):
        per_case = {}
        for entry in spec.models:
            cases, tables = case_tables(folder, spec, entry, set_name)
            per_case[entry.label] = (cases, {m: _case_means(t) for m, t in tables.items()})
        for metric in METRICS:
            block = []
            for a, b in combinations([e.label for e in spec.models], 2):
                cases_a, va = per_case[a]
                cases_b, vb = per_case[b]
                if cases_a != cases_b:
                    raise ValueError(f"{a} and {b} were scored on different {set_name} cases")
                result = signed_rank_test(va[metric], vb[metric])
                diff = va[metric] - vb[metric]
                diff = diff[np.isfinite(diff)]
                block.append(
                    {
                        "set": set_name,
                        "metric": metric,
                        "model_a": a,
                        "model_b": b,
                        "n": result.n,
                        "mean_difference": _cell(float(diff.mean())) if len(diff) else None,
                        "median_difference": _cell(float(np.median(diff))) if len(diff) else None,
                        "statistic": _cell(result.statistic),
                        "p": _cell(result.p),
                        "method": result.method,
                    }
                )
            adjusted = adjust_pvalues(
                [r["p"] if r["p"] is not None else math.nan for r in block], spec.statistics["correction"]
            )
            for row, p in zip(block, adjusted):
                row["p_adjusted"] = _cell(p)
                row["correction"] = spec.statistics["correction"]
                row["significant"] = bool(p < SIGNIFICANCE) if math.isfinite(p) else None
            rows.extend(block)
    return rows


def _audit_images(folder: StudyFolder, spec: StudySpec, centred: bool) -> list[dict[str, str]] | None:
    """The audit's per-image rows (every fold's, each tagged with its ``fold``), None before it ran.

    A checkpoint's label is the same in every fold's audit (``label-seed<k>``), so a family's table
    of checkpoints by images holds each seed's folds side by side, as the leaderboard does."""
    rows = []
    for fold in spec.fold_ids:
        path = folder.audit(centred, fold) / "per_image.csv"
        if not path.is_file():
            return None
        rows += [{**row, "fold": str(fold)} for row in _read_rows(path)]
    return rows


def _stage_count(rows: Sequence[dict[str, str]]) -> int:
    return max((int(k.split("_s")[-1]) for k in rows[0] if k.startswith("avr_s")), default=0) if rows else 0


def _family_table(rows: Sequence[dict[str, str]], family: str, column: str) -> np.ndarray:
    """(S checkpoints, N images) table of ``column`` for one family (a column mean for early / late)."""
    by_ckpt: dict[str, dict[str, float]] = {}
    for row in rows:
        if row["architecture"] == family:
            by_ckpt.setdefault(row["checkpoint"], {})[row["image"]] = _number(row.get(column))
    images = sorted(next(iter(by_ckpt.values()), {}))
    return np.array([[values.get(i, math.nan) for i in images] for values in by_ckpt.values()]).reshape(
        len(by_ckpt), len(images)
    )


def _stage_span(
    rows: Sequence[dict[str, str]], family: str, stages: Sequence[int], measure: str
) -> np.ndarray:
    tables = [_family_table(rows, family, f"{measure}_s{k}") for k in stages]
    stacked = np.stack(tables)  # (stages, S, N)
    ok = np.isfinite(stacked).any(axis=(1, 2))
    if not ok.any():
        return np.full(stacked.shape[1:], np.nan)
    return np.nanmean(stacked[ok], axis=0)


def family_rows(folder: StudyFolder, spec: StudySpec) -> list[dict[str, Any]]:
    centred, raw = _audit_images(folder, spec, True), _audit_images(folder, spec, False)
    if centred is None:
        return []
    n_stages = _stage_count(centred)
    half = max(n_stages // 2, 1)
    spans: list[tuple[str, Sequence[int]]] = [(str(k), [k]) for k in range(1, n_stages + 1)]
    spans += [
        ("mean", list(range(1, n_stages + 1))),
        ("early", list(range(1, half + 1))),
        ("late", list(range(half + 1, n_stages + 1))),
    ]
    boot = {"n_boot": spec.audit["n_boot"], "seed": spec.statistics["seed"]}
    rows = []
    for entry in spec.models:
        for name, stages in spans:
            if not stages:
                continue
            table = (
                _family_table(centred, entry.label, "avr_mean")
                if name == "mean"
                else _stage_span(centred, entry.label, stages, "avr")
            )
            mean, low, high = bootstrap_interval(table, **boot)
            row: dict[str, Any] = {
                "family": entry.label,
                "stage": name,
                "n_checkpoints": table.shape[0],
                "n_images": table.shape[1],
                "avr_mean": _cell(mean),
                "avr_ci_low": _cell(low),
                "avr_ci_high": _cell(high),
            }
            for band in ("low", "mid", "high"):
                row[band] = _cell(
                    bootstrap_interval(_stage_span(centred, entry.label, stages, band), n_boot=0)[0]
                )
            if raw is not None:
                t = (
                    _family_table(raw, entry.label, "avr_mean")
                    if name == "mean"
                    else _stage_span(raw, entry.label, stages, "avr")
                )
                mean, low, high = bootstrap_interval(t, **boot)
                row.update(
                    avr_uncentred_mean=_cell(mean),
                    avr_uncentred_ci_low=_cell(low),
                    avr_uncentred_ci_high=_cell(high),
                )
            rows.append(row)
    return rows


def _pairs(rows: Sequence[dict[str, str]], family: str | None) -> tuple[list[float], list[float], list[str]]:
    chosen = [r for r in rows if family is None or r["architecture"] == family]
    return (
        [_number(r["avr_mean"]) for r in chosen],
        [_number(r["bf1"]) for r in chosen],
        [r["checkpoint"] + ("" if r["fold"] == "None" else f" fold {r['fold']}") for r in chosen],
    )


def correlation_rows(folder: StudyFolder, spec: StudySpec) -> list[dict[str, Any]]:
    audits = {"centred": _audit_images(folder, spec, True), "uncentred": _audit_images(folder, spec, False)}
    if audits["centred"] is None:
        return []
    boot = {"n_boot": spec.audit["n_boot"], "seed": spec.statistics["seed"]}
    scopes = [("family", e.label) for e in spec.models]
    if len(spec.models) > 1:
        scopes += [("pooled", None), ("partial", None)]
    rows = []
    for scope, family in scopes:
        row: dict[str, Any] = {
            "scope": scope,
            "name": family or "all checkpoints",
            "x": "avr_mean",
            "y": "bf1",
        }
        for kind, images in audits.items():
            if images is None:
                row.update(
                    {
                        f"n_{kind}": None,
                        f"r_{kind}": None,
                        f"p_{kind}": None,
                        f"ci_low_{kind}": None,
                        f"ci_high_{kind}": None,
                    }
                )
                continue
            x, y, groups = _pairs(images, family)
            use_groups = scope == "partial" or (scope == "family" and len(set(groups)) > 1)
            corr = correlate(x, y, groups=groups if use_groups else None, **boot)
            row.update(
                {
                    f"n_{kind}": corr.n,
                    f"r_{kind}": _cell(corr.pearson_r),
                    f"p_{kind}": _cell(corr.pearson_p),
                    f"ci_low_{kind}": _cell(corr.pearson_ci_low),
                    f"ci_high_{kind}": _cell(corr.pearson_ci_high),
                }
            )
        rows.append(row)
    return rows


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _interval_text(row: dict[str, Any], prefix: str, digits: int = 4) -> str:
    mean = row.get(f"{prefix}_mean")
    if mean is None:
        return ""
    text = _fmt(mean, digits)
    if row.get(f"{prefix}_std") is not None:
        text += f" ± {_fmt(row[f'{prefix}_std'], digits)}"
    if row.get(f"{prefix}_ci_low") is not None:
        text += f" [{_fmt(row[f'{prefix}_ci_low'], digits)}, {_fmt(row[f'{prefix}_ci_high'], digits)}]"
    return text


def leaderboard_markdown(rows: Sequence[dict[str, Any]], spec: StudySpec) -> str:
    """The leaderboard as a Markdown table: mean ± seed std [95% interval over seeds and cases]."""
    sets = _sets(spec)
    header = ["#", "model"]
    for set_name in sets:
        header += [f"{set_name} {METRIC_NAMES[m]}" for m in METRICS]
    header += ["params (M)", "GFLOPs", "CPU s/img", "GPU ms/img"]
    lines = [
        f"# {spec.name}: leaderboard",
        "",
        f"{len(spec.seeds)} seed(s) ({', '.join(map(str, spec.seeds))})"
        + (f", {spec.folds} folds each" if spec.folds else "")
        + "; cells: mean ± std over seeds [95% bootstrap interval over seeds and cases].",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for row in rows:
        cells = [str(row["rank"]), row["label"]]
        for set_name in sets:
            cells += [_interval_text(row, f"{set_name}_{m}", 2 if m == "hd95" else 4) for m in METRICS]
        params = row.get("parameters")
        cells += [
            f"{params / 1e6:.2f}" if params is not None else "",
            _fmt(row.get("gflops"), 2),
            _fmt(row.get("cpu_s_per_image"), 3),
            _fmt(row.get("gpu_ms_per_image"), 2),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_tables(folder: StudyFolder, spec: StudySpec) -> dict[str, Any]:
    """Write every table, the figures and report.html into the study folder; returns the headline."""
    from .figures import write_study_figures

    board = leaderboard_rows(folder, spec)
    pairwise = pairwise_rows(folder, spec)
    families = family_rows(folder, spec)
    correlations = correlation_rows(folder, spec)
    root = folder.root
    write_csv(root / "leaderboard.csv", board)
    markdown = leaderboard_markdown(board, spec)
    atomic_write_text(root / "leaderboard.md", markdown)
    write_csv(root / "pairwise.csv", pairwise)
    tables = {"leaderboard.csv": board, "pairwise.csv": pairwise}
    if families:
        write_csv(root / "families.csv", families)
        write_csv(root / "correlations.csv", correlations)
        tables.update({"families.csv": families, "correlations.csv": correlations})
    figures = write_study_figures(root / "figures", board, families, spec)
    for fold in spec.fold_ids:
        audit_dir = folder.audit(True, fold)
        if (audit_dir / "summary.json").is_file():
            shown = json.loads((audit_dir / "summary.json").read_text(encoding="utf-8"))["files"]["figures"]
            where = "audit" if fold is None else f"audit fold {fold}"
            for name, files in shown.items():
                figures[f"{where}: {name}"] = [audit_dir / f for f in files]
    summary = {f"{row['label']}: val Dice": _interval_text(row, "val_dice") for row in board}
    for row in correlations:
        if row["scope"] != "family":
            summary[f"r(AVR, BF1) {row['scope']}, centred / uncentred"] = (
                f"{_fmt(row.get('r_centred'))} / {_fmt(row.get('r_uncentred'))}"
            )
    write_report(
        root / "report.html",
        title=f"Study {spec.name}: {len(spec.models)} models x {len(spec.seeds)} seeds",
        summary=summary,
        tables=tables,
        figures=figures,
        notes=_notes(spec),
        provenance={"study": spec.to_dict(), "software": software_versions()},
    )
    return {
        "out": str(root),
        "leaderboard": board,
        "markdown": markdown,
        "n_significant": sum(bool(r["significant"]) for r in pairwise),
    }


def _notes(spec: StudySpec) -> list[str]:
    notes = [
        "Paired tests: Wilcoxon signed-rank on per-case values averaged over seeds, "
        f"{spec.statistics['correction']} correction over the model pairs of each set and metric, "
        f"significance at {SIGNIFICANCE}.",
        "HD95 is in pixels at each image's own resolution; cases where it is undefined (an empty mask) "
        "are left out.",
    ]
    if spec.description:
        notes.insert(0, spec.description)
    return notes
