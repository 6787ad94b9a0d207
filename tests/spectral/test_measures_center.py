"""``center=False`` (``audit --no-center``): the maps' means stay in the spectrum, as DC energy."""

from __future__ import annotations

import torch

from specmamba.spectral.measures import measure_stage


def test_uncentred_measures_count_the_mean_as_low_frequency_energy():
    torch.manual_seed(0)
    fmap = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    offset = fmap + 5.0  # a brightness offset: only the DC bin changes
    centred = measure_stage(fmap)
    assert torch.allclose(measure_stage(offset).avr, centred.avr, rtol=1e-12)  # centring removes it
    raw = measure_stage(offset, center=False)
    # Each map's mean lands in the DC bin: AVR falls, the high energy is unchanged.
    dc = 3 * (5.0 * 256) ** 2
    mean_energy = (fmap.mean(dim=(-2, -1)) * 256 + 5.0 * 256).square().sum(dim=1)
    assert torch.allclose(raw.high, centred.high, rtol=1e-10)
    assert torch.allclose(raw.total, centred.total + mean_energy, rtol=1e-10)
    assert (raw.avr < centred.avr).all() and (raw.total > dc).all()
    assert torch.allclose(raw.bands[:, 0], centred.bands[:, 0] + mean_energy, rtol=1e-10)
