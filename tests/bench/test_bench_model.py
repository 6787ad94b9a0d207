"""The model benchmark (``specmamba.bench.model``), on CPU with ``test_vmunet`` at a tiny size."""

from __future__ import annotations

import json

import pytest
import torch

from specmamba.bench.model import REFERENCE, bench_model
from specmamba.errors import BackendUnavailableError, ConfigError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(params=[None, "no oneDNN bf16 kernels here"], ids=["bf16-native", "bf16-slow"])
def slow_bf16(request, monkeypatch):
    """Both kinds of CPU: with oneDNN bf16 kernels (bf16 rows timed) and without (skipped, said why)."""
    monkeypatch.setattr("specmamba.bench.model.why_cpu_bf16_is_slow", lambda: request.param)
    return request.param


@pytest.fixture
def native_bf16(monkeypatch):
    """A CPU with oneDNN bf16 kernels, so that the bf16 rows are timed whatever this machine is."""
    monkeypatch.setattr("specmamba.bench.model.why_cpu_bf16_is_slow", lambda: None)


def test_cpu_rows_json_and_table(tmp_path, capsys, slow_bf16):
    out = tmp_path / "bench.json"
    result = bench_model(model="test_vmunet", img_size=32, repeats=1, json_path=out, compare_to=None)
    rows = result["rows"]
    printed = capsys.readouterr().out
    if slow_bf16:
        assert [r["precision"] for r in rows] == ["fp32", "fp32", "fp32"]
        assert f"CPU bf16 rows skipped: {slow_bf16}" in printed and "bf16 autocast" not in printed
        assert result["meta"]["cpu_bf16"] == f"bf16 rows skipped: {slow_bf16}"
        return
    assert "cpu_bf16" not in result["meta"]
    assert [r["backend"] for r in rows] == ["cpu", "ref", "cpu", "auto", "auto"]
    assert [r["unit"] for r in rows] == ["s", "s", "s", "img/s", "img/s"]
    assert [r["precision"] for r in rows] == ["fp32", "fp32", "bf16", "fp32", "bf16"]  # bf16: opt-in autocast
    assert all(r["value"] > 0 and r["section"] == "cpu" for r in rows)
    assert not rows[1]["estimated"]  # tiny: the sequential scan is timed, not estimated
    # Other model and size than the official figure: shown but not compared.
    assert rows[0]["reference"] is None and rows[0]["better_by"] is None
    assert "vmunet, 256px, batch 1" in rows[0]["reference_note"]
    assert result["meta"]["model"] == "test_vmunet" and result["meta"]["img_size"] == 32
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert not list(tmp_path.glob("*.tmp"))
    assert "scan backend cpu" in printed and "scan backend ref" in printed and "training, images/s" in printed
    assert "scan backend cpu, bf16 autocast" in printed and "bf16 autocast, AdamW step" in printed
    # every figure as GFLOP/s and a share of the GEMM peak measured in the same run
    assert result["meta"]["gemm"]["gflops"] > 0 and "CPU peak (same run): fp32 GEMM 1024^3" in printed
    for r in rows:
        assert r["gflops"] == pytest.approx(r["gflop"] / (r["value"] if r["unit"] == "s" else 2 / r["value"]))
        assert r["peak_share"] == pytest.approx(r["gflops"] / result["meta"]["gemm"]["gflops"])
    assert rows[3]["gflop"] == pytest.approx(3 * 2 * rows[0]["gflop"], rel=0.05)  # batch 2, fwd+bwd = 3x
    assert "% of peak" in printed


def test_another_model_is_set_against_the_comparison_model_in_the_same_run(capsys, native_bf16):
    result = bench_model(
        model="test_spec_vmamba", img_size=32, backends=["cpu"], repeats=1, compare_to="test_vmunet"
    )
    rows = result["rows"]
    assert [r.get("model") for r in rows] == ["test_spec_vmamba"] * 4 + ["test_vmunet"] * 4 + [None] * 2
    fp32 = [r for r in rows[:8] if r["precision"] == "fp32"]  # the ratios compare fp32 figures
    infer = {r["model"]: r["value"] for r in fp32 if r["unit"] == "s"}
    train = {r["model"]: r["value"] for r in fp32 if r["unit"] == "img/s"}
    assert rows[8]["value"] == pytest.approx(infer["test_spec_vmamba"] / infer["test_vmunet"])
    assert rows[9]["value"] == pytest.approx(train["test_spec_vmamba"] / train["test_vmunet"])
    assert result["meta"]["compare_to"] == "test_vmunet"
    assert "test_vmunet: inference" in capsys.readouterr().out


def test_threads_are_set_for_the_run_and_restored():
    result = bench_model(
        model="test_vmunet",
        img_size=32,
        backends=["cpu"],
        repeats=1,
        threads=2,
        verbose=False,
        compare_to=None,
    )
    assert result["meta"]["threads"] == 2 and torch.get_num_threads() == 1


def test_ref_is_estimated_beyond_its_budget():
    result = bench_model(
        model="test_vmunet",
        img_size=64,
        backends=["ref"],
        repeats=1,
        ref_budget_s=0.0,
        verbose=False,
        compare_to=None,
    )
    ref = result["rows"][0]
    assert ref["backend"] == "ref" and ref["estimated"] and ref["value"] > 0


def test_reference_compared_only_in_its_setting():
    from specmamba.bench.model import _row

    row = _row("cpu", "x", 1.53, "s", higher_is_better=False, key="cpu_infer_s", setting=("vmunet", 256, 1))
    assert row["reference"] == REFERENCE["cpu_infer_s"]["value"] == 15.3
    assert row["better_by"] == pytest.approx(10.0)

    def train_row(batch: int) -> dict:
        setting = ("vmunet_deep", 256, batch)
        return _row(
            "cuda", "x", 167.4, "img/s", higher_is_better=True, key="cuda_train_fp32_img_s", setting=setting
        )

    assert train_row(32)["better_by"] == pytest.approx(2.0)
    row = train_row(8)
    assert row["reference"] is None and row["better_by"] is None


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"device": "tpu"}, ConfigError, "device must be"),
        ({"img_size": 48}, ConfigError, "use 64"),
        ({"backends": ["fast"]}, ConfigError, "backends must be among"),
        ({"batch": 0}, ConfigError, "batch must be a positive integer"),
        ({"model": "test_unet"}, ConfigError, "no selective scan"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        bench_model(**{"model": "test_vmunet", "img_size": 32, "verbose": False, **kwargs})


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(BackendUnavailableError, match="CUDA is not available"):
        bench_model(model="test_vmunet", device="cuda", img_size=32, verbose=False)


@pytest.mark.gpu
def test_cuda_rows():
    result = bench_model(
        model="test_vmunet",
        device="cuda",
        cuda_model="test_vmunet",
        img_size=64,
        batch=4,
        repeats=2,
        verbose=False,
    )
    figures = [r["figure"] for r in result["rows"]]
    assert any("bf16" in f for f in figures) and any("latency" in f for f in figures)
    assert all(r["value"] > 0 for r in result["rows"])


def test_cuda_section_logic_runs_on_cpu():
    """The CUDA section's rows and reference matching, run on CPU (it has no hardware in CI)."""
    from specmamba.bench.model import _bench_accelerator

    rows = _bench_accelerator("test_vmunet", 32, 2, ["cpu"], 1, torch.device("cpu"))
    figures = [r["figure"] for r in rows]
    assert figures == [
        "training, images/s (batch 2, fp32)",
        "training, images/s (batch 2, bf16)",
        "inference latency, ms (batch 1, fp32)",
        "inference throughput, images/s (batch 2, fp32)",
    ]  # no peak-memory rows off CUDA
    assert all(r["value"] > 0 and r["backend"] == "cpu" for r in rows)
    # the official figures hold for vmunet_deep at 256 px and batch 32 only
    assert all(r["reference"] is None and "vmunet_deep" in r["reference_note"] for r in rows)


def test_a_deep_supervision_model_trains_through_the_criterion(native_bf16):
    result = bench_model(
        model="test_vmaml_unet", img_size=64, backends=["cpu"], repeats=1, compare_to=None, verbose=False
    )
    assert [r["unit"] for r in result["rows"]] == ["s", "s", "img/s", "img/s"] and all(
        r["value"] > 0 for r in result["rows"]
    )
