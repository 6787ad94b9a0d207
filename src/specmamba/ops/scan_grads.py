"""Gradient assembly shared by the fused scan backends (numba ``cpu`` and ``triton``).

Both backward passes produce per-block partial gradients for the parameters shared across blocks (A,
D, delta_bias, and B/C across the channels of a group). They are reduced here in index order, never
with atomics, so the result does not depend on scheduling: the backends are deterministic.
"""

from __future__ import annotations

import torch


def ordered_sum(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sum over ``dim`` slice by slice in index order (a reduction order fixed by construction)."""
    acc = t.select(dim, 0).clone()
    for i in range(1, t.shape[dim]):
        acc += t.select(dim, i)
    return acc


def assemble_scan_grads(
    dtypes: tuple[torch.dtype | None, ...],
    du: torch.Tensor,
    ddelta: torch.Tensor,
    dA_partial: torch.Tensor,
    dB: torch.Tensor,
    dC: torch.Tensor,
    dD_partial: torch.Tensor,
    dz: torch.Tensor,
    dbias_partial: torch.Tensor,
    has_d: bool,
    has_z: bool,
    has_bias: bool,
) -> list[torch.Tensor | None]:
    """Gradients of (u, delta, A, B, C, D, z, delta_bias) in the inputs' dtypes.

    The ``*_partial`` tensors carry a leading block dimension that is reduced with :func:`ordered_sum`;
    the gradients of absent optional inputs are None.
    """
    return [
        du.to(dtypes[0]),
        ddelta.to(dtypes[1]),
        ordered_sum(dA_partial, 0).to(dtypes[2]),
        dB.to(dtypes[3]),
        dC.to(dtypes[4]),
        ordered_sum(dD_partial, 0).to(dtypes[5]) if has_d else None,
        dz.to(dtypes[6]) if has_z else None,
        ordered_sum(dbias_partial, 0).to(dtypes[7]) if has_bias else None,
    ]
