"""Every bad input of the command line: exit status 2, one paragraph naming the culprit, nothing written."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from specmamba import create_model
from specmamba.cli.main import main
from specmamba.errors import CheckpointError


@pytest.fixture()
def train_cli(tiny_train_argv):
    """Run `specmamba train` on a data folder; returns the exit status."""
    return lambda data, out, *extra: main(tiny_train_argv(data, out, *extra))


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return " ".join(err.split())


@pytest.fixture()
def data(tiny_synth, tmp_path):
    """A private, modifiable copy of the tiny synthetic dataset."""
    return shutil.copytree(tiny_synth, tmp_path / "data")


def test_missing_and_empty_data_folder(tmp_path, capsys, train_cli):
    assert train_cli(tmp_path / "nope", tmp_path / "run") == 2
    assert str(tmp_path / "nope") in _error(capsys)
    (tmp_path / "empty").mkdir()
    assert train_cli(tmp_path / "empty", tmp_path / "run") == 2
    assert "empty" in _error(capsys)
    assert not (tmp_path / "run").exists()


def test_unpaired_files_are_listed_and_can_be_skipped(data, tmp_path, capsys, train_cli):
    for i in range(12):
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(data / "masks" / f"orphan_{i:02d}.png")
    (data / "images" / "synth_0000.png").rename(data / "images" / "lonely.png")
    assert train_cli(data, tmp_path / "run") == 2
    message = _error(capsys)
    assert "orphan_00" in message and "orphan_09" in message and "orphan_11" not in message
    assert "lonely" in message and "--allow-unpaired" in message
    assert not (tmp_path / "run").exists()
    with pytest.warns(UserWarning, match="unpaired"):
        assert train_cli(data, tmp_path / "run", "--allow-unpaired") == 0


def test_corrupt_image(data, tmp_path, capsys, train_cli):
    (data / "images" / "synth_0003.png").write_bytes(b"\x89PNG not really")
    assert train_cli(data, tmp_path / "run") == 2
    assert "synth_0003.png" in _error(capsys)
    assert not (tmp_path / "run").exists()


def test_image_mask_size_mismatch(data, tmp_path, capsys, train_cli):
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(data / "masks" / "synth_0004.png")
    assert train_cli(data, tmp_path / "run") == 2
    message = _error(capsys)
    assert "synth_0004" in message and "24x20" in message
    assert not (tmp_path / "run").exists()


def test_mask_values_out_of_range_for_num_classes(data, tmp_path, capsys, train_cli):
    labels = np.zeros((32, 32), np.uint8)
    labels[:5] = 1
    labels[10:15] = 4
    Image.fromarray(labels).save(data / "masks" / "synth_0005.png")
    assert train_cli(data, tmp_path / "run", "--num-classes", "3") == 2
    message = _error(capsys)
    assert "synth_0005" in message and "--num-classes" in message
    assert not (tmp_path / "run").exists()


def test_unknown_model_lists_close_matches(tiny_synth, tmp_path, capsys, train_cli):
    assert train_cli(tiny_synth, tmp_path / "r", "--model", "unet_resnet5") == 2  # the last --model wins
    assert "unet_resnet50" in _error(capsys)
    assert not (tmp_path / "r").exists()


def test_unknown_or_malformed_model_option(tiny_synth, tmp_path, capsys, train_cli):
    assert train_cli(tiny_synth, tmp_path / "r", "--model-kwarg", "base_widht=8") == 2
    message = _error(capsys)
    assert "'base_widht'" in message and "base_width" in message  # the options test_unet takes
    assert not (tmp_path / "r").exists()
    with pytest.raises(SystemExit) as stop:
        train_cli(tiny_synth, tmp_path / "r", "--model-kwarg", "base_width")
    assert stop.value.code == 2 and "KEY=VALUE" in _error(capsys)
    assert not (tmp_path / "r").exists()


def test_input_size_the_model_cannot_take(tiny_synth, tmp_path, capsys, train_cli):
    assert train_cli(tiny_synth, tmp_path / "r", "--model", "test_unet_resnet", "--img-size", "100") == 2
    message = _error(capsys)
    assert "--img-size 100" in message and "--img-size 96" in message
    assert not (tmp_path / "r").exists()


def test_previous_run_is_refused_unless_resume_or_overwrite(tiny_synth, tmp_path, capsys, train_cli):
    assert train_cli(tiny_synth, tmp_path / "run") == 0
    before = (tmp_path / "run" / "checkpoint_last.pt").read_bytes()
    assert train_cli(tiny_synth, tmp_path / "run") == 2
    assert "--overwrite" in _error(capsys)
    assert (tmp_path / "run" / "checkpoint_last.pt").read_bytes() == before
    assert train_cli(tiny_synth, tmp_path / "run", "--overwrite") == 0


def test_checkpoint_of_another_architecture_or_channel_count(tiny_synth, tmp_path, capsys, train_cli):
    assert train_cli(tiny_synth, tmp_path / "run") == 0
    checkpoint = tmp_path / "run" / "checkpoint_best.pt"
    with pytest.raises(CheckpointError, match="test_unet"):
        create_model("unet_small", checkpoint_path=str(checkpoint))
    with pytest.raises(CheckpointError, match="in_chans"):
        create_model("test_unet", in_chans=1, checkpoint_path=str(checkpoint))
    not_a_checkpoint = tmp_path / "junk.pt"
    not_a_checkpoint.write_bytes(b"junk")
    assert main(["evaluate", "--checkpoint", str(not_a_checkpoint), "--data", str(tiny_synth)]) == 2
    assert "junk.pt" in _error(capsys)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(tmp_path / "foreign.pt"),
                "-i",
                str(tiny_synth / "images"),
                "-o",
                str(tmp_path / "pred"),
            ]
        )
        == 2
    )
    assert "foreign.pt" in _error(capsys)
    assert not (tmp_path / "pred").exists()
