"""``specmamba bench scan`` (bench/scan.py, bench/timing.py, cli/bench.py) on tiny shapes.

Lives in tests/ops with the scan it measures; the numbers themselves are never asserted (benchmarks,
not timed tests), only that every figure is produced, consistent and written as JSON.
"""

from __future__ import annotations

import argparse
import json

import pytest

from specmamba.bench import bench_scan, format_table, peak_extra_bytes, time_interleaved, time_ms
from specmamba.bench.scan import VIM_STAGES
from specmamba.cli import bench as cli_bench
from specmamba.errors import ConfigError

TINY = {1: (32, 64), 2: (64, 16)}


def test_bench_scan_tiny_writes_json(tmp_path, capsys):
    out = tmp_path / "scan.json"
    res = bench_scan(stages=(1, 2), shapes=TINY, repeats=1, json_path=out, backends=["ref", "cpu"])
    printed = capsys.readouterr().out
    assert "fwd+bwd ms" in printed and "SS2D" in printed
    assert json.loads(out.read_text()) == json.loads(json.dumps(res))
    rows = {(r["stage"], r["backend"]): r for r in res["scan"]}
    assert set(rows) == {(s, b) for s in (1, 2) for b in ("ref", "cpu")}
    for (stage, _backend), r in rows.items():
        assert (r["d"], r["l"]) == TINY[stage]
        assert r["fwd_ms"] > 0 and r["fwd_bwd_ms"] > 0 and r["fwd_gbps"] > 0
        assert not r["fwd_estimated"] and not r["fwd_bwd_estimated"]  # tiny: ref timed for real
        ref = rows[(stage, "ref")]
        assert r["speedup_fwd"] == pytest.approx(ref["fwd_ms"] / r["fwd_ms"])
    assert [(r["stage"], r["fused_backend"]) for r in res["ss2d"]] == [(1, "cpu"), (2, "cpu")]
    assert all(r["ratio"] > 0 for r in res["ss2d"])
    assert all(r["vs_mamba_ssm_fwd_bwd"] is None for r in res["scan"])  # no mamba-ssm on CPU
    for r in res["scan"]:  # GFLOP/s at 28 FLOPs per state update, and the share of the run's GEMM
        flop = r["d"] * r["l"] * 16 * 28
        assert r["fwd_gflops"] == pytest.approx(flop / (r["fwd_ms"] * 1e6))
        assert r["fwd_bwd_gflops"] == pytest.approx(3 * flop / (r["fwd_bwd_ms"] * 1e6))
        assert r["fwd_peak_share"] == pytest.approx(r["fwd_gflops"] / res["meta"]["gemm"]["gflops"])
    assert "machine peak (same run): fp32 GEMM 1024^3" in printed
    assert "x mamba_ssm" not in printed


def test_bench_scan_has_vims_bidirectional_stages(capsys):
    """vim196 / vim1024 are Vim's two directions in one call (g = 2), any length, no SS2D comparison."""
    res = bench_scan(stages=("vim196",), shapes={"vim196": (16, 21)}, repeats=1, backends=["ref", "cpu"])
    # one row for each of ref and cpu
    assert [(r["stage"], r["g"], r["d"], r["l"]) for r in res["scan"]] == [("vim196", 2, 16, 21)] * 2
    assert res["ss2d"] == []
    assert "vim196" in capsys.readouterr().out
    assert VIM_STAGES == {"vim196": (768, 196), "vim1024": (768, 1024)}  # vim_tiny: 2 x E = 2 x 384


def test_bench_scan_skips_ref_over_budget(capsys):
    res = bench_scan(stages=(1,), shapes=TINY, repeats=1, ref_budget_s=0.0, ss2d=False, backends=["cpu"])
    ref = next(r for r in res["scan"] if r["backend"] == "ref")
    assert ref["fwd_estimated"] and ref["fwd_bwd_estimated"] and ref["fwd_ms"] > 0
    assert "skipped (est." in capsys.readouterr().out
    assert res["ss2d"] == []


def test_bench_scan_rejects_bad_arguments():
    with pytest.raises(ConfigError, match="stages"):
        bench_scan(stages=(5,), verbose=False)
    with pytest.raises(ConfigError, match="square"):
        bench_scan(stages=(1,), shapes={1: (32, 50)}, verbose=False)
    with pytest.raises(ConfigError, match="batch"):
        bench_scan(batch=0, stages=(1,), shapes=TINY, verbose=False)


def test_cli_bench_scan(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="specmamba")
    cli_bench.register(parser.add_subparsers(dest="command"))
    out = tmp_path / "b.json"
    args = parser.parse_args(
        [
            "bench",
            "scan",
            "--stages",
            "4",
            "--backends",
            "cpu",
            "--repeats",
            "1",
            "--ref-budget",
            "0",
            "--no-ss2d",
            "--json",
            str(out),
        ]
    )
    assert args.device == "cpu" and args.stages == [4] and args.backends == ["cpu"]
    # the real stage 4 shape (d = 6144, l = 64) runs in well under a second on the cpu backend
    assert args.func(args) == 0
    data = json.loads(out.read_text())
    assert data["meta"]["batch"] == 1 and {r["backend"] for r in data["scan"]} == {"ref", "cpu"}
    assert "stage" in capsys.readouterr().out


def test_time_interleaved_takes_the_calls_in_turns():
    order: list[str] = []
    timings = time_interleaved([lambda: order.append("a"), lambda: order.append("b")], repeats=3, warmup=1)
    assert order == ["a", "b"] * 4  # one warm-up round, then three timed rounds, each a then b
    assert [t.repeats for t in timings] == [3, 3]
    assert all(0 <= t.min_ms <= t.median_ms for t in timings)
    with pytest.raises(ValueError, match="repeats"):
        time_interleaved([lambda: None], repeats=0)


def test_timing_helpers():
    t = time_ms(lambda: sum(range(1000)), repeats=3, warmup=1)
    assert t.repeats == 3 and 0 < t.min_ms <= t.median_ms
    extra = peak_extra_bytes(lambda: bytearray(64 * 2**20))
    if extra is not None:
        assert 32 * 2**20 < extra < 256 * 2**20
    table = format_table([[1, 2.5, None]], ["a", "bb", "c"])
    assert (
        table.splitlines()[0].split() == ["a", "bb", "c"] and "2.50" in table and "-" in table.splitlines()[2]
    )


def test_rows_are_compared_with_mamba_ssm_when_it_ran():
    from specmamba.bench.scan import _render

    def row(backend: str, fwd_bwd_ms: float, ratio: float) -> dict:
        return {
            "stage": 1, "d": 768, "l": 4096, "g": 4, "backend": backend, "fwd_ms": 1.0,
            "fwd_bwd_ms": fwd_bwd_ms, "fwd_estimated": False, "fwd_bwd_estimated": False,
            "peak_extra_mb": None, "fwd_gbps": 1.0, "speedup_fwd": 1.0, "speedup_fwd_bwd": 1.0,
            "vs_mamba_ssm_fwd_bwd": ratio,
        }  # fmt: skip

    meta = {"device": "gpu", "batch": 8, "threads": 1, "repeats": 3}
    rows = [row("ref", 100.0, 0.02), row("mamba_ssm", 2.0, 1.0), row("triton", 1.6, 1.25)]
    text = _render({"meta": meta, "scan": rows, "ss2d": []})
    assert "x mamba_ssm fwd+bwd" in text
    assert text.splitlines()[-1].rstrip().endswith("1.25x")
