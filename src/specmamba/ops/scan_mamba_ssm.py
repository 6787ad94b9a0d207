"""Adapter for the ``mamba_ssm`` backend: mamba-ssm's CUDA selective-scan kernel (Gu & Dao 2023).

mamba-ssm (``pip install mamba-ssm``, CUDA only, source build) is the speed anchor of REFERENCE.md
section 1. Its ``selective_scan_fn`` already has our signature and layouts, so this adapter only
imports it lazily and fits the few dtype rules of its kernel (D and delta_bias in float32). Note that
its backward ignores gradients arriving through the last state; the other backends propagate them.

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
    """mamba-ssm's kernel on validated CUDA inputs (B/C 4-D); returns ``(out, last_state)``."""
    fn = _selective_scan_fn()
    out, last = fn(
        u,
        delta,
        A,
        B,
        C,
        D.float() if D is not None else None,
        z,
        delta_bias.float() if delta_bias is not None else None,
        delta_softplus,
        return_last_state=True,
    )
    return out, last
