"""How near the machine's limit a figure is: a GEMM microbenchmark and FLOP counts of the scan and models.

``specmamba bench scan|model`` time a square fp32 GEMM in the same run (:func:`gemm_peak`,
2 S^3 FLOPs for S = 1024, its fastest of 10 calls) and report each scan or model figure as GFLOP/s
and as a share of it, so that "near the limit" is a number. The GEMM is what these cores sustain
on the best-tuned kernel there is (oneDNN / MKL through torch), at the same thread count; it is a
practical peak, not the datasheet's.

FLOP conventions (stated because every count is one):

* a state update of the selective scan, x = exp(delta A) x + delta B u, y += x C, costs
  :data:`UPDATE_FLOPS` = 28: delta A (1), a float32 exp (:data:`EXP_FLOPS` = 23, the count of the
  Cephes-style exp the CPU kernels used before issue 17: range reduction 7, a degree-5 polynomial in
  Horner form 10, the final r^2 p + r + 1 4, two 2^k factors 2), one FMA for x (2) and one for y (2).
  This is a fixed convention, so that GFLOP/s stay comparable across kernel versions; today's CPU
  kernel evaluates the decay as 2**y in fewer operations (``ops/scan_cpu.py``), so its GFLOP/s are
  "equivalent" FLOPs. A scan of (b, d, l) with state size n does b d l n updates; the per-(b, d, l)
  work (softplus, D skip, gate) is left out, under 10% for n = 16;
* a forward+backward counts 3x the forward (the usual convention of training FLOP counts; the CPU
  backward recomputes the states from saved chunk starts and runs the adjoint, about twice the
  forward's operations);
* a model's FLOPs are the aten operations' (matmul, conv, ...) counted by
  ``torch.utils.flop_counter.FlopCounterMode`` plus its scan modules' updates times
  :data:`UPDATE_FLOPS` (the numba and Triton kernels are invisible to the counter); each scan module
  reports its updates through ``scan_state_updates(input)``.

Shape letters: b batch, d channels, l sequence length, n state size, S GEMM side.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..layers.scan_backend import scan_modules
from .timing import time_ms

__all__ = ["EXP_FLOPS", "UPDATE_FLOPS", "gemm_peak", "model_flops", "rate", "scan_flops", "share"]

EXP_FLOPS = 23
UPDATE_FLOPS = 1 + EXP_FLOPS + 2 + 2
BACKWARD_FACTOR = 3  # forward+backward = 3 x forward
GEMM_SIDE = 1024


def gemm_peak(device: str | torch.device = "cpu", side: int = GEMM_SIDE, repeats: int = 10) -> dict[str, Any]:
    """GFLOP/s of a (side x side) @ (side x side) fp32 matmul on ``device``, from its fastest of
    ``repeats`` calls (a peak is the best the machine reached; on a shared machine the median of a
    12 ms call moves by 2x from run to run); the median time is kept beside it."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(side, side, generator=gen).to(device)
    b = torch.randn(side, side, generator=gen).to(device)
    out = torch.empty(side, side, device=device)
    timing = time_ms(lambda: torch.mm(a, b, out=out), device, repeats=repeats, warmup=2)
    flops = 2.0 * side**3
    return {
        "side": side,
        "ms": timing.min_ms,
        "median_ms": timing.median_ms,
        "gflops": flops / (timing.min_ms * 1e6),
    }


def scan_flops(batch: int, d: int, length: int, n: int, backward: bool = False) -> float:
    """FLOPs of a selective scan of (batch, d, length) with state size n (see the module docstring)."""
    forward = float(batch) * d * length * n * UPDATE_FLOPS
    return forward * BACKWARD_FACTOR if backward else forward


def model_flops(model: nn.Module, x: Tensor, backward: bool = False) -> float:
    """FLOPs of ``model(x)`` (times 3 with ``backward``): aten operations plus the scan modules' updates."""
    from torch.utils.flop_counter import FlopCounterMode

    updates = []
    hooks = [
        m.register_forward_hook(lambda mod, args, out: updates.append(mod.scan_state_updates(args[0])))
        for m in scan_modules(model)
    ]
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    forward = float(counter.get_total_flops()) + float(sum(updates)) * UPDATE_FLOPS
    return forward * BACKWARD_FACTOR if backward else forward


def share(gflops: float, peak: dict[str, Any] | None) -> float | None:
    """``gflops`` as a fraction of the run's GEMM peak (None without one)."""
    return gflops / peak["gflops"] if peak and peak.get("gflops") else None


def rate(flops: float, seconds: float, peak: dict[str, Any] | None) -> tuple[float | None, float | None]:
    """(GFLOP/s, share of the GEMM peak) of ``flops`` done in ``seconds`` (None, None for no time)."""
    if not seconds:
        return None, None
    gflops = flops / (seconds * 1e9)
    return gflops, share(gflops, peak)
