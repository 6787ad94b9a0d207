"""Chunked selective scan in standard tensor operations: the backend ``chunked``, for exported models.

The scan of REFERENCE.md section 1, h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t and y_t = C_t . h_t,
written so that ``torch.export`` and ONNX can carry it: no custom kernel, no data-dependent control
flow, and Python loops short enough to unroll (``2 T + ceil(l / T)`` steps for a chunk length T,
where the ``ref`` loop would unroll ``l``). The sequence is cut into chunks of T steps (the last one
padded with dt = 0, an identity step: decay exp(0) = 1 and no input), then:

1. the recurrence inside all chunks at once from a zero state (T steps on (b, d, n, chunks)
   tensors) gives the state each chunk would reach on its own;
2. the recurrence over chunks, ``H_c = exp(A sum_chunk dt) H_{c-1} + s_c`` (``ceil(l / T)`` steps on
   (b, d, n) tensors), gives the state entering each chunk; the chunk's decay is exp of A times the
   sum of its steps, so no long product or difference of large sums enters;
3. the recurrence inside all chunks again, from their entering states, gives every y_t.

Every step is the reference's own update, so the results differ from ``ref`` only by where the sums
start (float32 rounding). The decays and inputs are formed step by step, (b, d, n, chunks) at a time,
never for the whole sequence (forming them once for all steps took 1.3-1.6x longer in VM-UNet, for
its memory traffic). It does about twice the arithmetic of the sequential scan, in
elementwise PyTorch operations, so it is for deployment where nothing else runs (``specmamba
export``), not for training (``bench`` has its figures); it is differentiable and tested against
``ref`` on outputs, last state and gradients. The chunk length is set by :func:`chunk_length`, read
when the scan is traced; by default it is the power of two nearest sqrt(l), which keeps the
unrolled loops short: 64 + 64 + 64 steps for a 64 x 64 map (VM-UNet's first stage), 8 + 8 + 8 for
an 8 x 8 one.

Shape letters: b batch, d channels = g * e (g groups of B/C, e = d / g channels each), n state size,
l sequence length, T chunk length, c chunks (c * T >= l).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .checks import scan_compute_dtype

__all__ = ["auto_chunk_length", "check_chunk_length", "chunk_length", "scan_chunked"]

#: The chunk length in force: None picks :func:`auto_chunk_length` for each sequence.
_chunk: int | None = None


def auto_chunk_length(length: int) -> int:
    """The default chunk length for sequences of ``length`` steps: the power of two nearest sqrt(l)."""
    return 1 << round(math.log2(max(length, 1)) / 2)


def check_chunk_length(steps: int | None) -> int | None:
    """``steps`` if it is a chunk length (a whole number >= 1, or None for auto), else ConfigError."""
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ConfigError(f"--chunk-length must be a whole number >= 1 (or auto); got {steps!r}.")
    return steps


@contextlib.contextmanager
def chunk_length(steps: int | None) -> Iterator[None]:
    """Within the block, the ``chunked`` backend cuts sequences into chunks of ``steps`` steps (None:
    :func:`auto_chunk_length` of each sequence)."""
    global _chunk
    before, _chunk = _chunk, check_chunk_length(steps)
    try:
        yield
    finally:
        _chunk = before


def scan_chunked(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunked selective scan on validated inputs; returns ``(out, last_state)`` like ``scan_ref``.

    u, delta, z: (b, d, l); A: (d, n); B, C: (b, g, n, l); D, delta_bias: (d,). Computes in float32
    (float64 if any of u/delta/A/B/C is float64).
    """
    cdt = scan_compute_dtype(u, delta, A, B, C)
    b, d, length = u.shape
    g, n = B.shape[1], A.shape[1]
    e = d // g
    steps = min(auto_chunk_length(length) if _chunk is None else _chunk, length)
    chunks = -(-length // steps)
    pad = chunks * steps - length
    uc, dt = u.to(cdt), delta.to(cdt)
    if delta_bias is not None:
        dt = dt + delta_bias.to(cdt)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)

    def time_major(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        # (..., l) -> zero-padded (..., c, T) -> (T, ..., c), contiguous so that each step is one block
        t = F.pad(t, (0, pad)).reshape(*shape, chunks, steps)
        return t.movedim(-1, 0).contiguous()

    dt_t = time_major(dt, (b, g, e))[..., None, :]  # (T, b, g, e, 1, c)
    dtu_t = time_major(dt * uc, (b, g, e))[..., None, :]  # (T, b, g, e, 1, c)
    B_t = time_major(B.to(cdt), (b, g, n))[:, :, :, None]  # (T, b, g, 1, n, c)
    C_t = time_major(C.to(cdt), (b, g, n))[:, :, :, None]  # (T, b, g, 1, n, c)
    A5 = A.to(cdt).view(g, e, n, 1)  # (g, e, n, 1)

    def step(h: torch.Tensor | None, t: int) -> torch.Tensor:  # the reference's update, all chunks at once
        fresh = dtu_t[t] * B_t[t]  # (b, g, e, n, c)
        return fresh if h is None else torch.exp(dt_t[t] * A5) * h + fresh

    # 1. Each chunk's end state from a zero start.
    h = None
    for t in range(steps):
        h = step(h, t)
    chunk_decay = torch.exp(dt_t.sum(0) * A5)  # (b, g, e, n, c): exp(A * the chunk's total dt)

    # 2. The state entering each chunk.
    state = h.new_zeros(b, g, e, n)
    entering = []
    for c in range(chunks):
        entering.append(state)
        state = chunk_decay[..., c] * state + h[..., c]
    h = torch.stack(entering, dim=-1)  # (b, g, e, n, c)

    # 3. The recurrence inside every chunk again, from its entering state.
    ys = []
    for t in range(steps):
        h = step(h, t)
        ys.append((h * C_t[t]).sum(-2))  # (b, g, e, c)
    y = torch.stack(ys, dim=-1)  # (b, g, e, c, T)
    y = y.reshape(b, d, chunks * steps)[..., :length]  # (b, g, e, c, T) -> (b, d, l)
    if D is not None:
        y = y + uc * D.to(cdt)[:, None]
    if z is not None:
        y = y * F.silu(z.to(cdt))
    return y.to(u.dtype), state.reshape(b, d, n)  # the padded steps leave the last state unchanged
