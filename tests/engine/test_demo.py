from __future__ import annotations

import pytest

from specmamba.engine.demo import MARKER, run_demo
from specmamba.errors import ConfigError


@pytest.mark.slow
def test_tiny_demo_runs_every_stage_and_can_be_rerun(tmp_path):
    out = tmp_path / "demo"
    result = run_demo(out, n=12, size=32, epochs=1, model="test_unet", progress=False)
    assert (out / MARKER).is_file()
    for key in ("checkpoint", "release", "evaluation", "predictions", "overlays"):
        assert (tmp_path / result[key]).exists(), key
    assert 0.0 <= result["best_val_dice"] <= 1.0
    assert len(list((out / "predictions").glob("*.png"))) == 12
    run_demo(out, n=12, size=32, epochs=1, model="test_unet", progress=False)  # an earlier demo is replaced


def test_demo_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not an earlier demo"):
        run_demo(tmp_path, n=12, size=32, epochs=1, model="test_unet", progress=False)
    assert (tmp_path / "mine.txt").read_text() == "keep me"
