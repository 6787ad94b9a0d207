from __future__ import annotations

import pytest

from specmamba.engine.run_folder import RunFolder
from specmamba.errors import ConfigError


def test_new_folder_is_created(tmp_path):
    run = RunFolder(tmp_path / "a" / "run")
    run.prepare(resume=False, overwrite=False)
    assert run.root.is_dir()


def test_previous_run_is_refused_then_overwritten(tmp_path):
    run = RunFolder(tmp_path)
    run.summary.write_text("{}")
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="already holds a run.*--resume.*--overwrite"):
        run.prepare(resume=False, overwrite=False)
    assert run.summary.exists()
    run.prepare(resume=False, overwrite=True)
    assert not run.summary.exists()
    assert (tmp_path / "notes.txt").read_text() == "mine"  # only run files are replaced


def test_resume_needs_a_last_checkpoint(tmp_path):
    with pytest.raises(ConfigError, match="checkpoint_last.pt does not exist"):
        RunFolder(tmp_path).prepare(resume=True, overwrite=False)


def test_metrics_rows_round_trip(tmp_path):
    run = RunFolder(tmp_path)
    rows = [{"epoch": 1, "val_dice": 0.5}, {"epoch": 2, "val_dice": 0.75, "extra": "x"}]
    run.write_metrics(rows)
    back = run.read_metrics()
    assert back[0] == {"epoch": 1, "val_dice": 0.5, "extra": ""}
    assert back[1] == {"epoch": 2, "val_dice": 0.75, "extra": "x"}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]  # no temp files left
