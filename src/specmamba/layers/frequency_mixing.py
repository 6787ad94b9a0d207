"""Vim-F's frequency mixing: a token sequence plus the amplitude of its Fourier transform.

Vim-F (REFERENCE.md section 5; public code yws-wxs/Vim-F) adds the FFT amplitude of the
scanned features to them, t' = w0 t + w1 |F(t)|, with learned scalars (w0, w1) initialised (1, 1),
so that every token sees a global, translation-invariant summary before the causal scan. Two forms of
F are offered:

* ``"token_channel"``: what the published code computes, ``fft2`` over the last two axes of the
  (B, L, C) token tensor, i.e. over the token *and the channel* axes, class token included. This is
  the form of the released checkpoints, so it is the default; with ``shift`` the amplitude is
  fftshift-ed over those two axes (generation V1). Upstream's V1 calls fftshift without axes, which
  also rolls the batch axis and gives each sample another sample's spectrum; here the shift never
  touches the batch axis.
* ``"spatial"``: what the paper describes, a 2D FFT over the h x w patch grid, per channel. Extra
  tokens (the class token) are left out of the transform and receive no amplitude term (their
  w1 |F| is 0), since they have no place on the grid; ``shift`` centres DC on the grid.

Both use the orthonormal FFT (``norm="ortho"``) and run in float32 (float64 for a float64 input),
whatever the autocast dtype; the result has the input's dtype. The (w0, w1) parameters live in the
modules that use this function, under their official names (``patch_embed.sup_c`` for V1,
``layers.{i}.stack`` for V2), so checkpoints load unchanged.

Shape letters: B batch, L tokens (P extra + h*w patches), C channels, h/w patch grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..errors import ConfigError
from .precision import at_least_fp32

__all__ = ["FREQUENCY_FORMS", "check_frequency_form", "mix_spectrum", "spectrum_amplitude"]

FREQUENCY_FORMS = ("token_channel", "spatial")


def check_frequency_form(form: str) -> str:
    """``form`` if it names a frequency-mixing form, else ConfigError listing them."""
    if form not in FREQUENCY_FORMS:
        raise ConfigError(
            f"frequency_form must be one of {', '.join(FREQUENCY_FORMS)} ('token_channel' is the published "
            f"code's FFT over the token and channel axes, 'spatial' the paper's 2D FFT over the patch grid); "
            f"got {form!r}."
        )
    return form


def spectrum_amplitude(
    tokens: Tensor,
    form: str,
    grid: tuple[int, int],
    extra_positions: Sequence[int] = (),
    shift: bool = False,
) -> Tensor:
    """|F(tokens)| (B, L, C) for ``form`` (see the module docstring); ``grid`` (h, w) and the positions of
    the extra tokens place the patch tokens for the spatial form."""
    t = at_least_fp32(tokens)
    if form == "token_channel":
        amp = torch.fft.fft2(t, dim=(-2, -1), norm="ortho").abs()  # over (L, C)
        return torch.fft.fftshift(amp, dim=(-2, -1)) if shift else amp
    check_frequency_form(form)
    b, length, c = t.shape
    h, w = grid
    keep = torch.ones(length, dtype=torch.bool, device=t.device)
    keep[list(extra_positions)] = False
    patches = t[:, keep].view(b, h, w, c)  # (B, h*w, C) -> (B, h, w, C)
    amp = torch.fft.fft2(patches, dim=(1, 2), norm="ortho").abs()  # over the grid, per channel
    if shift:
        amp = torch.fft.fftshift(amp, dim=(1, 2))
    if not extra_positions:
        return amp.reshape(b, length, c)
    out = t.new_zeros(b, length, c)
    out[:, keep] = amp.reshape(b, h * w, c)  # extra tokens keep a zero amplitude
    return out


def mix_spectrum(
    tokens: Tensor,
    weights: Tensor,
    form: str,
    grid: tuple[int, int],
    extra_positions: Sequence[int] = (),
    shift: bool = False,
) -> Tensor:
    """weights[0] * tokens + weights[1] * |F(tokens)|: (B, L, C) -> (B, L, C), in the tokens' dtype."""
    amp = spectrum_amplitude(tokens, form, grid, extra_positions, shift)
    mixed = weights[0].to(amp.dtype) * tokens.to(amp.dtype) + weights[1].to(amp.dtype) * amp
    return mixed.to(tokens.dtype)
