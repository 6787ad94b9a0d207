"""Input checks of the selective scan: the shapes, dtypes and devices of REFERENCE.md section 1.

Shared by :func:`~specmamba.ops.selective_scan` and the fused directional entry, so that every
backend receives validated inputs and every error names the argument and the shape it needs.

Shape letters: b batch, d channels, l sequence length, n state size, g groups of B/C.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError

__all__ = ["check_scan_inputs", "scan_compute_dtype"]

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def scan_compute_dtype(u, delta, A, B, C) -> torch.dtype:
    """The dtype every backend's recurrence runs in: float64 if any of u/delta/A/B/C is float64, else
    float32 (half-precision inputs included)."""
    wide = torch.float64 in (u.dtype, delta.dtype, A.dtype, B.dtype, C.dtype)
    return torch.float64 if wide else torch.float32


def _check_vec(name: str, t: torch.Tensor | None, d: int) -> None:
    if t is not None and (t.dim() != 1 or t.shape[0] != d):
        raise ConfigError(
            f"selective_scan: {name} must be ({d},) (one value per channel d), got {tuple(t.shape)}."
        )


def check_scan_inputs(u, delta, A, B, C, D, z, delta_bias) -> None:  # noqa: C901
    """Validate shapes, dtypes and devices of the selective_scan arguments (raises ConfigError)."""
    for name, t in (("u", u), ("delta", delta), ("A", A), ("B", B), ("C", C)):
        if not isinstance(t, torch.Tensor):
            raise ConfigError(f"selective_scan: {name} must be a torch.Tensor, got {type(t).__name__}.")
    if u.dim() != 3:
        raise ConfigError(f"selective_scan: u must be (b, d, l), got shape {tuple(u.shape)}.")
    b, d, length = u.shape
    if length < 1:
        raise ConfigError("selective_scan: the sequence length l (last dim of u) must be >= 1.")
    if delta.shape != u.shape:
        raise ConfigError(
            f"selective_scan: delta must have u's shape (b, d, l) = {tuple(u.shape)}, "
            f"got {tuple(delta.shape)}."
        )
    if A.is_complex():
        raise ConfigError("selective_scan: A must be real (complex A of S4D is not supported).")
    if A.dim() != 2 or A.shape[0] != d:
        raise ConfigError(f"selective_scan: A must be (d, n) with d = {d}, got shape {tuple(A.shape)}.")
    n = A.shape[1]
    if B.shape != C.shape:
        raise ConfigError(
            f"selective_scan: B and C must have the same shape, got {tuple(B.shape)} and {tuple(C.shape)}."
        )
    if B.dim() == 3:
        if B.shape != (b, n, length):
            raise ConfigError(
                f"selective_scan: 3-D B/C must be (b, n, l) = {(b, n, length)}, got {tuple(B.shape)}."
            )
    elif B.dim() == 4:
        g = B.shape[1]
        if B.shape[0] != b or B.shape[2:] != (n, length) or g < 1 or d % g != 0:
            raise ConfigError(
                f"selective_scan: B/C must be (b, g, n, l) = ({b}, g, {n}, {length}) with d = {d} divisible "
                f"by g, got {tuple(B.shape)}."
            )
    else:
        raise ConfigError(
            f"selective_scan: B/C must be (b, n, l) or (b, g, n, l), got shape {tuple(B.shape)}."
        )
    _check_vec("D", D, d)
    _check_vec("delta_bias", delta_bias, d)
    if z is not None and z.shape != u.shape:
        raise ConfigError(f"selective_scan: z must have u's shape {tuple(u.shape)}, got {tuple(z.shape)}.")
    named = [
        ("u", u),
        ("delta", delta),
        ("A", A),
        ("B", B),
        ("C", C),
        ("D", D),
        ("z", z),
        ("delta_bias", delta_bias),
    ]
    for name, t in named:
        if t is not None and t.dtype not in _FLOATS:
            raise ConfigError(
                f"selective_scan: {name} must be float16/bfloat16/float32/float64, got {t.dtype}."
            )
        if t is not None and t.device != u.device:
            raise ConfigError(
                f"selective_scan: {name} is on {t.device} but u is on {u.device}; put all on one device."
            )
