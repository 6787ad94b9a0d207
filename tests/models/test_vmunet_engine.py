"""VM-UNet in the engine: the paper preset, and train -> evaluate -> predict with ``test_vmunet``."""

from __future__ import annotations

from importlib import resources

import numpy as np
import yaml
from PIL import Image

from specmamba.engine import evaluate, predict, resolve_config, train
from specmamba.engine.config import TrainConfig
from specmamba.engine.release import load_release
from specmamba.models import build_model_from_checkpoint
from specmamba.models.vmunet import VMUNet


def test_vmunet_isic_preset_is_the_paper_recipe():
    cfg = resolve_config("vmunet_isic", data="d", out="o")
    # REFERENCE.md section 2: AdamW 1e-3 / wd 1e-2, batch 32, 300 epochs, cosine to 1e-5, BCE + Dice,
    # flips and rotation, 256x256.
    assert (cfg.model, cfg.img_size, cfg.epochs, cfg.batch_size) == ("vmunet", 256, 300, 32)
    assert (cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.min_lr) == ("adamw", 1e-3, 1e-2, 1e-5)
    assert cfg.loss == "bce_dice" and cfg.warmup_epochs == 0 and cfg.grad_clip is None and cfg.amp is False
    assert cfg.hflip == 0.5 and cfg.vflip == 0.5 and cfg.rotate_degrees == 180.0
    shipped = yaml.safe_load((resources.files("specmamba.configs") / "vmunet_isic.yaml").read_text())
    assert all(getattr(TrainConfig(), k) != v for k, v in shipped.items())  # only what differs


def test_train_evaluate_predict(tiny_synth, tmp_path):
    run = tmp_path / "run"
    cfg = resolve_config(
        "vmunet_isic",
        data=str(tiny_synth),
        out=str(run),
        model="test_vmunet",
        model_kwargs={"drop_path_rate": 0.2},
        img_size=32,
        epochs=1,
        batch_size=4,
        workers=0,
        device="cpu",
        progress=False,
    )
    summary = train(cfg)
    assert summary["finished"] and summary["n_val"] == 4

    model = build_model_from_checkpoint(run / "checkpoint_best.pt")
    assert isinstance(model, VMUNet) and model.specmamba_name == "test_vmunet"
    assert model.drop_path_rate == 0.2 and model.scan_backend == "auto"
    released, _ = load_release(run / "model")
    assert isinstance(released, VMUNet)

    result = evaluate(
        run / "checkpoint_best.pt",
        tiny_synth,
        split="val",
        out=tmp_path / "eval",
        device="cpu",
        progress=False,
    )
    assert result["n_cases"] == 4 and 0.0 <= result["metrics"]["dice"]["mean"] <= 1.0

    images = sorted((tiny_synth / "images").iterdir())[:3]
    folder = tmp_path / "to_predict"
    folder.mkdir()
    for i, path in enumerate(images):  # one image of a size the model cannot take directly
        img = Image.open(path)
        (img.resize((45, 37)) if i == 0 else img).save(folder / path.name)
    out = predict(run / "checkpoint_best.pt", folder, tmp_path / "pred", device="cpu", progress=False)
    assert out["n_images"] == 3
    first = np.asarray(Image.open(tmp_path / "pred" / f"{images[0].stem}.png"))
    assert first.shape == (37, 45) and set(np.unique(first)) <= {0, 255}
    # opt-in CPU bf16 autocast: the same masks up to the pixels whose logit is within bf16 rounding of 0
    ckpt = run / "checkpoint_best.pt"
    predict(ckpt, folder, tmp_path / "bf16", device="cpu", progress=False, cpu_bf16=True)
    for path in images:
        fp32, bf16 = (np.asarray(Image.open(tmp_path / sub / f"{path.stem}.png")) for sub in ("pred", "bf16"))
        assert bf16.shape == fp32.shape and (bf16 == fp32).mean() > 0.9
