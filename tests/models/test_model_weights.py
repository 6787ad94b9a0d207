"""Checkpoint reading and weight loading (``specmamba.models.weights``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from specmamba.errors import CheckpointError
from specmamba.models import build_model_from_checkpoint, create_model, list_models
from specmamba.models.checkpoint_file import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_FORMAT_VERSION,
    extract_state_dict,
    read_checkpoint,
    strip_prefixes,
)
from specmamba.models.weights import adapt_input_conv, diff_state_dict, load_weights

TEST_MODELS = list_models("test_*")


class NotATensor:  # pickled by reference: torch.load(weights_only=True) must refuse it
    pass


def _trained(name: str, **kwargs) -> nn.Module:
    """A model whose weights and BN statistics differ from a fresh one."""
    torch.manual_seed(1)
    model = create_model(name, **kwargs)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
        size = 32 if model.input_multiple <= 32 else model.input_multiple
        model(torch.randn(2, model.in_chans, size, size))  # updates running statistics (train mode)
    return model


def _save(path: Path, model: nn.Module, **extra) -> Path:
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "model_name": model.specmamba_name,
            "model_kwargs": dict(model.specmamba_kwargs),
            "state_dict": model.state_dict(),
            "epoch": 7,
            "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3}]},
            "config": {"model": model.specmamba_name, "lr": 1e-3},
            **extra,
        },
        path,
    )
    return path


def _same_outputs(a: nn.Module, b: nn.Module) -> bool:
    a.eval()
    b.eval()
    size = 32 if a.input_multiple <= 32 else a.input_multiple
    x = torch.randn(2, a.in_chans, size, size)
    with torch.no_grad():
        return torch.equal(a(x), b(x))


# --------------------------------------------------------------------------------------------------
# round trip


@pytest.mark.parametrize("name", TEST_MODELS)
def test_checkpoint_round_trip(tmp_path, name):
    model = _trained(name, in_chans=2, num_classes=3)
    path = _save(tmp_path / "checkpoint_best.pt", model)

    rebuilt = build_model_from_checkpoint(path)
    assert rebuilt.specmamba_name == name and rebuilt.specmamba_kwargs == {"in_chans": 2, "num_classes": 3}
    assert _same_outputs(model, rebuilt)

    via_registry = create_model(name, in_chans=2, num_classes=3, checkpoint_path=str(path))
    assert _same_outputs(model, via_registry)

    fresh = create_model(name, in_chans=2, num_classes=3)
    assert not _same_outputs(model, fresh)
    result = load_weights(fresh, path)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert _same_outputs(model, fresh)


def test_read_checkpoint_returns_everything(tmp_path):
    path = _save(tmp_path / "c.pt", _trained("test_unet"))
    ckpt = read_checkpoint(path)
    assert ckpt["format"] == CHECKPOINT_FORMAT and ckpt["epoch"] == 7 and ckpt["model_name"] == "test_unet"
    assert set(ckpt["state_dict"]) == set(create_model("test_unet").state_dict())


# --------------------------------------------------------------------------------------------------
# mismatches


def test_wrong_architecture_names_both(tmp_path):
    path = _save(tmp_path / "unet.pt", _trained("test_unet"))
    with pytest.raises(CheckpointError) as info:
        create_model("test_unet_resnet", checkpoint_path=str(path))
    msg = str(info.value)
    assert "'test_unet'" in msg and "'test_unet_resnet'" in msg and "unet.pt" in msg


def test_wrong_channels_lists_tensors_and_kwargs(tmp_path):
    path = _save(tmp_path / "grey.pt", _trained("test_unet", in_chans=1, num_classes=3))
    with pytest.raises(CheckpointError) as info:
        create_model("test_unet", checkpoint_path=str(path))  # defaults: in_chans=3, num_classes=1
    msg = str(info.value)
    assert "grey.pt" in msg and "test_unet" in msg
    assert "stages.0.0.0.weight: checkpoint (8, 1, 3, 3) vs model (8, 3, 3, 3)" in msg
    assert "head.weight: checkpoint (3, 8, 1, 1) vs model (1, 8, 1, 1)" in msg
    assert "in_chans=1 (model: 3)" in msg and "num_classes=3 (model: 1)" in msg

    # Model built outside the registry: the kwargs are read from the model's attributes.
    from specmamba.models.unet import UNet

    with pytest.raises(CheckpointError, match="in_chans=1 \\(model: 3\\)"):
        load_weights(UNet(in_chans=3, num_classes=3, base_width=8), path)


def test_shape_mismatch_raises_even_when_not_strict(tmp_path):
    path = _save(tmp_path / "c.pt", _trained("test_unet", num_classes=2))
    with pytest.raises(CheckpointError, match="head.weight"):
        load_weights(create_model("test_unet"), path, strict=False)


def test_missing_and_unexpected_keys(tmp_path):
    model = _trained("test_unet")
    sd = model.state_dict()
    partial = {k: v for k, v in sd.items() if not k.startswith("head.")}
    partial["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as info:
        load_weights(create_model("test_unet"), partial)
    msg = str(info.value)
    assert "head.weight" in msg and "head.bias" in msg and "extra.weight" in msg and "strict=False" in msg
    fresh = create_model("test_unet")
    result = load_weights(fresh, partial, strict=False)
    assert set(result.missing_keys) == {"head.weight", "head.bias"}
    assert result.unexpected_keys == ["extra.weight"]
    assert torch.equal(fresh.stages[3][1][1][0].weight, model.stages[3][1][1][0].weight)


# --------------------------------------------------------------------------------------------------
# raw layouts


@pytest.mark.parametrize("wrap", ["raw", "model", "state_dict", "ddp", "ddp_model", "compiled"])
def test_raw_state_dict_layouts(tmp_path, wrap):
    model = _trained("test_unet_resnet")
    sd = model.state_dict()
    payload = {
        "raw": sd,
        "model": {"model": sd, "epoch": 1},
        "state_dict": {"state_dict": sd, "optimizer": {}},
        "ddp": {f"module.{k}": v for k, v in sd.items()},
        "ddp_model": {"model": {f"module.{k}": v for k, v in sd.items()}},
        "compiled": {f"module._orig_mod.{k}": v for k, v in sd.items()},
    }[wrap]
    path = tmp_path / "raw.pth"
    torch.save(payload, path)
    loaded = create_model("test_unet_resnet", checkpoint_path=str(path))
    assert _same_outputs(model, loaded)


def test_convert_state_dict_hook_applies_to_raw_layouts_only(tmp_path):
    model = _trained("test_unet")
    sd = {f"official.{k}": v for k, v in model.state_dict().items()}
    calls = []

    def convert(state_dict):
        calls.append(len(state_dict))
        return {k.removeprefix("official."): v for k, v in state_dict.items()}

    target = create_model("test_unet")
    target.convert_state_dict = convert
    load_weights(target, sd)
    assert calls == [len(sd)] and _same_outputs(model, target)

    # A specmamba checkpoint is already in the native layout: the hook is not called.
    target2 = create_model("test_unet")
    target2.convert_state_dict = convert
    load_weights(target2, _save(tmp_path / "c.pt", model))
    assert calls == [len(sd)]


def test_safetensors(tmp_path):
    from safetensors.torch import save_file

    model = _trained("test_unet")
    path = tmp_path / "model.safetensors"
    save_file(model.state_dict(), str(path))
    assert _same_outputs(model, create_model("test_unet", checkpoint_path=str(path)))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        read_checkpoint(bad)


def test_strip_prefixes_only_when_shared():
    t = torch.zeros(1)
    assert strip_prefixes({"module.a": t, "module.b": t}) == {"a": t, "b": t}
    assert list(strip_prefixes({"module.a": t, "b": t})) == ["module.a", "b"]
    assert list(strip_prefixes({"_orig_mod.module.a": t})) == ["a"]


def test_extract_state_dict_error_lists_keys():
    with pytest.raises(CheckpointError, match="'epoch', 'notes'"):
        extract_state_dict({"epoch": 3, "notes": "x"})


def test_diff_state_dict_ignores_missing_bn_counters():
    bn = nn.BatchNorm2d(4)
    sd = {k: v for k, v in bn.state_dict().items() if k != "num_batches_tracked"}
    assert diff_state_dict(bn.state_dict(), sd).ok
    sd["weight"] = torch.ones(5)
    diff = diff_state_dict(bn.state_dict(), sd)
    assert diff.mismatched == [("weight", (5,), (4,))] and not diff.ok


def test_adapt_input_conv():
    w = torch.randn(6, 3, 5, 5)
    assert adapt_input_conv(w, 3) is w
    assert torch.allclose(adapt_input_conv(w, 1), w.sum(1, keepdim=True))
    w5 = adapt_input_conv(w, 5)
    assert w5.shape == (6, 5, 5, 5)
    assert torch.allclose(w5[:, 3], w[:, 0] * 3 / 5) and torch.allclose(w5[:, 2], w[:, 2] * 3 / 5)
    assert adapt_input_conv(w.half(), 2).dtype == torch.float16


# --------------------------------------------------------------------------------------------------
# unreadable files


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pt does not exist"):
        read_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="nope.pt does not exist"):
        create_model("test_unet", checkpoint_path=str(tmp_path / "nope.pt"))
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint_best.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="is a folder.*checkpoint_best.pt"):
        read_checkpoint(run)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_truncated_and_corrupt_files(tmp_path):
    good = _save(tmp_path / "good.pt", _trained("test_unet"))
    data = good.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.pt cannot be read"):
        read_checkpoint(truncated)
    with pytest.raises(CheckpointError, match="truncated.pt"):
        build_model_from_checkpoint(truncated)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.pt"):
        create_model("test_unet", checkpoint_path=str(empty))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x80\x04garbage" * 10)
    with pytest.raises(CheckpointError, match="garbage.pt"):
        read_checkpoint(garbage)


def test_pickled_objects_are_left_unbuilt_and_non_dict_refused(tmp_path):
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "obj": NotATensor()}, unsafe)
    obj = read_checkpoint(unsafe)  # weights_only refuses it; its tensors are read without the object
    assert torch.equal(obj["state_dict"]["w"], torch.ones(2))
    assert not isinstance(obj["obj"], NotATensor) and obj["obj"].qualname.endswith("NotATensor")
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(CheckpointError, match="tensor.pt holds a Tensor"):
        read_checkpoint(tensor)


def test_format_checks(tmp_path):
    model = _trained("test_unet")
    newer = _save(tmp_path / "newer.pt", model, format_version=CHECKPOINT_FORMAT_VERSION + 1)
    with pytest.raises(CheckpointError, match="newer specmamba"):
        read_checkpoint(newer)
    no_sd = _save(tmp_path / "nosd.pt", model, state_dict=None)
    with pytest.raises(CheckpointError, match="no 'state_dict'"):
        read_checkpoint(no_sd)


# --------------------------------------------------------------------------------------------------
# build_model_from_checkpoint


def test_build_needs_a_specmamba_checkpoint(tmp_path):
    path = tmp_path / "raw.pth"
    torch.save(create_model("test_unet").state_dict(), path)
    with pytest.raises(CheckpointError, match="not a specmamba checkpoint.*create_model"):
        build_model_from_checkpoint(path)


def test_build_unknown_architecture(tmp_path):
    path = _save(tmp_path / "future.pt", _trained("test_unet"), model_name="vmunet_xxl")
    with pytest.raises(CheckpointError, match="'vmunet_xxl'.*does not have"):
        build_model_from_checkpoint(path)


def test_build_ignores_weight_init_kwargs_and_applies_overrides(tmp_path):
    model = _trained("test_unet_resnet")
    model.specmamba_kwargs = {"encoder_weights": str(tmp_path / "gone.pth")}  # no longer on disk
    path = _save(tmp_path / "c.pt", model)
    rebuilt = build_model_from_checkpoint(path, num_classes=None)
    assert "encoder_weights" not in rebuilt.specmamba_kwargs and _same_outputs(model, rebuilt)
    with pytest.raises(CheckpointError, match="num_classes=1 \\(model: 2\\)"):
        build_model_from_checkpoint(path, num_classes=2)
