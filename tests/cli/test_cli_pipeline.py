"""End-to-end: the `specmamba` command on synthetic data (synth -> train -> evaluate -> predict)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import torch
from PIL import Image

from specmamba.cli.main import main


def test_synth_train_evaluate_predict(tmp_path, capsys, tiny_train_argv):
    data = tmp_path / "data"
    assert main(["synth", str(data), "--n", "14", "--size", "48", "--seed", "1"]) == 0
    assert len(list((data / "images").glob("*.png"))) == 14
    assert "wrote 14 synthetic" in capsys.readouterr().out

    run = tmp_path / "run"
    assert main(tiny_train_argv(data, run, epochs=2)) == 0
    assert json.loads(capsys.readouterr().out)["best_epoch"] in (1, 2)

    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(run / "checkpoint_best.pt"),
                "--data",
                str(data),
                "--split",
                "val",
                "--out",
                str(tmp_path / "eval"),
                "--no-progress",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "dice" in printed and "bf1" in printed and "hd95" in printed
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["n_cases"] == 3 and set(summary["metrics"]) >= {"dice", "iou", "bf1", "hd95"}
    assert len((tmp_path / "eval" / "per_case.csv").read_text().strip().splitlines()) == 1 + 3

    # Unlabelled images of any size, including one that is not square and not a multiple of anything.
    images = tmp_path / "unlabelled"
    images.mkdir()
    Image.fromarray(np.full((37, 61, 3), 180, np.uint8)).save(images / "odd.jpg")
    Image.fromarray(np.full((20, 20), 90, np.uint8)).save(images / "gray.png")
    out = tmp_path / "pred"
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(run / "checkpoint_best.pt"),
                "-i",
                str(images),
                "-o",
                str(out),
                "--overlay",
                "--no-progress",
            ]
        )
        == 0
    )
    odd = np.asarray(Image.open(out / "odd.png"))
    assert odd.shape == (37, 61) and set(np.unique(odd)) <= {0, 255}
    assert np.asarray(Image.open(out / "overlays" / "gray_overlay.png")).shape == (20, 20, 3)


def test_models_lists_parameter_counts(capsys):
    assert main(["models", "test_*"]) == 0
    out = capsys.readouterr().out
    assert "test_unet" in out and "122,465" in out
    assert main(["models", "no_such_*"]) == 1


def test_python_dash_m_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "specmamba", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0
    for command in ("models", "synth", "train", "evaluate", "predict", "demo", "bench"):
        assert command in result.stdout


def test_model_options_from_the_command_line(tiny_synth, tmp_path, capsys, tiny_train_argv):
    run = tmp_path / "run"
    argv = tiny_train_argv(tiny_synth, run, "--model-kwarg", "base_width=4", "--amp")
    assert main(argv) == 0
    checkpoint = torch.load(run / "checkpoint_best.pt", weights_only=True)
    assert checkpoint["model_kwargs"]["base_width"] == 4 and checkpoint["config"]["amp"] is True
    assert checkpoint["state_dict"]["stages.0.0.0.weight"].shape[0] == 4
