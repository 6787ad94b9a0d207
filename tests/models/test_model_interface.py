"""The model interface, checked on every registered model (so later architectures are covered too).

Small ``test_*`` variants get the whole battery on small inputs, including the fakes of ``fakes.py``
(a model that returns a SegOutput in train mode, a non-hierarchical token backbone with a fixed
input size); full-size models are counted on the meta device (pinned exactly) and run once at about
64x64.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from specmamba.errors import ConfigError, InputSizeError
from specmamba.losses import build_criterion
from specmamba.models import SegOutput, create_model, list_models, model_entrypoint
from specmamba.models.interface import (
    FACTORY_CHANNEL_DEFAULTS,
    SegmentationModel,
    check_input_channels,
    check_input_size,
    make_feature_info,
    nearest_valid_sizes,
    valid_input_size,
    validate_channels,
    validate_feature_info,
)

TEST_MODELS = list_models("test_*")
FULL_MODELS = list_models(include_test=False)

#: Exact parameter counts (3 -> 1) of every full-size model; REFERENCE.md gives the published ones
#: (VM-UNet 27,427,561 and 44,273,833; Swin-Unet 27.17M; UNet-ResNet50 32.52M). A new model adds its own.
PARAMETERS = {
    "spec_vmamba": 15_545_417,
    "swin_unet": 27_168_132,
    "unet_resnet50": 32_521_105,
    "unet_small": 488_001,
    "vim_seg_small": 45_034_370,
    "vim_seg_tiny": 12_085_058,
    "vimf_seg_small": 45_189_412,
    "vimf_seg_tiny": 12_046_372,
    "vmaml_unet": 29_503_114,
    "vmunet": 27_427_561,
    "vmunet_deep": 44_273_833,
}


def _small_size(model: nn.Module) -> int:
    return valid_input_size(model, 32)


def test_registry_has_models():
    assert {"test_unet", "test_unet_resnet", "test_fake_deep_supervision", "test_fake_tokens"} <= set(
        TEST_MODELS
    )
    assert set(PARAMETERS) == set(FULL_MODELS)  # every full-size model has its count pinned


@pytest.mark.parametrize("name", TEST_MODELS + FULL_MODELS)
def test_factories_share_the_channel_defaults(name):
    import inspect

    params = inspect.signature(model_entrypoint(name)).parameters
    assert {k: params[k].default for k in FACTORY_CHANNEL_DEFAULTS} == FACTORY_CHANNEL_DEFAULTS


# --------------------------------------------------------------------------------------------------
# helpers


def test_nearest_valid_sizes():
    assert nearest_valid_sizes(250, 32) == (256, 224)
    assert nearest_valid_sizes(230, 32) == (224, 256)
    assert nearest_valid_sizes(240, 32) == (256, 224)  # tie goes up
    assert nearest_valid_sizes(256, 32) == (256, 256)
    assert nearest_valid_sizes(5, 32) == (32, 32)  # below the minimum
    assert nearest_valid_sizes(100, 8, min_size=128) == (128, 128)
    assert nearest_valid_sizes(300, 224) == (224, 448)


def test_valid_input_size_uses_model_attributes():
    class Fake(nn.Module):
        input_multiple = 224

    assert valid_input_size(Fake(), 64) == 224
    assert valid_input_size(Fake(), 400) == 448
    assert valid_input_size(nn.Identity(), 37) == 37  # no constraint declared
    assert valid_input_size(create_model("unet_small"), 130) == 128


def test_check_input_size_message():
    x = torch.zeros(1, 3, 250, 250)
    with pytest.raises(InputSizeError) as info:
        check_input_size(x, 32, "unet_resnet50")
    msg = str(info.value)
    assert (
        "unet_resnet50 needs height and width that are multiples of 32; got 250x250: use 256x256 (or 224x224)"
        in msg
    )
    check_input_size(torch.zeros(1, 3, 64, 96), 32, "m")  # valid: no error
    with pytest.raises(InputSizeError, match="got 64x100: use 64x96 \\(or 64x128\\)"):
        check_input_size(torch.zeros(1, 3, 64, 100), 32, "m")
    with pytest.raises(InputSizeError, match="at least 64"):
        check_input_size(torch.zeros(1, 3, 32, 32), 32, "m", min_size=64)
    with pytest.raises(InputSizeError, match=r"\(B, C, H, W\)"):
        check_input_size(torch.zeros(3, 64, 64), 32, "m")


def test_check_input_channels():
    check_input_channels(torch.zeros(1, 4, 8, 8), 4, "m")
    with pytest.raises(InputSizeError, match="in_chans=3 .* 1 channels"):
        check_input_channels(torch.zeros(1, 1, 8, 8), 3, "m")


@pytest.mark.parametrize("in_chans,num_classes", [(0, 1), (3, 0), (-1, 1), (1.5, 1), (True, 1), (3, "2")])
def test_validate_channels_rejects(in_chans, num_classes):
    with pytest.raises(ConfigError, match="must be a positive integer"):
        validate_channels(in_chans, num_classes, "m")


def test_make_feature_info():
    info = make_feature_info([8, 16], [2, 4], ["a", "b"])
    assert info == [
        {"num_chs": 8, "reduction": 2, "module": "a"},
        {"num_chs": 16, "reduction": 4, "module": "b"},
    ]
    with pytest.raises(ValueError):
        make_feature_info([8], [2, 4], ["a"])


def test_validate_feature_info_rules():
    ok = make_feature_info([8, 8, 16], [4, 4, 8], ["a", "b", "c"])  # equal reductions are fine
    assert validate_feature_info(ok, "m") == ok
    for bad, match in (
        ([], "at least one"),
        (None, "at least one"),
        (make_feature_info([8, 16], [8, 4], ["a", "b"]), "must not decrease"),
        ([{"num_chs": 8, "reduction": 0, "module": "a"}], "positive integers"),
        ([{"num_chs": 8, "module": "a"}], "positive integers"),
        ([{"num_chs": 8, "reduction": 2, "module": ""}], "module"),
    ):
        with pytest.raises(ConfigError, match=match):
            validate_feature_info(bad, "m")


def test_fixed_input_size_is_enforced_and_reported():
    model = create_model("test_fake_tokens")
    assert valid_input_size(model, 64) == 32
    with pytest.raises(InputSizeError, match="takes 32x32 inputs only .* got 64x64"):
        model(torch.zeros(1, 3, 64, 64))


def test_set_scan_backend_needs_scan_layers():
    model = create_model("test_unet")
    assert model.scan_backend is None
    with pytest.raises(ConfigError, match="no selective-scan layer"):
        model.set_scan_backend("cpu")


def test_base_class_forward_intermediates_is_abstract():
    m = SegmentationModel(3, 1, model_name="x")
    assert m.model_name == "x" and m.in_chans == 3 and m.num_classes == 1
    with pytest.raises(NotImplementedError):
        m.forward_intermediates(torch.zeros(1, 3, 8, 8))


# --------------------------------------------------------------------------------------------------
# every small model


@pytest.mark.parametrize("name", TEST_MODELS)
@pytest.mark.parametrize("in_chans", [1, 3, 4])
@pytest.mark.parametrize("num_classes", [1, 3])
def test_logits_shape(name, in_chans, num_classes):
    torch.manual_seed(0)
    model = create_model(name, in_chans=in_chans, num_classes=num_classes).eval()  # eval: logits only
    size = _small_size(model)
    x = torch.randn(2, in_chans, size, size)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, num_classes, size, size)
    assert y.dtype == torch.float32 and torch.isfinite(y).all()
    # Logits, not probabilities: values outside [0, 1] appear on random input.
    assert (y < 0).any() or (y > 1).any()


@pytest.mark.parametrize("name", TEST_MODELS)
def test_non_square_input(name):
    model = create_model(name).eval()
    if model.fixed_input_size is not None:
        pytest.skip("model takes one size only")
    m = model.input_multiple
    h, w = valid_input_size(model, 32), valid_input_size(model, 32) + m
    with torch.no_grad():
        assert model(torch.randn(1, 3, h, w)).shape == (1, 1, h, w)


@pytest.mark.parametrize("name", TEST_MODELS)
def test_feature_info_matches_forward_intermediates(name):
    torch.manual_seed(0)
    model = create_model(name, in_chans=2).eval()
    size = valid_input_size(model, 64)
    x = torch.randn(2, 2, size, size)
    info = validate_feature_info(model.feature_info, name)
    assert all(set(d) == {"num_chs", "reduction", "module"} for d in info)

    hooked: dict[str, torch.Tensor] = {}
    handles = [
        model.get_submodule(d["module"]).register_forward_hook(
            lambda mod, inp, out, key=d["module"]: hooked.__setitem__(key, out)
        )
        for d in info
    ]
    with torch.no_grad():
        feats = model.forward_intermediates(x)
    for h in handles:
        h.remove()
    assert len(feats) == len(info)
    for f, d in zip(feats, info):
        assert f.shape == (2, d["num_chs"], size // d["reduction"], size // d["reduction"])
        # The hook point named in feature_info is exactly the map forward_intermediates returns.
        assert torch.equal(hooked[d["module"]], f)


@pytest.mark.parametrize("name", TEST_MODELS)
def test_bad_input_size_names_model_and_nearest_size(name):
    model = create_model(name)
    m = model.input_multiple
    if m == 1 or model.fixed_input_size is not None:
        pytest.skip("model takes any size, or one size only (test_fixed_input_size_is_enforced_and_reported)")
    good = valid_input_size(model, 32)
    bad = good + 2
    with pytest.raises(InputSizeError) as info:
        model(torch.zeros(1, 3, bad, good))
    msg = str(info.value)
    assert name in msg and f"{bad}x{good}" in msg and f"multiples of {m}" in msg
    assert f"use {valid_input_size(model, bad)}x{good}" in msg
    with pytest.raises(InputSizeError):
        model.forward_intermediates(torch.zeros(1, 3, bad, bad))
    with pytest.raises(InputSizeError, match="in_chans=3"):
        model(torch.zeros(1, 1, good, good))


@pytest.mark.parametrize("name", TEST_MODELS)
def test_training_path_reaches_every_parameter(name):
    """Train mode through the trainer's criterion: logits or a SegOutput, every parameter trained."""
    torch.manual_seed(0)
    model = create_model(name, in_chans=3, num_classes=2).train()
    size = valid_input_size(model, 64)
    x = torch.randn(2, 3, size, size, requires_grad=True)
    target = torch.randint(0, 2, (2, size, size))
    output = model(x)
    assert isinstance(output, torch.Tensor | SegOutput)
    logits = output.logits if isinstance(output, SegOutput) else output
    assert logits.shape == (2, 2, size, size)
    with torch.no_grad():
        assert model.eval()(x).shape == (2, 2, size, size)  # eval mode: logits only
    loss, terms = build_criterion("ce", 2)(output, target)
    assert torch.isclose(loss, sum(terms.values()))
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for pname, p in model.named_parameters():
        if not p.requires_grad:  # frozen by design (WTConv2d's Haar filters)
            continue
        assert p.grad is not None, f"{pname} gets no gradient"
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{pname} has an all-zero gradient"


@pytest.mark.parametrize("name", TEST_MODELS)
def test_interface_attributes(name):
    model = create_model(name, in_chans=4, num_classes=3)
    assert model.in_chans == 4 and model.num_classes == 3
    assert isinstance(model.input_multiple, int) and model.input_multiple >= 1
    assert model.specmamba_name == name and model.specmamba_kwargs == {"in_chans": 4, "num_classes": 3}
    with pytest.raises(ConfigError, match="num_classes"):
        create_model(name, num_classes=0)


# --------------------------------------------------------------------------------------------------
# full-size models: parameter count and one forward only


@pytest.mark.parametrize("name", FULL_MODELS)
def test_full_size_parameter_count(name):
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = create_model(name)
    assert sum(p.numel() for p in model.parameters()) == PARAMETERS[name]


@pytest.mark.parametrize("name", FULL_MODELS)
def test_full_size_model_builds_and_runs(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    validate_feature_info(model.feature_info, name)
    size = valid_input_size(model, 64)
    with torch.no_grad():
        y = model(torch.randn(1, 3, size, size))
    assert y.shape == (1, 1, size, size) and torch.isfinite(y).all()


def test_architecture_label_names_what_changes_the_network():
    from specmamba.models.interface import architecture_label

    assert architecture_label("vmunet", {"in_chans": 3, "num_classes": 1, "scan_backend": "ref"}) == "vmunet"
    assert architecture_label("vmunet", {"encoder_weights": "x.pth"}) == "vmunet"
    label = architecture_label("spec_vmamba", {"num_classes": 3, "spectral": False, "in_chans": 3})
    assert label == "spec_vmamba(num_classes=3, spectral=False)"
