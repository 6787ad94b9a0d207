"""Fourier measures against known answers (REFERENCE.md section 3)."""

from __future__ import annotations

import math

import pytest
import torch

from specmamba.errors import ConfigError, NotMeasurableError
from specmamba.spectral.measures import (
    avr,
    axis_energy_ratio,
    band_energy,
    chebyshev_frequency,
    log_power_spectrum,
    measure_stage,
    per_channel_avr,
    power_spectrum,
)


def cosine_map(h: int, w: int, ky: int, kx: int, batch: int = 1, channels: int = 1) -> torch.Tensor:
    """(B, C, h, w) pure cosine with ky cycles down and kx cycles across."""
    y = torch.arange(h, dtype=torch.float64)[:, None]
    x = torch.arange(w, dtype=torch.float64)[None, :]
    wave = torch.cos(2 * math.pi * (ky * y / h + kx * x / w))
    return wave.expand(batch, channels, h, w).clone()


@pytest.mark.parametrize("h, w", [(32, 32), (16, 24), (9, 13)])
def test_chebyshev_frequency_is_zero_at_dc_and_matches_the_published_high_region(h, w):
    f = chebyshev_frequency(h, w)
    assert f[h // 2, w // 2] == 0
    ky = (torch.arange(h) - h // 2).abs()[:, None]
    kx = (torch.arange(w) - w // 2).abs()[None, :]
    published_high = (ky > h / 4) | (kx > w / 4)
    assert torch.equal(f > 0.5, published_high)


@pytest.mark.parametrize("h, w", [(32, 32), (16, 24)])
def test_pure_cosines_above_and_below_the_threshold_give_avr_one_and_zero(h, w):
    above = cosine_map(h, w, 0, w // 2 - 1)  # f = (w/2 - 1) / (w/2) > 0.5
    below = cosine_map(h, w, 1, 2)  # f = max(2/h, 4/w) < 0.5
    diagonal_above = cosine_map(h, w, h // 2 - 2, 1)
    assert avr(above) == pytest.approx(1.0, abs=1e-12)
    assert avr(below) == pytest.approx(0.0, abs=1e-12)
    assert avr(diagonal_above) == pytest.approx(1.0, abs=1e-12)


def test_avr_threshold_boundary_is_strict():
    # kx = 8 on w = 32 sits exactly at f = 0.5: not above the threshold
    assert avr(cosine_map(32, 32, 0, 8)) == pytest.approx(0.0, abs=1e-12)
    assert avr(cosine_map(32, 32, 0, 9)) == pytest.approx(1.0, abs=1e-12)


def test_adding_a_constant_changes_neither_avr_nor_bands():
    torch.manual_seed(0)
    fmap = torch.randn(3, 5, 16, 20, dtype=torch.float64)  # float64 so the offset itself is exact enough
    shifted = fmap + torch.arange(5.0).view(1, 5, 1, 1) * 100 + 7.0
    assert avr(shifted) == pytest.approx(avr(fmap), rel=1e-9)
    assert band_energy(shifted) == pytest.approx(band_energy(fmap), rel=1e-9)
    assert axis_energy_ratio(shifted) == pytest.approx(axis_energy_ratio(fmap), rel=1e-9)


@pytest.mark.parametrize("shape", [(2, 3, 16, 16), (1, 4, 7, 12), (4, 1, 64, 32)])
def test_bands_sum_to_one(shape):
    torch.manual_seed(1)
    low, mid, high = band_energy(torch.randn(shape))
    assert low + mid + high == pytest.approx(1.0, abs=1e-12)
    shares = measure_stage(torch.randn(shape)).band_shares
    assert torch.allclose(shares.sum(dim=1), torch.ones(shape[0], dtype=shares.dtype))


def test_frequencies_on_a_band_edge_belong_to_the_lower_band():
    # w = 32: kx = 4 is f = 0.25 exactly (low), kx = 12 is f = 0.75 exactly (mid)
    assert band_energy(cosine_map(32, 32, 0, 4)) == pytest.approx((1.0, 0.0, 0.0), abs=1e-12)
    assert band_energy(cosine_map(32, 32, 0, 5)) == pytest.approx((0.0, 1.0, 0.0), abs=1e-12)
    assert band_energy(cosine_map(32, 32, 0, 12)) == pytest.approx((0.0, 1.0, 0.0), abs=1e-12)
    assert band_energy(cosine_map(32, 32, 0, 13)) == pytest.approx((0.0, 0.0, 1.0), abs=1e-12)


def test_energy_is_pooled_over_channels_not_averaged_as_ratios():
    loud_low = cosine_map(16, 16, 0, 1) * 10
    quiet_high = cosine_map(16, 16, 0, 7)
    fmap = torch.cat([loud_low, quiet_high], dim=1)
    assert avr(fmap) == pytest.approx(1 / 101, rel=1e-9)  # not (0 + 1) / 2
    assert per_channel_avr(fmap).tolist() == pytest.approx([0.0, 1.0], abs=1e-12)


def test_per_image_values_match_the_pooled_function_on_each_image():
    torch.manual_seed(2)
    fmap = torch.randn(4, 3, 12, 12)
    m = measure_stage(fmap)
    for i in range(4):
        assert float(m.avr[i]) == pytest.approx(avr(fmap[i : i + 1]), rel=1e-12)
        assert tuple(m.band_shares[i].tolist()) == pytest.approx(band_energy(fmap[i : i + 1]), rel=1e-12)


def test_axis_energy_ratio_of_row_and_diagonal_patterns():
    assert axis_energy_ratio(cosine_map(16, 16, 0, 3)) == pytest.approx(1.0)  # energy on the kx axis
    assert axis_energy_ratio(cosine_map(16, 16, 3, 0)) == pytest.approx(1.0)
    assert axis_energy_ratio(cosine_map(16, 16, 3, 3)) == pytest.approx(0.0, abs=1e-12)


def test_power_spectrum_is_centred_and_parseval_holds():
    fmap = cosine_map(16, 16, 0, 3)
    p = power_spectrum(fmap)[0, 0]
    peaks = (p > 1e-6).nonzero().tolist()
    assert peaks == [[8, 5], [8, 11]]  # centre (8, 8) +- 3 along kx
    torch.manual_seed(3)
    f = torch.randn(1, 1, 10, 14, dtype=torch.float64)
    centred = f - f.mean()
    assert power_spectrum(f).sum() / (10 * 14) == pytest.approx(float((centred**2).sum()), rel=1e-10)


def test_log_power_spectrum_is_finite_with_a_floor_at_dc():
    torch.manual_seed(4)
    spectrum = log_power_spectrum(torch.randn(2, 3, 8, 8))
    assert spectrum.shape == (8, 8)
    assert torch.isfinite(spectrum).all()
    assert spectrum[4, 4] == spectrum.min()


def test_constant_maps_have_undefined_ratios():
    assert math.isnan(avr(torch.ones(1, 2, 8, 8)))


def test_small_maps_are_not_measurable_and_bad_arguments_are_named():
    with pytest.raises(NotMeasurableError, match="3x8 feature map is not measurable"):
        avr(torch.randn(1, 1, 3, 8))
    with pytest.raises(ConfigError, match="threshold"):
        avr(torch.randn(1, 1, 8, 8), threshold=1.5)
    with pytest.raises(ConfigError, match="band edges"):
        band_energy(torch.randn(1, 1, 8, 8), edges=(0.8, 0.2))
    with pytest.raises(ConfigError, match=r"\(B, C, h, w\)"):
        avr(torch.randn(8, 8))
