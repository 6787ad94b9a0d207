"""The trainer under torchrun (2 processes, gloo backend, on CPU), and the gradient averaging of the
parameters DDP does not see (a criterion's learnable loss weights) over two gloo ranks."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from specmamba.engine.distributed import DistContext, average_gradients
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


@pytest.mark.slow
def test_two_process_gloo_run_with_kan_deep_supervision(tiny_synth, tmp_path, tiny_train_argv):
    """VMAML-UNet under DDP: auxiliary heads in train mode only, frozen wavelet filters, the KAN weights
    of the criterion averaged over ranks and saved."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m"]
    argv = tiny_train_argv(
        tiny_synth, out, "--model", "test_vmaml_unet", "--img-size", "64", epochs=1, batch_size=2
    )
    result = subprocess.run(
        launcher + ["specmamba", *argv], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = RunFolder(out)
    assert '"world_size": 2' in run.summary.read_text()
    row = run.read_metrics()[0]
    assert abs(sum(row[f"train_aux_weight{i}"] for i in range(3)) - 1.0) < 1e-6
    state = torch.load(run.last, weights_only=True)["criterion_state"]
    assert "aux_weighting.kan.spline_weight" in state


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
