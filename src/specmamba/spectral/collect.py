"""One checkpoint over the audit's images: per-image quality, Fourier measures and shift consistency.

For each batch a single forward pass gives both the logits and, through :class:`FeatureCapture`, the
stage maps at the points the model declares (one set of points for every table, unlike the study of
REFERENCE.md section 3). The logits are resized (bilinear) to each image's original size and scored
against the original mask (Dice, IoU, BF1 at the chosen tolerance, HD95), as ``specmamba evaluate``
does. Stage maps give each image's AVR, band shares and axis-energy ratio, and accumulate per-channel
energies and the mean power spectrum. The shift test runs on the model's input tensor for the first
``shift_images`` images.

Everything runs in float32 (no autocast), in the dataset's order, so an audit is deterministic.

Shape letters: B batch, C channels, S model input side, h/w stage map size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data import SamplePair, SegmentationDataset, read_mask
from ..inference import case_labels
from ..metrics import case_metrics
from .hooks import FeatureCapture
from .measures import (
    DEFAULT_BAND_EDGES,
    DEFAULT_THRESHOLD,
    StageSpectrum,
    is_measurable,
    mean_log_power,
    measure_stage,
)
from .shift import ShiftSpec, shift_consistency

__all__ = ["AuditedModel", "CheckpointResult", "collect_checkpoint", "finite_or_none"]

#: Per-image quality columns, in CSV order.
QUALITY = ("dice", "iou", "bf1", "hd95")
#: Per-image, per-stage spectral columns (suffixed ``_s1`` .. ``_s4`` in the CSV).
STAGE_MEASURES = ("avr", "low", "mid", "high", "axis")


@dataclass
class AuditedModel:
    """A loaded checkpoint, ready to audit: its label in the tables, architecture and training config."""

    label: str
    architecture: str
    path: Path
    checkpoint: dict[str, Any]
    model: nn.Module
    points: list[dict[str, Any]]

    @property
    def config(self) -> dict[str, Any]:
        return self.checkpoint["config"]


@dataclass
class CheckpointResult:
    """What one checkpoint produced over the audit's images (see the module docstring).

    ``rows``: one dict per image with ``image``, the :data:`QUALITY` metrics, ``{measure}_s{k}`` for
    every measurable stage k (absent for a stage that is not) and ``avr_mean`` over measurable stages.
    ``stage_sizes``: (h, w) per stage; ``measurable``: per stage. ``channel_avr``: per stage, (C,) AVR of
    each channel pooled over images (None when not measurable). ``log_power``: per stage, (h, w) log10
    mean power spectrum. ``shift_iou``: spec -> per-image IoU for the first ``shift_images`` images.
    """

    label: str
    architecture: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    stage_sizes: list[tuple[int, int]] = field(default_factory=list)
    measurable: list[bool] = field(default_factory=list)
    channel_avr: list[np.ndarray | None] = field(default_factory=list)
    log_power: list[np.ndarray | None] = field(default_factory=list)
    shift_iou: dict[ShiftSpec, list[float]] = field(default_factory=dict)


class _StageAccumulator:
    """Sums over batches of one stage's per-channel energies (high, total) and power spectrum."""

    def __init__(self) -> None:
        self.sums: list[torch.Tensor] | None = None
        self.count = 0

    def add(self, m: StageSpectrum) -> None:
        parts = [m.channel_high, m.channel_total, m.power_sum]
        self.sums = parts if self.sums is None else [a + b for a, b in zip(self.sums, parts)]
        self.count += m.count

    def channel_avr(self) -> np.ndarray:
        high, total, _ = self.sums
        return torch.where(total > 0, high / total.clamp_min(1e-300), torch.nan).cpu().numpy()

    def log_power(self) -> np.ndarray:
        return mean_log_power(self.sums[2], self.count).cpu().numpy()


def finite_or_none(value: Any) -> float | None:
    """``value`` (a number, numpy or 0-d tensor) as a float, or None when it is NaN or infinite."""
    value = float(value)
    return value if np.isfinite(value) else None


@torch.no_grad()
def collect_checkpoint(
    entry: AuditedModel,
    pairs: Sequence[SamplePair],
    specs: Sequence[ShiftSpec],
    device: torch.device,
    batch_size: int = 8,
    workers: int = 0,
    shift_images: int | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    band_edges: tuple[float, float] = DEFAULT_BAND_EDGES,
    tolerance: float = 2.0,
    progress: bool = True,
    center: bool = True,
) -> CheckpointResult:
    """Run ``entry`` over ``pairs`` and collect everything the audit tables need (``center``: measure
    the mean-centred maps, see :mod:`specmamba.spectral.measures`)."""
    cfg, ckpt = entry.config, entry.checkpoint
    model = entry.model.to(device).eval()
    dataset = SegmentationDataset(
        pairs,
        img_size=cfg["img_size"],
        in_chans=cfg["in_chans"],
        num_classes=cfg["num_classes"],
        train=False,
        mean=ckpt["normalization"]["mean"],
        std=ckpt["normalization"]["std"],
    )
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    by_name = {p.name: p for p in pairs}
    n_shift = len(pairs) if shift_images is None else min(int(shift_images), len(pairs))
    result = CheckpointResult(entry.label, entry.architecture)
    accumulators = [_StageAccumulator() for _ in entry.points]
    seen = 0
    bar = tqdm(
        total=len(pairs), desc=f"audit {entry.label}", unit="img", disable=not progress, dynamic_ncols=True
    )
    for batch in loader:
        images = batch["image"].to(device)
        with FeatureCapture(model, entry.points) as capture:
            logits = model(images).float()
        maps = capture.maps(images.shape[-2:])
        if not result.stage_sizes:
            result.stage_sizes = [tuple(int(s) for s in m.shape[-2:]) for m in maps]
            result.measurable = [is_measurable(*size) for size in result.stage_sizes]
        measured = [
            measure_stage(m.float(), threshold, band_edges, center) if ok else None
            for m, ok in zip(maps, result.measurable)
        ]
        for acc, m in zip(accumulators, measured):
            if m is not None:
                acc.add(m)

        for i, name in enumerate(batch["name"]):
            target = read_mask(by_name[name].masks, num_classes=1).astype(bool)
            pred = case_labels(logits, i, target.shape).astype(bool)
            metrics = case_metrics(pred, target, tolerance=tolerance)
            row: dict[str, Any] = {"image": name, **{k: metrics[k] for k in QUALITY}}
            stage_avrs = []
            for k, m in enumerate(measured, start=1):
                if m is None:
                    continue
                row[f"avr_s{k}"] = finite_or_none(m.avr[i])
                low, mid, high = (finite_or_none(v) for v in m.band_shares[i])
                row[f"low_s{k}"], row[f"mid_s{k}"], row[f"high_s{k}"] = low, mid, high
                row[f"axis_s{k}"] = finite_or_none(m.axis_ratio[i])
                if row[f"avr_s{k}"] is not None:
                    stage_avrs.append(row[f"avr_s{k}"])
            row["avr_mean"] = float(np.mean(stage_avrs)) if stage_avrs else None
            result.rows.append(row)

        take = max(0, min(len(batch["name"]), n_shift - seen))
        if specs and take:
            ious = shift_consistency(lambda x: model(x).float(), images[:take], specs, logits[:take])
            for spec, values in ious.items():
                result.shift_iou.setdefault(spec, []).extend(values.tolist())
        seen += len(batch["name"])
        bar.update(len(batch["name"]))
    bar.close()

    result.channel_avr = [acc.channel_avr() if acc.count else None for acc in accumulators]
    result.log_power = [acc.log_power() if acc.count else None for acc in accumulators]
    return result
