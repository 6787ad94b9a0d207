"""The public selective scan (Mamba-1 "S6"; Gu & Dao 2023, arXiv:2312.00752) and its backend dispatch.

One function, :func:`selective_scan`, with the semantics and shapes of REFERENCE.md section 1, in
front of five implementations with identical signatures:

* ``ref``: the sequential PyTorch loop (``scan_ref.py``), the documented oracle.
* ``chunked``: the same scan in standard tensor operations over chunks (``scan_chunked.py``), which
  ``torch.export`` and ONNX can carry: the backend of exported models (``specmamba export``).
* ``cpu``: fused numba kernels (``scan_cpu.py``), parallel over batch x channel.
* ``triton``: fused Triton kernels (``scan_triton.py``) for CUDA tensors.
* ``mamba_ssm``: the CUDA kernel of the ``mamba-ssm`` package, when it is installed.

``backend="auto"`` picks ``cpu`` for CPU tensors and the fastest available GPU backend for CUDA
tensors. :func:`resolve_backend` is the one place that decides, and it raises
:class:`~specmamba.errors.BackendUnavailableError` saying why a requested backend cannot run and how to
get it. Optional packages (numba, triton, mamba-ssm) are imported only here, on first use.

Shape letters: b batch, d channels, l sequence length, n state size, g groups of B/C (d % g == 0,
channel i uses group i // (d / g)).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import warnings

import torch

from ..errors import BackendUnavailableError, ConfigError
from .checks import check_scan_inputs

__all__ = ["BACKENDS", "available_backends", "resolve_backend", "selective_scan"]

BACKENDS = ("auto", "ref", "chunked", "cpu", "triton", "mamba_ssm")


@functools.cache
def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _triton_interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _why_unavailable(backend: str, device: torch.device) -> str | None:
    """None if ``backend`` can run on tensors of ``device`` here, else the reason and the fix."""
    if backend not in BACKENDS[1:]:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}.")
    if device.type == "cuda" and not torch.cuda.is_available():
        return "CUDA is not available in this environment (CPU-only torch build or no GPU)."
    if backend in ("ref", "chunked"):
        return None
    if backend == "cpu":
        if device.type != "cpu":
            return f"backend 'cpu' needs CPU tensors, got {device.type} tensors (move them with .cpu())."
        if not _has_module("numba"):
            return "backend 'cpu' needs numba, which is not installed: pip install numba."
        return None
    if backend == "triton":
        if not _has_module("triton"):
            return "backend 'triton' needs triton, which is not installed: pip install triton."
        if device.type == "cuda" or (device.type == "cpu" and _triton_interpreting()):
            return None
        return (
            f"backend 'triton' needs CUDA tensors, got {device.type} tensors "
            "(on CPU use backend='cpu'; TRITON_INTERPRET=1 enables Triton's CPU interpreter, for testing)."
        )
    if backend == "mamba_ssm":
        if not _has_module("mamba_ssm"):
            return (
                "backend 'mamba_ssm' needs the mamba-ssm package (CUDA only): "
                "pip install mamba-ssm --no-build-isolation, or use backend='triton'."
            )
        if device.type != "cuda":
            return f"backend 'mamba_ssm' needs CUDA tensors, got {device.type} tensors."
        return None


def available_backends(device: str | torch.device = "cpu") -> list[str]:
    """Backends (besides ``auto``) that can run on tensors of ``device`` in this environment."""
    dev = torch.device(device)
    return [b for b in BACKENDS[1:] if _why_unavailable(b, dev) is None]


def resolve_backend(backend: str, device: str | torch.device) -> str:
    """Map ``backend`` (possibly ``auto``) to a concrete backend that can run on ``device``.

    ``auto``: CPU tensors -> ``cpu`` (``ref`` with a warning if numba is missing); CUDA tensors ->
    ``triton``, else ``mamba_ssm``, else ``ref`` with a warning. Raises ConfigError for an unknown
    name and BackendUnavailableError, with the reason and the fix, for one that cannot run here.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}.")
    dev = torch.device(device)
    if backend == "auto":
        order = ("cpu",) if dev.type == "cpu" else ("triton", "mamba_ssm")
        for cand in order:
            if _why_unavailable(cand, dev) is None:
                return cand
        warnings.warn(
            f"selective_scan: no fast backend for {dev.type} tensors here ("
            + "; ".join(str(_why_unavailable(c, dev)) for c in order)
            + "); falling back to the slow sequential 'ref' backend.",
            RuntimeWarning,
            stacklevel=3,
        )
        return "ref"
    reason = _why_unavailable(backend, dev)
    if reason is not None:
        raise BackendUnavailableError(reason)
    return backend


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    backend: str = "auto",
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Selective scan y = S6(u) (Mamba-1), differentiable in every tensor argument.

    Args:
        u: (b, d, l) input sequence.
        delta: (b, d, l) raw step sizes; ``delta_bias`` (d,) is added, then softplus if
            ``delta_softplus``.
        A: (d, n) real state matrix (diagonal per channel; negative for a stable scan).
        B, C: (b, g, n, l) input / output projections shared by groups of d / g channels, or
            (b, n, l) for g = 1.
        D: optional (d,) skip connection (out += u * D).
        z: optional (b, d, l) gate (out *= silu(z)).
        return_last_state: also return the state after the last step, (b, d, n).
        backend: ``auto`` | ``ref`` | ``chunked`` | ``cpu`` | ``triton`` | ``mamba_ssm`` (see module
            docstring).

    Any float dtype is accepted; the recurrence runs with a float32 state (float64 if any of
    u/delta/A/B/C is float64). Returns ``out`` (b, d, l) in u's dtype, and with
    ``return_last_state`` also ``last_state`` (b, d, n) in the compute dtype (float32/float64).
    Raises ConfigError for bad shapes or dtypes, BackendUnavailableError for a backend that cannot run.
    """
    check_scan_inputs(u, delta, A, B, C, D, z, delta_bias)
    name = resolve_backend(backend, u.device)
    B4 = B.unsqueeze(1) if B.dim() == 3 else B  # (b, n, l) -> (b, 1, n, l)
    C4 = C.unsqueeze(1) if C.dim() == 3 else C
    if name == "ref":
        from .scan_ref import scan_ref

        out, last = scan_ref(u, delta, A, B4, C4, D, z, delta_bias, delta_softplus)
    elif name == "chunked":
        from .scan_chunked import scan_chunked

        out, last = scan_chunked(u, delta, A, B4, C4, D, z, delta_bias, delta_softplus)
    elif name == "cpu":
        from .scan_cpu import scan_cpu

        out, last = scan_cpu(u, delta, A, B4, C4, D, z, delta_bias, delta_softplus)
    elif name == "triton":
        from .scan_triton import scan_triton

        out, last = scan_triton(u, delta, A, B4, C4, D, z, delta_bias, delta_softplus)
    else:
        from .scan_mamba_ssm import scan_mamba_ssm

        out, last = scan_mamba_ssm(u, delta, A, B4, C4, D, z, delta_bias, delta_softplus)
    return (out, last) if return_last_state else out
