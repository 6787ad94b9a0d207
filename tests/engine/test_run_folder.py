from __future__ import annotations

import os

import pytest

from specmamba.engine.run_folder import RunFolder
from specmamba.errors import ConfigError


def test_the_lock_creates_the_folder_and_removes_it_when_nothing_was_written(tmp_path):
    run = RunFolder(tmp_path / "a" / "run")
    with run.locked():
        assert run.root.is_dir()
    assert not run.root.exists() and (tmp_path / "a").is_dir()
    with run.locked():
        run.summary.write_text("{}")
    assert run.summary.is_file()  # a folder holding output stays


def test_a_locked_folder_is_refused_to_a_second_writer(tmp_path):
    run = RunFolder(tmp_path / "run")
    with run.locked():
        with pytest.raises(ConfigError, match=f"being written by another process \\(pid {os.getpid()}\\)"):
            with RunFolder(tmp_path / "run").locked():
                pass
    with RunFolder(tmp_path / "run").locked():  # released
        pass


def test_overwrite_sets_the_previous_run_aside_until_discarded_or_restored(tmp_path):
    run = RunFolder(tmp_path)
    run.summary.write_text("old")
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="already holds a run.*--resume.*--overwrite"):
        run.prepare(resume=False, overwrite=False)
    assert run.summary.read_text() == "old"
    run.prepare(resume=False, overwrite=True)
    assert not run.summary.exists() and (run.set_aside_folder / "summary.json").read_text() == "old"
    run.summary.write_text("new, not yet checkpointed")
    run.restore_set_aside()  # the new run failed before its first checkpoint
    assert run.summary.read_text() == "old" and not run.set_aside_folder.exists()
    run.prepare(resume=False, overwrite=True)
    run.discard_set_aside()  # the new run saved its first checkpoint
    assert not run.summary.exists() and not run.set_aside_folder.exists()
    assert (tmp_path / "notes.txt").read_text() == "mine"  # only run files are replaced


def test_a_set_aside_run_is_put_back_or_dropped_by_the_next_prepare(tmp_path):
    run = RunFolder(tmp_path)
    run.summary.write_text("old")
    run.prepare(resume=False, overwrite=True)  # then killed before the new run's first checkpoint
    with pytest.raises(ConfigError, match="already holds a run"):
        run.prepare(resume=False, overwrite=False)  # the old run is back, and protected again
    assert run.summary.read_text() == "old"
    run.prepare(resume=False, overwrite=True)
    run.last.write_bytes(b"the new run's first checkpoint")  # then killed before discarding
    run.prepare(resume=True, overwrite=False)
    assert not run.set_aside_folder.exists() and not run.summary.exists()


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
