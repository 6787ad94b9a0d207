from __future__ import annotations

import json

import pytest

from specmamba.demo import MARKER, run_demo
from specmamba.errors import ConfigError


@pytest.mark.slow
def test_tiny_demo_trains_two_models_audits_them_and_can_be_rerun(tmp_path, one_torch_thread):
    out = tmp_path / "demo"
    result = run_demo(out, n=16, size=32, epochs=1, models=["test_unet", "test_vmunet"], progress=False)
    assert (out / MARKER).is_file()
    assert set(result["models"]) == {"test_unet", "test_vmunet"}
    for trained in result["models"].values():
        for key in ("checkpoint", "release", "evaluation"):
            assert (tmp_path / trained[key]).exists(), key
        assert 0.0 <= trained["best_val_dice"] <= 1.0
    assert len(list((out / "predictions").glob("*.png"))) == 16
    summary = json.loads((out / "audit" / "summary.json").read_text())
    assert [c["architecture"] for c in summary["checkpoints"]] == ["test_unet", "test_vmunet"]
    assert (out / "audit" / "report.html").is_file()
    run_demo(out, n=12, size=32, epochs=1, models=["test_unet"], audit=False, progress=False)  # replaced
    assert not (out / "audit").exists()


def test_demo_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not an earlier demo"):
        run_demo(tmp_path, n=12, size=32, epochs=1, models=["test_unet"], progress=False)
    assert (tmp_path / "mine.txt").read_text() == "keep me"
