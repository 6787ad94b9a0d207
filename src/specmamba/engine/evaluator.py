"""Evaluation of a checkpoint on a labelled split: per-case metrics at each image's own resolution.

Predictions are made at the checkpoint's training size, their logits resized (bilinear) to the original
image size, then binarised; metrics compare them with the original, unresized masks. Writes
``per_case.csv`` (one row per case) and ``summary.json`` (mean, std, median per metric, empty counts);
the output folder is checked for room before the work, and the two files appear together or not at all.
Several checkpoints (an ensemble) and ``tta`` (nnU-Net's flips) are averaged in probability space as in
``specmamba predict`` (:mod:`specmamba.engine.ensemble`), so their figures can be compared; ``threshold``
sets a binary model's foreground threshold, and ``sliding_window`` covers elongated or large images with
training-size windows (:mod:`specmamba.engine.sliding_window`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..atomic import staged_folder, write_json
from ..data import find_pairs, read_mask, select_split, split_options, validate_pairs
from ..disk import check_output_folder
from ..errors import ConfigError
from ..inference import check_loader_options, resolve_device
from ..metrics import MetricTable, case_metrics_multiclass
from .case_inference import case_probabilities
from .ensemble import Ensemble
from .sliding_window import SlidingWindow

#: Room asked for the two tables (a per-case row is about 200 bytes; this covers 5000 cases).
_TABLE_BYTES = 1 << 20


def _check_same_split(ensemble: Ensemble, split: str) -> None:
    """ConfigError unless every member names the first one's seeded split (fraction, seed, fold)."""
    first = ensemble.members[0]
    expected = split_options(first.ckpt["config"])
    for member in ensemble.members[1:]:
        found = split_options(member.ckpt["config"])
        if found != expected:
            raise ConfigError(
                f"--checkpoint {member.path} was trained on the split {found}, but {first.path} on "
                f"{expected}; they would hold out different {split} cases."
            )


def evaluate(
    checkpoint: str | Path | list[str | Path],
    data: str | Path,
    split: str = "val",
    out: str | Path | None = None,
    device: str = "auto",
    batch_size: int = 8,
    workers: int = 0,
    allow_unpaired: bool = False,
    progress: bool = True,
    tta: bool = False,
    threshold: float | None = None,
    sliding_window: str = "auto",
    sw_overlap: float = 0.5,
    sw_scale: float | None = 1.0,
) -> dict[str, Any]:
    """Score ``checkpoint`` (one path, or several for an ensemble) on ``split`` of ``data``; returns the
    summary (also written to ``out``).

    ``split`` is train / val / test / all; train and val reproduce the checkpoint's own seeded split
    (its ``val_fraction``, ``split_seed`` and folds, which an ensemble's members must share) unless the data
    folder carries explicit split lists. ``out`` defaults to ``<first checkpoint folder>/eval_<split>``,
    with ``_tta``, ``_ensemble<N>`` and ``_sw`` (``sliding_window="on"``) appended when they apply, so
    that the plain figures are kept.
    """
    check_loader_options(batch_size, workers)
    paths = [checkpoint] if isinstance(checkpoint, (str, Path)) else list(checkpoint)
    if out is None and paths:
        name = (
            f"eval_{split}"
            + ("_tta" if tta else "")
            + (f"_ensemble{len(paths)}" if len(paths) > 1 else "")
            + ("_sw" if sliding_window == "on" else "")
        )
        out = Path(paths[0]).parent / name
    if out is not None:
        check_output_folder(Path(out), "--out", _TABLE_BYTES)
    ensemble = Ensemble(paths, resolve_device(device), tta=tta, threshold=threshold)  # refuses no paths
    out_dir = Path(out)
    if split in ("train", "val"):
        _check_same_split(ensemble, split)
    cfg = ensemble.config
    window = SlidingWindow(cfg["img_size"], sliding_window, sw_overlap, sw_scale, batch_size)  # checks
    pairs = find_pairs(data, allow_unpaired=allow_unpaired)
    selected = select_split(pairs, split, data, **split_options(cfg))
    num_classes = cfg["num_classes"]
    validate_pairs(selected, num_classes)

    images = [pair.image for pair in selected]
    table = MetricTable()
    cases = case_probabilities(ensemble, images, window, batch_size, workers, progress, f"evaluate {split}")
    n_windowed = 0
    for i, probs, windowed in cases:
        pair, n_windowed = selected[i], n_windowed + windowed
        target = read_mask(pair.masks, num_classes=num_classes)
        pred = ensemble.labels(probs)
        if num_classes == 1:
            table.add_case(pair.name, pred.astype(bool), target.astype(bool))
        else:
            table.add(pair.name, case_metrics_multiclass(pred, target, num_classes))

    summary = {
        "checkpoint": str(paths[0]) if len(paths) == 1 else [str(p) for p in paths],
        "model": ensemble.members[0].ckpt["model_name"],
        "tta": tta,
        "n_passes": ensemble.n_passes,
        "threshold": ensemble.threshold if num_classes == 1 else None,
        "sliding_window": {"mode": sliding_window, "overlap": sw_overlap, "scale": sw_scale},
        "n_windowed": n_windowed,
        "data": str(data),
        "split": split,
        "epoch": ensemble.members[0].ckpt.get("epoch"),
        "img_size": cfg["img_size"],
        **table.summary(),
    }
    with staged_folder(out_dir) as stage:
        table.write_csv(stage / "per_case.csv")
        write_json(stage / "summary.json", summary)
    summary["out"] = str(out_dir)
    return summary
