"""Swin-Unet checkpoints: the authors' layout (strict round trip) and Swin Transformer ImageNet weights.

The checkpoints here are fabricated from the published tensor names and shapes (random values): the
Swin Transformer release (``swin_tiny_patch4_window7_224.pth``: ``{'model': state_dict}``, with the
``relative_position_index`` / ``attn_mask`` buffers its code registers) and the Swin-Unet code
(``swin_unet.`` wrapper prefix). Nothing is downloaded.
"""

from __future__ import annotations

import pytest
import torch

from specmamba.errors import CheckpointError
from specmamba.models import create_model, load_checkpoint
from specmamba.models.swin_unet_convert import describe_swin_state_dict

# test_swin_unet: width 16, heads (2, 2, 4, 8), window 4, patch 2, MLP ratio 4.
SMALL = {"embed_dim": 16, "heads": (2, 2, 4, 8), "window": 4, "patch": 2}
SWIN_T = {"embed_dim": 96, "heads": (3, 6, 12, 24), "window": 7, "patch": 4}


def _block_shapes(prefix: str, dim: int, heads: int, window: int, mlp_ratio: int = 4) -> dict:
    hidden = dim * mlp_ratio
    return {
        f"{prefix}.norm1.weight": (dim,),
        f"{prefix}.norm1.bias": (dim,),
        f"{prefix}.attn.relative_position_bias_table": ((2 * window - 1) ** 2, heads),
        f"{prefix}.attn.qkv.weight": (3 * dim, dim),
        f"{prefix}.attn.qkv.bias": (3 * dim,),
        f"{prefix}.attn.proj.weight": (dim, dim),
        f"{prefix}.attn.proj.bias": (dim,),
        f"{prefix}.norm2.weight": (dim,),
        f"{prefix}.norm2.bias": (dim,),
        f"{prefix}.mlp.fc1.weight": (hidden, dim),
        f"{prefix}.mlp.fc1.bias": (hidden,),
        f"{prefix}.mlp.fc2.weight": (dim, hidden),
        f"{prefix}.mlp.fc2.bias": (dim,),
    }


def _buffers(prefix: str, block: int, window: int, side: int) -> dict:
    """The buffers the Swin code registers: the index always, the mask for shifted blocks of maps > w."""
    n = window * window
    out = {f"{prefix}.attn.relative_position_index": ("index", window)}
    if block % 2 == 1 and side > window:
        out[f"{prefix}.attn_mask"] = ((side // window) ** 2, n, n)
    return out


def swin_imagenet_shapes(embed_dim, heads, window, patch, depths=(2, 2, 6, 2), in_chans=3, img_size=None):
    """Tensor names and shapes of a Swin Transformer classification checkpoint (Liu et al.)."""
    img_size = img_size or patch * 8 * window
    c = embed_dim
    shapes: dict = {
        "patch_embed.proj.weight": (c, in_chans, patch, patch),
        "patch_embed.proj.bias": (c,),
        "patch_embed.norm.weight": (c,),
        "patch_embed.norm.bias": (c,),
    }
    for i, depth in enumerate(depths):
        dim, side = c * 2**i, img_size // patch // 2**i
        for j in range(depth):
            shapes.update(_block_shapes(f"layers.{i}.blocks.{j}", dim, heads[i], window))
            shapes.update(_buffers(f"layers.{i}.blocks.{j}", j, window, side))
        if i < len(depths) - 1:
            shapes[f"layers.{i}.downsample.reduction.weight"] = (2 * dim, 4 * dim)
            shapes[f"layers.{i}.downsample.norm.weight"] = (4 * dim,)
            shapes[f"layers.{i}.downsample.norm.bias"] = (4 * dim,)
    shapes["norm.weight"] = shapes["norm.bias"] = (8 * c,)
    shapes["head.weight"], shapes["head.bias"] = (1000, 8 * c), (1000,)
    return shapes


def swin_unet_shapes(embed_dim, heads, window, patch, depths=(2, 2, 2, 2), in_chans=3, num_classes=1,
                     buffers=True):  # fmt: skip
    """Tensor names and shapes of the Swin-Unet code's ``SwinTransformerSys`` (Cao et al.)."""
    img_size = patch * 8 * window
    shapes = swin_imagenet_shapes(embed_dim, heads, window, patch, depths, in_chans, img_size)
    del shapes["head.weight"], shapes["head.bias"]
    c = embed_dim
    shapes["layers_up.0.expand.weight"] = (16 * c, 8 * c)  # PatchExpand(8C): Linear(8C, 16C), norm(4C)
    shapes["layers_up.0.norm.weight"] = shapes["layers_up.0.norm.bias"] = (4 * c,)
    for i in (1, 2, 3):
        dim, side = c * 2 ** (3 - i), img_size // patch // 2 ** (3 - i)
        for j in range(depths[3 - i]):
            shapes.update(_block_shapes(f"layers_up.{i}.blocks.{j}", dim, heads[3 - i], window))
            shapes.update(_buffers(f"layers_up.{i}.blocks.{j}", j, window, side))
        if i < 3:
            shapes[f"layers_up.{i}.upsample.expand.weight"] = (2 * dim, dim)
            shapes[f"layers_up.{i}.upsample.norm.weight"] = (dim // 2,)
            shapes[f"layers_up.{i}.upsample.norm.bias"] = (dim // 2,)
        shapes[f"concat_back_dim.{i}.weight"] = (dim, 2 * dim)
        shapes[f"concat_back_dim.{i}.bias"] = (dim,)
    shapes["norm_up.weight"] = shapes["norm_up.bias"] = (c,)
    shapes["up.expand.weight"] = (16 * c if patch == 4 else patch * patch * c, c)
    shapes["up.norm.weight"] = shapes["up.norm.bias"] = (c,)
    shapes["output.weight"] = (num_classes, c, 1, 1)
    if not buffers:
        shapes = {k: v for k, v in shapes.items() if not k.endswith(("relative_position_index", "attn_mask"))}
    return shapes


def fabricate(shapes: dict, seed: int = 0, empty: bool = False) -> dict[str, torch.Tensor]:
    """Random tensors of the given shapes; buffers filled as the Swin code fills them."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in shapes.items():
        if shape[0] == "index":
            ws = shape[1]
            ys, xs = torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")
            yy, xx = ys.flatten(), xs.flatten()
            sd[key] = (yy[:, None] - yy[None] + ws - 1) * (2 * ws - 1) + (xx[:, None] - xx[None] + ws - 1)
        elif key.endswith("attn_mask"):
            sd[key] = torch.where(torch.rand(shape, generator=g) > 0.5, -100.0, 0.0)
        else:
            sd[key] = torch.empty(shape) if empty else torch.randn(shape, generator=g) * 0.02
    return sd


# --------------------------------------------------------------------------------------------------
# the Swin-Unet layout


@pytest.fixture(scope="module")
def full():
    torch.manual_seed(0)
    return create_model("swin_unet")


def _shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_model_has_the_swin_unet_layout(full):
    assert _shapes(full) == swin_unet_shapes(**SWIN_T, buffers=False)
    small = create_model("test_swin_unet", in_chans=1, num_classes=2)
    assert _shapes(small) == swin_unet_shapes(**SMALL, in_chans=1, num_classes=2, buffers=False)


@pytest.mark.parametrize("prefix", ["swin_unet.", "module.swin_unet.", ""])
def test_swin_unet_checkpoint_round_trip(tmp_path, prefix):
    official = fabricate(swin_unet_shapes(**SMALL), seed=1)
    path = tmp_path / "epoch_149.pth"
    torch.save({prefix + k: v for k, v in official.items()}, path)
    model = create_model("test_swin_unet", checkpoint_path=path)  # strict
    back = model.state_dict()
    params = {k: v for k, v in official.items() if not k.endswith(("relative_position_index", "attn_mask"))}
    assert back.keys() == params.keys()
    assert all(torch.equal(back[k], v) for k, v in params.items())
    # The loaded weights are used: same logits as a second load of the same file.
    other = create_model("test_swin_unet").eval()
    load_checkpoint(other, path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), other(x))


def test_swin_unet_checkpoint_of_other_depths_is_refused(tmp_path):
    path = tmp_path / "deeper.pth"
    torch.save(fabricate(swin_unet_shapes(**SMALL, depths=(2, 2, 6, 2))), path)
    with pytest.raises(CheckpointError, match=r"deeper.pth.*depths \[2, 2, 6, 2\].*depths=\[2, 2, 6, 2\]"):
        create_model("test_swin_unet", checkpoint_path=path)


def test_foreign_relative_position_index_is_refused():
    sd = fabricate(swin_unet_shapes(**SMALL))
    key = "layers.0.blocks.0.attn.relative_position_index"
    sd[key] = sd[key].T.contiguous()
    with pytest.raises(CheckpointError, match="relative-position index"):
        load_checkpoint(create_model("test_swin_unet"), sd)


# --------------------------------------------------------------------------------------------------
# Swin Transformer ImageNet weights


def _check_imagenet_load(model, sd, depths):
    state = model.state_dict()
    report = model.pretrained_report if model.pretrained_report is not None else None
    for key, value in sd.items():
        if key.startswith(("patch_embed.", "norm.")) or (
            key.startswith("layers.") and not key.endswith(("relative_position_index", "attn_mask"))
        ):
            block = key.split(".")[3] if ".blocks." in key else None
            if block is not None and int(block) >= depths[int(key.split(".")[1])]:
                continue
            assert torch.equal(state[key], value), key
    # Encoder stage i is mirrored into decoder stage 3 - i (blocks of the same width).
    for i in range(3):
        for j in range(depths[i]):
            for name in (
                "attn.qkv.weight",
                "attn.relative_position_bias_table",
                "mlp.fc2.bias",
                "norm1.weight",
            ):
                src = f"layers.{i}.blocks.{j}.{name}"
                assert torch.equal(state[f"layers_up.{3 - i}.blocks.{j}.{name}"], sd[src]), src
    return report


def test_swin_t_imagenet_into_encoder_and_mirrored_decoder(tmp_path):
    sd = fabricate(swin_imagenet_shapes(**SMALL, depths=(2, 2, 6, 2)), seed=2)  # Swin-T depths
    path = tmp_path / "swin_tiny_patch4_window7_224.pth"
    torch.save({"model": sd}, path)
    model = create_model("test_swin_unet", encoder_weights=str(path))
    report = _check_imagenet_load(model, sd, (2, 2, 2, 2))
    assert report is not None and "ImageNet" in report.layout and str(path) in report.source
    assert set(report.missing) == {
        "layers_up.0.expand.weight",
        "layers_up.0.norm.weight",
        "layers_up.0.norm.bias",
        *[
            f"layers_up.{i}.upsample.{n}"
            for i in (1, 2)
            for n in ("expand.weight", "norm.weight", "norm.bias")
        ],
        *[f"concat_back_dim.{i}.{n}" for i in (1, 2, 3) for n in ("weight", "bias")],
        "norm_up.weight",
        "norm_up.bias",
        "up.expand.weight",
        "up.norm.weight",
        "up.norm.bias",
        "output.weight",
    }
    skipped = report.skipped
    assert skipped["head.weight"].startswith("ImageNet classifier")
    assert "depth" in skipped["layers.2.blocks.5.attn.qkv.weight"]
    assert "rebuilt" in skipped["layers.0.blocks.1.attn_mask"]
    assert "rebuilt" in skipped["layers.3.blocks.0.attn.relative_position_index"]
    assert set(skipped) == {k for k in sd if k.startswith("head.")} | {
        k for k in sd if k.endswith(("relative_position_index", "attn_mask"))
    } | {k for k in sd if k.startswith("layers.2.blocks.") and int(k.split(".")[3]) >= 2}
    assert "Loaded" in report.summary()
    assert report.notes == [
        "stage 2: the checkpoint has 6 blocks, the model 2; blocks 2..5 skipped (as the Swin-Unet authors' "
        "loader does)."
    ]
    assert model.specmamba_kwargs == {}  # architecture kwargs only: the weights file is not recorded
    with torch.no_grad():
        assert torch.isfinite(model.eval()(torch.randn(1, 3, 64, 64))).all()


def test_imagenet_checkpoint_through_checkpoint_path(tmp_path):
    sd = fabricate(swin_imagenet_shapes(**SMALL, depths=(2, 2, 18, 2)), seed=3)  # Swin-S depths
    path = tmp_path / "swin_small_patch4_window7_224.pth"
    torch.save({"model": sd}, path)
    model = create_model("test_swin_unet", checkpoint_path=str(path))
    _check_imagenet_load(model, sd, (2, 2, 2, 2))
    report = load_checkpoint(create_model("test_swin_unet"), path)
    assert sum("depth" in why for why in report.skipped.values()) == 16 * 13  # blocks 2..17 of stage 2


@pytest.mark.parametrize("in_chans", [1, 4])
def test_imagenet_first_conv_adapted_to_in_chans(in_chans):
    sd = fabricate(swin_imagenet_shapes(**SMALL), seed=4)
    model = create_model("test_swin_unet", in_chans=in_chans, encoder_weights={"model": sd})
    w3, w = sd["patch_embed.proj.weight"], model.patch_embed.proj.weight.detach()
    if in_chans == 1:
        assert torch.allclose(w[:, 0], w3.sum(1))
    else:
        assert torch.allclose(w[:, 3], w3[:, 0] * 3 / 4)
    assert any("3 to" in n for n in model.pretrained_report.notes)


def test_full_size_swin_t_checkpoint(full):
    sd = fabricate(swin_imagenet_shapes(**SWIN_T), seed=5)
    report = load_checkpoint(full, {"model": sd})
    # Not pretrained: the expanding layers (3 + 2 x 3 + 3 tensors), the skip projections (6),
    # norm_up (2) and the output conv (1).
    assert len(report.missing) == 21
    assert len(report.loaded) == len(full.state_dict()) - 21
    assert torch.equal(full.layers_up[3].blocks[1].attn.qkv.weight, sd["layers.0.blocks.1.attn.qkv.weight"])
    assert sd["layers.0.blocks.1.attn_mask"].shape == (64, 49, 49)  # what the official file carries


def test_swin_b_is_refused(full):
    swin_b = fabricate(
        swin_imagenet_shapes(128, (4, 8, 16, 32), 7, 4, depths=(2, 2, 18, 2)), empty=True
    )  # 88M values, never touched
    assert describe_swin_state_dict(swin_b)["width"] == 128
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(full, {"model": swin_b})
    msg = str(info.value)
    assert (
        "Swin-B with width 128" in msg and "needs width 96" in msg and "swin_tiny_patch4_window7_224" in msg
    )


@pytest.mark.parametrize(
    "change,match",
    [
        ({"embed_dim": 24, "heads": (3, 3, 6, 12)}, "width 24"),
        ({"window": 7}, "window 7"),
        ({"heads": (1, 2, 4, 8)}, r"heads \[1, 2, 4, 8\]"),
        ({"patch": 4}, "patch 4"),
    ],
)
def test_other_swin_architectures_are_refused(tmp_path, change, match):
    arch = {**SMALL, **change}
    path = tmp_path / "other.pth"
    torch.save({"model": fabricate(swin_imagenet_shapes(**arch))}, path)
    with pytest.raises(CheckpointError, match=f"other.pth.*{match}.*needs width 16"):
        create_model("test_swin_unet", encoder_weights=path)


def test_non_swin_files_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        create_model("test_swin_unet", encoder_weights=tmp_path / "missing.pth")
    resnet_like = {"conv1.weight": torch.zeros(8, 3, 7, 7), "fc.weight": torch.zeros(10, 8)}
    with pytest.raises(CheckpointError, match="no tensor|does not match"):
        load_checkpoint(create_model("test_swin_unet"), resnet_like)
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x00not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt.pth"):
        create_model("test_swin_unet", encoder_weights=corrupt)
