"""Registry behaviour seen through the registered models."""

from __future__ import annotations

import pytest

import specmamba as sm
from specmamba.errors import ConfigError
from specmamba.models import create_model, is_model, list_models


def test_unknown_model_lists_close_matches():
    with pytest.raises(ConfigError) as info:
        create_model("unet_resnet5")
    msg = str(info.value)
    assert "'unet_resnet5'" in msg and "Did you mean" in msg and "unet_resnet50" in msg


def test_list_models_filter_and_test_variants():
    assert "unet_resnet50" in sm.list_models("*unet*")
    assert sm.list_models("unet_res*") == ["unet_resnet50"]
    assert all(not n.startswith("test_") for n in list_models(include_test=False))
    assert is_model("test_unet") and not is_model("nope")


def test_none_kwargs_are_dropped_and_model_is_tagged():
    model = create_model("test_unet", in_chans=None, num_classes=2, base_width=None)
    assert model.in_chans == 3 and model.num_classes == 2 and model.base_width == 8
    assert model.specmamba_name == "test_unet"
    assert model.specmamba_kwargs == {"num_classes": 2}


def test_unknown_option_names_the_options_the_model_takes():
    from specmamba.models import model_options

    assert {"dims", "depths", "d_state", "drop_path_rate", "scan_backend"} <= set(model_options("vmunet"))
    assert "model_name" not in model_options("vmunet")  # set by the factory, not an option
    with pytest.raises(ConfigError, match=r"unknown model option 'drop_path'.*drop_path_rate"):
        create_model("test_vmunet", drop_path=0.1)
