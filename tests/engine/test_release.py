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


def test_release_of_a_model_initialised_from_a_weights_file_loads_without_that_file(tmp_path):
    """Regression: a release trained from encoder_weights=PATH rebuilt the model with PATH still set,
    so it failed wherever that file was missing. The weights file is not part of the architecture."""
    torch.manual_seed(0)
    encoder = create_model("test_unet_resnet").encoder.state_dict()
    weights = tmp_path / "resnet.pth"
    torch.save(encoder, weights)
    model = create_model("test_unet_resnet", encoder_weights=str(weights)).eval()
    ckpt = make_checkpoint(
        model, {"img_size": 32, "model_kwargs": {"encoder_weights": str(weights)}}, {}, 1, 0.5, 1
    )
    ckpt["model_kwargs"]["encoder_weights"] = str(weights)  # as checkpoints written before the fix recorded
    folder = export_release(ckpt, tmp_path / "model")
    weights.unlink()
    loaded, config = load_release(folder)
    assert "encoder_weights" not in config["model_kwargs"]
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    # A release folder written before the fix (encoder_weights in config.json) loads too.
    import json

    config_path = folder / "config.json"
    stale = json.loads(config_path.read_text())
    stale["model_kwargs"]["encoder_weights"] = str(weights)
    config_path.write_text(json.dumps(stale))
    assert torch.equal(load_release(folder)[0](x), model(x).detach())
