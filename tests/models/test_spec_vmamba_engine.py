"""Spec-VMamba through the engine: its presets, and the three-class pipeline end to end (synth ->
train with the spectral dual loss -> evaluate per class -> predict colour overlays; the audit refuses)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from specmamba.cli.main import main
from specmamba.data import make_synthetic_dataset
from specmamba.engine import resolve_config


def test_isic_preset_is_the_seeds_recipe():
    cfg = resolve_config("spec_vmamba_isic", data="d", out="o")
    assert (cfg.model, cfg.epochs, cfg.batch_size, cfg.lr, cfg.weight_decay) == (
        "spec_vmamba",
        100,
        8,
        1e-3,
        1e-5,
    )
    assert cfg.loss == "spectral_dual" and cfg.optimizer == "adamw" and cfg.num_classes == 1


def test_multiclass_preset_is_the_seeds_one_channel_to_three_classes():
    cfg = resolve_config("spec_vmamba_multiclass", data="d", out="o")
    assert (cfg.model, cfg.in_chans, cfg.num_classes, cfg.loss) == ("spec_vmamba", 1, 3, "spectral_dual")


@pytest.fixture(scope="module")
def three_class_data(tmp_path_factory):
    return make_synthetic_dataset(
        tmp_path_factory.mktemp("synth3") / "data", n=12, size=32, seed=1, num_classes=3
    )


def test_three_classes_end_to_end(three_class_data, tmp_path, capsys, tiny_train_argv):
    run = tmp_path / "run"
    argv = tiny_train_argv(three_class_data, run, "--model", "test_spec_vmamba", "--num-classes", "3")
    assert main([*argv, "--loss", "spectral_dual"]) == 0
    with open(run / "metrics.csv", newline="") as fh:
        row = next(csv.DictReader(fh))
    assert {"train_loss_dice", "train_loss_focal", "train_loss_frequency"} <= set(row)

    checkpoint = run / "checkpoint_best.pt"
    common = ["--device", "cpu", "--no-progress"]
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(three_class_data), *common]) == 0
    with open(run / "eval_val" / "per_case.csv", newline="") as fh:
        cases = list(csv.DictReader(fh))
    assert cases and {"dice_c1", "dice_c2", "iou_c1", "iou_c2", "dice"} <= set(cases[0])
    summary = json.loads((run / "eval_val" / "summary.json").read_text())
    assert {"dice_c1", "dice_c2"} <= set(summary["metrics"])

    out = tmp_path / "pred"
    images = three_class_data / "images"
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(checkpoint),
                "-i",
                str(images),
                "-o",
                str(out),
                "--overlay",
                *common,
            ]
        )
        == 0
    )
    mask = np.asarray(Image.open(out / "synth_0000.png"))
    assert mask.shape == (32, 32) and set(np.unique(mask)) <= {0, 1, 2}  # label maps, not 0/255
    assert Image.open(out / "overlays" / "synth_0000_overlay.png").mode == "RGB"

    capsys.readouterr()
    audit = [
        "audit",
        "--checkpoint",
        str(checkpoint),
        "--data",
        str(three_class_data),
        "--out",
        str(tmp_path / "a"),
    ]
    assert main([*audit, *common]) == 2
    assert "binary segmentation" in capsys.readouterr().err


def test_synth_writes_three_class_label_maps(tmp_path):
    assert main(["synth", str(tmp_path / "s"), "--n", "3", "--size", "64", "--num-classes", "3"]) == 0
    assert main(["synth", str(tmp_path / "b"), "--n", "3", "--size", "64"]) == 0
    for i in range(3):
        labels = np.asarray(Image.open(tmp_path / "s" / "masks" / f"synth_000{i}.png"))
        binary = np.asarray(Image.open(tmp_path / "b" / "masks" / f"synth_000{i}.png"))
        assert set(np.unique(labels)) == {0, 1, 2}
        assert np.array_equal(labels > 0, binary > 0)  # the core refines the lesion; the outline is the same
    assert main(["synth", str(tmp_path / "t"), "--n", "3", "--num-classes", "2"]) == 2
