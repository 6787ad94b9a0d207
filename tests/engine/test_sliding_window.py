"""Sliding-window inference (engine/sliding_window.py, engine/case_inference.py, predict, evaluate).

Oracles: a window that covers the image is the whole-image pass (MONAI divides the one window's weighted
logits by its own weights: float32 rounding, 1e-6); a pointwise model gives every window the same value at
a pixel, so any blend of them is that value (1e-5: sums of up to four weighted copies); a model with a
receptive field differs from its whole-image pass only where a window's zero padding reaches, which the
Gaussian weights make small (bound measured below, stated at each assert).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from specmamba.engine.ensemble import Ensemble
from specmamba.engine.evaluator import evaluate
from specmamba.engine.predictor import load_probabilities, predict
from specmamba.engine.sliding_window import SlidingWindow
from specmamba.errors import ConfigError
from specmamba.models.rebuild import load_training_checkpoint

CPU = torch.device("cpu")


def _image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(seed))


def _convs(*kernels: int) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for i, k in enumerate(kernels):
        layers += [nn.Conv2d(3 if i == 0 else 8, 8 if i < len(kernels) - 1 else 1, k, padding=k // 2)]
        if i < len(kernels) - 1:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers).eval()


@torch.no_grad()
def test_one_window_covering_the_image_is_the_whole_image_pass():
    model, x = _convs(3, 3), _image(32, 32)
    got = SlidingWindow(32, "on").logits(model, x)
    torch.testing.assert_close(got, model(x), rtol=0, atol=1e-6)


@torch.no_grad()
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.75])
def test_overlapping_windows_of_a_pointwise_model_reproduce_it(overlap):
    model, x = _convs(1, 1), _image(40, 100)
    got = SlidingWindow(32, "on", overlap=overlap).logits(model, x)
    torch.testing.assert_close(got, model(x), rtol=0, atol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("overlap", [0.25, 0.5, 0.75])
def test_overlapping_windows_of_a_local_model_stay_close_to_the_whole_image_pass(overlap):
    model, x = _convs(3, 3), _image(48, 120)  # receptive radius 2
    whole = model(x)
    diff = (SlidingWindow(32, "on", overlap=overlap).logits(model, x) - whole).abs()
    # Measured at overlaps 0.25 / 0.5 / 0.75: mean |diff| 0.8% / 0.6% / 0.9% of the logits' std (0.25),
    # max 0.80 / 0.80 / 0.69 std (a pixel 1 px inside a window edge, where the one window that does not
    # see it near its own edge carries little weight); 20% / 26% / 46% of the pixels move at all.
    assert diff.mean() < 0.02 * whole.std()
    assert diff.max() < whole.std()
    assert (diff > 1e-5).float().mean() < 0.5


def test_where_the_windows_slide():
    sw = SlidingWindow(32)  # auto, scale 1: shorter side -> 32, windows when the longer side >= 48
    assert sw.working_size(32, 40) is None and sw.working_size(300, 330) is None
    assert sw.working_size(32, 48) == (32, 48)
    assert sw.working_size(160, 64) == (80, 32)
    assert SlidingWindow(32, scale=2.0).working_size(32, 40) == (64, 80)
    assert SlidingWindow(32, scale=None).working_size(100, 30) == (100, 30)
    assert SlidingWindow(32, scale=None).working_size(40, 40) is None
    assert SlidingWindow(32, "on").working_size(32, 40) == (32, 40)
    assert SlidingWindow(32, "off").working_size(32, 400) is None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mode": "yes"}, "--sliding-window must be one of auto, on, off"),
        ({"overlap": 1.0}, r"--sw-overlap must lie in \[0, 1\)"),
        ({"overlap": -0.1}, r"--sw-overlap must lie in \[0, 1\)"),
        ({"scale": 0.0}, "--sw-scale must be a positive number"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SlidingWindow(32, **kwargs)


@pytest.fixture(scope="module")
def checkpoint(tiny_synth, train_tiny, tmp_path_factory):
    return train_tiny(tiny_synth, tmp_path_factory.mktemp("sliding") / "run", seed=0)


@pytest.fixture(scope="module")
def wide_images(tiny_synth, tmp_path_factory):
    """Three 32 x 80 images (aspect 2.5: auto windows them) and a 32 x 32 one (auto resizes it)."""
    root = tmp_path_factory.mktemp("wide")
    for i, src in enumerate(sorted((tiny_synth / "images").iterdir())[:3]):
        with Image.open(src) as image:
            image.convert("RGB").resize((80, 32), Image.BILINEAR).save(root / f"wide{i}.png")
    shutil.copy(sorted((tiny_synth / "images").iterdir())[3], root / "square.png")
    return root


def test_square_images_at_the_training_size_give_the_same_probabilities_either_way(
    checkpoint, tiny_synth, tmp_path
):
    outs = {}
    for mode in ("on", "off"):
        outs[mode] = tmp_path / mode
        predict(
            checkpoint, tiny_synth / "images", outs[mode], device="cpu", progress=False, batch_size=4,
            sliding_window=mode, save_probabilities=True,
        )  # fmt: skip
    for npz in sorted((outs["off"] / "probabilities").iterdir()):
        windowed = load_probabilities(outs["on"] / "probabilities" / npz.name)
        # 1e-5: the resize path convolves batches of 4, the windows one image (summation order; 1.4e-6 seen)
        np.testing.assert_allclose(windowed, load_probabilities(npz), rtol=0, atol=1e-5)


def test_auto_windows_the_elongated_images_at_their_own_size(checkpoint, wide_images, tmp_path):
    predict(checkpoint, wide_images, tmp_path / "p", device="cpu", progress=False, save_probabilities=True)
    ens = Ensemble(checkpoint, CPU)
    _, model = load_training_checkpoint(checkpoint)
    mean = torch.tensor(ens.normalization["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(ens.normalization["std"]).view(1, 3, 1, 1)
    for name in ("wide0", "wide2"):
        pixels = np.asarray(Image.open(wide_images / f"{name}.png").convert("RGB"), dtype=np.float32)
        x = (torch.from_numpy(pixels).permute(2, 0, 1)[None] / 255.0 - mean) / std  # (1, 3, 32, 80), native
        with torch.no_grad():
            want = torch.sigmoid(SlidingWindow(32).logits(model.eval(), x))[0]
        got = load_probabilities(tmp_path / "p" / "probabilities" / f"{name}.npz")
        assert got.shape == (1, 32, 80)
        np.testing.assert_allclose(got, want.numpy(), rtol=0, atol=1e-6)


def test_evaluate_counts_the_windowed_cases(checkpoint, tiny_synth, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_synth, data)
    for image in sorted((data / "images").iterdir())[:5]:  # 5 cases of aspect 2.5: auto windows them
        mask = data / "masks" / f"{image.stem}.png"
        with Image.open(image) as im, Image.open(mask) as m:
            im.convert("RGB").resize((80, 32), Image.BILINEAR).save(image)
            m.resize((80, 32), Image.NEAREST).save(mask)
    common = {"split": "all", "device": "cpu", "progress": False}
    auto = evaluate(checkpoint, data, out=tmp_path / "auto", **common)
    off = evaluate(checkpoint, data, out=tmp_path / "off", sliding_window="off", **common)
    assert auto["n_windowed"] == 5 and off["n_windowed"] == 0
    assert auto["n_cases"] == off["n_cases"] == 18
    saved = json.loads((Path(auto["out"]) / "summary.json").read_text())
    assert saved["sliding_window"] == {"mode": "auto", "overlap": 0.5, "scale": 1.0}


def test_the_commands_take_the_sliding_window_flags(checkpoint, wide_images, tmp_path, capsys):
    from specmamba.cli.main import main

    argv = ["predict", "--checkpoint", str(checkpoint), "-i", str(wide_images), "--device", "cpu"]
    argv.append("--no-progress")
    assert main([*argv, "-o", str(tmp_path / "a"), "--sliding-window", "on", "--sw-scale", "native"]) == 0
    assert main([*argv, "-o", str(tmp_path / "b"), "--sw-overlap", "0.25", "--sw-scale", "1.5"]) == 0
    assert main([*argv, "-o", str(tmp_path / "c"), "--sw-overlap", "1.2"]) == 2
    assert "--sw-overlap must lie in [0, 1)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*argv, "-o", str(tmp_path / "d"), "--sw-scale", "big"])
