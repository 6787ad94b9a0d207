"""Reference selective scan (Mamba-1 "S6"; Gu & Dao 2023, arXiv:2312.00752): the oracle backend ``ref``.

A direct transcription of REFERENCE.md section 1 as a sequential loop over the sequence in PyTorch.
It is short on purpose: every fast backend is tested against it, on outputs, last state and all
gradients (autograd differentiates through the loop). It is slow (a Python loop of l steps) and keeps
O(b d n l) activations for the backward; use it for checking, not for training.

Shape letters: b batch, d channels, l sequence length, n state size, g groups of B/C.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .checks import scan_compute_dtype

__all__ = ["scan_ref"]


def scan_ref(
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
    """Sequential selective scan on validated inputs; returns ``(out, last_state)``.

    u, delta, z: (b, d, l); A: (d, n); B, C: (b, g, n, l); D, delta_bias: (d,). Computes in float32
    (float64 if any of u/delta/A/B/C is float64); ``out`` (b, d, l) is cast back to u's dtype and
    ``last_state`` (b, d, n) stays in the compute dtype.
    """
    cdt = scan_compute_dtype(u, delta, A, B, C)
    b, d, length = u.shape
    g = B.shape[1]
    uc, dt, Ac = u.to(cdt), delta.to(cdt), A.to(cdt)
    if delta_bias is not None:
        dt = dt + delta_bias.to(cdt)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    dg = d // g
    # Time-major per-step slices (unbind: its backward stacks the step gradients once, where
    # indexing a step would allocate a full-size gradient per step); channels split as (g, d/g).
    u_s = uc.permute(2, 0, 1).reshape(length, b, g, dg).unbind(0)  # l x (b, g, d/g)
    dt_s = dt.permute(2, 0, 1).reshape(length, b, g, dg).unbind(0)
    B_s = B.to(cdt).permute(3, 0, 1, 2)[:, :, :, None, :].unbind(0)  # l x (b, g, 1, n)
    C_s = C.to(cdt).permute(3, 0, 1, 2)[:, :, :, None, :].unbind(0)
    A4 = Ac.view(g, dg, -1)  # (g, d/g, n)
    x = uc.new_zeros(b, g, dg, A.shape[1])  # state (b, g, d/g, n)
    ys = []
    for t in range(length):
        dA = torch.exp(dt_s[t][..., None] * A4)  # (b, g, d/g, n)
        x = dA * x + (dt_s[t] * u_s[t])[..., None] * B_s[t]
        ys.append((x * C_s[t]).sum(-1))  # (b, g, d/g)
    y = torch.stack(ys, dim=-1).reshape(b, d, length)  # (l of (b, g, d/g)) -> (b, d, l)
    if D is not None:
        y = y + uc * D.to(cdt)[:, None]
    if z is not None:
        y = y * F.silu(z.to(cdt))
    return y.to(u.dtype), x.reshape(b, d, -1)  # last state (b, d, n)
