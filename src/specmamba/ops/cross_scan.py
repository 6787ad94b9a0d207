"""Cross-scan, cross-merge and the fused directional selective scan (SS2D of VMamba / VM-UNet, Vim's pair).

A directional scan turns a map into K sequences along the directions of a
:class:`~specmamba.ops.directions.DirectionSet` (SS2D: row-major, column-major and both reversed,
REFERENCE.md section 2), scans each with its own parameters, and merges the K outputs back in
row-major order. :func:`cross_scan` / :func:`cross_merge` are the set's scan and merge (exact
adjoints); :func:`ss2d_selective_scan` does cross-scan + selective scan + cross-merge in one call.

The ``cpu`` backend fuses the three for any direction set: each direction reads x along its walk
(column-major walks from one transposed copy of x) instead of from K cross-scanned copies, and its
output is merged by the set's strided merge. The ``triton`` backend fuses walk sets entirely
(positions by index arithmetic, outputs accumulated in the kernel), so neither the K copies of x nor
those of y exist there. Other backends, and Triton with a permutation set, run the plain
composition, which is also the fused kernels' reference.

Shape letters: b batch, d channels of the map (SS2D's inner width), h, w map size, l = h*w,
K directions, n state size, g groups of B/C (a multiple of K: SS2D has one B/C per direction).
"""

from __future__ import annotations

import torch

from ..errors import ConfigError
from .checks import check_scan_inputs
from .directions import SS2D, DirectionSet
from .selective_scan import resolve_backend, selective_scan

__all__ = ["cross_merge", "cross_scan", "direction_index", "ss2d_selective_scan"]


def direction_index(h: int, w: int, directions: DirectionSet = SS2D) -> torch.Tensor:
    """(K, h*w) int64: ``index[k, t]`` is the row-major position that direction k visits at step t."""
    return directions.index(h, w)


def cross_scan(x: torch.Tensor, directions: DirectionSet = SS2D) -> torch.Tensor:
    """(b, d, h, w) -> (b, K, d, h*w), each direction's sequence in its step order (SS2D: VM-UNet's)."""
    if x.dim() != 4:
        raise ConfigError(f"cross_scan: x must be (b, d, h, w), got shape {tuple(x.shape)}.")
    return directions.scan(x)


def cross_merge(ys: torch.Tensor, h: int, w: int, directions: DirectionSet = SS2D) -> torch.Tensor:
    """(b, K, d, h*w) -> (b, d, h*w): each direction back in row-major order, summed (the adjoint)."""
    if ys.dim() != 4 or ys.shape[1] != directions.k or ys.shape[3] != h * w:
        raise ConfigError(
            f"cross_merge: ys must be (b, {directions.k}, d, h*w) with h*w = {h * w}, got shape "
            f"{tuple(ys.shape)}."
        )
    return directions.merge(ys, h, w)


def _needs_grad(*tensors: torch.Tensor | None) -> bool:
    """Whether autograd would record an op on ``tensors`` here (grad mode on, one requires grad)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def ss2d_selective_scan(
    x: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = True,
    backend: str = "auto",
    directions: DirectionSet = SS2D,
    dt_proj: torch.Tensor | None = None,
) -> torch.Tensor:
    """Fused directional scan: cross_merge(selective_scan(cross_scan(x), ...)), (b, d, h, w) -> (b, d, h*w).

    Args mirror the SS2D layer of VMamba / VM-UNet (REFERENCE.md section 2), K = ``directions.k``:
        x: (b, d, h, w) the map after the depthwise conv and SiLU, channels first (a sequence is a
            (b, d, 1, l) map).
        delta: (b, K*d, l) or (b, K, d, l) per-direction dt in each direction's own step order
            (dt_projs applied to x_proj of the cross-scanned x), before bias and softplus.
        A: (K*d, n) = -exp(A_logs). D: optional (K*d,) = Ds. delta_bias: optional (K*d,) = dt_projs bias.
        B, C: (b, g, n, l) with g a multiple of K (SS2D: g = K, one B/C per direction), step order of
            each direction.
        backend: as for :func:`~specmamba.ops.selective_scan`; ``cpu`` (any set) and ``triton`` (walk
            sets) run the fused kernels, others the composition with the torch cross-scan/merge.
        directions: the :class:`~specmamba.ops.directions.DirectionSet` (default SS2D's four walks).
        dt_proj: optional (K, d, R) dt projection (SS2D's ``dt_projs_weight``); delta is then the
            (b, K, R, l) low-rank dt (x_proj's first R rows) and the scan's delta is dt_proj @ delta.
            Where no gradient is needed the ``cpu`` backend forms it tile by tile inside the kernel
            (no (b, K*d, l) tensor, no GEMM); otherwise the product is taken first.

    Returns the merged output (b, d, h*w) in row-major order, in x's dtype (the scan state is
    float32, float64 for float64 inputs). Differentiable in every tensor argument.
    """
    if x.dim() != 4:
        raise ConfigError(f"ss2d_selective_scan: x must be (b, d, h, w), got shape {tuple(x.shape)}.")
    b, d, h, w = x.shape
    length, k = h * w, directions.k
    if B.dim() != 4 or B.shape[1] % k:
        raise ConfigError(
            f"ss2d_selective_scan: B/C must be (b, g, n, h*w) with g a multiple of {k} (at least one group "
            f"per direction of {directions.name}), got {tuple(B.shape)}."
        )
    name = resolve_backend(backend, x.device)
    u_like = x.new_zeros(()).expand(b, k * d, length)  # shape/dtype/device of the scan input, no memory
    if dt_proj is not None:
        r = dt_proj.shape[-1] if dt_proj.dim() == 3 else 0
        if dt_proj.dim() != 3 or dt_proj.shape[:2] != (k, d) or delta.shape != (b, k, r, length):
            raise ConfigError(
                f"ss2d_selective_scan: with dt_proj, dt_proj must be ({k}, d, R) with d = {d} and delta the "
                f"low-rank dt (b, {k}, R, h*w) = {(b, k, r, length)}; got dt_proj {tuple(dt_proj.shape)} "
                f"and delta {tuple(delta.shape)}."
            )
        fused = name == "cpu" and k > 1 and not _needs_grad(x, delta, A, B, C, D, delta_bias, dt_proj)
        if fused:
            delta_like = delta.new_zeros(()).expand(b, k * d, length)
            check_scan_inputs(u_like, delta_like, A, B, C, D, None, delta_bias)
            from .scan_cpu import directional_scan_cpu

            return directional_scan_cpu(
                x, delta, A, B, C, D, delta_bias, delta_softplus, directions, dt_proj.reshape(k * d, r)
            )
        delta = torch.matmul(dt_proj, delta)  # (K, d, R) @ (b, K, R, l) -> (b, K, d, l)
    if delta.dim() == 4:
        if delta.shape != (b, k, d, length):
            raise ConfigError(
                f"ss2d_selective_scan: 4-D delta must be (b, {k}, d, h*w) = {(b, k, d, length)}, "
                f"got {tuple(delta.shape)}."
            )
        delta = delta.reshape(b, k * d, length)
    if delta.shape != (b, k * d, length):
        raise ConfigError(
            f"ss2d_selective_scan: delta must be (b, {k}*d, h*w) = {(b, k * d, length)} or "
            f"(b, {k}, d, h*w), got {tuple(delta.shape)}."
        )
    check_scan_inputs(u_like, delta, A, B, C, D, None, delta_bias)
    # The fused kernels treat one direction as the identity walk: K = 1 sets run as the composition.
    if name == "cpu" and k > 1:
        from .scan_cpu import directional_scan_cpu

        return directional_scan_cpu(x, delta, A, B, C, D, delta_bias, delta_softplus, directions)
    if name == "triton" and k > 1 and directions.walks is not None:
        from .scan_triton import directional_scan_triton

        return directional_scan_triton(x, delta, A, B, C, D, delta_bias, delta_softplus, directions)
    xs = cross_scan(x, directions).reshape(b, k * d, length)  # (b, K, d, l) -> (b, K*d, l)
    ys = selective_scan(xs, delta, A, B, C, D, None, delta_bias, delta_softplus, backend=name)
    return cross_merge(ys.view(b, k, d, length), h, w, directions)
