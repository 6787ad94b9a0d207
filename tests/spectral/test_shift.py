"""Shift consistency: translations, windows, and models with known equivariance."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from specmamba.errors import ConfigError
from specmamba.spectral.shift import ShiftSpec, shift_consistency, shift_specs, translate, valid_window


def circular_conv() -> nn.Module:
    torch.manual_seed(0)
    return nn.Conv2d(3, 1, 3, padding=1, padding_mode="circular")


def test_integer_translations_are_rolls_or_reflect_padded_crops():
    x = torch.randn(2, 3, 10, 12)
    assert torch.equal(translate(x, 2, -3, "cyclic"), torch.roll(x, (2, -3), dims=(-2, -1)))
    moved = translate(x, 0, 3, "reflect")
    assert torch.equal(moved[..., 3:], x[..., :-3])
    assert torch.equal(moved[..., :3], x[..., 1:4].flip(-1))  # reflection without repeating the edge
    moved = translate(x, -2, 0, "reflect")
    assert torch.equal(moved[..., :-2, :], x[..., 2:, :])


def test_sub_pixel_translation_interpolates_linearly():
    x = torch.randn(1, 1, 6, 9)
    half = translate(x, 0, 0.5, "cyclic")
    assert torch.allclose(half, 0.5 * x + 0.5 * torch.roll(x, 1, dims=-1))
    quarter = translate(x, 0.25, 0, "reflect")
    assert torch.allclose(quarter[..., 1:, :], 0.75 * x[..., 1:, :] + 0.25 * x[..., :-1, :])
    # a whole number given as a float is still an exact shift
    assert torch.equal(translate(x, 0, 2.0, "cyclic"), torch.roll(x, 2, dims=-1))


def test_valid_window_excludes_what_came_from_padding():
    assert valid_window(10, 12, 0, 3) == (slice(0, 10), slice(0, 9))
    assert valid_window(10, 12, -2, 0) == (slice(2, 10), slice(0, 12))
    assert valid_window(10, 12, 0.5, 0.5) == (slice(1, 8), slice(1, 10))


def test_a_circularly_padded_conv_has_cyclic_shift_iou_one():
    model = circular_conv()
    images = torch.randn(3, 3, 16, 20)
    specs = shift_specs(amounts=(1, 2, 3, 4, 5), modes=("cyclic",))
    results = shift_consistency(model, images, specs)
    assert len(results) == 15
    for spec, iou in results.items():
        assert torch.equal(iou, torch.ones(3, dtype=torch.float64)), spec


def test_a_pointwise_model_has_reflect_shift_iou_one_over_the_shared_region():
    torch.manual_seed(1)
    model = nn.Conv2d(3, 1, 1)
    images = torch.randn(2, 3, 12, 12)
    results = shift_consistency(model, images, shift_specs(amounts=(1, 3, 5), modes=("reflect",)))
    for iou in results.values():
        assert torch.equal(iou, torch.ones(2, dtype=torch.float64))


def test_a_position_dependent_model_is_not_shift_consistent():
    class Ramp(nn.Module):
        def forward(self, x):
            ramp = torch.linspace(-1, 1, x.shape[-1]).expand_as(x[:, :1])
            return x[:, :1] + 3 * ramp

    torch.manual_seed(2)
    images = torch.randn(4, 1, 16, 16) * 0.3
    iou = shift_consistency(Ramp(), images, [ShiftSpec("horizontal", "cyclic", 4.0)])
    assert float(next(iter(iou.values())).mean()) < 0.9


def test_empty_predictions_count_as_consistent():
    images = torch.zeros(2, 3, 8, 8)
    iou = shift_consistency(lambda x: torch.full_like(x[:, :1], -5.0), images, shift_specs(amounts=(1, 0.5)))
    assert all(torch.equal(v, torch.ones(2, dtype=torch.float64)) for v in iou.values())


def test_bad_shift_arguments_are_named():
    with pytest.raises(ConfigError, match="direction"):
        shift_specs(directions=("sideways",))
    with pytest.raises(ConfigError, match="mode"):
        shift_specs(modes=("wrap",))
    with pytest.raises(ConfigError, match="positive"):
        shift_specs(amounts=(0,))
    with pytest.raises(ConfigError, match="wider than"):
        translate(torch.zeros(1, 1, 4, 4), 0, 5, "reflect")
