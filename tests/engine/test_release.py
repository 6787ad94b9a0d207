from __future__ import annotations

import pytest
import torch

from specmamba import create_model
from specmamba.engine.checkpoint import make_checkpoint
from specmamba.engine.release import export_release, load_release
from specmamba.errors import CheckpointError


def test_release_round_trip_gives_the_same_outputs(tmp_path):
    torch.manual_seed(0)
    model = create_model("test_unet", in_chans=1, num_classes=2).eval()
    ckpt = make_checkpoint(model, {"img_size": 32}, {"mean": [0.5], "std": [0.2]}, 3, 0.7, 2)
    folder = export_release(ckpt, tmp_path / "model")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    loaded, config = load_release(folder)
    assert config["model_name"] == "test_unet" and config["model_kwargs"] == {"in_chans": 1, "num_classes": 2}
    assert config["img_size"] == 32 and config["normalization"]["mean"] == [0.5]
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_incomplete_release_folder_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="config.json"):
        load_release(tmp_path)
