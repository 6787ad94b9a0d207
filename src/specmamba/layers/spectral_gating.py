"""Spectral gating: a learnable complex global filter on the 2-D real FFT, at any input size.

The frequency path of Spec-VMamba's SpectralVSSBlock (REFERENCE.md section 4), in the GFNet form
(Rao et al. 2021, a learned complex filter on ``rfft2``). On a channels-last map x (B, H, W, C):

    y = irfft2( g( rfft2(x, ortho) * W ), s = (H, W), ortho ),

with W (C, H, W//2 + 1) complex, stored as ``weight_real`` and ``weight_imag`` (the seed's names), and
g the threshold. What differs from the seed's code, and why:

* **Any input size** (the seed's filter fits one size only, defect 6): the parameters live at a
  reference size (h, w). For another size the filter is resampled over *normalised frequency*: target
  bin k of an n-point axis is the frequency k / n cycles per pixel, which sits at the continuous
  position k * h / n of the reference axis; the filter there is the linear interpolation of its two
  reference neighbours, held constant beyond the reference's highest frequency. Rows are read in
  signed ``fftfreq`` order (negative frequencies are not the far end of the array), columns in
  ``rfftfreq`` order. At the reference size every position is a whole bin, so the filter is the
  stored one exactly (the resampling is skipped).
* **Identity init by default** (``init="identity"``: W = 1, so the layer starts as the identity and
  the block as s * VSS(x) + (1 - s) * x); ``init="seed"`` draws both parts from N(0, 2 / (h (w//2+1))),
  the seed's "kaiming" init.
* **Threshold** ``"none"`` (default); ``"soft"``: each filtered coefficient is scaled by
  sigmoid((|Y| - tau) / temperature), differentiable everywhere so every coefficient keeps a gradient;
  ``"hard"``: the seed's |Y| > tau mask, kept only for fidelity. It is harmful (defect 7): at init it
  keeps about 3% of the coefficients of a 64x64 map and the masked ones pass no gradient, so the
  spectral path starts almost dead.

On the self-conjugate bins (DC, and the Nyquist row and column of an even size) the spectrum of a real
map is real and the inverse transform keeps only the real part, so the filter's imaginary part there
has no effect and no gradient: a property of every real-to-real Fourier filter, not a dead path.

The FFT runs in float32 whatever the input dtype (half-precision FFTs are limited to power-of-two
sizes on CUDA and unavailable on CPU).

Shape letters: B batch, H/W map size, Wf = W // 2 + 1 rfft columns, C channels, h/w reference size.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor, nn

from ..errors import ConfigError

__all__ = ["GATING_INITS", "GATING_THRESHOLDS", "SpectralGating", "frequency_resampling"]

GATING_INITS = ("identity", "seed")
GATING_THRESHOLDS = ("none", "soft", "hard")


def _axis_resampling(n: int, ref: int, one_sided: bool) -> Tensor:
    """(bins of an n-point axis, bins of the ref-point axis) float64 linear-interpolation weights.

    Two-sided axes (fft rows) index bins in ``fftfreq`` order, one-sided (rfft columns) in ``rfftfreq``
    order. Target bin k (signed) sits at reference position k * ref / n, clamped to the reference range.
    """
    if one_sided:
        target = torch.arange(n // 2 + 1, dtype=torch.float64)
        low, high = 0, ref // 2
    else:
        target = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64)  # signed bin numbers
        low, high = -(ref // 2), (ref - 1) // 2
    position = (target * ref / n).clamp(low, high)  # exact integers when n == ref
    below = position.floor()
    frac = position - below
    above = (below + 1).clamp(max=high)
    weights = torch.zeros(target.numel(), ref // 2 + 1 if one_sided else ref, dtype=torch.float64)
    rows = torch.arange(target.numel())
    size = weights.shape[1]
    weights.index_put_((rows, below.long() % size), 1 - frac, accumulate=True)
    weights.index_put_((rows, above.long() % size), frac, accumulate=True)
    return weights


@functools.lru_cache(maxsize=64)
def frequency_resampling(size: tuple[int, int], ref: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """(row weights (H, h), column weights (Wf, wf)) that resample an (h, wf) rfft2 filter to (H, Wf).

    Cached: every forward at a size other than the reference needs them, and they depend on the sizes
    only (callers must not modify them in place)."""
    return _axis_resampling(size[0], ref[0], one_sided=False), _axis_resampling(
        size[1], ref[1], one_sided=True
    )


class SpectralGating(nn.Module):
    """Learnable complex global filter: (B, H, W, C) -> (B, H, W, C), channels last, any H and W.

    Args:
        dim: C.
        ref_size: (h, w), the map size the filter's parameters are stored at (an int for h = w).
        init: ``"identity"`` (W = 1, the default) or ``"seed"`` (the seed's random init).
        threshold: ``"none"`` (default), ``"soft"`` or ``"hard"`` (see the module docstring).
        tau: the threshold level on |Y| (the seed's 0.1).
        temperature: the soft threshold's width.
    """

    def __init__(
        self,
        dim: int,
        ref_size: int | tuple[int, int],
        init: str = "identity",
        threshold: str = "none",
        tau: float = 0.1,
        temperature: float = 0.02,
    ) -> None:
        super().__init__()
        h, w = (ref_size, ref_size) if isinstance(ref_size, int) else tuple(ref_size)
        if min(dim, h, w) < 1:
            raise ConfigError(f"SpectralGating needs dim >= 1 and a reference size >= 1; got {dim}, {h}x{w}.")
        if init not in GATING_INITS:
            raise ConfigError(f"SpectralGating init {init!r}: choose one of {', '.join(GATING_INITS)}.")
        if threshold not in GATING_THRESHOLDS:
            raise ConfigError(
                f"SpectralGating threshold {threshold!r}: choose one of {', '.join(GATING_THRESHOLDS)}."
            )
        if not (math.isfinite(tau) and tau >= 0 and math.isfinite(temperature) and temperature > 0):
            raise ConfigError(f"SpectralGating needs tau >= 0 and temperature > 0; got {tau}, {temperature}.")
        self.dim, self.ref_size = dim, (int(h), int(w))
        self.init, self.threshold, self.tau, self.temperature = (
            init,
            threshold,
            float(tau),
            float(temperature),
        )
        self.weight_real = nn.Parameter(torch.empty(dim, h, w // 2 + 1))
        self.weight_imag = nn.Parameter(torch.empty(dim, h, w // 2 + 1))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        if self.init == "identity":
            self.weight_real.fill_(1.0)
            self.weight_imag.zero_()
        else:  # the seed's "kaiming": N(0, 2 / fan_in), fan_in = h * (w // 2 + 1)
            h, wf = self.weight_real.shape[1:]
            std = math.sqrt(2.0 / (h * wf))
            self.weight_real.normal_(0.0, std)
            self.weight_imag.normal_(0.0, std)

    def filter_at(self, height: int, width: int) -> Tensor:
        """The complex filter for an (height, width) map, laid out (H, Wf, C) for channels-last maps."""
        real, imag = self.weight_real, self.weight_imag  # (C, h, wf)
        if (height, width) != self.ref_size:
            rows, cols = frequency_resampling((height, width), self.ref_size)
            rows, cols = rows.to(real), cols.to(real)
            real = torch.einsum("Yy,cyx,Xx->cYX", rows, real, cols)  # (C, H, Wf)
            imag = torch.einsum("Yy,cyx,Xx->cYX", rows, imag, cols)
        return torch.complex(real.float(), imag.float()).permute(1, 2, 0)  # (C, H, Wf) -> (H, Wf, C)

    def forward(self, x: Tensor) -> Tensor:
        _, height, width, _ = x.shape
        spectrum = torch.fft.rfft2(x.float(), dim=(1, 2), norm="ortho")  # (B, H, Wf, C)
        filtered = spectrum * self.filter_at(height, width)
        if self.threshold == "soft":
            filtered = filtered * torch.sigmoid((filtered.abs() - self.tau) / self.temperature)
        elif self.threshold == "hard":
            filtered = filtered * (filtered.abs() > self.tau)
        out = torch.fft.irfft2(filtered, s=(height, width), dim=(1, 2), norm="ortho")  # (B, H, W, C)
        return out.to(x.dtype)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, ref_size={self.ref_size}, init={self.init!r}, threshold={self.threshold!r}"
            + (f", tau={self.tau}" if self.threshold != "none" else "")
        )
