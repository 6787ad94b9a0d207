"""Checkpoints written before the training-contract redesign still load, evaluate and resume.

``fixtures/checkpoint_836d074_test_unet.pt`` is the ``checkpoint_last.pt`` of a one-epoch run of
``test_unet`` (base_width 2, 32x32, seed 5) on the ``tiny_synth`` data, written by commit 836d074:
format_version 1, no ``criterion_state``, no ``loss_kwargs`` in its config.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from specmamba.engine import evaluate, resume_config, train
from specmamba.models import build_model_from_checkpoint, read_checkpoint

OLD = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoint_836d074_test_unet.pt"


def test_the_old_layout_is_what_this_test_claims():
    ckpt = read_checkpoint(OLD)
    assert ckpt["format_version"] == 1 and "criterion_state" not in ckpt
    assert "loss_kwargs" not in ckpt["config"] and ckpt["model_kwargs"]["base_width"] == 2


def test_an_old_checkpoint_rebuilds_to_the_same_outputs():
    model = build_model_from_checkpoint(OLD).eval()
    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        y = model(x).double()
    # computed with commit 836d074's own build_model_from_checkpoint on the same input
    assert y.sum().item() == pytest.approx(787.3839602149092, rel=1e-6)
    assert y.abs().sum().item() == pytest.approx(788.2443143702112, rel=1e-6)


def test_an_old_run_evaluates_and_resumes(tiny_synth, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    ckpt = read_checkpoint(OLD)
    ckpt["config"]["data"] = str(tiny_synth)  # the run's data folder, wherever this test runs
    ckpt["config"]["out"] = str(run)
    torch.save(ckpt, run / "checkpoint_last.pt")
    shutil.copy(run / "checkpoint_last.pt", run / "checkpoint_best.pt")
    result = evaluate(
        run / "checkpoint_best.pt", tiny_synth, split="val", out=tmp_path / "eval", progress=False
    )
    assert result["n_cases"] == 4
    summary = train(resume_config(run, epochs=2), resume=True)
    assert summary["epochs_completed"] == 2
    assert "criterion_state" in read_checkpoint(run / "checkpoint_last.pt")
