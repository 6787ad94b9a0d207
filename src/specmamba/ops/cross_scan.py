"""Cross-scan / cross-merge of SS2D (VMamba, Liu et al. 2024; VM-UNet, Ruan et al. 2024) and the fused entry.

SS2D turns a 2-D map into k = 4 sequences: row-major, column-major, reversed row-major, reversed
column-major (REFERENCE.md section 2), scans each with its own parameters and sums the four outputs
back in row-major order. :func:`cross_scan` and :func:`cross_merge` are exact adjoints of each other
(<cross_scan(x), y> == <x, cross_merge(y)>), so each is the other's backward and neither saves
anything for autograd.

:func:`ss2d_selective_scan` is the fused entry the SS2D layer calls: cross-scan + selective scan +
cross-merge in one call. The ``cpu`` and ``triton`` backends read the scan input straight from x with
direction index arithmetic and accumulate the merged output, so the four direction copies of x and of
y are never materialised; other backends run the plain composition (which is also its reference).

Shape letters: b batch, d channels of the map (SS2D's inner width), h, w map size, l = h*w,
k = 4 directions, n state size, g = k groups of B/C (one per direction).
"""

from __future__ import annotations

import functools

import torch

from ..errors import ConfigError

__all__ = ["K_DIRECTIONS", "cross_merge", "cross_scan", "direction_index", "ss2d_selective_scan"]

K_DIRECTIONS = 4


@functools.lru_cache(maxsize=64)
def direction_index(h: int, w: int) -> torch.Tensor:
    """(4, h*w) int64: ``perm[k, t]`` is the row-major position that direction k visits at step t."""
    idx = torch.arange(h * w, dtype=torch.int64).view(h, w)
    row = idx.reshape(-1)
    col = idx.t().reshape(-1)  # column-major walk: t = j*h + i visits (i, j)
    return torch.stack([row, col, row.flip(0), col.flip(0)])


def _scan_impl(x: torch.Tensor) -> torch.Tensor:
    b, d, h, w = x.shape
    row = x.reshape(b, d, h * w)  # (b, d, l) row-major
    col = x.transpose(2, 3).reshape(b, d, h * w)  # (b, d, l) column-major
    return torch.stack([row, col, row.flip(-1), col.flip(-1)], dim=1)  # (b, 4, d, l)


def _col_to_row(y: torch.Tensor, h: int, w: int) -> torch.Tensor:
    b, d, _ = y.shape
    return y.view(b, d, w, h).transpose(2, 3).reshape(b, d, h * w)  # column-major -> row-major order


def merge_directions(ys: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(b, 4, d, h*w) -> (b, d, h*w) without autograd: each direction back in row-major order, summed.

    Directions are added one after the other in index order (the fused kernels use the same order),
    with strided copies (flips, transposes), several times faster than an index gather.
    """
    y = ys[:, 0] + _col_to_row(ys[:, 1], h, w)
    y = y + ys[:, 2].flip(-1)
    return y + _col_to_row(ys[:, 3].flip(-1), h, w)  # (b, d, l)


class _CrossScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.hw = x.shape[2:]
        return _scan_impl(x)

    @staticmethod
    def backward(ctx, grad):
        h, w = ctx.hw
        return merge_directions(grad, h, w).view(grad.shape[0], grad.shape[2], h, w)


class _CrossMerge(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ys, h, w):
        ctx.hw = (h, w)
        return merge_directions(ys, h, w)

    @staticmethod
    def backward(ctx, grad):
        h, w = ctx.hw
        b, d, _ = grad.shape
        return _scan_impl(grad.reshape(b, d, h, w)), None, None


def cross_scan(x: torch.Tensor) -> torch.Tensor:
    """(b, d, h, w) -> (b, 4, d, h*w): row-major, column-major, and both reversed (VM-UNet order)."""
    if x.dim() != 4:
        raise ConfigError(f"cross_scan: x must be (b, d, h, w), got shape {tuple(x.shape)}.")
    return _CrossScan.apply(x)


def cross_merge(ys: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(b, 4, d, h*w) -> (b, d, h*w): each direction back in row-major order, summed (adjoint)."""
    if ys.dim() != 4 or ys.shape[1] != K_DIRECTIONS or ys.shape[3] != h * w:
        raise ConfigError(
            f"cross_merge: ys must be (b, 4, d, h*w) with h*w = {h * w}, got shape {tuple(ys.shape)}."
        )
    return _CrossMerge.apply(ys, h, w)


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
) -> torch.Tensor:
    """SS2D core in one call: cross_merge(selective_scan(cross_scan(x), ...)), (b, d, h, w) -> (b, d, h*w).

    Args mirror the SS2D layer of VMamba / VM-UNet (REFERENCE.md section 2), k = 4 directions:
        x: (b, d, h, w) the map after the depthwise conv and SiLU, channels first.
        delta: (b, k*d, l) or (b, k, d, l) per-direction dt in each direction's own step order
            (dt_projs applied to x_proj of the cross-scanned x), before bias and softplus.
        A: (k*d, n) = -exp(A_logs). D: optional (k*d,) = Ds. delta_bias: optional (k*d,) = dt_projs bias.
        B, C: (b, g, n, l) with g a multiple of k (SS2D: g = k, one B/C per direction), step order of
            each direction.
        backend: as for :func:`~specmamba.ops.selective_scan`; ``cpu`` and ``triton`` run the fused
            kernels, ``ref`` and ``mamba_ssm`` the composition with the torch cross-scan/merge.

    Returns the merged output (b, d, h*w) in row-major order, in x's dtype (the scan state is
    float32, float64 for float64 inputs). Differentiable in every tensor argument.
    """
    from .selective_scan import _check_inputs, resolve_backend

    if x.dim() != 4:
        raise ConfigError(f"ss2d_selective_scan: x must be (b, d, h, w), got shape {tuple(x.shape)}.")
    b, d, h, w = x.shape
    length = h * w
    k = K_DIRECTIONS
    if delta.dim() == 4:
        if delta.shape != (b, k, d, length):
            raise ConfigError(
                f"ss2d_selective_scan: 4-D delta must be (b, 4, d, h*w) = {(b, k, d, length)}, "
                f"got {tuple(delta.shape)}."
            )
        delta = delta.reshape(b, k * d, length)
    if delta.shape != (b, k * d, length):
        raise ConfigError(
            f"ss2d_selective_scan: delta must be (b, 4*d, h*w) = {(b, k * d, length)} or (b, 4, d, h*w), "
            f"got {tuple(delta.shape)}."
        )
    if B.dim() != 4 or B.shape[1] % k:
        raise ConfigError(
            "ss2d_selective_scan: B/C must be (b, g, n, h*w) with g a multiple of 4 (SS2D: g = 4), "
            f"got {tuple(B.shape)}."
        )
    u_like = x.new_zeros(()).expand(b, k * d, length)  # shape/dtype/device of the scan input, no memory
    _check_inputs(u_like, delta, A, B, C, D, None, delta_bias)
    name = resolve_backend(backend, x.device)
    if name == "cpu":
        from .scan_cpu import ss2d_scan_cpu

        return ss2d_scan_cpu(x, delta, A, B, C, D, delta_bias, delta_softplus)
    if name == "triton":
        from .scan_triton import ss2d_scan_triton

        return ss2d_scan_triton(x, delta, A, B, C, D, delta_bias, delta_softplus)
    from .selective_scan import selective_scan

    xs = cross_scan(x).reshape(b, k * d, length)  # (b, 4, d, l) -> (b, 4d, l)
    ys = selective_scan(xs, delta, A, B, C, D, None, delta_bias, delta_softplus, backend=name)
    return cross_merge(ys.view(b, k, d, length), h, w)
