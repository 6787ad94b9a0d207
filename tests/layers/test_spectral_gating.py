"""SpectralGating (``layers/spectral_gating.py``): identity start, any size, resampling, thresholds.

Oracles from Fourier theory rather than from the code: a filter that is a pure phase ramp
exp(-2 pi i (ky dy / H + kx dx / W)) is a cyclic shift by (dy, dx) (the shift theorem), and a filter
that is a linear function of normalised frequency must be resampled to the same linear function.
"""

from __future__ import annotations

import math

import pytest
import torch

from specmamba.errors import ConfigError
from specmamba.layers.spectral_gating import SpectralGating, frequency_resampling

SIZES = [(16, 16), (16, 24), (9, 13), (7, 7), (32, 20), (1, 1), (2, 3)]


@pytest.mark.parametrize("size", SIZES)
def test_identity_init_returns_the_input_at_any_size(size):
    gating = SpectralGating(5, (16, 16))
    x = torch.randn(2, *size, 5, dtype=torch.float64)
    # float32 FFT round trip: a few ulps of the inputs' magnitude
    torch.testing.assert_close(gating(x), x, rtol=0, atol=1e-5)


def test_the_stored_filter_is_used_exactly_at_the_reference_size():
    gating = SpectralGating(3, (8, 12), init="seed")
    rows, cols = frequency_resampling((8, 12), (8, 12))
    assert torch.equal(rows, torch.eye(8, dtype=torch.float64)) and torch.equal(
        cols, torch.eye(7, dtype=torch.float64)
    )
    expected = torch.complex(gating.weight_real, gating.weight_imag).permute(1, 2, 0)
    assert torch.equal(gating.filter_at(8, 12), expected)


@pytest.mark.parametrize("shift", [(1, 0), (0, 3), (2, -5)])
def test_a_phase_ramp_filter_is_a_cyclic_shift(shift):
    h, w = 8, 12
    gating = SpectralGating(2, (h, w))
    ky = torch.fft.fftfreq(h, d=1 / h)[:, None]
    kx = torch.fft.rfftfreq(w, d=1 / w)[None, :]
    ramp = torch.exp(-2j * math.pi * (ky * shift[0] / h + kx * shift[1] / w))  # (h, w//2+1)
    with torch.no_grad():
        gating.weight_real.copy_(ramp.real.expand(2, -1, -1))
        gating.weight_imag.copy_(ramp.imag.expand(2, -1, -1))
    x = torch.randn(3, h, w, 2)
    torch.testing.assert_close(gating(x), torch.roll(x, shift, dims=(1, 2)), rtol=0, atol=1e-5)


def test_resampling_follows_normalised_frequency():
    """A filter linear in normalised frequency (fy, fx) stays that function at other sizes, within the
    reference's frequency range."""
    h, w = 16, 16

    def linear(n_rows, n_cols):
        fy = torch.fft.fftfreq(n_rows, dtype=torch.float64)[:, None]
        fx = torch.fft.rfftfreq(n_cols, dtype=torch.float64)[None, :]
        return 1 + 2 * fy - 3 * fx  # (n_rows, n_cols // 2 + 1)

    rows, cols = frequency_resampling((32, 24), (h, w))
    resampled = rows @ linear(h, w) @ cols.T
    target = linear(32, 24)
    fy = torch.fft.fftfreq(32, dtype=torch.float64)[:, None].expand_as(target)
    inside = (fy >= -0.5) & (fy <= (h // 2 - 1) / h)  # beyond the reference's top frequency it is held
    torch.testing.assert_close(resampled[inside], target[inside], rtol=0, atol=1e-12)
    assert torch.allclose(rows.sum(1), torch.ones(32, dtype=torch.float64))  # a partition of unity


@pytest.mark.parametrize("threshold", ["none", "soft"])
def test_gradients_reach_every_coefficient(threshold):
    """Every real part, and every imaginary part off the self-conjugate bins (DC, Nyquist), where a
    real-to-real filter's imaginary part has no effect by construction."""
    torch.manual_seed(0)
    h, w = 8, 12
    gating = SpectralGating(3, (h, w), init="seed", threshold=threshold)
    gating(torch.randn(2, h, w, 3)).square().sum().backward()
    assert (gating.weight_real.grad != 0).all()
    self_conjugate = torch.zeros(h, w // 2 + 1, dtype=torch.bool)
    for ky in (0, h // 2):
        for kx in (0, w // 2):
            self_conjugate[ky, kx] = True
    assert (gating.weight_imag.grad[:, ~self_conjugate] != 0).all()
    if threshold == "none":  # (the soft threshold reads |Y|, which the imaginary part changes everywhere)
        assert (gating.weight_imag.grad[:, self_conjugate] == 0).all()


def test_the_seed_hard_threshold_starts_almost_dead():
    """REFERENCE.md section 4, defect 7: at the seed's init, |Y| > 0.1 keeps few coefficients of a
    64x64 map, and the masked ones pass no gradient: why it is an option, not the default."""
    torch.manual_seed(0)
    gating = SpectralGating(8, 64, init="seed", threshold="hard")
    x = torch.randn(1, 64, 64, 8)
    spectrum = torch.fft.rfft2(x, dim=(1, 2), norm="ortho") * gating.filter_at(64, 64)
    kept = (spectrum.abs() > 0.1).float().mean().item()
    assert kept < 0.1
    gating(x).sum().backward()
    assert (gating.weight_real.grad == 0).float().mean() > 0.5


def test_bf16_input_gives_bf16_output():
    gating = SpectralGating(4, 8)
    x = torch.randn(1, 8, 8, 4).bfloat16()
    y = gating(x)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), x.float(), rtol=0, atol=1e-2)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"init": "kaiming"}, "init"), ({"threshold": "always"}, "threshold"), ({"tau": -1.0}, "tau")],
)
def test_bad_options(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SpectralGating(4, 8, **kwargs)
