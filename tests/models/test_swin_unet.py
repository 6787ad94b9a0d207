"""Swin-Unet (Cao et al. 2021): size, layout, valid input sizes, skips, forward/backward.

The full-size model is built once (parameter count, layout, one forward/backward at 224 and one
forward at 224x448); everything else runs on the small ``test_swin_unet``.
"""

from __future__ import annotations

import pytest
import torch

from specmamba.errors import ConfigError, InputSizeError
from specmamba.models import create_model
from specmamba.models.interface import valid_input_size
from specmamba.models.swin_unet import SwinUNet, swin_input_multiple


def _n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def full():
    torch.manual_seed(0)
    return create_model("swin_unet")


def test_parameter_count(full):
    total = _n_params(full)
    assert total == 27_168_132
    assert round(total / 1e6, 2) == 27.17  # the published 27.17M
    encoder = _n_params(full.patch_embed) + _n_params(full.layers) + _n_params(full.norm)
    assert encoder == 20_413_386
    # Patch embed conv 4x4 (3 -> 96) with bias, LayerNorm(96); output conv 1x1 without bias.
    assert _n_params(full.patch_embed) == 96 * 3 * 16 + 96 + 2 * 96
    assert _n_params(full.output) == 96
    # Skip projections Linear 2c -> c for c = 384, 192, 96.
    assert _n_params(full.concat_back_dim) == sum(2 * c * c + c for c in (384, 192, 96))


def test_swin_t_layout(full):
    assert full.input_multiple == 224 == swin_input_multiple(4, 7, 4)
    assert [(d["num_chs"], d["reduction"], d["module"]) for d in full.feature_info] == [
        (96, 4, "layers.0.stage_out"),
        (192, 8, "layers.1.stage_out"),
        (384, 16, "layers.2.stage_out"),
        (768, 32, "layers.3.stage_out"),
    ]
    heads = [stage.blocks[0].attn.num_heads for stage in full.layers]
    assert heads == [3, 6, 12, 24]
    assert [len(stage.blocks) for stage in full.layers] == [2, 2, 2, 2]
    assert all(b.window_size == 7 for stage in full.layers for b in stage.blocks)
    assert [b.shift_size for b in full.layers[0].blocks] == [0, 3]
    assert all(b.mlp.fc1.out_features == 4 * b.mlp.fc1.in_features for s in full.layers for b in s.blocks)
    assert [s.downsample is None for s in full.layers] == [False, False, False, True]
    # Decoder mirrors the encoder: expanding, then stages of widths 384, 192, 96 with 12, 6, 3 heads.
    up = full.layers_up
    assert up[0].expand.weight.shape == (1536, 768) and up[0].norm.normalized_shape == (384,)
    assert [up[i].blocks[0].attn.num_heads for i in (1, 2, 3)] == [12, 6, 3]
    assert [up[i].upsample is None for i in (1, 2, 3)] == [False, False, True]
    assert full.up.expand.weight.shape == (16 * 96, 96)  # final x4 expanding
    assert full.output.kernel_size == (1, 1) and full.output.bias is None
    # Stochastic depth 0 -> 0.1 over the 8 encoder blocks; decoder stage i reuses encoder stage 3 - i's.
    enc = [b.drop_path.p for s in full.layers for b in s.blocks]
    assert enc == pytest.approx(torch.linspace(0, 0.1, 8).tolist())
    assert [b.drop_path.p for b in up[1].blocks] == [b.drop_path.p for b in full.layers[2].blocks]
    # The 7x7 last stage of a 224 input is one window: attended without shift, as in the Swin code.
    assert full.layers[3].blocks[1].effective_shift(7, 7) == 0
    assert full.layers[2].blocks[1].effective_shift(14, 14) == 3


def test_forward_backward_224(full):
    full.train()
    x = torch.randn(1, 3, 224, 224)
    y = full(x)
    assert y.shape == (1, 1, 224, 224) and torch.isfinite(y).all()
    torch.nn.functional.binary_cross_entropy_with_logits(y, (x[:, :1] > 0).float()).backward()
    for name, p in full.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    full.zero_grad(set_to_none=True)
    full.eval()


def test_forward_at_another_valid_size(full):
    x = torch.randn(1, 3, 224, 448)
    with torch.no_grad():
        assert full(x).shape == (1, 1, 224, 448)
        feats = full.forward_intermediates(x)
    assert [tuple(f.shape) for f in feats] == [
        (1, 96, 56, 112),
        (1, 192, 28, 56),
        (1, 384, 14, 28),
        (1, 768, 7, 14),
    ]


def test_size_errors_name_the_nearest_valid_size(full):
    with pytest.raises(InputSizeError) as info:
        full(torch.zeros(1, 3, 256, 256))
    msg = str(info.value)
    assert "swin_unet needs height and width that are multiples of 224; got 256x256: use 224x224" in msg
    assert "(or 448x448)" in msg and "window 7" in msg and "patch 4" in msg
    with pytest.raises(InputSizeError, match="got 224x240: use 224x224"):
        full.forward_intermediates(torch.zeros(1, 3, 224, 240))
    with pytest.raises(InputSizeError, match="in_chans=3"):
        full(torch.zeros(1, 1, 224, 224))
    # What the trainer uses to refuse --img-size values.
    assert [valid_input_size(full, s) for s in (64, 224, 256, 300, 400, 448)] == [
        224,
        224,
        224,
        224,
        448,
        448,
    ]


def test_small_variant_at_other_valid_sizes():
    torch.manual_seed(0)
    model = create_model("test_swin_unet", in_chans=2, num_classes=3)
    assert model.input_multiple == 64  # patch 2 x 2^3 x window 4
    x = torch.randn(2, 2, 128, 192, requires_grad=True)
    y = model(x)
    assert y.shape == (2, 3, 128, 192) and y.is_contiguous()
    y.logsumexp(1).mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(InputSizeError, match="use 128x192"):
        model(torch.zeros(1, 2, 120, 192))


def test_skips_are_the_inputs_of_encoder_stages():
    torch.manual_seed(1)
    model = create_model("test_swin_unet").eval()
    stage_inputs, concat_inputs = {}, {}
    for i, stage in enumerate(model.layers):
        stage.register_forward_pre_hook(lambda m, inp, i=i: stage_inputs.__setitem__(i, inp[0]))
    for i in (1, 2, 3):
        model.concat_back_dim[i].register_forward_pre_hook(
            lambda m, inp, i=i: concat_inputs.__setitem__(i, inp[0])
        )
    patch_out = {}
    model.patch_embed.register_forward_hook(lambda m, inp, out: patch_out.setdefault("x", out))
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    assert torch.equal(stage_inputs[0], patch_out["x"])  # the patch embedding is the first skip
    for i in (1, 2, 3):
        skip = concat_inputs[i][..., concat_inputs[i].shape[-1] // 2 :]  # decoder half first, then skip
        assert torch.equal(skip, stage_inputs[3 - i])


def test_logits_depend_on_the_skips():
    # A decoder that ignored the skips would be blind to a perturbation seen only through them.
    torch.manual_seed(2)
    model = create_model("test_swin_unet").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        model.concat_back_dim[3].weight[:, 16:] = 0  # cut the patch-embed skip
        assert not torch.allclose(model(x), ref)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_heads": (3, 6, 12, 25)}, "divisible"),
        ({"depths": (2, 2, 2)}, "depths must be 4 integers"),
        ({"depths": (2, 0, 2, 2)}, "depths must be 4 integers"),
        ({"embed_dim": 15, "num_heads": (1, 1, 1, 1)}, "even"),
        ({"window_size": 0}, "window_size"),
        ({"drop_path_rate": 1.0}, "drop_path_rate"),
    ],
)
def test_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SwinUNet(**kwargs)


def test_drop_path_only_in_training():
    torch.manual_seed(3)
    model = create_model("test_swin_unet", drop_path_rate=0.5)
    x = torch.randn(2, 3, 64, 64)
    model.train()
    assert not torch.allclose(model(x), model(x))
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
