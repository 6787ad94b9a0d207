"""Pure, differentiable Fourier helpers on (..., h, w) maps: centred power, Chebyshev frequency, masks.

A low-level neutral module (like ``errors``): the spectral audit's measures, the spectral losses and
spectral gating all build on these, so each of them defines "frequency" the same way
(REFERENCE.md section 3):

- the power of a map is ``|fftshift(fft2(f - mean(f)))|^2`` over its last two axes, DC at
  ``(h // 2, w // 2)`` (the spatial mean removed, so a constant offset changes nothing);
- the Chebyshev normalised frequency of bin (ky, kx) is
  ``max(|ky - h//2| / (h/2), |kx - w//2| / (w/2))``, 0 at DC and 1 at Nyquist, so ``f > 0.5`` is
  exactly ``|ky - h//2| > h/4 or |kx - w//2| > w/4``;
- bands split at edges (e0, e1): low ``f <= e0``, mid ``e0 < f <= e1``, high ``f > e1`` (an edge
  belongs to the lower band).

Nothing here detaches, casts or checks sizes: callers choose the dtype (the audit float64) and their
own size rules. Shape letters: h/w map height/width, "..." any leading axes.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["axis_mask", "band_masks", "centred_power", "chebyshev_frequency", "dc_mask"]


def centred_power(f: Tensor, subtract_mean: bool = True) -> Tensor:
    """(..., h, w) -> (..., h, w) power of the mean-centred maps, DC at (h // 2, w // 2), in f's dtype.

    ``subtract_mean`` False keeps each map's mean: its energy then sits in the DC bin.
    """
    if subtract_mean:
        f = f - f.mean(dim=(-2, -1), keepdim=True)
    spectrum = torch.fft.fftshift(torch.fft.fft2(f), dim=(-2, -1))
    return spectrum.real.square() + spectrum.imag.square()


def chebyshev_frequency(
    h: int, w: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float64
) -> Tensor:
    """(h, w) Chebyshev normalised frequency of each fftshift-ed bin (0 at DC, 1 at Nyquist)."""
    ky = (torch.arange(h, device=device, dtype=dtype) - h // 2).abs() / (h / 2)
    kx = (torch.arange(w, device=device, dtype=dtype) - w // 2).abs() / (w / 2)
    return torch.maximum(ky[:, None], kx[None, :])


def band_masks(
    h: int, w: int, edges: tuple[float, float], device: torch.device | str | None = None
) -> Tensor:
    """(3, h, w) bool: the low, mid and high bands of an (h, w) centred spectrum for ``edges``."""
    freq = chebyshev_frequency(h, w, device)
    e0, e1 = edges
    return torch.stack([freq <= e0, (freq > e0) & (freq <= e1), freq > e1])


def dc_mask(h: int, w: int, device: torch.device | str | None = None) -> Tensor:
    """(h, w) bool: the DC bin of a centred spectrum."""
    mask = torch.zeros(h, w, dtype=torch.bool, device=device)
    mask[h // 2, w // 2] = True
    return mask


def axis_mask(h: int, w: int, device: torch.device | str | None = None) -> Tensor:
    """(h, w) bool: the kx = 0 column and ky = 0 row of a centred spectrum, without DC (the cross that
    row and column scans leave)."""
    mask = torch.zeros(h, w, dtype=torch.bool, device=device)
    mask[h // 2, :] = True
    mask[:, w // 2] = True
    mask[h // 2, w // 2] = False
    return mask
