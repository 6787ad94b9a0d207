"""Swin-Unet in the engine: the audit preset, and train -> evaluate -> predict with ``test_swin_unet``."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest
import yaml
from PIL import Image

from specmamba.cli.main import main
from specmamba.engine import evaluate, predict, resolve_config, train
from specmamba.engine.config import TrainConfig
from specmamba.errors import InputSizeError
from specmamba.models import build_model_from_checkpoint
from specmamba.models.swin_unet import SwinUNet, swin_input_multiple


def test_swin_unet_audit_preset():
    cfg = resolve_config("swin_unet_audit", data="d", out="o")
    defaults = TrainConfig()
    # REFERENCE.md section 3: Adam 1e-4 (constant), 100 epochs, Dice loss, flips and rotation, 224x224,
    # split seed 42 with 20% held out.
    assert (cfg.model, cfg.img_size, cfg.epochs, cfg.loss) == ("swin_unet", 224, 100, "dice")
    assert (cfg.optimizer, cfg.lr, cfg.min_lr, cfg.warmup_epochs) == ("adam", 1e-4, 1e-4, 0.0)
    assert cfg.weight_decay == 0.0 and cfg.grad_clip is None
    assert cfg.hflip > 0 and cfg.vflip > 0 and cfg.rotate_degrees > 0
    assert (cfg.split_seed, cfg.val_fraction) == (42, 0.2)
    assert 224 % swin_input_multiple(4, 7) == 0  # the trainer accepts the preset's size
    # The preset holds only what differs from the defaults.
    shipped = yaml.safe_load((resources.files("specmamba.configs") / "swin_unet_audit.yaml").read_text())
    assert all(getattr(defaults, k) != v for k, v in shipped.items())


def test_train_evaluate_predict(tiny_synth, tmp_path, capsys):
    run = tmp_path / "run"
    argv = [
        "train", "--config", "swin_unet_audit", "--data", str(tiny_synth), "--out", str(run),
        "--model", "test_swin_unet", "--img-size", "64", "--epochs", "1", "--batch-size", "4",
        "--workers", "0", "--device", "cpu", "--no-progress",
    ]  # fmt: skip
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["checkpoint_best"] == str(run / "checkpoint_best.pt")
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"] == "test_swin_unet" and config["loss"] == "dice" and config["optimizer"] == "adam"

    model = build_model_from_checkpoint(run / "checkpoint_best.pt")
    assert isinstance(model, SwinUNet) and model.specmamba_name == "test_swin_unet"

    summary = evaluate(run / "checkpoint_best.pt", tiny_synth, split="val", out=tmp_path / "eval",
                       device="cpu", progress=False)  # fmt: skip
    assert summary["model"] == "test_swin_unet" and summary["n_cases"] == 4
    assert 0.0 <= summary["metrics"]["dice"]["mean"] <= 1.0
    assert (tmp_path / "eval" / "per_case.csv").is_file()
    rows = (tmp_path / "eval" / "per_case.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 4  # header + the 4 validation cases

    out = predict(run / "checkpoint_best.pt", tiny_synth / "images", tmp_path / "pred", device="cpu",
                  progress=False)  # fmt: skip
    assert out["n_images"] == 18
    mask = np.asarray(Image.open(out["masks"][0]))
    assert mask.shape == (32, 32) and set(np.unique(mask)) <= {0, 255}  # back at the image's own size


def test_trainer_refuses_sizes_off_the_window_grid(tiny_synth, tmp_path):
    cfg = resolve_config(
        None, data=str(tiny_synth), out=str(tmp_path / "run"), model="test_swin_unet", img_size=96,
        epochs=1, workers=0, device="cpu", progress=False,
    )  # fmt: skip
    with pytest.raises(InputSizeError, match="use --img-size 128"):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoint_last.pt").exists()
