"""`specmamba audit` end to end on tiny trained checkpoints: files, statistics, bad input."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch

from specmamba.cli.main import main
from specmamba.errors import CheckpointError, ConfigError, DataError
from specmamba.models import read_checkpoint
from specmamba.spectral import audit as audit_module
from specmamba.spectral.audit import AuditSettings, run_audit

PUBLISHED = (
    "boundary_results.csv",
    "correlation_results.csv",
    "shift_consistency_results.csv",
    "avr_stagewise_results_matched.csv",
    "band_decomposition_results.csv",
)
FIGURES = (
    "stagewise_avr_bars",
    "band_decomposition",
    "power_spectrum_grid",
    "shift_consistency_curves",
    "avr_bf1_scatter",
)
FAST = dict(shifts=(1.0, 0.5), directions=("horizontal", "diagonal"), n_boot=50)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def audit_all(checkpoints, data, out, device="cpu"):
    """The fast audit of all three tiny checkpoints (same batches every time, so outputs are comparable)."""
    paths = [checkpoints["unet0"], checkpoints["unet1"], checkpoints["vm"]]
    return run_audit(
        paths, data, out, device=device, batch_size=3, settings=AuditSettings(**FAST), progress=False
    )


@pytest.fixture(scope="module")
def checkpoints(tiny_synth, train_tiny, tmp_path_factory):
    """Two seeds of test_unet and one test_vmunet, one epoch each on 32x32 synthetic lesions."""
    root = tmp_path_factory.mktemp("audit_runs")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    runs = (("unet0", "test_unet", 0), ("unet1", "test_unet", 1), ("vm", "test_vmunet", 0))
    paths = {name: train_tiny(tiny_synth, root / name, model, seed=seed) for name, model, seed in runs}
    torch.set_num_threads(before)
    return paths


@pytest.fixture(scope="module")
def full_audit(checkpoints, tiny_synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("audit") / "out"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    summary = audit_all(checkpoints, tiny_synth, out)
    torch.set_num_threads(before)
    return out, summary


def test_the_audit_writes_the_published_tables_figures_and_report(full_audit):
    out, summary = full_audit
    for name in (*PUBLISHED, "per_image.csv", "avr_channel_distribution.csv", "summary.json", "report.html"):
        assert (out / name).stat().st_size > 0, name
    for name in FIGURES:
        assert (out / f"{name}.png").is_file() and (out / f"{name}.pdf").is_file(), name
    assert not list(out.glob(".*tmp"))
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html
    for name in PUBLISHED:
        assert name in html
    assert torch.__version__ in html
    assert summary["n_images"] == 4
    assert [c["label"] for c in summary["checkpoints"]] == [
        "test_unet-seed0",
        "test_unet-seed1",
        "test_vmunet",
    ]
    assert all(len(c["sha256"]) == 64 for c in summary["checkpoints"])


def test_per_image_rows_and_stage_measurability(full_audit):
    out, _ = full_audit
    rows = read_csv(out / "per_image.csv")
    assert len(rows) == 3 * 4
    vm = [r for r in rows if r["architecture"] == "test_vmunet"]
    unet = [r for r in rows if r["architecture"] == "test_unet"]
    # test_vmunet at 32 px: stages of 8, 4, 2, 1 px; the last two are not measurable -> empty cells
    assert all(r["avr_s1"] and r["avr_s2"] and r["avr_s3"] == "" and r["avr_s4"] == "" for r in vm)
    assert all(r["avr_s4"] != "" for r in unet)  # test_unet keeps 4x4 at its deepest stage
    for r in unet:
        stage_avrs = [float(r[f"avr_s{k}"]) for k in range(1, 5)]
        assert float(r["avr_mean"]) == pytest.approx(sum(stage_avrs) / 4, rel=1e-6)
        assert sum(float(r[f"{b}_s1"]) for b in ("low", "mid", "high")) == pytest.approx(1.0, abs=1e-6)
    stages = read_csv(out / "avr_stagewise_results_matched.csv")
    vm_stage3 = next(r for r in stages if r["checkpoint"] == "test_vmunet" and r["stage"] == "3")
    assert vm_stage3["measurable"] == "no" and vm_stage3["avr_mean"] == "" and vm_stage3["map_size"] == "2x2"
    summary = json.loads((out / "summary.json").read_text())
    assert any("stage 3" in note and "not measurable" in note for note in summary["notes"])
    assert "not measurable" in (out / "report.html").read_text()


def test_architecture_rows_are_mean_and_std_over_seeds(full_audit):
    out, _ = full_audit
    rows = read_csv(out / "boundary_results.csv")
    seeds = [r for r in rows if r["level"] == "checkpoint" and r["architecture"] == "test_unet"]
    arch = next(r for r in rows if r["level"] == "architecture" and r["architecture"] == "test_unet")
    dice = [float(r["dice_mean"]) for r in seeds]
    assert arch["n_checkpoints"] == "2" and arch["std_over"] == "checkpoints"
    assert float(arch["dice_mean"]) == pytest.approx(sum(dice) / 2, rel=1e-6)
    assert float(arch["dice_std"]) == pytest.approx(abs(dice[0] - dice[1]) / 2**0.5, rel=1e-5, abs=1e-9)
    assert arch["dice_ci_low"] == ""  # intervals are over images, not seeds
    single = next(r for r in rows if r["level"] == "architecture" and r["architecture"] == "test_vmunet")
    assert single["n_checkpoints"] == "1" and single["dice_std"] == ""


def test_correlations_per_checkpoint_pooled_and_partial(full_audit):
    out, _ = full_audit
    rows = read_csv(out / "correlation_results.csv")
    scopes = {(r["scope"], r["stage"], r["y"]) for r in rows}
    for y in ("bf1", "dice"):
        assert ("pooled", "mean", y) in scopes and ("partial", "mean", y) in scopes
        assert ("architecture", "mean", y) in scopes  # two seeds of test_unet
    # stage 3 is measured by test_unet only: no pooled comparison across architectures there
    assert ("pooled", "3", "bf1") not in scopes and ("checkpoint", "3", "bf1") in scopes
    pooled = next(r for r in rows if r["scope"] == "pooled" and r["stage"] == "mean" and r["y"] == "bf1")
    assert pooled["n"] == "12"


def test_shift_table_covers_every_direction_mode_and_amount(full_audit):
    out, _ = full_audit
    rows = [r for r in read_csv(out / "shift_consistency_results.csv") if r["level"] == "checkpoint"]
    keys = {(r["direction"], r["mode"], float(r["shift"])) for r in rows}
    assert keys == {
        (d, m, s) for d in ("horizontal", "diagonal") for m in ("cyclic", "reflect") for s in (1, 0.5)
    }
    assert all(0.0 <= float(r["iou_mean"]) <= 1.0 and r["n_images"] == "4" for r in rows)


def test_the_audit_is_deterministic(full_audit, checkpoints, tiny_synth, tmp_path, one_torch_thread):
    out, _ = full_audit
    again = tmp_path / "again"
    audit_all(checkpoints, tiny_synth, again)
    for name in (*PUBLISHED, "per_image.csv", "avr_channel_distribution.csv"):
        assert (again / name).read_text() == (out / name).read_text(), name


def test_a_single_architecture_skips_pooled_statistics_with_a_note(checkpoints, tiny_synth, tmp_path):
    summary = run_audit(
        [checkpoints["vm"]],
        tiny_synth,
        tmp_path / "one",
        device="cpu",
        settings=AuditSettings(shift_images=0, n_boot=0),
        progress=False,
    )
    rows = read_csv(tmp_path / "one" / "correlation_results.csv")
    assert rows and {r["scope"] for r in rows} == {"checkpoint"}
    assert any("Pooled and partial correlations are skipped" in n for n in summary["notes"])
    assert "Pooled and partial correlations are skipped" in (tmp_path / "one" / "report.html").read_text()
    assert not (tmp_path / "one" / "shift_consistency_results.csv").exists()


def test_an_interrupted_rerun_keeps_the_earlier_report(
    full_audit, checkpoints, tiny_synth, tmp_path, monkeypatch
):
    out = tmp_path / "copy"
    shutil.copytree(full_audit[0], out)
    before = (out / "report.html").read_bytes()

    def broken_report(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(audit_module, "write_report", broken_report)
    with pytest.raises(RuntimeError, match="disk full"):
        run_audit(
            [checkpoints["vm"]],
            tiny_synth,
            out,
            device="cpu",
            overwrite=True,
            settings=AuditSettings(shift_images=0, n_boot=0),
            progress=False,
        )
    assert (out / "report.html").read_bytes() == before
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_bad_input_is_refused_before_any_work(checkpoints, tiny_synth, tmp_path, monkeypatch):
    unknown = read_checkpoint(checkpoints["vm"])
    unknown["model_name"] = "no_such_net"
    torch.save(unknown, tmp_path / "unknown.pt")
    with pytest.raises(CheckpointError, match=r"unknown.pt holds a 'no_such_net' model"):
        run_audit([tmp_path / "unknown.pt"], tiny_synth, tmp_path / "a", progress=False)

    other_split = read_checkpoint(checkpoints["unet0"])
    other_split["config"]["split_seed"] = 7
    torch.save(other_split, tmp_path / "other_split.pt")
    with pytest.raises(ConfigError, match="different splits"):
        run_audit(
            [checkpoints["vm"], tmp_path / "other_split.pt"], tiny_synth, tmp_path / "b", progress=False
        )

    data = tmp_path / "data"
    shutil.copytree(tiny_synth, data)
    (data / "test.txt").write_text("# no cases yet\n")
    with pytest.raises(DataError, match="has no images"):
        run_audit([checkpoints["vm"]], data, tmp_path / "c", split="test", progress=False)

    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="exists and is not empty"):
        run_audit([checkpoints["vm"]], tiny_synth, tmp_path / "busy", progress=False)

    class NoStages(torch.nn.Module):
        feature_info: list = []

    real = audit_module.load_training_checkpoint
    monkeypatch.setattr(audit_module, "load_training_checkpoint", lambda p: (real(p)[0], NoStages()))
    with pytest.raises(ConfigError, match="declares no encoder stages"):
        run_audit([checkpoints["vm"]], tiny_synth, tmp_path / "d", progress=False)
    assert not any((tmp_path / name).exists() for name in "abcd")


def audit_argv(checkpoint, data, out, *extra: str) -> list[str]:
    return ["audit", "--checkpoint", str(checkpoint), "--data", str(data), "--out", str(out), *extra]


def test_cli_reports_bad_input_in_one_paragraph(checkpoints, tiny_synth, tmp_path, capsys):
    code = main(audit_argv(tmp_path / "missing.pt", tiny_synth, tmp_path / "x"))
    err = capsys.readouterr().err
    assert code == 2 and "missing.pt" in err and "Traceback" not in err
    code = main(audit_argv(checkpoints["vm"], tiny_synth, tmp_path / "y", "--max-images", "0"))
    assert code == 2 and "max_images" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(audit_argv(checkpoints["vm"], tiny_synth, tmp_path / "z", "--shift-directions", "sideways"))


def test_cli_runs_the_audit(checkpoints, tiny_synth, tmp_path, capsys, one_torch_thread):
    extra = "--no-progress --shifts 1 --shift-directions vertical --shift-modes reflect --shift-images 2"
    argv = audit_argv(checkpoints["unet0"], tiny_synth, tmp_path / "cli", *extra.split())
    argv += ["--checkpoint", str(checkpoints["vm"]), "--bootstrap", "20", "--device", "cpu"]
    code = main(argv)
    out = capsys.readouterr().out
    assert code == 0 and "test_vmunet" in out and "report.html" in out
    rows = read_csv(tmp_path / "cli" / "shift_consistency_results.csv")
    assert {(r["direction"], r["mode"], r["shift"], r["n_images"]) for r in rows} == {
        ("vertical", "reflect", "1.0", "2")  # shifts are floats (sub-pixel shifts exist)
    }
    summary = json.loads((tmp_path / "cli" / "summary.json").read_text())
    assert summary["command"].startswith("specmamba audit")


@pytest.mark.gpu
def test_the_audit_on_cuda_matches_the_cpu(full_audit, checkpoints, tiny_synth, tmp_path):
    out, _ = full_audit
    audit_all(checkpoints, tiny_synth, tmp_path / "cuda", device="cuda")
    cpu_rows, cuda_rows = read_csv(out / "per_image.csv"), read_csv(tmp_path / "cuda" / "per_image.csv")
    for cpu, gpu in zip(cpu_rows, cuda_rows):
        for key in ("avr_mean", "avr_s1", "low_s1"):  # cuDNN may use TF32: agreement to ~1e-4
            assert float(gpu[key]) == pytest.approx(float(cpu[key]), abs=1e-3), key
        assert float(gpu["dice"]) == pytest.approx(float(cpu["dice"]), abs=0.02)  # a few boundary pixels


def test_an_ablation_is_its_own_architecture_not_a_seed(checkpoints, tiny_synth, train_tiny, tmp_path):
    from specmamba.spectral.audit import load_audited_models

    narrow = train_tiny(tiny_synth, tmp_path / "narrow", "test_unet", model_kwargs={"base_width": 4})
    entries = load_audited_models([checkpoints["unet0"], checkpoints["unet1"], narrow])
    assert [e.architecture for e in entries] == ["test_unet", "test_unet", "test_unet(base_width=4)"]
    assert [e.label for e in entries] == ["test_unet-seed0", "test_unet-seed1", "test_unet(base_width=4)"]
