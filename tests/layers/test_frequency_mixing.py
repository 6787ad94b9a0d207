"""Vim-F's frequency mixing (``specmamba.layers.frequency_mixing``): both forms against their
definitions (REFERENCE.md section 5), sample independence (upstream's V1 fftshift rolled the batch
axis), the spatial form's translation invariance and its class-token rule."""

from __future__ import annotations

import pytest
import torch

from specmamba.errors import ConfigError
from specmamba.layers.frequency_mixing import mix_spectrum, spectrum_amplitude


def test_token_channel_form_is_the_published_fft_over_tokens_and_channels():
    t = torch.randn(2, 7, 5, dtype=torch.float64)
    expected = torch.stack([torch.fft.fft2(t[i], norm="ortho").abs() for i in range(2)])  # (L, C) per sample
    torch.testing.assert_close(spectrum_amplitude(t, "token_channel", (2, 3)), expected)
    shifted = torch.stack([torch.fft.fftshift(expected[i]) for i in range(2)])
    torch.testing.assert_close(spectrum_amplitude(t, "token_channel", (2, 3), shift=True), shifted)


@pytest.mark.parametrize("form", ["token_channel", "spatial"])
@pytest.mark.parametrize("shift", [False, True])
def test_each_sample_gets_its_own_spectrum(form, shift):
    """Upstream's V1 called fftshift without axes: sample i received sample i-1's spectrum."""
    t = torch.randn(3, 6, 4)
    batch = spectrum_amplitude(t, form, (2, 3), shift=shift)
    alone = torch.cat([spectrum_amplitude(t[i : i + 1], form, (2, 3), shift=shift) for i in range(3)])
    torch.testing.assert_close(batch, alone)


def test_spatial_form_is_a_2d_fft_over_the_grid_per_channel_without_the_class_token():
    h, w, c = 3, 4, 5
    patches = torch.randn(2, h * w, c, dtype=torch.float64)
    cls = torch.randn(2, 1, c, dtype=torch.float64)
    middle = (h * w) // 2
    tokens = torch.cat([patches[:, :middle], cls, patches[:, middle:]], dim=1)
    amp = spectrum_amplitude(tokens, "spatial", (h, w), extra_positions=(middle,))
    grid = patches.view(2, h, w, c).permute(0, 3, 1, 2)  # (B, C, h, w)
    expected = torch.fft.fft2(grid, norm="ortho").abs().permute(0, 2, 3, 1).reshape(2, h * w, c)
    torch.testing.assert_close(torch.cat([amp[:, :middle], amp[:, middle + 1 :]], dim=1), expected)
    assert torch.equal(amp[:, middle], torch.zeros(2, c, dtype=torch.float64))  # no amplitude term
    # the class token therefore leaves the mix scaled only by w0
    mixed = mix_spectrum(tokens, torch.tensor([0.5, 2.0], dtype=torch.float64), "spatial", (h, w), (middle,))
    torch.testing.assert_close(mixed[:, middle], 0.5 * cls[:, 0])


def test_spatial_amplitude_is_invariant_to_circular_shifts_of_the_grid():
    grid = torch.randn(1, 4, 6, 3)  # (B, h, w, C)
    tokens = grid.reshape(1, 24, 3)
    rolled = grid.roll(shifts=(1, 2), dims=(1, 2)).reshape(1, 24, 3)
    torch.testing.assert_close(
        spectrum_amplitude(rolled, "spatial", (4, 6)),
        spectrum_amplitude(tokens, "spatial", (4, 6)),
        atol=1e-5,
        rtol=1e-5,
    )


def test_mix_keeps_the_dtype_and_is_differentiable():
    t = torch.randn(2, 6, 4, dtype=torch.bfloat16, requires_grad=True)
    weights = torch.ones(2, requires_grad=True)
    out = mix_spectrum(t, weights, "token_channel", (2, 3))
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert weights.grad is not None and torch.isfinite(weights.grad).all() and t.grad is not None


def test_unknown_form_is_refused():
    with pytest.raises(ConfigError, match="frequency_form must be one of token_channel, spatial"):
        spectrum_amplitude(torch.randn(1, 4, 2), "radial", (2, 2))
