"""Ensembles, flip TTA, thresholds and saved probabilities (engine/ensemble.py, predict, evaluate).

The oracle is the hand-computed average: each pass's logits from the bare model, flipped back, resized
to the case's size, turned into probabilities, and averaged; the package must give the same numbers
(float32 sums in the same order: 1e-6).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from specmamba.engine.ensemble import FLIPS, Ensemble
from specmamba.engine.evaluator import evaluate
from specmamba.engine.predictor import load_probabilities, predict
from specmamba.errors import ConfigError
from specmamba.inference import case_labels
from specmamba.models.rebuild import load_training_checkpoint

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def two_seeds(tiny_synth, train_tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("ensemble")
    return [train_tiny(tiny_synth, root / f"seed{s}", seed=s) for s in (0, 1)]


def _batch(seed: int = 0, size: int = 32) -> torch.Tensor:
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _by_hand(checkpoints, images, size, flips, renorm=None):
    """Mean over members and flips of sigmoid(resize(flip back(model(flip(x)))))."""
    total, count = 0.0, 0
    for j, path in enumerate(checkpoints):
        _, model = load_training_checkpoint(path)
        model.eval()
        x = images if renorm is None else renorm[j](images)
        for dims in flips:
            with torch.no_grad():
                out = model(x.flip(dims) if dims else x).float()
            out = out.flip(dims) if dims else out
            out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
            total = total + torch.sigmoid(out)
            count += 1
    return total / count


def test_tta_is_the_mean_of_the_four_flips(two_seeds):
    images, size = _batch(), (45, 37)
    ens = Ensemble(two_seeds[0], CPU, tta=True)
    assert ens.n_passes == 4 and ens.flips == FLIPS
    passes = ens.logits(images)
    want = _by_hand(two_seeds[:1], images, size, FLIPS)
    for i in range(2):
        got = ens.case_probabilities(passes, i, size)
        torch.testing.assert_close(got, want[i], rtol=0, atol=1e-6)


def test_an_ensemble_is_the_mean_of_its_members(two_seeds):
    images, size = _batch(1), (32, 32)
    ens = Ensemble(two_seeds, CPU)
    assert ens.n_passes == 2
    passes = ens.logits(images)
    want = _by_hand(two_seeds, images, size, FLIPS[:1])
    torch.testing.assert_close(ens.case_probabilities(passes, 1, size), want[1], rtol=0, atol=1e-6)
    # Members differ (two seeds), so the mean is neither of them.
    alone = Ensemble(two_seeds[0], CPU)
    assert not torch.allclose(alone.case_probabilities(alone.logits(images), 1, size), want[1])


def test_a_member_sees_the_batch_in_its_own_normalisation(two_seeds):
    images, size = _batch(2), (32, 32)
    ens = Ensemble(two_seeds, CPU)
    m0, s0 = ens.members[0].mean.clone(), ens.members[0].std.clone()
    ens.members[1].mean = torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)
    ens.members[1].std = torch.tensor([0.5, 0.25, 2.0]).view(1, 3, 1, 1)
    m1, s1 = ens.members[1].mean, ens.members[1].std
    renorm = [lambda x: x, lambda x: (x * s0 + m0 - m1) / s1]
    want = _by_hand(two_seeds, images, size, FLIPS[:1], renorm)
    torch.testing.assert_close(
        ens.case_probabilities(ens.logits(images), 0, size), want[0], rtol=0, atol=1e-5
    )


def test_one_model_without_tta_labels_as_before(two_seeds):
    images, size = _batch(3), (40, 50)
    ens = Ensemble(two_seeds[0], CPU)
    (logits,) = ens.logits(images)
    for i in range(2):
        labels = ens.labels(ens.case_probabilities([logits], i, size))
        np.testing.assert_array_equal(labels, case_labels(logits, i, size))


def test_threshold_moves_the_foreground_and_is_checked(two_seeds):
    images, size = _batch(4), (32, 32)
    low, high = Ensemble(two_seeds[0], CPU, threshold=0.05), Ensemble(two_seeds[0], CPU, threshold=0.95)
    probs = low.case_probabilities(low.logits(images), 0, size)
    np.testing.assert_array_equal(low.labels(probs), (probs[0] >= 0.05).numpy())
    assert low.labels(probs).sum() >= high.labels(probs).sum()
    for bad in (0.0, 1.0, -0.2, 1.5):
        with pytest.raises(ConfigError, match="between 0 and 1"):
            Ensemble(two_seeds[0], CPU, threshold=bad)


def test_members_that_disagree_are_refused_naming_the_checkpoint(two_seeds, tiny_synth, train_tiny, tmp_path):
    other = train_tiny(tiny_synth, tmp_path / "wide", img_size=48)
    with pytest.raises(ConfigError, match=r"wide.*img_size = 48"):
        Ensemble([two_seeds[0], other], CPU)
    with pytest.raises(ConfigError, match="at least one"):
        Ensemble([], CPU)


def test_predict_saves_probabilities_that_round_trip(two_seeds, tiny_synth, tmp_path):
    out = tmp_path / "pred"
    result = predict(
        two_seeds, tiny_synth / "images", out, device="cpu", progress=False, tta=True, save_probabilities=True
    )
    assert result["n_passes"] == 8
    first = sorted((tiny_synth / "images").iterdir())[0]
    probs = load_probabilities(out / "probabilities" / f"{first.stem}.npz")
    with Image.open(first) as image:
        width, height = image.size
    assert probs.dtype == np.float32 and probs.shape == (1, height, width)
    assert 0.0 <= probs.min() and probs.max() <= 1.0
    mask = np.asarray(Image.open(out / f"{first.stem}.png"))
    np.testing.assert_array_equal(mask, (probs[0] >= 0.5).astype(np.uint8) * 255)
    with np.load(out / "probabilities" / f"{first.stem}.npz") as archive:
        assert int(archive["num_classes"]) == 1


def test_evaluate_with_tta_keeps_the_plain_figures(two_seeds, tiny_synth):
    plain = evaluate(two_seeds[0], tiny_synth, device="cpu", progress=False)
    tta = evaluate(two_seeds, tiny_synth, device="cpu", progress=False, tta=True)
    assert plain["out"].endswith("eval_val") and tta["out"].endswith("eval_val_tta_ensemble2")
    saved = json.loads((Path(tta["out"]) / "summary.json").read_text())
    assert saved["n_passes"] == 8 and saved["tta"] is True and len(saved["checkpoint"]) == 2
    assert json.loads((Path(plain["out"]) / "summary.json").read_text())["n_passes"] == 1


def test_threshold_is_for_binary_models_only():
    from specmamba.engine.ensemble import check_threshold

    assert check_threshold(None, 3) == 0.5
    with pytest.raises(ConfigError, match="binary models; this checkpoint has 3 classes"):
        check_threshold(0.3, 3)


def test_the_commands_take_repeated_checkpoints_tta_and_a_threshold(two_seeds, tiny_synth, tmp_path, capsys):
    from specmamba.cli.main import main

    ckpts = [arg for path in two_seeds for arg in ("--checkpoint", str(path))]
    common = ["--tta", "--device", "cpu", "--no-progress"]
    argv = ["predict", *ckpts, "-i", str(tiny_synth / "images"), "-o", str(tmp_path / "p"), *common]
    assert main([*argv, "--threshold", "0.4", "--save-probabilities"]) == 0
    assert "8 forward passes per image" in capsys.readouterr().out
    assert main(["evaluate", *ckpts, "--data", str(tiny_synth), "--out", str(tmp_path / "e"), *common]) == 0
    assert main([*argv[: -len(common)], "--threshold", "1.5", "--overwrite", *common]) == 2
    assert "--threshold must lie strictly between 0 and 1" in capsys.readouterr().err
