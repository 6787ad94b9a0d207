"""Feature capture at the stages models declare, whatever the module's output layout."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from specmamba.errors import ConfigError, InputSizeError
from specmamba.models import create_model, list_models
from specmamba.models.interface import valid_input_size
from specmamba.spectral.hooks import FeatureCapture, stage_points, to_bchw


def test_layouts_are_converted_to_channels_first():
    x = torch.randn(2, 5, 6, 7)  # (B, C, h, w)
    assert torch.equal(to_bchw(x, 5, (6, 7)), x)
    assert torch.equal(to_bchw(x.permute(0, 2, 3, 1), 5, (6, 7)), x)
    tokens = x.flatten(2).transpose(1, 2)  # (B, h*w, C)
    assert torch.equal(to_bchw(tokens, 5, (6, 7)), x)
    assert torch.equal(to_bchw(tokens, 5, (12, 14)), x)  # grid from the expected aspect ratio
    square = torch.randn(1, 4, 4, 4)  # C == h == w: the declared layout (channels first) wins
    assert torch.equal(to_bchw(square, 4, (4, 4)), square)
    with pytest.raises(ConfigError, match="cannot read an output of shape"):
        to_bchw(torch.randn(2, 3, 6, 7), 5, (6, 7))


@pytest.mark.parametrize("name", list_models("test_*"))
def test_capture_matches_forward_intermediates_for_every_registered_model(name, one_torch_thread):
    torch.manual_seed(0)
    model = create_model(name).eval()
    side = valid_input_size(model, 64)
    x = torch.randn(1, model.in_chans, side, side)
    with torch.no_grad(), FeatureCapture(model) as capture:
        model(x)
        expected = model.forward_intermediates(x)
    maps = capture.maps(x.shape[-2:])
    assert len(maps) == len(model.feature_info)
    for m, e, info in zip(maps, expected, model.feature_info):
        assert m.shape == e.shape
        assert m.shape[1] == info["num_chs"]
        assert torch.allclose(m, e, atol=1e-5)


def test_hooks_are_removed_on_exit_even_after_an_error():
    model = create_model("test_unet")
    with pytest.raises(InputSizeError), FeatureCapture(model):
        model(torch.randn(1, 5, 32, 32))  # wrong channel count
    assert all(not m._forward_hooks for m in model.modules())


def test_models_without_stages_are_refused():
    with pytest.raises(ConfigError, match="declares no encoder stages"):
        stage_points(nn.Conv2d(3, 1, 3))
    model = nn.Sequential(nn.Conv2d(3, 1, 3))
    model.feature_info = [{"num_chs": 1, "reduction": 1, "module": "7"}]
    with pytest.raises(ConfigError, match="does not name a submodule"):
        stage_points(model)
