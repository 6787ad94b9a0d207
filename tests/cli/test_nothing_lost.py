"""Nothing a user gives us is lost or half-written: one test per case of the hostile-user report.

Each ``test_caseNN_...`` reproduces case NN of the issue "Nothing a user gives us is lost or
half-written" on the command line, with the fault it names injected for real where the test can (a
subprocess killed with ``os._exit`` inside the save path, a read-only or tiny tmpfs), and by a write
that raises ENOSPC otherwise. Every error must be the package's paragraph (exit 2, no traceback).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from faults import fail_with_enospc, fill_disk, mounted_tmpfs, read_only_folder
from specmamba.cli.main import main
from specmamba.data import find_pairs, make_synthetic_dataset, read_mask
from specmamba.errors import DataError

REPO = Path(__file__).resolve().parents[2]


def _error(capsys) -> str:
    """stderr of the last command as one line; it must be the package's paragraph, not a traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return " ".join(err.split())


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones included) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def train_cli(tiny_train_argv):
    return lambda data, out, *extra, **kw: main(tiny_train_argv(data, out, *extra, **kw))


@pytest.fixture(scope="module")
def trained(tiny_synth, tiny_train_argv, tmp_path_factory) -> Path:
    """A finished one-epoch test_unet run (read-only for tests: copy before modifying)."""
    run = tmp_path_factory.mktemp("trained") / "run"
    assert main(tiny_train_argv(tiny_synth, run)) == 0
    return run


def _predict(checkpoint: Path, images: Path, out: Path, *extra: str) -> int:
    argv = ["predict", "--checkpoint", str(checkpoint), "-i", str(images), "-o", str(out)]
    return main([*argv, "--device", "cpu", "--no-progress", *extra])


def _evaluate(checkpoint: Path, data: Path, out: Path, *extra: str) -> int:
    argv = ["evaluate", "--checkpoint", str(checkpoint), "--data", str(data), "--out", str(out)]
    return main([*argv, "--device", "cpu", "--no-progress", *extra])


def _image_folder(tiny_synth: Path, folder: Path) -> Path:
    return shutil.copytree(tiny_synth / "images", folder)


# -- 1. predict into its own input folder --------------------------------------------------------------


def test_case01_predict_refuses_its_input_folder_and_a_folder_containing_it(
    trained, tiny_synth, tmp_path, capsys
):
    images = _image_folder(tiny_synth, tmp_path / "data" / "images")
    before = _files(tmp_path / "data")
    checkpoint = trained / "checkpoint_best.pt"
    for out in (images, tmp_path / "data"):
        for extra in ((), ("--overwrite",)):
            assert _predict(checkpoint, images, out, *extra) == 2
            message = _error(capsys)
            assert "input" in message and str(images) in message
    assert _files(tmp_path / "data") == before


# -- 2. predict over earlier masks; two images that would give one mask --------------------------------


def test_case02_predict_refuses_to_overwrite_masks_without_overwrite(trained, tiny_synth, tmp_path, capsys):
    images = _image_folder(tiny_synth, tmp_path / "images")
    checkpoint = trained / "checkpoint_best.pt"
    out = tmp_path / "pred"
    assert _predict(checkpoint, images, out) == 0
    capsys.readouterr()
    (out / "synth_0000.png").write_bytes(b"my edited mask")
    (out / "notes.txt").write_text("mine")
    before = _files(out)
    assert _predict(checkpoint, images, out) == 2
    message = _error(capsys)
    assert "--overwrite" in message and "synth_0000.png" in message
    assert _files(out) == before
    assert _predict(checkpoint, images, out, "--overwrite") == 0
    assert (out / "synth_0000.png").read_bytes() != b"my edited mask"
    assert (out / "notes.txt").read_text() == "mine"  # files predict does not write are left alone


def test_case02_predict_refuses_two_images_with_one_mask_name(trained, tiny_synth, tmp_path, capsys):
    images = _image_folder(tiny_synth, tmp_path / "images")
    Image.open(images / "synth_0003.png").convert("RGB").save(images / "synth_0003.jpg")
    assert _predict(trained / "checkpoint_best.pt", images, tmp_path / "pred") == 2
    message = _error(capsys)
    assert "synth_0003.jpg" in message and "synth_0003.png" in message
    assert not (tmp_path / "pred").exists()


# -- 3. a truncated image, a full disk: no half-written output -----------------------------------------


def test_case03_predict_with_a_truncated_image_writes_nothing(trained, tmp_path, capsys):
    data = make_synthetic_dataset(tmp_path / "twenty", n=20, size=32, seed=5)
    images = data / "images"
    fifteenth = sorted(images.iterdir())[14]
    fifteenth.write_bytes(fifteenth.read_bytes()[:60])
    out = tmp_path / "pred"
    assert _predict(trained / "checkpoint_best.pt", images, out) == 2
    assert fifteenth.name in _error(capsys)
    assert not out.exists()


def test_case03_predict_on_a_full_disk_leaves_no_partial_masks(
    trained, tiny_synth, tmp_path, capsys, monkeypatch
):
    images = _image_folder(tiny_synth, tmp_path / "images")
    out = tmp_path / "pred"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    monkeypatch.setattr(Image.Image, "save", fail_with_enospc(Image.Image.save, after=3))
    assert _predict(trained / "checkpoint_best.pt", images, out) == 2
    message = _error(capsys)
    assert "No space left on device" in message and str(out) in message
    assert _files(out) == {"notes.txt": b"mine"}


def test_case03_evaluate_on_a_full_disk_leaves_no_partial_tables(
    trained, tiny_synth, tmp_path, capsys, monkeypatch
):
    import specmamba.atomic

    out = tmp_path / "eval"
    monkeypatch.setattr(specmamba.atomic.os, "fsync", fail_with_enospc(os.fsync, after=0))
    assert _evaluate(trained / "checkpoint_best.pt", tiny_synth, out) == 2
    message = _error(capsys)
    assert "No space left on device" in message and str(out) in message
    assert not out.exists() or _files(out) == {}


# -- 4. two processes on one run folder ----------------------------------------------------------------


def test_case04_a_run_folder_being_trained_is_refused_to_a_second_process(
    tiny_synth, tmp_path, capsys, tiny_train_argv
):
    out = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "-m", "specmamba", *tiny_train_argv(tiny_synth, out, epochs=100000)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoint_last.pt").exists():
            assert first.poll() is None, "the first training process ended early"
            assert time.monotonic() < deadline, "the first training process wrote no checkpoint"
            time.sleep(0.2)
        assert main(tiny_train_argv(tiny_synth, out, "--overwrite")) == 2
        assert "another process" in _error(capsys)
        assert main(tiny_train_argv(tiny_synth, out, "--resume")) == 2
        assert "another process" in _error(capsys)
        assert first.poll() is None  # the run in progress was not disturbed
    finally:
        first.kill()
        first.wait()
    # A killed process holds no lock: the run resumes.
    done = torch.load(out / "checkpoint_last.pt", weights_only=True)["epoch"]
    assert main(tiny_train_argv(tiny_synth, out, "--resume", epochs=done + 1)) == 0


# -- 5. killed inside the save path --------------------------------------------------------------------

_KILL_DRIVER = textwrap.dedent(
    """
    import os, sys
    import specmamba.atomic as atomic
    from specmamba.cli.main import main

    name, count, when = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    real_replace, seen = os.replace, {"n": 0}

    def replace(src, dst, *args, **kwargs):
        if os.path.basename(dst) == name:
            seen["n"] += 1
            if seen["n"] == count and when == "before":
                os._exit(9)
        real_replace(src, dst, *args, **kwargs)
        if os.path.basename(dst) == name and seen["n"] == count and when == "after":
            os._exit(9)

    atomic.os.replace = replace
    sys.exit(main(sys.argv[4:]))
    """
)


@pytest.fixture(scope="module")
def uninterrupted(tiny_synth, tiny_train_argv, tmp_path_factory) -> list[dict]:
    """metrics.csv rows of the uninterrupted four-epoch run the killed runs must reproduce."""
    run = tmp_path_factory.mktemp("uninterrupted") / "run"
    assert main(tiny_train_argv(tiny_synth, run, epochs=4)) == 0
    return _metrics(run)


def _metrics(run: Path) -> list[dict]:
    import csv

    with open(run / "metrics.csv", newline="") as fh:
        return [{k: row[k] for k in ("epoch", "train_loss", "val_dice")} for row in csv.DictReader(fh)]


@pytest.mark.parametrize(
    "name, count, when",
    [
        ("checkpoint_best.pt", 2, "before"),  # the reported case: last written, best not yet
        ("checkpoint_last.pt", 2, "after"),
        ("metrics.csv", 2, "before"),
        ("summary.json", 2, "before"),
        ("model.safetensors", 1, "after"),  # during the release export at the end
    ],
)
def test_case05_killed_anywhere_in_the_save_path_resumes_consistent(
    name, count, when, uninterrupted, tiny_synth, tmp_path, tiny_train_argv
):
    out = tmp_path / "run"
    argv = tiny_train_argv(tiny_synth, out, epochs=4)
    killed = subprocess.run(
        [sys.executable, "-c", _KILL_DRIVER, name, str(count), when, *argv], capture_output=True, cwd=REPO
    )
    assert killed.returncode == 9, killed.stderr.decode()[-2000:]
    assert main(tiny_train_argv(tiny_synth, out, "--resume", epochs=4)) == 0
    summary = json.loads((out / "summary.json").read_text())
    best = torch.load(out / "checkpoint_best.pt", weights_only=True)
    release = json.loads((out / "model" / "config.json").read_text())
    assert summary["best_epoch"] == best["epoch"] == release["epoch"]
    assert _metrics(out) == uninterrupted  # every row, and the numbers of the run never killed
    best_row = next(r for r in uninterrupted if int(r["epoch"]) == summary["best_epoch"])
    assert float(best_row["val_dice"]) == summary["best_val_dice"]


# -- 6. --overwrite keeps the old run until the new one has saved --------------------------------------


def test_case06_overwrite_keeps_the_old_run_until_the_new_one_saves(
    trained, tiny_synth, tmp_path, capsys, train_cli
):
    from specmamba.engine import trainer

    run = shutil.copytree(trained, tmp_path / "run")
    before = _files(run)
    assert train_cli(tiny_synth, run, "--overwrite", "--lr", "inf") == 2
    assert "--lr" in _error(capsys)
    assert _files(run) == before

    def diverge(self, *args, **kwargs):
        raise trainer.TrainingDivergedError("The training loss became nan at epoch 1.")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer.Trainer, "_epoch", diverge)
        assert train_cli(tiny_synth, run, "--overwrite") == 2
    message = _error(capsys)
    assert "nan" in message and "is saved" not in message
    assert _files(run) == before  # the old run is back, byte for byte


def test_case06_killed_overwrite_leaves_the_old_run_resumable(trained, tiny_synth, tmp_path, tiny_train_argv):
    run = shutil.copytree(trained, tmp_path / "run")
    before = _files(run)
    driver = textwrap.dedent(
        """
        import os, sys
        from specmamba.engine import trainer
        trainer.Trainer._epoch = lambda self, *a, **k: os._exit(9)
        from specmamba.cli.main import main
        sys.exit(main(sys.argv[1:]))
        """
    )
    argv = tiny_train_argv(tiny_synth, run, "--overwrite")
    assert subprocess.run([sys.executable, "-c", driver, *argv], cwd=REPO).returncode == 9
    # The next command finds the old run in place (put back from where --overwrite had moved it).
    assert main(tiny_train_argv(tiny_synth, run, "--resume", epochs=2)) == 0
    assert json.loads((run / "summary.json").read_text())["epochs_completed"] == 2
    assert _metrics(run)[0] == _metrics_from_bytes(before["metrics.csv"])[0]


def _metrics_from_bytes(data: bytes) -> list[dict]:
    import csv
    import io

    rows = csv.DictReader(io.StringIO(data.decode()))
    return [{k: row[k] for k in ("epoch", "train_loss", "val_dice")} for row in rows]


# -- 7. a relative --data ------------------------------------------------------------------------------


def test_case07_a_run_with_a_relative_data_path_resumes_from_anywhere(
    tiny_synth, tmp_path, monkeypatch, train_cli
):
    shutil.copytree(tiny_synth, tmp_path / "work" / "base")
    monkeypatch.chdir(tmp_path / "work")
    assert train_cli("base", "run") == 0
    stored = yaml.safe_load((tmp_path / "work" / "run" / "config.yaml").read_text())
    assert stored["data"] == str(tmp_path / "work" / "base") and stored["out"] == str(
        tmp_path / "work" / "run"
    )
    monkeypatch.chdir(tmp_path)
    assert train_cli(tmp_path / "work" / "base", tmp_path / "work" / "run", "--resume", epochs=2) == 0
    monkeypatch.chdir(tmp_path / "work")
    assert train_cli("base", "run", "--resume", epochs=3) == 0


# -- 8. preset values of the wrong type; --model-kwarg of a training option ----------------------------


@pytest.mark.parametrize(
    "preset, flag_in_message",
    [
        ("epochs: two\n", "epochs"),
        ("epochs: 1.5\n", "epochs"),
        ("model_kwargs: [1, 2]\n", "model_kwargs"),
        ("batch_size: true\n", "batch_size"),
        ("loss_kwargs: {1: 2}\n", "loss_kwargs"),
    ],
)
def test_case08_preset_values_of_the_wrong_type_are_refused_before_anything_is_written(
    preset, flag_in_message, tiny_synth, tmp_path, capsys, train_cli
):
    config = tmp_path / "preset.yaml"
    config.write_text(preset)
    assert train_cli(tiny_synth, tmp_path / "run", "--config", str(config)) == 2
    message = _error(capsys)
    assert flag_in_message in message and str(config) in message
    assert not (tmp_path / "run").exists()
    assert train_cli(tiny_synth, tmp_path / "run") == 0  # no stub blocks the next run


def test_case08_yaml_exponent_floats_are_read_as_numbers(tiny_synth, tmp_path, train_cli):
    config = tmp_path / "preset.yaml"
    config.write_text("lr: 1e-3\nmin_lr: 5E-6\n")  # YAML 1.1 reads both as strings
    assert train_cli(tiny_synth, tmp_path / "run", "--config", str(config)) == 0
    stored = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert stored["lr"] == 1e-3 and stored["min_lr"] == 5e-6


def test_case08_model_kwarg_of_a_training_option_points_at_its_flag(tiny_synth, tmp_path, capsys, train_cli):
    assert train_cli(tiny_synth, tmp_path / "run", "--model-kwarg", "in_chans=1") == 2
    assert "--in-chans" in _error(capsys)
    assert train_cli(tiny_synth, tmp_path / "run", "--model-kwarg", "bogus=1") == 2
    message = _error(capsys)
    assert "'bogus'" in message and "in_chans" not in message and "num_classes" not in message
    assert not (tmp_path / "run").exists()


# -- 9. unchecked flags --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, named",
    [
        (("--seed", "-1"), "--seed"),
        (("--seed", str(2**70)), "--seed"),
        (("--split-seed", "-3"), "--split-seed"),
        (("--weight-decay", "-1"), "--weight-decay"),
        (("--min-lr", "-1"), "--min-lr"),
        (("--min-lr", "1"), "--min-lr"),  # above --lr
        (("--lr", "nan"), "--lr"),
        (("--warmup-epochs", "inf"), "--warmup-epochs"),
    ],
)
def test_case09_train_flags_out_of_range_are_refused(flags, named, tiny_synth, tmp_path, capsys, train_cli):
    assert train_cli(tiny_synth, tmp_path / "run", *flags) == 2
    assert named in _error(capsys)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flags", [("--batch-size", "0"), ("--workers", "-1")])
def test_case09_predict_and_evaluate_flags_out_of_range_are_refused(
    flags, trained, tiny_synth, tmp_path, capsys
):
    checkpoint = trained / "checkpoint_best.pt"
    for run in (
        lambda: _predict(checkpoint, tiny_synth / "images", tmp_path / "pred", *flags),
        lambda: _evaluate(checkpoint, tiny_synth, tmp_path / "eval", *flags),
    ):
        with pytest.raises(SystemExit) as stop:
            run()
        assert stop.value.code == 2 and flags[0] in _error(capsys)
    assert not (tmp_path / "pred").exists() and not (tmp_path / "eval").exists()


def test_case09_predict_output_that_is_a_file_is_refused(trained, tiny_synth, tmp_path, capsys):
    target = tmp_path / "masks.png"
    target.write_bytes(b"x")
    assert _predict(trained / "checkpoint_best.pt", tiny_synth / "images", target) == 2
    assert str(target) in _error(capsys)
    assert target.read_bytes() == b"x"


# -- 10. read-only and full output folders -------------------------------------------------------------


def test_case10_read_only_output_is_found_before_any_work(
    trained, tiny_synth, tmp_path, capsys, monkeypatch, train_cli
):
    import specmamba.engine.ensemble
    import specmamba.spectral.audit

    def no_work(*args, **kwargs):
        raise AssertionError("computed before finding that the output folder is read-only")

    monkeypatch.setattr(specmamba.engine.ensemble.Ensemble, "logits", no_work)  # predict's and evaluate's
    monkeypatch.setattr(specmamba.spectral.audit, "collect_checkpoint", no_work)
    checkpoint = trained / "checkpoint_best.pt"
    with read_only_folder(tmp_path / "ro") as ro:
        assert train_cli(tiny_synth, ro / "run") == 2
        assert str(ro / "run") in _error(capsys)
        assert _predict(checkpoint, tiny_synth / "images", ro / "pred") == 2
        assert str(ro / "pred") in _error(capsys)
        assert _evaluate(checkpoint, tiny_synth, ro / "eval") == 2
        assert str(ro / "eval") in _error(capsys)
        argv = [
            "audit",
            "--checkpoint",
            str(checkpoint),
            "--data",
            str(tiny_synth),
            "--out",
            str(ro / "audit"),
        ]
        assert main([*argv, "--device", "cpu", "--no-progress", "--bootstrap", "0"]) == 2
        assert str(ro / "audit") in _error(capsys)


def test_case10_full_disk_before_a_checkpoint_is_named_and_keeps_the_last_one(
    trained, tiny_synth, tmp_path, capsys, train_cli
):
    with mounted_tmpfs(tmp_path / "disk", "2m") as disk:
        run = shutil.copytree(trained, disk / "run", ignore=shutil.ignore_patterns("model"))
        before = (run / "checkpoint_last.pt").read_bytes()
        fill_disk(disk, leave=8192)
        assert train_cli(tiny_synth, run, "--resume", epochs=2) == 2
        message = _error(capsys)
        assert str(run) in message and ("space" in message or "disk" in message)
        assert (run / "checkpoint_last.pt").read_bytes() == before
        assert not [p for p in run.iterdir() if p.name.startswith(".") and p.suffix == ".tmp"]


def test_case10_full_disk_during_a_checkpoint_save_is_named_and_keeps_the_last_one(
    trained, tiny_synth, tmp_path, capsys, monkeypatch, train_cli
):
    run = shutil.copytree(trained, tmp_path / "run")
    before = (run / "checkpoint_last.pt").read_bytes()
    monkeypatch.setattr(torch, "save", fail_with_enospc(torch.save, after=0))
    assert train_cli(tiny_synth, run, "--resume", epochs=2) == 2
    message = _error(capsys)
    assert "No space left on device" in message and "checkpoint_last.pt" in message
    assert "enforce fail" not in message
    assert (run / "checkpoint_last.pt").read_bytes() == before
    assert not [p for p in run.iterdir() if p.suffix == ".tmp"]


# -- 11. a folder mixing layouts -----------------------------------------------------------------------


def test_case11_a_folder_mixing_layouts_is_refused(tiny_synth, tmp_path, capsys, train_cli):
    data = shutil.copytree(tiny_synth, tmp_path / "mixed")  # images/ + masks/
    for k in range(3):  # flat pairs beside them
        shutil.copy(data / "images" / f"synth_000{k}.png", data / f"flat{k}.png")
        shutil.copy(data / "masks" / f"synth_000{k}.png", data / f"flat{k}_mask.png")
    (data / "imagesTr").mkdir()
    (data / "labelsTr").mkdir()
    shutil.copy(data / "images" / "synth_0005.png", data / "imagesTr" / "case_0000.png")
    shutil.copy(data / "masks" / "synth_0005.png", data / "labelsTr" / "case.png")
    with pytest.raises(DataError, match="imagesTr.*images.*flat"):
        find_pairs(data)
    assert train_cli(data, tmp_path / "run") == 2
    assert "layouts" in _error(capsys)
    assert not (tmp_path / "run").exists()


# -- 12. a foreign checkpoint; resuming to fewer epochs than were run ----------------------------------


def test_case12_a_foreign_last_checkpoint_does_not_take_the_run_over(
    trained, tiny_synth, tmp_path, capsys, train_cli
):
    run = shutil.copytree(trained, tmp_path / "run")
    other = tmp_path / "other"
    assert train_cli(tiny_synth, other, "--model", "test_unet_resnet") == 0
    shutil.copy(other / "checkpoint_last.pt", run / "checkpoint_last.pt")
    before = _files(run)
    assert (
        main(["train", "--out", str(run), "--resume", "--epochs", "2", "--device", "cpu", "--no-progress"])
        == 2
    )
    message = _error(capsys)
    assert "checkpoint_last.pt" in message and "test_unet_resnet" in message
    assert _files(run) == before


def test_case12_resume_to_fewer_epochs_than_completed_is_refused(tiny_synth, tmp_path, capsys, train_cli):
    run = tmp_path / "run"
    assert train_cli(tiny_synth, run, epochs=2) == 0
    before = _files(run)
    assert train_cli(tiny_synth, run, "--resume", epochs=1) == 2
    assert "--epochs" in _error(capsys)
    assert _files(run) == before


# -- 13. smaller ones ----------------------------------------------------------------------------------


def test_case13_sixteen_bit_binary_masks_are_read(tmp_path):
    values = np.zeros((8, 8), dtype=np.uint16)
    values[2:5, 3:6] = 65535
    Image.fromarray(values).save(tmp_path / "mask.png")
    assert Image.open(tmp_path / "mask.png").mode.startswith("I")
    np.testing.assert_array_equal(read_mask(tmp_path / "mask.png"), (values > 0).astype(np.uint8))


def test_case13_error_paragraphs_keep_flags_whole_and_lists_as_lists():
    from specmamba.cli.main import format_error

    message = (
        "--img-size 100 cannot be used with a model of this kind, whose stages halve the size five times "
        "over; use --img-size 96 or --img-size 128 instead, or another model that takes any size at all. "
        "Two problems:\n- first.png: corrupt\n- second.png: truncated"
    )
    text = format_error(message)
    assert "--img-size 100" in text.replace("\n  ", " ") and "--img-" + "\n" not in text
    for flag in ("--img-size 96", "--img-size 128"):
        assert flag in " ".join(text.split())
    assert "\n  - first.png: corrupt\n  - second.png: truncated" in text


def test_case13_max_images_zero_is_refused_with_the_rule_it_breaks(trained, tiny_synth, tmp_path, capsys):
    argv = ["audit", "--checkpoint", str(trained / "checkpoint_best.pt"), "--data", str(tiny_synth)]
    assert main([*argv, "--out", str(tmp_path / "a"), "--max-images", "0", "--device", "cpu"]) == 2
    message = _error(capsys)
    assert "--max-images" in message and ">= 1" in message and ">= 0" not in message


def test_case13_allow_unpaired_warns_in_one_line(tiny_synth, tmp_path, tiny_train_argv):
    data = shutil.copytree(tiny_synth, tmp_path / "data")
    (data / "masks" / "synth_0000.png").unlink()
    argv = tiny_train_argv(data, tmp_path / "run", "--allow-unpaired")
    done = subprocess.run(
        [sys.executable, "-m", "specmamba", *argv], capture_output=True, text=True, cwd=REPO
    )
    assert done.returncode == 0, done.stderr[-2000:]
    warning = [line for line in done.stderr.splitlines() if "Skipped" in line]
    assert len(warning) == 1 and warning[0].startswith("warning: Skipped 1 images without a mask")
    assert "UserWarning" not in done.stderr and "warnings.warn" not in done.stderr


def test_case13_release_files_have_the_permissions_of_every_other_file(trained):
    modes = {
        str(p.relative_to(trained)): stat.S_IMODE(p.stat().st_mode) for p in trained.rglob("*") if p.is_file()
    }
    assert len(set(modes.values())) == 1, modes


def test_case13_interrupt_hint_names_the_real_run_folder(trained, tiny_synth, tmp_path, capsys, train_cli):
    from specmamba.engine import trainer

    run = shutil.copytree(trained, tmp_path / "my run")
    real_epoch = trainer.Trainer._epoch

    def interrupt_second(self, *args, **kwargs):
        if args[-2] >= 1:  # the epoch index
            raise KeyboardInterrupt
        return real_epoch(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer.Trainer, "_epoch", interrupt_second)
        assert train_cli(tiny_synth, run, "--resume", epochs=3) == 130
        err = " ".join(capsys.readouterr().err.split())
        assert f"--out '{run}' --resume" in err and "--out RUN" not in err
        assert train_cli(tiny_synth, tmp_path / "fresh", epochs=3) == 130
        err = " ".join(capsys.readouterr().err.split())
        assert "--resume" in err  # the fresh run saved its first epoch before the interrupt

    def interrupt_first(self, *args, **kwargs):
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer.Trainer, "_epoch", interrupt_first)
        assert train_cli(tiny_synth, tmp_path / "empty", epochs=3) == 130
        err = " ".join(capsys.readouterr().err.split())
        assert "--resume" not in err


def test_case13_readme_says_which_checkpoints_the_audit_takes():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "on any checkpoints" not in readme
    section = readme[readme.index("### Spectral audit") :][:1500]
    assert "binary" in section
