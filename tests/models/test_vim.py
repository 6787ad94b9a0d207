"""Vim and Vim-F (``specmamba.models.vim`` / ``vim_seg``): parameter counts at the published sizes, the
official checkpoint layout (strict load, round trip, the official network's logits by an independent
derivation, ``tests/vim_oracle.py``), safe loading of files that pickle other objects, position
embeddings resized around the middle class token, and the segmentation models' backbone loading and
scan backends. The registry battery (``test_model_interface.py``) covers the segmentation contract."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import vim_oracle
from specmamba.errors import CheckpointError, ConfigError, InputSizeError
from specmamba.models import create_model, load_checkpoint
from specmamba.models.pos_embed import middle_index, resize_pos_embed, split_class
from specmamba.models.vim import vim_base, vim_small, vim_tiny, vimf_small, vimf_tiny

TINY = dict(depth=3, embed_dim=32, d_state=4, num_classes=5, drop_path_rate=0.0)
STEM = (8, 16, 32)


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.mark.parametrize(
    ("factory", "kwargs", "count"),
    [
        (vim_tiny, {}, 7_148_008),  # REFERENCE.md: about 7.15M
        (vim_small, {}, 25_796_584),  # about 25.8M
        (vim_base, {}, 97_598_440),  # about 97.6M
        (vimf_tiny, {}, 7_109_130),  # the paper's "7M"
        (vimf_tiny, {"version": "v2"}, 7_405_592),
        (vimf_small, {}, 25_951_242),  # the paper's "26M"
        (vimf_small, {"version": "v2"}, 27_133_976),
    ],
)
def test_parameter_counts_at_the_published_sizes(factory, kwargs, count):
    with torch.device("meta"):
        model = factory(**kwargs)
    assert sum(p.numel() for p in model.parameters()) == count


def test_long_sequence_layout_has_730_tokens():
    with torch.device("meta"):
        model = vim_tiny(stride=8)
    assert tuple(model.pos_embed.shape) == (1, 730, 192)  # 27 x 27 patches + the class token


# --------------------------------------------------------------------------------------------------
# the official layout: strict load, round trip, the official network's logits


def _official(kind: str, grid: int | None = 4):
    if kind == "vim":
        sd = vim_oracle.official_state_dict(3, 32, 4, 5, grid)
        model = vim_tiny(img_size=16 * grid, **TINY)
    else:
        version = kind.split("_")[1]
        sd = vim_oracle.official_state_dict(3, 32, 4, 5, None, stem_dims=STEM, version=version)
        model = vimf_tiny(version=version, stem_dims=STEM, **TINY)
    return sd, model.double().eval()


@pytest.mark.parametrize("kind", ["vim", "vimf_v1", "vimf_v2"])
def test_official_state_dict_loads_strictly_and_round_trips(kind):
    sd, model = _official(kind)
    report = load_checkpoint(model, {"model": sd, "epoch": 3}, strict=True)
    assert report.complete and not report.skipped and not report.unexpected
    own = model.state_dict()
    assert set(own) == set(sd)
    for key, value in sd.items():
        assert torch.equal(own[key], value), key


@pytest.mark.parametrize("kind", ["vim", "vimf_v1", "vimf_v2"])
def test_same_weights_give_the_official_networks_logits(kind):
    sd, model = _official(kind)
    load_checkpoint(model, sd)
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(
            model(x), vim_oracle.official_logits(sd, x, depth=3), rtol=1e-9, atol=1e-10
        )


def test_the_backward_direction_matters_on_cpu():
    sd, model = _official("vim")
    load_checkpoint(model, sd)
    model.float().set_scan_backend("cpu")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        for block in model.layers:
            block.mixer.x_proj_b.weight.zero_()
        assert (model(x) - before).abs().max() > 1e-4


def test_a_file_with_a_namespace_and_a_malicious_object_loads_only_its_tensors(tmp_path):
    marker = tmp_path / "code_ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    sd, model = _official("vim")
    path = tmp_path / "vim_t_midclstok_76p1acc.pth"
    torch.save(
        {
            "model": sd,
            "optimizer": {"state": {}},
            "args": argparse.Namespace(lr=5e-4, model="vim"),
            "x": Payload(),
        },
        path,
    )
    with pytest.raises(Exception):  # noqa: B017  PyTorch's own safe load refuses it
        torch.load(path, weights_only=True)
    report = load_checkpoint(model, path)
    assert not marker.exists()  # the payload's code never ran
    assert report.complete
    assert torch.equal(model.state_dict()["layers.2.mixer.A_b_log"], sd["layers.2.mixer.A_b_log"])


# --------------------------------------------------------------------------------------------------
# position embeddings and input sizes


def test_resize_keeps_the_middle_class_tokens_own_vector():
    pos = torch.randn(1, 14 * 14 + 1, 8, dtype=torch.float64)
    old = middle_index(196)  # 98, not 0
    out = resize_pos_embed(pos, (14, 14), (4, 6), class_index=old)
    new = middle_index(24)
    assert out.shape == (1, 25, 8)
    assert torch.equal(out[:, new], pos[:, old])
    patches = torch.cat([pos[:, :old], pos[:, old + 1 :]], dim=1).reshape(1, 14, 14, 8).permute(0, 3, 1, 2)
    expected = F.interpolate(patches, size=(4, 6), mode="bicubic", align_corners=False)
    got = torch.cat([out[:, :new], out[:, new + 1 :]], dim=1)
    torch.testing.assert_close(got, expected.permute(0, 2, 3, 1).reshape(1, 24, 8))


def test_a_checkpoint_of_another_grid_and_stride_loads_with_its_embedding_resized():
    sd = vim_oracle.official_state_dict(3, 32, 4, 5, grid=27)  # the stride-8 "ft" layout at 224 px
    model = vim_tiny(img_size=64, **TINY).double()  # stride 16, a 4 x 4 grid
    report = load_checkpoint(model, sd)
    assert any("27x27 to a 4x4 grid" in note for note in report.notes)
    assert torch.equal(model.pos_embed[:, middle_index(16)], sd["pos_embed"][:, middle_index(729)])


def test_any_input_size_of_the_patch_grid_runs_and_others_are_refused():
    model = vim_tiny(img_size=64, **TINY).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 48, 80)).shape == (1, 5)  # embedding interpolated to 3 x 5
        assert vim_tiny(stride=8, img_size=64, **TINY)(torch.randn(1, 3, 40, 24)).shape == (1, 5)
    with pytest.raises(InputSizeError, match="multiples of 16"):
        model(torch.randn(1, 3, 50, 64))


def test_head_of_another_class_count_is_left_out_and_reported():
    sd = vim_oracle.official_state_dict(3, 32, 4, 1000, grid=4)
    model = vim_tiny(img_size=64, **TINY).double()
    report = load_checkpoint(model, sd)
    assert set(report.skipped) == {"head.weight", "head.bias"} and report.missing == [
        "head.weight",
        "head.bias",
    ]


def test_mismatched_generation_is_refused_naming_the_tensors():
    sd = vim_oracle.official_state_dict(3, 32, 4, 5, None, stem_dims=STEM, version="v1")
    model = vimf_tiny(version="v2", stem_dims=STEM, **TINY)
    with pytest.raises(CheckpointError, match=r"layers\.0\.mlp"):
        load_checkpoint(model, sd)


def test_bad_options_are_refused():
    with pytest.raises(ConfigError, match="frequency_version must be 'none', 'v1'"):
        vimf_tiny(version="v3")
    with pytest.raises(ConfigError, match="use stem='conv'"):
        vim_tiny(frequency_version="v1")
    with pytest.raises(ConfigError, match="out_indices must be four increasing block indices"):
        create_model("test_vim_seg", out_indices=(0, 1, 2))


def test_vimf_without_mixing_is_the_conv_stem_network():
    with torch.device("meta"):
        plain = vimf_tiny(version="none")
    assert not any("sup_c" in k or "stack" in k or "mlp" in k for k in plain.state_dict())
    assert sum(p.numel() for p in plain.parameters()) == 7_109_128  # v1 less its two mixing weights
    seg = create_model("test_vimf_seg", frequency_version="none")
    assert seg.specmamba_kwargs["frequency_version"] == "none"  # a string, so it survives None-dropping


def test_spatial_form_is_another_network_with_the_same_parameters():
    torch.manual_seed(0)
    a = vimf_tiny(version="v2", stem_dims=STEM, **TINY).eval()
    b = vimf_tiny(version="v2", stem_dims=STEM, frequency_form="spatial", **TINY).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert (a(x) - b(x)).abs().max() > 1e-4


# --------------------------------------------------------------------------------------------------
# segmentation models


def test_segmentation_backbone_from_an_imagenet_checkpoint(tmp_path):
    sd = vim_oracle.official_state_dict(4, 32, 4, 1000, grid=14)  # a 224-px classifier
    path = tmp_path / "vim_tiny.pth"
    torch.save({"model": {k: v.float() for k, v in sd.items()}, "args": argparse.Namespace(lr=1)}, path)
    seg = create_model("test_vim_seg", encoder_weights=str(path))  # no class token, a 4 x 4 grid
    report = seg.pretrained_report
    assert report.complete and {"head.weight", "cls_token", "norm_f.weight"} <= set(report.skipped)
    patches, _ = split_class(sd["pos_embed"].float(), middle_index(196))  # the class vector at 98 removed
    expected = resize_pos_embed(patches, (14, 14), (4, 4), class_index=None)
    torch.testing.assert_close(seg.backbone.pos_embed.data, expected)
    assert torch.equal(seg.backbone.layers[3].mixer.D_b.data, sd["layers.3.mixer.D_b"].float())
    assert "encoder_weights" not in seg.specmamba_kwargs  # weights only: not part of the architecture


def test_a_classifier_given_as_the_segmentation_checkpoint_points_to_encoder_weights():
    sd = vim_oracle.official_state_dict(4, 32, 4, 1000, grid=14)
    with pytest.raises(CheckpointError, match=r"encoder_weights=PATH"):
        load_checkpoint(create_model("test_vim_seg"), {k: v.float() for k, v in sd.items()})


@pytest.mark.parametrize("name", ["test_vim_seg", "test_vimf_seg"])
def test_segmentation_ref_and_cpu_backends_agree_on_logits_and_gradients(name):
    torch.manual_seed(0)
    ref = create_model(name, scan_backend="ref").eval()
    cpu = create_model(name, scan_backend="cpu").eval()
    cpu.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 64, 64)
    yr, yc = ref(x), cpu(x)
    torch.testing.assert_close(yc, yr, rtol=1e-3, atol=1e-5)
    yr.square().sum().backward()
    yc.square().sum().backward()
    for (key, pr), pc in zip(ref.named_parameters(), cpu.parameters()):
        torch.testing.assert_close(pc.grad, pr.grad, rtol=2e-3, atol=1e-6, msg=key)


def test_segmentation_training_output_has_the_auxiliary_head():
    seg = create_model("test_vimf_seg").train()
    out = seg(torch.randn(2, 3, 64, 64))
    assert out.logits.shape == (2, 1, 64, 64) and [a.shape for a in out.aux] == [(2, 1, 4, 4)]
    assert isinstance(
        create_model("test_vimf_seg", aux_head=False).train()(torch.randn(2, 3, 64, 64)), torch.Tensor
    )


def test_segmentation_token_maps_drop_a_kept_class_token():
    seg = create_model("test_vim_seg", class_token=True).eval()
    maps = seg.forward_intermediates(torch.randn(1, 3, 64, 96))
    assert [tuple(m.shape) for m in maps] == [(1, 32, 4, 6)] * 4
