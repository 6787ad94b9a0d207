"""VM-UNet (``specmamba.models.vmunet``): configuration, forward rules, official layout, scan backends.

Full-size models are only built (parameter counts, official layout); everything that runs a forward
uses ``test_vmunet`` at 32x32 / 64x96.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from specmamba.errors import CheckpointError, ConfigError, InputSizeError
from specmamba.layers import SS2D, DropPath
from specmamba.models import create_model, load_checkpoint
from specmamba.models.vmunet import VMUNet
from specmamba.models.vmunet_convert import to_official_state_dict

KEYS_FILE = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference" / "vmunet_official_keys.json"


def _official_keys() -> dict[str, list[int]]:
    if not KEYS_FILE.is_file():
        pytest.skip(f"reference key file {KEYS_FILE} not available")
    return json.loads(KEYS_FILE.read_text())["keys"]


@pytest.fixture(scope="module")
def paper_model() -> nn.Module:
    torch.manual_seed(0)
    return create_model("vmunet")


# --------------------------------------------------------------------------------------------------
# configuration


def test_parameter_counts_are_exact(paper_model):
    assert sum(p.numel() for p in paper_model.parameters()) == 27_427_561
    deep = create_model("vmunet_deep")
    assert sum(p.numel() for p in deep.parameters()) == 44_273_833
    assert deep.depths == [2, 2, 9, 2] and deep.depths_decoder == [2, 9, 2, 2]
    if KEYS_FILE.is_file():
        assert json.loads(KEYS_FILE.read_text())["params"] == 27_427_561


def test_paper_configuration(paper_model):
    m = paper_model
    assert m.dims == [96, 192, 384, 768] and m.depths == [2, 2, 2, 2] and m.depths_decoder == [2, 2, 2, 1]
    assert m.d_state == 16 and m.input_multiple == 32 and m.scan_backend == "auto"
    assert [d["num_chs"] for d in m.feature_info] == [96, 192, 384, 768]
    assert [d["reduction"] for d in m.feature_info] == [4, 8, 16, 32]
    assert [d["module"] for d in m.feature_info] == [f"layers.{i}.stage_out" for i in range(4)]
    assert m.layers[3].downsample is None and m.layers_up[0].upsample is None
    assert m.final_conv.weight.shape == (1, 24, 1, 1)


def test_drop_path_linear_over_encoder_reversed_over_decoder(paper_model):
    enc = [b.drop_path.p for stage in paper_model.layers for b in stage.blocks]
    dec = [b.drop_path.p for stage in paper_model.layers_up for b in stage.blocks]
    torch.testing.assert_close(torch.tensor(enc), torch.linspace(0, 0.2, 8), rtol=0, atol=1e-7)
    torch.testing.assert_close(torch.tensor(dec), torch.linspace(0, 0.2, 7).flip(0), rtol=0, atol=1e-7)
    assert all(isinstance(b.drop_path, DropPath) for s in paper_model.layers for b in s.blocks)


def test_linear_layers_are_trunc_normal(paper_model):
    w = paper_model.layers[1].downsample.reduction.weight
    assert abs(w.std().item() - 0.02) < 0.001
    w = paper_model.final_up.expand.weight
    assert abs(w.std().item() - 0.02) < 0.002
    assert torch.equal(paper_model.patch_embed.norm.weight, torch.ones(96))


def test_kwargs():
    m = create_model(
        "test_vmunet",
        dims=[8, 16, 32, 64],
        depths=[1, 2, 1, 1],
        depths_decoder=[1, 1, 2, 1],
        d_state=2,
        drop_path_rate=0.1,
        in_chans=2,
        num_classes=3,
        scan_backend="ref",
    )
    assert len(m.layers[1].blocks) == 2 and len(m.layers_up[2].blocks) == 2
    assert m.layers[0].blocks[0].self_attention.d_state == 2
    assert all(s.scan_backend == "ref" for s in m.modules() if isinstance(s, SS2D))
    assert m.specmamba_kwargs["scan_backend"] == "ref"
    assert create_model("test_vmunet", dims=8).dims == [8, 16, 32, 64]
    assert m.set_scan_backend("cpu") is m and m.scan_backend == "cpu"


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"dims": [8, 16, 24, 64]}, "dims must double"),
        ({"dims": 6}, "multiple of 4"),
        ({"depths": []}, "depths must be one or more integers"),
        ({"depths": [1, 0, 1, 1]}, "depths must be one or more integers >= 1"),
        ({"depths": [1, 1, 1]}, "depths_decoder must be 3 integers"),  # one decoder stage per encoder stage
        ({"patch_size": 3}, "multiple of 3 \\(patch_size"),
        ({"depths_decoder": "abc"}, "depths_decoder"),
        ({"d_state": 0}, "d_state"),
        ({"drop_path_rate": 1.0}, "drop_path_rate"),
        ({"scan_backend": "gpu"}, "scan_backend must be one of"),
    ],
)
def test_bad_kwargs_raise_config_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        create_model("test_vmunet", **kwargs)
    with pytest.raises(ConfigError, match="scan_backend"):
        create_model("test_vmunet").set_scan_backend("nope")


# --------------------------------------------------------------------------------------------------
# forward


@pytest.mark.parametrize("size", [(32, 32), (64, 96)])
def test_forward_backward_square_and_non_square(size):
    torch.manual_seed(0)
    model = create_model("test_vmunet", num_classes=2, drop_path_rate=0.1)
    x = torch.randn(2, 3, *size, requires_grad=True)
    y = model(x)
    assert y.shape == (2, 2, *size) and y.is_contiguous() and torch.isfinite(y).all()
    y.square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    feats = model.forward_intermediates(x.detach())
    assert [tuple(f.shape) for f in feats] == [
        (2, c, size[0] // r, size[1] // r) for c, r in zip([16, 32, 64, 128], [4, 8, 16, 32])
    ]


def test_decoder_adds_the_inputs_of_encoder_stages_3_2_1():
    torch.manual_seed(0)
    model = create_model("test_vmunet").eval()
    enc_in, up_in, up_out = {}, {}, {}
    for i in range(4):
        model.layers[i].register_forward_pre_hook(lambda m, a, i=i: enc_in.__setitem__(i, a[0]))
        model.layers_up[i].register_forward_pre_hook(lambda m, a, i=i: up_in.__setitem__(i, a[0]))
        model.layers_up[i].register_forward_hook(lambda m, a, o, i=i: up_out.__setitem__(i, o))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        model(x)
        assert torch.equal(enc_in[0], model.patch_embed(x))
        encoder_out = model.layers[3](enc_in[3])[1]
    assert torch.equal(up_in[0], encoder_out)  # decoder stage 0 takes the deepest output, no skip
    for i, j in ((1, 3), (2, 2), (3, 1)):
        assert torch.equal(up_in[i], up_out[i - 1] + enc_in[j]), (i, j)


def test_bad_input_size_names_nearest_valid_size():
    model = create_model("test_vmunet")
    with pytest.raises(InputSizeError, match="got 250x250: use 256x256 \\(or 224x224\\)"):
        model(torch.zeros(1, 3, 250, 250))
    with pytest.raises(InputSizeError, match="got 64x100: use 64x96"):
        model.forward_intermediates(torch.zeros(1, 3, 64, 100))


def test_ref_and_cpu_scan_backends_give_the_same_logits():
    torch.manual_seed(0)
    model = create_model("test_vmunet", num_classes=2).eval()
    x = torch.randn(2, 3, 32, 64)
    with torch.no_grad():
        y_cpu = model.set_scan_backend("cpu")(x)
        y_ref = model.set_scan_backend("ref")(x)
    torch.testing.assert_close(y_cpu, y_ref, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------------------
# official layout


def test_official_layout_loads_strictly_and_round_trips(paper_model, tmp_path):
    keys = _official_keys()
    ours = {k: list(v.shape) for k, v in to_official_state_dict(paper_model.state_dict()).items()}
    assert ours == keys  # same names, same shapes, nothing more (no buffers either)

    gen = torch.Generator().manual_seed(1)
    official = {k: torch.randn(shape, generator=gen) for k, shape in keys.items()}
    path = tmp_path / "best.pth"
    torch.save(official, path)
    report = load_checkpoint(paper_model, path)
    assert report.complete and not report.skipped and not report.unexpected
    assert sorted(report.loaded) == sorted(k.removeprefix("vmunet.") for k in keys)
    back = to_official_state_dict(paper_model.state_dict())
    assert back.keys() == official.keys() and all(torch.equal(back[k], official[k]) for k in keys)


def test_official_layout_of_other_depths_names_both(tmp_path):
    other = create_model("test_vmunet", depths=[1, 1, 2, 1], depths_decoder=[1, 2, 1, 1])
    path = tmp_path / "deep.pth"
    torch.save({"model_state_dict": to_official_state_dict(other.state_dict())}, path)
    with pytest.raises(CheckpointError) as info:
        create_model("test_vmunet", checkpoint_path=str(path))
    msg = str(info.value)
    assert "deep.pth" in msg
    assert "encoder depths [1, 1, 2, 1] and decoder depths [1, 2, 1, 1]" in msg and "[1, 1, 1, 1]" in msg


def test_wrong_shapes_name_the_tensors():
    sd = to_official_state_dict(create_model("test_vmunet", num_classes=3).state_dict())
    msg = r"final_conv.weight: checkpoint \(3, 4, 1, 1\) vs model \(1, 4, 1, 1\)"
    with pytest.raises(CheckpointError, match=msg):
        load_checkpoint(create_model("test_vmunet"), sd)


def test_other_architecture_is_rejected():
    sd = create_model("test_unet").state_dict()
    with pytest.raises(CheckpointError, match="another architecture"):
        load_checkpoint(create_model("test_vmunet"), sd)


# --------------------------------------------------------------------------------------------------
# VMamba-v0 classification checkpoints


def _vmamba_v0(model: VMUNet, extra_blocks: int = 1, width_scale: int = 1) -> dict[str, torch.Tensor]:
    """A fake VMamba-v0 classifier state dict matching ``model``'s encoder (plus deeper blocks, head)."""
    gen = torch.Generator().manual_seed(3)
    sd = {}
    for k, v in model.state_dict().items():
        if k.startswith(("patch_embed.", "layers.")):
            shape = list(v.shape)
            if width_scale != 1:
                shape = [s * width_scale for s in shape]
            sd[k] = torch.randn(shape, generator=gen)
            if k.startswith("layers.2.blocks.0."):  # a deeper stage 2, as VMamba-S's 27 blocks
                for j in range(1, 1 + extra_blocks):
                    sd[k.replace("blocks.0.", f"blocks.{j}.")] = torch.randn(shape, generator=gen)
    sd["norm.weight"] = torch.ones(model.dims[-1])
    sd["norm.bias"] = torch.zeros(model.dims[-1])
    sd["head.weight"] = torch.randn(1000, model.dims[-1], generator=gen)
    sd["head.bias"] = torch.zeros(1000)
    return sd


def test_vmamba_v0_fills_encoder_and_mirrors_decoder(tmp_path):
    model = create_model("test_vmunet", depths_decoder=[1, 2, 1, 1])
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    sd = _vmamba_v0(model, extra_blocks=2)
    path = tmp_path / "vmamba_small_e238_ema.pth"
    torch.save({"model": sd, "epoch": 238}, path)
    report = load_checkpoint(model, path)
    state = model.state_dict()
    for k, v in sd.items():
        if k in state:
            assert torch.equal(state[k], v), k
    # Encoder stage j -> decoder stage 3 - j, block by block, where the decoder has the block.
    for j, i in ((0, 3), (1, 2), (2, 1), (3, 0)):
        prefix = f"layers.{j}.blocks.0."
        for k in (k for k in sd if k.startswith(prefix)):
            assert torch.equal(state[k.replace(f"layers.{j}.", f"layers_up.{i}.")], sd[k]), k
    assert torch.equal(
        state["layers_up.1.blocks.1.ln_1.weight"], sd["layers.2.blocks.1.ln_1.weight"]
    )  # decoder stage 1 has 2 blocks here
    assert "VMamba-v0" in report.layout and not report.complete
    assert report.skipped["head.weight"].startswith("classifier") and "norm.bias" in report.skipped
    assert "layers.2.blocks.2.ln_1.weight" in report.skipped  # no room for it anywhere
    assert "layers.2.blocks.1.ln_1.weight" not in report.skipped  # used by the decoder
    missing = set(report.missing)
    assert {"final_conv.weight", "final_up.expand.weight", "layers_up.1.upsample.expand.weight"} <= missing
    assert all(torch.equal(state[k], fresh[k]) for k in missing)
    assert not any(k.startswith("layers.") for k in missing)
    assert "Loaded" in report.summary() and "head.weight" in str(report)


def test_vmamba_v0_through_create_model_and_input_channel_adaptation(tmp_path):
    sd = _vmamba_v0(create_model("test_vmunet"))
    path = tmp_path / "v0.pth"
    torch.save({"model": sd}, path)
    grey = create_model("test_vmunet", in_chans=1, checkpoint_path=str(path))
    summed = sd["patch_embed.proj.weight"].sum(1, keepdim=True)
    torch.testing.assert_close(grey.patch_embed.proj.weight, summed)
    report = load_checkpoint(create_model("test_vmunet", in_chans=1), path)
    assert any("3 to 1 input channel" in note for note in report.notes)
    with pytest.raises(CheckpointError, match="covers only part of the model"):
        load_checkpoint(create_model("test_vmunet"), path, strict=True)


def test_vmamba_v0_of_another_width_is_an_error():
    sd = _vmamba_v0(create_model("test_vmunet"), width_scale=2)
    with pytest.raises(CheckpointError, match="patch_embed.proj.weight: checkpoint \\(32, 6, 8, 8\\)"):
        load_checkpoint(create_model("test_vmunet"), {"model": sd})


def test_later_vmamba_versions_are_recognised():
    sd = {"patch_embed.0.weight": torch.zeros(1), "layers.0.blocks.0.op.in_proj.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match="VMamba v2/v3"):
        load_checkpoint(create_model("test_vmunet"), sd)


# --------------------------------------------------------------------------------------------------
# load_checkpoint reports


def test_load_checkpoint_reports_specmamba_checkpoints_and_non_strict_loads(tmp_path):
    from specmamba.models.checkpoint_file import CHECKPOINT_FORMAT, CHECKPOINT_FORMAT_VERSION

    torch.manual_seed(0)
    source = create_model("test_vmunet")
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "model_name": "test_vmunet",
        "model_kwargs": {},
        "state_dict": source.state_dict(),
    }
    torch.save(ckpt, tmp_path / "c.pt")
    target = create_model("test_vmunet")
    report = load_checkpoint(target, tmp_path / "c.pt")
    assert report.layout == "specmamba checkpoint" and report.complete and not report.skipped
    assert report.loaded == list(target.state_dict()) and str(tmp_path / "c.pt") in report.summary()
    assert all(torch.equal(a, b) for a, b in zip(target.state_dict().values(), source.state_dict().values()))

    partial = {k: v for k, v in source.state_dict().items() if not k.startswith("final_conv.")}
    partial["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="final_conv.weight"):
        load_checkpoint(create_model("test_vmunet"), partial)
    report = load_checkpoint(create_model("test_vmunet"), partial, strict=False)
    assert report.missing == ["final_conv.weight", "final_conv.bias"] and report.unexpected == [
        "extra.weight"
    ]
    with pytest.raises(CheckpointError, match="no tensor that"):
        load_checkpoint(create_model("test_vmunet"), {"other.weight": torch.zeros(1)}, strict=False)


@pytest.mark.parametrize(
    "kwargs,multiple",
    [
        ({"depths": (1, 1, 1), "depths_decoder": (1, 1, 1)}, 16),  # three stages: p * 2^2
        ({"patch_size": 2}, 16),  # the final expanding undoes any patch size
        ({"depths": (1,), "depths_decoder": (1,), "patch_size": 8, "dims": 16}, 8),
    ],
)
def test_stage_count_follows_depths_and_patch_size_is_undone(kwargs, multiple):
    torch.manual_seed(0)
    model = create_model("test_vmunet", **kwargs).eval()
    assert model.input_multiple == multiple
    stages = len(kwargs.get("depths", (1, 1, 1, 1)))
    assert [f["reduction"] for f in model.feature_info] == [model.patch_size * 2**i for i in range(stages)]
    x = torch.randn(1, 3, 2 * multiple, 3 * multiple)
    with torch.no_grad():
        assert model(x).shape == (1, 1, 2 * multiple, 3 * multiple)
        assert len(model.forward_intermediates(x)) == stages
