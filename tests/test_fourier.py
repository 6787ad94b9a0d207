"""The shared Fourier helpers (specmamba.fourier): what the audit, spectral losses and gating build on."""

from __future__ import annotations

import pytest
import torch

from specmamba.fourier import axis_mask, band_masks, centred_power, chebyshev_frequency, dc_mask


@pytest.mark.parametrize(("h", "w"), [(8, 8), (7, 10)])
def test_masks_partition_the_spectrum(h, w):
    bands = band_masks(h, w, (0.25, 0.75))
    assert bands.shape == (3, h, w) and torch.equal(bands.sum(0), torch.ones(h, w, dtype=torch.long))
    assert dc_mask(h, w).sum() == 1 and bands[0][dc_mask(h, w)].all()  # DC is low frequency
    axes = axis_mask(h, w)
    assert axes.sum() == h + w - 2 and not (axes & dc_mask(h, w)).any()
    f = chebyshev_frequency(h, w)
    assert f[h // 2, w // 2] == 0 and f.max() <= 1


def test_centred_power_is_differentiable_keeps_dtype_and_ignores_offsets():
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(centred_power, (x,))
    assert centred_power(x.float()).dtype == torch.float32
    torch.testing.assert_close(centred_power(x + 3.0), centred_power(x))
    # Parseval: the centred spectrum's energy is h*w times the centred map's
    centred = x - x.mean(dim=(-2, -1), keepdim=True)
    torch.testing.assert_close(centred_power(x).sum(dim=(-2, -1)), 30 * centred.square().sum(dim=(-2, -1)))
