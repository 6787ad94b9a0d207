"""Spec-VMamba (``models/spec_vmamba.py``): the seed's architecture, and each defect of its public code
(REFERENCE.md section 4) shown absent."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import specmamba.layers.ss2d as ss2d_module
from specmamba import create_model
from specmamba.errors import InputSizeError
from specmamba.layers.spectral_gating import SpectralGating
from specmamba.layers.spectral_vss_block import SpectralVSSBlock
from specmamba.layers.ss2d import SS2D
from specmamba.losses import FocalLoss, FrequencyLoss, build_loss
from specmamba.losses.boundary import boundary_band
from specmamba.models.spec_vmamba import norm_groups
from specmamba.ops import SS2D as SS2D_DIRECTIONS


@pytest.fixture(scope="module")
def paper_model():
    torch.manual_seed(0)
    return create_model("spec_vmamba")


def test_the_seeds_architecture(paper_model):
    m = paper_model
    assert m.dims == [64, 128, 256, 512]
    assert [len(stage.block.blocks) for stage in m.layers] == [2, 2, 2, 2]
    assert len(m.bottleneck.blocks) == 3 and m.bottleneck.blocks[0].ln_1.normalized_shape == (512,)
    assert [len(stage.block.blocks) for stage in m.layers_up] == [2, 2, 2]
    assert [stage.fusion.conv.in_channels for stage in m.layers_up] == [512, 256, 128]
    assert [(f["num_chs"], f["reduction"]) for f in m.feature_info] == [
        (64, 4),
        (128, 8),
        (256, 16),
        (512, 32),
    ]
    # gating filters stored for a 256 px input: 64x64 .. 8x8 maps (rfft columns w // 2 + 1)
    shapes = [tuple(stage.block.gating.weight_real.shape) for stage in m.layers]
    assert shapes == [(64, 64, 33), (128, 32, 17), (256, 16, 9), (512, 8, 5)]
    assert m.head.conv.out_channels == 32 and m.head.norm.num_groups == 32


def test_spectral_false_removes_exactly_the_frequency_path(paper_model):
    spatial = create_model("spec_vmamba", spectral=False)
    gating = [mod for mod in paper_model.modules() if isinstance(mod, SpectralGating)]
    blocks = [mod for mod in paper_model.modules() if isinstance(mod, SpectralVSSBlock)]
    assert len(gating) == len(blocks) == 4 + 1 + 3
    extra = sum(p.numel() for g in gating for p in g.parameters()) + len(blocks)  # filters + alphas
    count = lambda model: sum(p.numel() for p in model.parameters())  # noqa: E731
    assert count(paper_model) - count(spatial) == extra
    assert not any(isinstance(mod, SpectralGating) for mod in spatial.modules())


@pytest.mark.parametrize("size", [(32, 32), (64, 96), (96, 32)])
def test_any_multiple_of_the_stride_runs(size):
    torch.manual_seed(0)
    model = create_model("test_spec_vmamba", num_classes=3)
    x = torch.randn(2, 3, *size)
    y = model(x)
    assert y.shape == (2, 3, *size)
    y.sum().backward()
    with pytest.raises(InputSizeError, match=f"multiples of {model.input_multiple}"):
        model(torch.randn(1, 3, size[0] + 8, size[1]))


def test_input_size_error_names_the_nearest_valid_size():
    model = create_model("test_spec_vmamba")  # three stages: multiples of 16
    with pytest.raises(InputSizeError, match="got 40x40: use 48x48 \\(or 32x32\\)"):
        model(torch.zeros(1, 3, 40, 40))


def test_ref_and_cpu_scan_backends_give_the_same_logits():
    torch.manual_seed(0)
    model = create_model("test_spec_vmamba", num_classes=2).eval()
    x = torch.randn(2, 3, 32, 64)
    with torch.no_grad():
        y_cpu = model.set_scan_backend("cpu")(x)
        y_ref = model.set_scan_backend("ref")(x)
    torch.testing.assert_close(y_cpu, y_ref, rtol=1e-4, atol=1e-5)  # as VM-UNet's (test_vmunet.py)


# -- the defects of the public code, each absent ----------------------------------------------------------


def test_defect1_no_recurrent_cell_and_every_scan_goes_through_specmamba_ops(monkeypatch):
    model = create_model("test_spec_vmamba").eval()
    assert not any(isinstance(m, nn.RNNBase | nn.RNNCellBase) for m in model.modules())
    scans = [m for m in model.modules() if getattr(m, "uses_selective_scan", False)]
    assert scans and all(isinstance(m, SS2D) for m in scans)
    calls = []
    real = ss2d_module.ss2d_selective_scan
    monkeypatch.setattr(ss2d_module, "ss2d_selective_scan", lambda *a, **k: calls.append(1) or real(*a, **k))
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    assert len(calls) == len(scans)  # one fused SS2D selective scan per VSS block


def test_defect2_each_output_sees_other_rows_and_columns():
    """A row-by-row scan (the seed's) lets a pixel depend on its own row and column only."""
    torch.manual_seed(0)
    layer = SS2D(8, d_state=4, scan_backend="ref")
    x = torch.randn(1, 6, 6, 8, requires_grad=True)
    layer(x)[0, 3, 3].sum().backward()
    reach = x.grad[0].abs().sum(-1) > 0  # (6, 6)
    off_cross = reach.clone()
    off_cross[3, :] = False
    off_cross[:, 3] = False
    assert off_cross.sum() >= 20  # nearly the whole map, not the cross through (3, 3)


def test_defect3_reverse_scans_come_back_unmirrored():
    h, w = 4, 6
    index = SS2D_DIRECTIONS.index(h, w)  # (4, h*w) row-major positions visited
    assert torch.equal(index[2], index[0].flip(0)) and torch.equal(index[3], index[1].flip(0))
    x = torch.randn(1, 3, h, w)
    merged = SS2D_DIRECTIONS.merge(SS2D_DIRECTIONS.scan(x), h, w)  # every direction back to its pixel
    torch.testing.assert_close(merged, 4 * x.reshape(1, 3, h * w))


def test_defect4_the_frequency_loss_has_a_gradient_and_is_zero_at_the_target():
    loss = FrequencyLoss()
    target = torch.randint(0, 3, (2, 16, 16))
    onehot = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float()
    assert loss.spectral_distance(onehot[:, 1:], onehot[:, 1:]) == 0
    logits = torch.randn(2, 3, 16, 16, requires_grad=True)
    loss(logits, target).backward()
    assert logits.grad.abs().sum() > 0


def test_defect5_the_boundary_band_is_a_band():
    target = torch.zeros(1, 20, 20, dtype=torch.long)
    target[0, 5:15, 5:15] = 1
    band = boundary_band(target, 2, width=2)
    assert 0 < band.float().mean() < 0.5  # the seed's map was true everywhere
    assert not boundary_band(torch.zeros(1, 8, 8, dtype=torch.long), 2, width=2).any()


def test_defect6_one_model_takes_every_size_and_returns_it():
    model = create_model("test_spec_vmamba").eval()
    with torch.no_grad():
        for size in ((64, 64), (48, 80), (128, 32)):  # the filters are stored for 64x64
            assert model(torch.randn(1, 3, *size)).shape[-2:] == size


def test_defect7_the_spectral_path_starts_alive():
    """Default gating: identity init, no threshold; every filter receives gradient from the first step."""
    torch.manual_seed(0)
    model = create_model("test_spec_vmamba")
    model(torch.randn(2, 3, 64, 64)).square().sum().backward()
    for name, p in model.named_parameters():
        if name.endswith("gating.weight_real"):
            assert (p.grad != 0).float().mean() > 0.9, name


def test_defect8_focal_alpha_is_used_and_norms_take_any_width():
    logits, target = torch.randn(2, 1, 8, 8), torch.randint(0, 2, (2, 8, 8))
    assert FocalLoss(alpha=0.25)(logits, target) != FocalLoss(alpha=None)(logits, target)
    assert (
        build_loss("spectral_dual", 1, focal_alpha=0.25)(logits, target)["focal"]
        != build_loss("spectral_dual", 1)(logits, target)["focal"]
    )
    assert [norm_groups(c) for c in (64, 48, 24, 20, 7)] == [32, 16, 8, 4, 1]
    model = create_model("test_spec_vmamba", embed_dim=12)  # widths 12, 24, 48: GroupNorm(32) would fail
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 1, 32, 32)
