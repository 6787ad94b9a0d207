"""Evaluation of a checkpoint on a labelled split: per-case metrics at each image's own resolution.

Predictions are made at the checkpoint's training size, their logits resized (bilinear) to the original
image size, then binarised; metrics compare them with the original, unresized masks. Writes
``per_case.csv`` (one row per case) and ``summary.json`` (mean, std, median per metric, empty counts);
the output folder is checked for room before the work, and the two files appear together or not at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..atomic import staged_folder, write_json
from ..data import SegmentationDataset, find_pairs, read_mask, select_split, validate_pairs
from ..disk import check_output_folder
from ..inference import autocast, case_labels, check_loader_options, resolve_device
from ..metrics import MetricTable, case_metrics_multiclass
from ..models.rebuild import load_training_checkpoint

#: Room asked for the two tables (a per-case row is about 200 bytes; this covers 5000 cases).
_TABLE_BYTES = 1 << 20


def evaluate(
    checkpoint: str | Path,
    data: str | Path,
    split: str = "val",
    out: str | Path | None = None,
    device: str = "auto",
    batch_size: int = 8,
    workers: int = 0,
    allow_unpaired: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Score ``checkpoint`` on ``split`` of ``data``; returns the summary (also written to ``out``).

    ``split`` is train / val / test / all; train and val reproduce the checkpoint's own seeded split
    (its ``val_fraction`` and ``split_seed``) unless the data folder carries explicit split lists.
    ``out`` defaults to ``<checkpoint folder>/eval_<split>``.
    """
    check_loader_options(batch_size, workers)
    out_dir = Path(out) if out is not None else Path(checkpoint).parent / f"eval_{split}"
    check_output_folder(out_dir, "--out", _TABLE_BYTES)
    ckpt, model = load_training_checkpoint(checkpoint)
    cfg = ckpt["config"]
    dev = resolve_device(device)
    pairs = find_pairs(data, allow_unpaired=allow_unpaired)
    selected = select_split(pairs, split, data, cfg["val_fraction"], cfg["split_seed"])
    num_classes = cfg["num_classes"]
    validate_pairs(selected, num_classes)
    model = model.to(dev).eval()

    dataset = SegmentationDataset(
        selected,
        img_size=cfg["img_size"],
        in_chans=cfg["in_chans"],
        num_classes=num_classes,
        train=False,
        mean=ckpt["normalization"]["mean"],
        std=ckpt["normalization"]["std"],
    )
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    by_name = {p.name: p for p in selected}
    table = MetricTable()
    with torch.no_grad():
        for batch in tqdm(loader, desc=f"evaluate {split}", disable=not progress, dynamic_ncols=True):
            with autocast(dev, cfg.get("amp", True)):
                logits = model(batch["image"].to(dev))
            for i, name in enumerate(batch["name"]):
                target = read_mask(by_name[name].masks, num_classes=num_classes)
                pred = case_labels(logits, i, target.shape)
                if num_classes == 1:
                    table.add_case(name, pred.astype(bool), target.astype(bool))
                else:
                    table.add(name, case_metrics_multiclass(pred, target, num_classes))

    summary = {
        "checkpoint": str(checkpoint),
        "model": ckpt["model_name"],
        "data": str(data),
        "split": split,
        "epoch": ckpt.get("epoch"),
        "img_size": cfg["img_size"],
        **table.summary(),
    }
    with staged_folder(out_dir) as stage:
        table.write_csv(stage / "per_case.csv")
        write_json(stage / "summary.json", summary)
    summary["out"] = str(out_dir)
    return summary
