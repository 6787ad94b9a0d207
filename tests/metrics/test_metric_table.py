"""Tests of specmamba.metrics.table: case metrics, multi-class metrics, summary, CSV / JSON writers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import specmamba.atomic as atomic_module
from specmamba.errors import ConfigError
from specmamba.metrics import (
    CASE_METRICS,
    MetricTable,
    boundary_f1,
    case_metrics,
    case_metrics_multiclass,
    dice,
    hd95,
)

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def square(r0: int, c0: int, side: int = 10, size: int = 32) -> np.ndarray:
    m = np.zeros((size, size), dtype=bool)
    m[r0 : r0 + side, c0 : c0 + side] = True
    return m


def test_case_metrics_values_and_flags() -> None:
    # pred = target shifted right by 3: TP 70, FP 30, FN 30
    m = case_metrics(square(10, 13), square(10, 10))
    assert list(m) == [*CASE_METRICS, "target_empty", "pred_empty"]
    assert m["dice"] == pytest.approx(0.7) and m["iou"] == pytest.approx(70 / 130)
    assert m["precision"] == pytest.approx(0.7) and m["recall"] == pytest.approx(0.7)
    assert m["bf1"] == pytest.approx(11 / 18)  # see test_boundary_metrics
    assert m["hd95"] == pytest.approx(3.0)  # 14 of 36 distances per direction are 3, the rest smaller
    assert m["target_empty"] == 0.0 and m["pred_empty"] == 0.0
    e = case_metrics(np.zeros((32, 32), bool), square(10, 10))
    assert e["pred_empty"] == 1.0 and e["target_empty"] == 0.0 and e["dice"] == 0.0 and e["bf1"] == 0.0
    assert e["hd95"] == pytest.approx(np.hypot(32, 32))
    both = case_metrics(torch.zeros(32, 32, dtype=torch.bool), torch.zeros(32, 32, dtype=torch.long))
    assert both == {k: 1.0 for k in ("dice", "iou", "precision", "recall", "bf1")} | {
        "hd95": 0.0,
        "target_empty": 1.0,
        "pred_empty": 1.0,
    }
    with pytest.raises(ConfigError, match="one case"):
        case_metrics(square(1, 1)[None], square(1, 1)[None])


def test_case_metrics_multiclass() -> None:
    pred = np.zeros((32, 32), np.int64)
    target = np.zeros((32, 32), np.int64)
    target[square(10, 10)] = 1
    pred[square(10, 13)] = 1
    target[0:4, 0:4] = 2  # class 2 missed entirely
    # class 3 absent from both -> scores 1 by the empty rules
    m = case_metrics_multiclass(torch.from_numpy(pred), target, num_classes=4)
    assert m["dice_c1"] == pytest.approx(0.7) and m["dice_c2"] == 0.0 and m["dice_c3"] == 1.0
    assert m["dice"] == pytest.approx((0.7 + 0 + 1) / 3)
    assert m["bf1"] == pytest.approx((11 / 18 + 0 + 1) / 3)
    assert m["target_empty_c2"] == 0.0 and m["pred_empty_c2"] == 1.0 and m["target_empty_c3"] == 1.0
    assert m["target_empty"] == 0.0 and m["pred_empty"] == 0.0
    assert m["hd95_c1"] == pytest.approx(hd95(pred == 1, target == 1))
    with pytest.raises(ConfigError, match="num_classes=2"):
        case_metrics_multiclass(pred, target, num_classes=2)
    with pytest.raises(ConfigError, match=">= 2"):
        case_metrics_multiclass(pred, target, num_classes=1)
    with pytest.raises(ConfigError, match="integer label map"):
        case_metrics_multiclass(pred.astype(float), target, num_classes=4)


def test_summary_statistics() -> None:
    table = MetricTable()
    table.add("a", {"dice": 0.5, "hd95": 2.0, "target_empty": 0.0, "pred_empty": 0.0})
    table.add("b", {"dice": 1.0, "hd95": 0.0, "target_empty": 1.0, "pred_empty": 1.0})
    table.add("c", {"dice": torch.tensor(0.0), "hd95": np.float64(4.0), "target_empty": 0, "pred_empty": 1})
    table.add("d", {"dice": float("nan")})  # a NaN value is excluded from that metric's statistics
    s = table.summary()
    assert s["n_cases"] == 4 and s["n_empty_target"] == 1 and s["n_empty_pred"] == 2
    assert set(s["metrics"]) == {"dice", "hd95"}  # flags are counted, not averaged
    d = s["metrics"]["dice"]
    assert d["n"] == 3 and d["mean"] == pytest.approx(0.5) and d["median"] == pytest.approx(0.5)
    assert d["std"] == pytest.approx(np.sqrt(((0.5 - 0.5) ** 2 + 0.5**2 + 0.5**2) / 3))  # population
    h = s["metrics"]["hd95"]
    assert h["mean"] == pytest.approx(2.0) and h["median"] == 2.0 and h["n"] == 3
    assert s["std_ddof"] == 0
    assert len(table) == 4 and table.rows[0] == {
        "case": "a",
        "dice": 0.5,
        "hd95": 2.0,
        "target_empty": 0.0,
        "pred_empty": 0.0,
    }
    empty = MetricTable().summary()
    assert empty["n_cases"] == 0 and empty["metrics"] == {}


def test_add_validation() -> None:
    table = MetricTable()
    table.add("a", {"dice": 1.0})
    with pytest.raises(ConfigError, match="already"):
        table.add("a", {"dice": 0.5})
    with pytest.raises(ConfigError, match="numbers"):
        table.add("b", {"dice": "high"})
    with pytest.raises(ConfigError, match="reserved"):
        table.add("c", {"case": 1.0})
    assert len(table) == 1


def test_add_case_and_writers(tmp_path: Path) -> None:
    table = MetricTable()
    cases = {"shift3": square(10, 13), "same": square(10, 10), "missed": np.zeros((32, 32), bool)}
    for name, pred in cases.items():
        table.add_case(name, pred, square(10, 10), tolerance=2)
    csv_path, json_path = tmp_path / "per_case.csv", tmp_path / "sub" / "summary.json"
    table.write_csv(csv_path)
    table.write_summary_json(json_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["per_case.csv", "sub"]  # no temp files left
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["summary.json"]

    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["case"] for r in rows] == list(cases)
    assert list(rows[0]) == ["case", *CASE_METRICS, "target_empty", "pred_empty"]
    assert float(rows[0]["bf1"]) == boundary_f1(square(10, 13), square(10, 10))  # full precision
    assert float(rows[2]["pred_empty"]) == 1.0

    summary = json.loads(json_path.read_text())
    assert summary["n_cases"] == 3 and summary["n_empty_pred"] == 1 and summary["n_empty_target"] == 0
    dices = dice(np.stack(list(cases.values())), np.stack([square(10, 10)] * 3))
    assert summary["metrics"]["dice"]["mean"] == pytest.approx(dices.mean())
    assert summary["metrics"]["dice"]["std"] == pytest.approx(dices.std())


def test_json_nan_is_null_and_failed_write_keeps_old_file(tmp_path: Path, monkeypatch) -> None:
    table = MetricTable()
    table.add("x", {"dice": float("nan")})
    path = tmp_path / "summary.json"
    table.write_summary_json(path)
    data = json.loads(path.read_text())  # strict JSON: no NaN literal
    assert data["metrics"]["dice"]["mean"] is None and data["metrics"]["dice"]["n"] == 0

    csv_path = tmp_path / "per_case.csv"
    table.write_csv(csv_path)
    before = csv_path.read_text()

    class Boom(csv.DictWriter):
        def writerow(self, row):  # noqa: ANN001
            raise RuntimeError("disk full")

    monkeypatch.setattr(atomic_module.csv, "DictWriter", Boom)
    table.add("y", {"dice": 1.0})
    with pytest.raises(RuntimeError, match="disk full"):
        table.write_csv(csv_path)
    assert csv_path.read_text() == before  # the interrupted write did not touch the old file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["per_case.csv", "summary.json"]


@pytest.mark.skipif(not (DATA / "isic2017" / "masks").is_dir(), reason="real data not available")
def test_real_isic_masks() -> None:
    from PIL import Image

    paths = sorted((DATA / "isic2017" / "masks").glob("*_segmentation.png"))[:2]
    assert paths
    for path in paths:
        target = np.asarray(Image.open(path)) > 127  # stored as 0/255
        m = case_metrics(target, target)
        assert m["dice"] == 1.0 and m["bf1"] == 1.0 and m["hd95"] == 0.0
        shifted = np.roll(target, 2, axis=1)
        shifted[:, :2] = False
        s = case_metrics(shifted, target)
        assert 0.9 < s["dice"] < 1.0
        assert s["hd95"] == pytest.approx(2.0, abs=0.5)
        assert s["bf1"] > 0.9  # a 2 px shift is within the 2 px tolerance almost everywhere
