"""The demo pipeline. CI runs the full ``specmamba demo`` once (README set-up line 1) and hands its
folder to these tests through ``SPECMAMBA_CI_DEMO``, so the suite checks that run instead of training
a second demo; elsewhere a tiny demo is run here."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from specmamba.demo import DEMO_MODELS, MARKER, SUMMARY, run_demo
from specmamba.errors import ConfigError


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, tuple[str, ...], int]:
    """(demo folder, models, images) of CI's demo, or of a tiny demo run now."""
    ci_demo = os.environ.get("SPECMAMBA_CI_DEMO")
    if ci_demo:
        return Path(ci_demo), DEMO_MODELS, 240
    out = tmp_path_factory.mktemp("demo") / "demo"
    run_demo(out, n=16, size=32, epochs=1, models=["test_unet", "test_vmunet"], progress=False)
    return out, ("test_unet", "test_vmunet"), 16


@pytest.mark.slow
def test_the_demo_trains_evaluates_predicts_and_audits(demo):
    out, models, n_images = demo
    assert (out / MARKER).is_file()
    result = json.loads((out / SUMMARY).read_text())
    assert tuple(result["models"]) == models
    for trained in result["models"].values():
        for key in ("checkpoint", "release", "evaluation"):
            assert Path(trained[key]).exists(), key
        assert 0.0 <= trained["best_val_dice"] <= 1.0
    assert len(list((out / "predictions").glob("*.png"))) == n_images
    summary = json.loads((out / "audit" / "summary.json").read_text())
    assert tuple(c["architecture"] for c in summary["checkpoints"]) == models
    assert (out / "audit" / "report.html").is_file()


def test_a_rerun_replaces_an_earlier_demo(tmp_path, one_torch_thread):
    out = tmp_path / "demo"
    out.mkdir()
    (out / MARKER).write_text("an earlier demo")
    (out / "audit").mkdir()
    run_demo(out, n=12, size=32, epochs=1, models=["test_unet"], audit=False, progress=False)
    assert not (out / "audit").exists() and (out / SUMMARY).is_file()


def test_demo_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not an earlier demo"):
        run_demo(tmp_path, n=12, size=32, epochs=1, models=["test_unet"], progress=False)
    assert (tmp_path / "mine.txt").read_text() == "keep me"
