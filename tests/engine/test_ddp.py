"""The trainer under torchrun: 2 processes, gloo backend, on CPU."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from specmamba.engine.run_folder import RunFolder


@pytest.mark.slow
def test_two_process_gloo_run(tiny_synth, tmp_path, tiny_train_argv):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m"]
    command = launcher + ["specmamba", *tiny_train_argv(tiny_synth, out, epochs=2, batch_size=2)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    run = RunFolder(out)
    summary = run.summary.read_text()
    assert '"world_size": 2' in summary
    rows = run.read_metrics()
    # 18 cases -> 4 validation cases, sharded 2 + 2 without padding: each counted exactly once.
    assert [r["val_cases"] for r in rows] == [4, 4]
    assert run.best.is_file() and run.last.is_file()
    assert not list(out.rglob("*.tmp"))
    # Only rank 0 prints the final summary.
    assert result.stdout.count('"best_epoch"') == 1
