"""FrequencyLoss: zero at the target, a gradient elsewhere, Parseval as the oracle, band weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from specmamba.errors import ConfigError
from specmamba.fourier import band_masks
from specmamba.losses import FrequencyLoss
from specmamba.losses._inputs import class_probabilities


@pytest.mark.parametrize("k", [1, 3])
def test_without_band_weights_it_is_the_pixel_mse_of_the_probabilities(k):
    """Parseval: the ortho FFT keeps the energy, so the mean |P - T|^2 over bins is the pixel MSE."""
    torch.manual_seed(0)
    logits, target = torch.randn(2, k, 12, 10, dtype=torch.float64), torch.randint(0, max(k, 2), (2, 12, 10))
    probs = class_probabilities(logits)[:, 1:]
    onehot = F.one_hot(target, max(k, 2)).permute(0, 3, 1, 2)[:, 1:].double()
    torch.testing.assert_close(FrequencyLoss()(logits, target), (probs - onehot).square().mean())


@pytest.mark.parametrize("k", [1, 3])
def test_zero_at_the_target_and_a_gradient_elsewhere(k):
    target = torch.randint(0, max(k, 2), (2, 16, 16))
    confident = F.one_hot(target, max(k, 2)).permute(0, 3, 1, 2).double() * 80 - 40  # softmax ~ one-hot
    if k == 1:
        confident = confident[:, 1:]
    assert FrequencyLoss()(confident, target) < 1e-30
    logits = torch.randn(2, k, 16, 16, requires_grad=True)
    FrequencyLoss(band_weights=(0, 1, 2))(logits, target).backward()
    assert logits.grad.abs().sum() > 0 and torch.isfinite(logits.grad).all()


def test_band_weights_weigh_the_bins_of_each_band():
    torch.manual_seed(0)
    probs, maps = torch.rand(1, 1, 16, 16, dtype=torch.float64), torch.rand(1, 1, 16, 16, dtype=torch.float64)
    spectrum = torch.fft.fftshift(torch.fft.fft2(probs - maps, norm="ortho"), dim=(-2, -1))
    power = spectrum.abs().square()[0, 0]
    masks = band_masks(16, 16, (0.25, 0.75))
    for weights in [(1, 0, 0), (0, 1, 0), (0, 0, 1), (0.5, 2, 3)]:
        expected = sum(w * (power * m).sum() for w, m in zip(weights, masks)) / power.numel()
        torch.testing.assert_close(
            FrequencyLoss(band_weights=weights).spectral_distance(probs, maps), expected
        )


def test_only_high_frequencies_ignore_a_smooth_error():
    smooth = torch.zeros(1, 1, 32, 32, dtype=torch.float64) + 0.3  # a constant offset: DC only
    zero = torch.zeros_like(smooth)
    assert FrequencyLoss(band_weights=(0, 0, 1)).spectral_distance(smooth, zero) < 1e-30
    assert FrequencyLoss().spectral_distance(smooth, zero) > 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"band_weights": (1, 2)},
        {"band_weights": (0, 0, 0)},
        {"band_weights": (1, -1, 1)},
        {"band_edges": (0.8, 0.2)},
    ],
)
def test_bad_options(kwargs):
    with pytest.raises(ConfigError, match="FrequencyLoss"):
        FrequencyLoss(**kwargs)
