"""Fourier measures of encoder feature maps: AVR, frequency bands, power spectra, axis energy.

The spectral-audit study (REFERENCE.md section 3) measures how much of a feature map's energy lies
at frequencies a stride-2 downsampling would alias. Every measure here starts from the same power
spectrum: each (image, channel) map has its spatial mean removed (so a constant offset changes
nothing), then ``P = |fftshift(fft2(f))|^2`` over (h, w), with the DC term at ``(h // 2, w // 2)``.

``center=False`` (``specmamba audit --no-center``) skips the mean removal: the maps' means then
land in the DC bin, which counts as low-frequency energy in AVR and the bands. The spectral-audit
paper (REFERENCE.md section 3) attributes an earlier AVR-BF1 correlation (r about -0.50) to exactly
this: uncentred maps, whose energy the DC term (image brightness) dominates. The option exists so
that claim can be reproduced or refuted; centred maps are the default and the measure to report.

Frequencies are measured with the Chebyshev normalised frequency

    f(ky, kx) = max(|ky - h//2| / (h/2), |kx - w//2| / (w/2))   in [0, 1] (1 = Nyquist),

so ``f > 0.5`` is exactly ``|ky - h//2| > h/4 or |kx - w//2| > w/4``.

- AVR (alias violation ratio): energy with ``f > threshold`` over total energy.
- Bands: shares of energy with ``f <= e0`` (low), ``e0 < f <= e1`` (mid), ``f > e1`` (high); a
  frequency exactly on an edge belongs to the lower band.
- Axis-energy ratio: share of the non-DC energy on the ``kx = 0`` and ``ky = 0`` axes, the
  cross-shaped trace that row / column scans leave in a spectrum.

The spectrum, the frequency and the masks are :mod:`specmamba.fourier`'s (shared with the spectral
losses and gating). Energy is pooled over channels (and over the batch for the pooled functions): a
ratio of sums, not
a mean of ratios. Spectra are computed in float64 whatever the feature dtype. Maps with a side
under :data:`MIN_MEASURABLE_SIDE` raise :class:`~specmamba.errors.NotMeasurableError`. A map with no
energy at all (constant) has undefined ratios, returned as NaN.

Shape letters: B batch (images), C channels, h/w map height/width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import ConfigError, NotMeasurableError
from ..fourier import axis_mask, band_masks, centred_power, chebyshev_frequency, dc_mask

__all__ = [
    "DEFAULT_BAND_EDGES",
    "DEFAULT_THRESHOLD",
    "MIN_MEASURABLE_SIDE",
    "StageSpectrum",
    "avr",
    "axis_energy_ratio",
    "band_energy",
    "chebyshev_frequency",
    "is_measurable",
    "log_power_spectrum",
    "mean_log_power",
    "measure_stage",
    "per_channel_avr",
    "power_spectrum",
]

#: Smallest map side a Fourier measure is computed on (a 2x2 map has no frequency above 0.5 to speak of).
MIN_MEASURABLE_SIDE = 4
DEFAULT_THRESHOLD = 0.5
DEFAULT_BAND_EDGES = (0.25, 0.75)


def is_measurable(h: int, w: int) -> bool:
    """Whether an (h, w) map is large enough for the Fourier measures."""
    return min(h, w) >= MIN_MEASURABLE_SIDE


def _check_map(fmap: Tensor) -> Tensor:
    if not isinstance(fmap, Tensor) or fmap.ndim != 4:
        shape = tuple(fmap.shape) if isinstance(fmap, Tensor) else type(fmap).__name__
        raise ConfigError(f"feature map must be a (B, C, h, w) tensor; got {shape}.")
    h, w = fmap.shape[-2:]
    if not is_measurable(h, w):
        raise NotMeasurableError(
            f"a {h}x{w} feature map is not measurable: Fourier measures need both sides >= "
            f"{MIN_MEASURABLE_SIDE} (use a larger input or an earlier stage)."
        )
    return fmap


def _check_threshold(threshold: float) -> float:
    if not 0.0 < float(threshold) < 1.0:
        raise ConfigError(f"threshold must lie in (0, 1) (a normalised frequency); got {threshold}.")
    return float(threshold)


def _check_edges(edges: tuple[float, float]) -> tuple[float, float]:
    if len(edges) != 2 or not 0.0 < float(edges[0]) < float(edges[1]) < 1.0:
        raise ConfigError(f"band edges must be two increasing frequencies in (0, 1); got {tuple(edges)}.")
    return float(edges[0]), float(edges[1])


def power_spectrum(fmap: Tensor, center: bool = True) -> Tensor:
    """(B, C, h, w) -> (B, C, h, w) float64 power of the mean-centred maps (``center``; the raw maps
    otherwise), DC at (h // 2, w // 2)."""
    return centred_power(_check_map(fmap).detach().to(torch.float64), subtract_mean=center)


def _ratio(num: Tensor, den: Tensor) -> Tensor:
    """num / den with NaN where den == 0 (a constant map has no spectrum to share out)."""
    return torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny), torch.nan)


@dataclass
class StageSpectrum:
    """Every measure of one stage's maps for a batch, from a single FFT (see :func:`measure_stage`).

    Per image (B,): ``total`` energy, ``high`` energy above the threshold, ``bands`` (B, 3) energies,
    ``axis`` non-DC energy on the axes, ``non_dc`` energy without the DC bin. Per channel (C,), summed
    over the batch: ``channel_high`` and ``channel_total``. ``power_sum`` (h, w): power summed over
    batch and channels (for the mean power spectrum); ``count`` = B * C maps in it.
    """

    total: Tensor
    high: Tensor
    bands: Tensor
    axis: Tensor
    non_dc: Tensor
    channel_high: Tensor
    channel_total: Tensor
    power_sum: Tensor
    count: int

    @property
    def avr(self) -> Tensor:
        """(B,) AVR of each image, energy pooled over channels."""
        return _ratio(self.high, self.total)

    @property
    def band_shares(self) -> Tensor:
        """(B, 3) low / mid / high shares of each image's energy (each row sums to 1)."""
        return _ratio(self.bands, self.total[:, None])

    @property
    def axis_ratio(self) -> Tensor:
        """(B,) share of each image's non-DC energy on the kx = 0 / ky = 0 axes."""
        return _ratio(self.axis, self.non_dc)


def measure_stage(
    fmap: Tensor,
    threshold: float = DEFAULT_THRESHOLD,
    edges: tuple[float, float] = DEFAULT_BAND_EDGES,
    center: bool = True,
) -> StageSpectrum:
    """All the audit's measures of a (B, C, h, w) batch of stage maps from one FFT (of the mean-centred
    maps, or of the raw maps with ``center`` False)."""
    threshold, (e0, e1) = _check_threshold(threshold), _check_edges(edges)
    power = power_spectrum(fmap, center)  # (B, C, h, w)
    b, c, h, w = power.shape
    per_image = power.sum(dim=1)  # (B, h, w): energy pooled over channels
    high_mask = chebyshev_frequency(h, w, power.device) > threshold
    bands = band_masks(h, w, (e0, e1), power.device)  # (3, h, w)
    return StageSpectrum(
        total=per_image.sum(dim=(-2, -1)),
        high=(per_image * high_mask).sum(dim=(-2, -1)),
        bands=torch.einsum("bhw,khw->bk", per_image, bands.to(per_image.dtype)),
        axis=(per_image * axis_mask(h, w, power.device)).sum(dim=(-2, -1)),
        non_dc=(per_image * ~dc_mask(h, w, power.device)).sum(dim=(-2, -1)),
        channel_high=(power * high_mask).sum(dim=(0, 2, 3)),
        channel_total=power.sum(dim=(0, 2, 3)),
        power_sum=power.sum(dim=(0, 1)),
        count=b * c,
    )


def avr(fmap: Tensor, threshold: float = DEFAULT_THRESHOLD) -> float:
    """Alias violation ratio of a (B, C, h, w) batch: energy above ``threshold`` over total energy.

    Energy is pooled over batch and channels (REFERENCE.md section 3). NaN for a constant batch.
    """
    m = measure_stage(fmap, threshold)
    return float(_ratio(m.high.sum(), m.total.sum()))


def band_energy(fmap: Tensor, edges: tuple[float, float] = DEFAULT_BAND_EDGES) -> tuple[float, float, float]:
    """(low, mid, high) shares of the batch's energy; they sum to 1 (edges belong to the lower band)."""
    m = measure_stage(fmap, edges=edges)
    shares = _ratio(m.bands.sum(dim=0), m.total.sum())
    return float(shares[0]), float(shares[1]), float(shares[2])


def axis_energy_ratio(fmap: Tensor) -> float:
    """Share of the batch's non-DC energy on the kx = 0 and ky = 0 axes of the spectrum."""
    m = measure_stage(fmap)
    return float(_ratio(m.axis.sum(), m.non_dc.sum()))


def per_channel_avr(fmap: Tensor, threshold: float = DEFAULT_THRESHOLD) -> Tensor:
    """(C,) AVR of each channel, energy pooled over the batch (NaN for an all-constant channel)."""
    m = measure_stage(fmap, threshold)
    return _ratio(m.channel_high, m.channel_total)


def log_power_spectrum(fmap: Tensor) -> Tensor:
    """(h, w) log10 of the mean power over batch and channels (centred; DC is 0 after centring).

    A small floor (1e-12 of the largest bin) keeps the log finite at the DC bin.
    """
    m = measure_stage(fmap)
    return mean_log_power(m.power_sum, m.count)


def mean_log_power(power_sum: Tensor, count: int) -> Tensor:
    """log10 of ``power_sum / count`` with a floor of 1e-12 times the largest bin (never -inf)."""
    mean = power_sum / max(count, 1)
    floor = mean.max().clamp_min(torch.finfo(mean.dtype).tiny) * 1e-12
    return torch.log10(mean.clamp_min(floor))
