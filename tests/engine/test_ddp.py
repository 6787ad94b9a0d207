"""The trainer under torchrun: 2 processes, gloo backend, on CPU, with a model that returns a SegOutput
and a criterion with learnable weights (the parameters DDP does not see)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from specmamba.engine.distributed import DistContext, average_gradients
from specmamba.engine.run_folder import RunFolder
from specmamba.models import read_checkpoint

TESTS = Path(__file__).resolve().parents[1]

# torchrun runs this instead of `-m specmamba`, so that the fakes of tests/fakes.py are registered
_LAUNCHER = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
import fakes  # noqa: F401
from specmamba.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_two_process_gloo_run(tiny_synth, tmp_path, tiny_train_argv):
    out = tmp_path / "ddp"
    launcher = tmp_path / "launch.py"
    launcher.write_text(_LAUNCHER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(launcher),
    ]
    argv = tiny_train_argv(tiny_synth, out, epochs=2, batch_size=2)
    argv[argv.index("test_unet")] = "test_fake_deep_supervision"
    argv += ["--loss", "test_learned_aux_weights", "--loss-kwarg", "num_aux=2"]
    result = subprocess.run(torchrun + argv, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    run = RunFolder(out)
    summary = run.summary.read_text()
    assert '"world_size": 2' in summary
    rows = run.read_metrics()
    # 18 cases -> 4 validation cases, sharded 2 + 2 without padding: each counted exactly once.
    assert [r["val_cases"] for r in rows] == [4, 4]
    assert "train_loss_aux1" in rows[0]
    assert read_checkpoint(run.last)["criterion_state"]["loss.logits_w"].abs().sum() > 0
    assert run.best.is_file() and run.last.is_file()
    assert not list(out.rglob("*.tmp"))
    # Only rank 0 prints the final summary.
    assert result.stdout.count('"best_epoch"') == 1


def _average_on_rank(rank: int, init: str, results) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        used, unused = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))
        used.grad = torch.full((3,), float(rank + 1))  # rank 0: 1, rank 1: 2
        average_gradients([used, unused], DistContext(rank=rank, world_size=2, local_rank=rank))
        results[rank] = (used.grad.tolist(), unused.grad.tolist())
    finally:
        dist.destroy_process_group()


def test_average_gradients_means_over_ranks_and_joins_with_unused_parameters(tmp_path):
    results = mp.Manager().dict()
    mp.spawn(_average_on_rank, args=(f"file://{tmp_path / 'rendezvous'}", results), nprocs=2, join=True)
    assert dict(results) == {r: ([1.5, 1.5, 1.5], [0.0, 0.0]) for r in (0, 1)}
