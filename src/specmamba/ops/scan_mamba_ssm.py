"""Adapter for the ``mamba_ssm`` backend: mamba-ssm's CUDA selective-scan kernel (Gu & Dao 2023).

mamba-ssm (``pip install mamba-ssm``, CUDA only, source build) is the speed anchor of REFERENCE.md
section 1. Its ``selective_scan_fn`` already has our signature and layouts, so this adapter only
imports it lazily and fits its kernel's dtype rules (the TORCH_CHECKs of its ``selective_scan.cpp``):
u, delta, z and the variable B/C in one input dtype (float32, float16 or bfloat16: u's, or float32
for float64 u, which the kernel does not support), A, D and delta_bias in float32. The casts are
differentiable, so mixed dtypes (as under autocast) get gradients in their own dtype, as with the
other backends. Note that its backward ignores gradients arriving through the last state; the other
backends propagate them.

Shape letters: b batch, d channels, l sequence length, n state size, g groups of B/C.
"""

from __future__ import annotations

import torch

from ..errors import BackendUnavailableError

__all__ = ["scan_mamba_ssm"]


def _selective_scan_fn():
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except ImportError as err:  # the package exists but its CUDA extension does not load
        raise BackendUnavailableError(
            f"backend 'mamba_ssm': importing mamba_ssm failed ({err}); reinstall it for this torch/CUDA "
            "build (pip install mamba-ssm --no-build-isolation) or use backend='triton'."
        ) from err
    return selective_scan_fn


_KERNEL_INPUT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def kernel_dtypes(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
) -> tuple[torch.Tensor | None, ...]:
    """The eight tensors cast to the dtypes mamba-ssm's kernel accepts (see the module docstring)."""
    io = u.dtype if u.dtype in _KERNEL_INPUT_DTYPES else torch.float32
    f32 = torch.float32
    return (
        u.to(io),
        delta.to(io),
        A.to(f32),
        B.to(io),
        C.to(io),
        D.to(f32) if D is not None else None,
        z.to(io) if z is not None else None,
        delta_bias.to(f32) if delta_bias is not None else None,
    )


def scan_mamba_ssm(
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
    """mamba-ssm's kernel on validated CUDA inputs (B/C 4-D); returns ``(out, last_state)``.

    ``out`` is in u's dtype, ``last_state`` (b, d, n) in float32.
    """
    fn = _selective_scan_fn()
    args = kernel_dtypes(u, delta, A, B, C, D, z, delta_bias)
    out, last = fn(*args, delta_softplus, return_last_state=True)
    return out.to(u.dtype), last.float()
