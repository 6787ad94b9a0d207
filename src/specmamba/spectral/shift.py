"""Shift consistency: does a model's prediction move with its input?

The spectral-audit study (REFERENCE.md section 3) rolls the input by s = 1..5 px along the width,
predicts, rolls the prediction back and takes the IoU with the unshifted prediction. It names the
protocol's limits itself: horizontal, integer and cyclic shifts only. Here a shift is any
(direction, amount, mode):

- direction: horizontal (dx = s), vertical (dy = s) or diagonal (dy = dx = s);
- amount: integer pixels, or sub-pixel (e.g. 0.25, 0.5), by separable linear interpolation;
- mode ``cyclic``: content leaving one side enters the other (``torch.roll`` for integer shifts, the
  published protocol); mode ``reflect``: the exposed border is filled by reflection, and the IoU is
  taken only over the region both predictions see (the original content, minus one more pixel per
  side for sub-pixel shifts, whose interpolation mixes in the border).

The prediction of the shifted input is shifted back by the same operator with the opposite amount
(on logits, thresholded afterwards, as the evaluator resizes logits), then compared with the
prediction of the unshifted input. Foreground is logit >= 0 for one logit channel, label > 0 for
several classes; two empty foregrounds count as IoU 1.

Shape letters: B batch, C channels, H/W image size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from ..metrics import iou

__all__ = [
    "DEFAULT_SHIFTS",
    "DIRECTIONS",
    "MODES",
    "ShiftSpec",
    "foreground",
    "shift_consistency",
    "shift_specs",
    "translate",
    "valid_window",
]

#: Unit step (dy, dx) of each direction.
DIRECTIONS = {"horizontal": (0, 1), "vertical": (1, 0), "diagonal": (1, 1)}
MODES = ("cyclic", "reflect")
DEFAULT_SHIFTS = (1.0, 2.0, 3.0, 4.0, 5.0, 0.25, 0.5)


@dataclass(frozen=True)
class ShiftSpec:
    """One shift of the test: ``amount`` pixels along ``direction``, borders handled by ``mode``."""

    direction: str
    mode: str
    amount: float

    @property
    def offset(self) -> tuple[float, float]:
        """(dy, dx) in pixels."""
        uy, ux = DIRECTIONS[self.direction]
        return uy * self.amount, ux * self.amount


def shift_specs(
    amounts: Iterable[float] = DEFAULT_SHIFTS,
    directions: Iterable[str] = tuple(DIRECTIONS),
    modes: Iterable[str] = MODES,
) -> list[ShiftSpec]:
    """Every (direction, mode, amount) combination, checked."""
    amounts, directions, modes = [float(a) for a in amounts], list(directions), list(modes)
    for d in directions:
        if d not in DIRECTIONS:
            raise ConfigError(f"unknown shift direction {d!r}; choose from {', '.join(DIRECTIONS)}.")
    for m in modes:
        if m not in MODES:
            raise ConfigError(f"unknown shift mode {m!r}; choose from {', '.join(MODES)}.")
    for a in amounts:
        if not (math.isfinite(a) and a > 0):
            raise ConfigError(f"shift amounts must be positive pixel counts (e.g. 1 or 0.5); got {a}.")
    return [ShiftSpec(d, m, a) for d in directions for m in modes for a in amounts]


def _translate_axis(x: Tensor, shift: float, dim: int, mode: str) -> Tensor:
    """Move the content of ``x`` by ``shift`` pixels along ``dim`` (-1 or -2): out[p] = x(p - shift)."""
    if shift == 0:
        return x
    whole = math.floor(shift)
    frac = shift - whole
    if mode == "cyclic" and frac == 0:
        return torch.roll(x, whole, dims=dim)
    size = x.shape[dim]
    pad = math.ceil(abs(shift)) + 1
    if mode == "reflect" and pad >= size:
        raise ConfigError(f"a {shift} px reflect shift needs images wider than {pad} px; got {size}.")
    if pad > size:  # circular padding wraps at most once
        return _translate_axis(x, math.copysign(abs(shift) % size, shift), dim, mode)
    padding = (pad, pad, 0, 0) if dim == -1 else (0, 0, pad, pad)
    padded = F.pad(x, padding, mode="circular" if mode == "cyclic" else "reflect")
    # x[i] sits at padded[i + pad]; linear interpolation between x[p - whole] and x[p - whole - 1]
    near = padded.narrow(dim, pad - whole, size)
    if frac == 0:
        return near
    far = padded.narrow(dim, pad - whole - 1, size)
    return (1.0 - frac) * near + frac * far


def translate(x: Tensor, dy: float, dx: float, mode: str = "cyclic") -> Tensor:
    """(B, C, H, W) image content moved down by ``dy`` and right by ``dx`` pixels (``mode`` borders)."""
    if mode not in MODES:
        raise ConfigError(f"unknown shift mode {mode!r}; choose from {', '.join(MODES)}.")
    if x.ndim != 4:
        raise ConfigError(f"translate takes (B, C, H, W) tensors; got shape {tuple(x.shape)}.")
    return _translate_axis(_translate_axis(x, dy, -2, mode), dx, -1, mode)


def _axis_window(size: int, shift: float) -> slice:
    low = math.ceil(-shift) if shift < 0 else 0
    high = math.ceil(shift) if shift > 0 else 0
    if shift != math.floor(shift):  # interpolation reaches one pixel further
        low, high = low + 1, high + 1
    return slice(low, max(low, size - high))


def valid_window(h: int, w: int, dy: float, dx: float) -> tuple[slice, slice]:
    """Rows and columns whose back-shifted prediction comes from original (not padded) content."""
    return _axis_window(h, dy), _axis_window(w, dx)


def foreground(logits: Tensor) -> Tensor:
    """(B, K, H, W) logits -> (B, H, W) bool foreground (logit >= 0 for K == 1, argmax > 0 otherwise)."""
    if logits.shape[1] == 1:
        return logits[:, 0] >= 0
    return logits.argmax(dim=1) > 0


@torch.no_grad()
def shift_consistency(
    predict: Callable[[Tensor], Tensor],
    images: Tensor,
    specs: Sequence[ShiftSpec],
    reference_logits: Tensor | None = None,
) -> dict[ShiftSpec, Tensor]:
    """IoU of each image's prediction under each shift with its unshifted prediction.

    ``predict`` maps a (B, C, H, W) batch to (B, K, H, W) logits at the same size;
    ``reference_logits`` (the unshifted logits) are computed when not given. Returns spec -> (B,)
    float64 IoU on the CPU.
    """
    base = predict(images) if reference_logits is None else reference_logits
    base_fg = foreground(base.float())
    h, w = images.shape[-2:]
    results: dict[ShiftSpec, Tensor] = {}
    for spec in specs:
        dy, dx = spec.offset
        logits = predict(translate(images, dy, dx, spec.mode)).float()
        back = foreground(translate(logits, -dy, -dx, spec.mode))
        ref = base_fg
        if spec.mode == "reflect":
            rows, cols = valid_window(h, w, dy, dx)
            back, ref = back[:, rows, cols], ref[:, rows, cols]
        results[spec] = iou(back, ref).double().cpu()  # (B,); both empty -> 1
    return results
