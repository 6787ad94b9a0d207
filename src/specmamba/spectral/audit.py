"""``specmamba audit``: the spectral audit of trained checkpoints on a labelled split.

The study of REFERENCE.md section 3 compared VM-UNet, Swin-UNet and UNet-ResNet50 on ISIC2018 by
the alias violation ratio (AVR) of their encoder stages, frequency bands, power spectra, boundary F1,
per-image correlations and shift consistency. This module runs that study on any specmamba
checkpoints, with the fixes its authors list as limitations: one declared hook point per stage for
every table, several training seeds per architecture (mean +- std over them), vertical, diagonal,
sub-pixel and non-cyclic shifts, and bootstrap confidence intervals.

Output folder (every file written atomically):

- the study's tables: ``boundary_results.csv``, ``correlation_results.csv``,
  ``shift_consistency_results.csv``, ``avr_stagewise_results_matched.csv``,
  ``band_decomposition_results.csv``; plus ``per_image.csv``, ``avr_channel_distribution.csv``,
  ``power_spectra.npz`` (the mean log power per checkpoint and stage) and ``summary.json``;
- figures (PNG at 300 dpi and PDF): ``stagewise_avr_bars``, ``band_decomposition``,
  ``power_spectrum_grid``, ``shift_consistency_curves``, ``avr_bf1_scatter`` and
  ``avr_channel_distribution``;
- ``report.html``: one self-contained page with the tables, the figures and the provenance (data,
  checkpoints with their SHA-256, software versions).

The output folder is checked for room before the measurements, and every file is written into a
staging folder that moves into place at the end: a failure leaves ``out`` as it was.
"""

from __future__ import annotations

import hashlib
import io
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import atomic_path, staged_folder, write_csv, write_json
from ..data import find_pairs, select_split, split_options, validate_pairs
from ..disk import check_output_folder
from ..errors import ConfigError, DataError
from ..inference import check_loader_options, resolve_device
from ..models.interface import architecture_label
from ..models.rebuild import load_training_checkpoint
from .collect import AuditedModel, CheckpointResult, collect_checkpoint
from .figures import write_all_figures
from .hooks import stage_points
from .measures import DEFAULT_BAND_EDGES, DEFAULT_THRESHOLD, MIN_MEASURABLE_SIDE
from .report import software_versions, write_report
from .shift import DEFAULT_SHIFTS, DIRECTIONS, MODES, shift_specs
from .tables import (
    band_rows,
    boundary_rows,
    channel_rows,
    correlation_rows,
    per_image_rows,
    shift_rows,
    stage_rows,
)

__all__ = ["AuditSettings", "TABLE_FILES", "load_audited_models", "run_audit"]

#: Room asked for the tables, spectra, figures (PNG at 300 dpi and PDF) and the report.
_AUDIT_BYTES = 64 << 20

#: CSV file of each table, in the order the report shows them.
TABLE_FILES = {
    "boundary": "boundary_results.csv",
    "stages": "avr_stagewise_results_matched.csv",
    "bands": "band_decomposition_results.csv",
    "correlation": "correlation_results.csv",
    "shift": "shift_consistency_results.csv",
    "channels": "avr_channel_distribution.csv",
    "per_image": "per_image.csv",
}


@dataclass
class AuditSettings:
    """What the audit measures. The defaults are the study's choices, extended as the module says.

    ``shift_images``: run the shift test on the first N images only (None = all, 0 = no shift test);
    ``max_images``: audit the first N images of the split only (None = all); ``n_boot``: bootstrap
    replicates of every interval (0 = no intervals); ``seed``: the bootstrap's seed; ``center``:
    measure the mean-centred maps (False: the raw maps, ``--no-center``; see
    :mod:`specmamba.spectral.measures` for why centred is the default).
    """

    threshold: float = DEFAULT_THRESHOLD
    band_edges: tuple[float, float] = DEFAULT_BAND_EDGES
    tolerance: float = 2.0
    shifts: tuple[float, ...] = DEFAULT_SHIFTS
    directions: tuple[str, ...] = tuple(DIRECTIONS)
    modes: tuple[str, ...] = MODES
    shift_images: int | None = None
    max_images: int | None = None
    n_boot: int = 1000
    seed: int = 0
    center: bool = True

    def check(self) -> None:
        for flag, name, minimum in (("--shift-images", "shift_images", 0), ("--max-images", "max_images", 1)):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or int(value) != value or value < minimum):
                raise ConfigError(
                    f"{flag} ({name}) must be a whole number >= {minimum} (or None for all images); "
                    f"got {value!r}."
                )
        if self.n_boot < 0:
            raise ConfigError(f"n_boot must be >= 0 bootstrap replicates; got {self.n_boot}.")
        if self.tolerance < 0:
            raise ConfigError(f"the BF1 tolerance must be >= 0 pixels; got {self.tolerance}.")


def _labels(architectures: Sequence[str], seeds: Sequence[Any]) -> list[str]:
    """Table labels: the architecture, with the training seed when an architecture appears twice."""
    labels = []
    for arch, seed in zip(architectures, seeds):
        label = arch if architectures.count(arch) == 1 else f"{arch}-seed{seed}"
        base, k = label, 2
        while label in labels:
            label, k = f"{base}-{k}", k + 1
        labels.append(label)
    return labels


def load_audited_models(
    checkpoints: Sequence[str | Path], architectures: Sequence[str] | None = None
) -> list[AuditedModel]:
    """Load every checkpoint (failing before any long work) and check the audit can measure it.

    ``architectures`` names the group of each checkpoint in the tables (a study's row labels); by
    default it is the model name with the options that change the network (``architecture_label``).
    """
    if architectures is not None and len(architectures) != len(checkpoints):
        raise ConfigError(
            f"architectures names {len(architectures)} groups for {len(checkpoints)} checkpoints; "
            "give one each."
        )
    if not checkpoints:
        raise ConfigError("give at least one --checkpoint (a run's checkpoint_best.pt).")
    loaded = []
    for path in checkpoints:
        ckpt, model = load_training_checkpoint(path)
        num_classes = ckpt["config"]["num_classes"]
        if num_classes != 1:
            raise ConfigError(
                f"{path}: the audit measures binary segmentation (num_classes 1; BF1 and the shift IoU are "
                f"defined on one foreground), but this checkpoint has num_classes {num_classes}."
            )
        loaded.append((Path(path), ckpt, model, stage_points(model)))
    # model name + the options that change the network: an ablation is its own architecture, not a seed
    if architectures is None:
        architectures = [
            architecture_label(ckpt["model_name"], ckpt["model_kwargs"]) for _, ckpt, _, _ in loaded
        ]
    architectures = list(architectures)
    labels = _labels(architectures, [ckpt["config"].get("seed") for _, ckpt, _, _ in loaded])
    return [
        AuditedModel(label, arch, path, ckpt, model, points)
        for label, arch, (path, ckpt, model, points) in zip(labels, architectures, loaded)
    ]


def _select_images(
    entries: Sequence[AuditedModel], data: str | Path, split: str, allow_unpaired: bool
) -> list[Any]:
    pairs = find_pairs(data, allow_unpaired=allow_unpaired)
    if split in ("train", "val"):
        splits = {tuple(split_options(e.config).items()) for e in entries}
        if len(splits) > 1:
            detail = "; ".join(f"{e.path}: {split_options(e.config)}" for e in entries)
            raise ConfigError(
                f"the checkpoints were trained on different splits ({detail}), so --split {split} would mean "
                "different images for each: audit them separately, or use --split all / a test.txt split."
            )
    first = entries[0].config
    selected = select_split(pairs, split, data, **split_options(first))
    if not selected:
        raise DataError(f"--split {split} of {data} has no images; choose another split or check the folder.")
    validate_pairs(selected, num_classes=1, in_chans=first["in_chans"])
    return selected


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _shown(value: float | None) -> str:
    """A correlation figure as the report's summary shows it (8 significant digits, '' if undefined)."""
    return f"{value:.8g}" if value is not None and math.isfinite(value) else ""


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder for the audit's tables, figures and report.")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(
            f"--out {out} exists and is not empty: choose a new folder, or pass --overwrite to replace the "
            "audit files in it (other files are left alone)."
        )


def _stage_notes(results: Sequence[CheckpointResult], entries: Sequence[AuditedModel]) -> list[str]:
    notes = []
    for result, entry in zip(results, entries):
        for k, ((h, w), ok) in enumerate(zip(result.stage_sizes, result.measurable), start=1):
            if not ok:
                notes.append(
                    f"{result.label}: stage {k} ({entry.points[k - 1]['module']}) gives {h}x{w} maps at "
                    f"the {entry.config['img_size']} px input, a side under the {MIN_MEASURABLE_SIDE} px a "
                    "Fourier measure needs: reported as not measurable (empty cells)."
                )
    return notes


def _headline(
    stage: list[dict], boundary: list[dict], shift: list[dict], correlation: list[dict]
) -> dict[str, Any]:
    """A few numbers per architecture for summary.json and the top of the report."""
    out: dict[str, Any] = {}
    for row in boundary:
        if row["level"] == "architecture":
            arch = out.setdefault(row["architecture"], {"n_checkpoints": row["n_checkpoints"]})
            for metric in ("dice", "iou", "bf1", "hd95"):
                arch[metric] = {"mean": row[f"{metric}_mean"], "std_over_checkpoints": row[f"{metric}_std"]}
    for row in stage:
        if row["level"] == "architecture":
            key = "avr_mean_over_stages" if row["stage"] == "mean" else f"avr_stage{row['stage']}"
            out[row["architecture"]][key] = row["avr_mean"]
    for row in shift:
        if row["level"] == "architecture" and row["direction"] == "horizontal" and row["mode"] == "cyclic":
            out[row["architecture"]].setdefault("shift_iou_horizontal_cyclic", {})[f"{row['shift']:g}"] = row[
                "iou_mean"
            ]
    correlations = {
        f"{row['scope']}_r_avr_{row['y']}": {"r": row["pearson_r"], "p": row["pearson_p"]}
        for row in correlation
        if row["scope"] in ("pooled", "partial") and row["stage"] == "mean"
    }
    return {"architectures": out, "correlations": correlations}


def _report_summary(headline: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for arch, values in headline["architectures"].items():
        n = values["n_checkpoints"]
        suffix = f" (mean of {n} checkpoints)" if n > 1 else ""
        summary[f"{arch}: Dice{suffix}"] = values["dice"]["mean"]
        summary[f"{arch}: BF1{suffix}"] = values["bf1"]["mean"]
        summary[f"{arch}: mean AVR over stages{suffix}"] = values.get("avr_mean_over_stages")
        one_px = values.get("shift_iou_horizontal_cyclic", {}).get("1")
        if one_px is not None:
            summary[f"{arch}: shift IoU, 1 px horizontal cyclic{suffix}"] = one_px
    for name, value in headline["correlations"].items():
        summary[f"{name.replace('_', ' ')} (r, p)"] = f"{_shown(value['r'])}, {_shown(value['p'])}"
    return summary


def _build_tables(
    results: Sequence[CheckpointResult],
    entries: Sequence[AuditedModel],
    specs: Sequence[Any],
    settings: AuditSettings,
    n_images: int,
) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """Every table of :data:`TABLE_FILES` (key -> rows) and the notes the report shows with them."""
    boot = {"n_boot": settings.n_boot, "seed": settings.seed}
    tables = {
        "boundary": boundary_rows(results, **boot),
        "stages": stage_rows(results, [e.points for e in entries], **boot),
        "bands": band_rows(results),
        "shift": shift_rows(results, specs),
        "channels": channel_rows(results, settings.threshold),
        "per_image": per_image_rows(results),
    }
    tables["correlation"], notes = correlation_rows(results, **boot)
    notes = _stage_notes(results, entries) + notes
    if specs and settings.shift_images is not None and settings.shift_images < n_images:
        notes.append(f"The shift test ran on the first {settings.shift_images} of the {n_images} images.")
    if not specs:
        notes.append("The shift test was not run (shift_images = 0).")
    if settings.max_images is not None:
        notes.append(f"Only the first {n_images} images of the split were audited (max_images).")
    if not settings.center:
        notes.append(
            "Uncentred measures (--no-center): the maps' means were kept, so their DC energy counts as "
            "low-frequency energy in AVR, the bands and the spectra."
        )
    return tables, notes


def _write_tables_and_figures(
    out: Path,
    tables: dict[str, list[dict[str, Any]]],
    results: Sequence[CheckpointResult],
    specs: Sequence[Any],
    threshold: float,
) -> tuple[dict[str, str], dict[str, list[Path]]]:
    """CSV tables, power_spectra.npz and the figures; returns (table key -> file name, figure -> paths)."""
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for key, name in TABLE_FILES.items():
        if key == "shift" and not specs:
            continue
        write_csv(out / name, tables[key])
        files[key] = name
    spectra = {r.label: r.log_power for r in results}
    _write_spectra(out / "power_spectra.npz", spectra)
    points: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        points.setdefault(r.architecture, []).extend(
            {"checkpoint": r.label, "avr_mean": row["avr_mean"], "bf1": row["bf1"]} for row in r.rows
        )
    figures = write_all_figures(
        out,
        tables["stages"],
        tables["bands"],
        tables["shift"],
        points,
        spectra,
        channel_rows=tables["channels"],
        threshold=threshold,
    )
    return files, figures


def run_audit(
    checkpoints: Sequence[str | Path],
    data: str | Path,
    out: str | Path,
    split: str = "val",
    device: str = "auto",
    batch_size: int = 8,
    workers: int = 0,
    settings: AuditSettings | None = None,
    progress: bool = True,
    overwrite: bool = False,
    allow_unpaired: bool = False,
    command: str | None = None,
    architectures: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Audit ``checkpoints`` on ``split`` of ``data``; write everything to ``out``; return the summary.

    ``architectures``: the group of each checkpoint (see :func:`load_audited_models`)."""
    start = time.perf_counter()
    settings = settings or AuditSettings()
    settings.check()
    check_loader_options(batch_size, workers)
    specs = (
        shift_specs(settings.shifts, settings.directions, settings.modes)
        if settings.shift_images != 0
        else []
    )
    out = Path(out)
    _check_out(out, overwrite)
    check_output_folder(out, "--out", _AUDIT_BYTES)
    dev = resolve_device(device)
    entries = load_audited_models(checkpoints, architectures)
    pairs = _select_images(entries, data, split, allow_unpaired)
    if settings.max_images is not None:
        pairs = pairs[: settings.max_images]

    results = []
    for entry in entries:
        results.append(
            collect_checkpoint(
                entry,
                pairs,
                specs,
                dev,
                batch_size=batch_size,
                workers=workers,
                shift_images=settings.shift_images,
                threshold=settings.threshold,
                band_edges=settings.band_edges,
                tolerance=settings.tolerance,
                progress=progress,
                center=settings.center,
            )
        )
        entry.model.cpu()  # free the accelerator for the next checkpoint
        if dev.type == "cuda":
            torch.cuda.empty_cache()

    tables, notes = _build_tables(results, entries, specs, settings, len(pairs))
    with staged_folder(out) as stage:
        files, figures = _write_tables_and_figures(stage, tables, results, specs, settings.threshold)

        headline = _headline(tables["stages"], tables["boundary"], tables["shift"], tables["correlation"])
        provenance = {
            "data": str(Path(data).resolve()),
            "split": split,
            "n_images": len(pairs),
            "checkpoints": [_checkpoint_provenance(e, r) for e, r in zip(entries, results)],
            "settings": asdict(settings),
            "device": str(dev),
            "software": software_versions(),
            "command": command or "specmamba.spectral.run_audit(...)",
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        summary = {
            **headline,
            **{k: v for k, v in provenance.items() if k != "software"},
            "notes": notes,
            "files": {**files, "figures": {k: [p.name for p in v] for k, v in figures.items()}},
            "software": provenance["software"],
            "seconds": round(time.perf_counter() - start, 1),
        }
        write_json(stage / "summary.json", summary, default=_json_default)
        write_report(
            stage / "report.html",
            title=f"Spectral audit of {', '.join(e.label for e in entries)} on {Path(data).name} ({split})",
            summary=_report_summary(headline),
            tables={TABLE_FILES[k]: tables[k] for k in TABLE_FILES if k in files},
            figures=figures,
            notes=notes,
            provenance=provenance,
        )
    summary["out"] = str(out)
    return summary


def _checkpoint_provenance(entry: AuditedModel, result: CheckpointResult) -> dict[str, Any]:
    ckpt = entry.checkpoint
    return {
        "label": entry.label,
        "architecture": entry.architecture,
        "path": str(entry.path.resolve()),
        "sha256": _sha256(entry.path),
        "epoch": ckpt.get("epoch"),
        "best_val_dice": ckpt.get("best_score"),
        "img_size": entry.config["img_size"],
        "training_seed": entry.config.get("seed"),
        "model_kwargs": ckpt.get("model_kwargs", {}),
        "stages": [
            {"module": p["module"], "map_size": f"{h}x{w}", "measurable": ok}
            for p, (h, w), ok in zip(entry.points, result.stage_sizes, result.measurable)
        ],
    }


def _write_spectra(path: Path, spectra: dict[str, list[np.ndarray | None]]) -> None:
    arrays = {
        f"{label}/stage{k}": spectrum
        for label, stages in spectra.items()
        for k, spectrum in enumerate(stages, start=1)
        if spectrum is not None
    }
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
