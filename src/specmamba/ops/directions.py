"""Scan directions: the orders in which a directional scan visits a map, and how their outputs merge.

A *direction set* of K directions maps a (b, d, h, w) map to K sequences (b, K, d, l), l = h*w, and
merges K per-direction outputs back, each returned to row-major order, summed in direction order.
``index(h, w)[k, t]`` is the row-major position direction k visits at step t. Scan and merge are
exact adjoints (<scan(x), y> == <x, merge(y)>), so each is the other's backward and neither saves
anything for autograd.

Two kinds of set:

* *walks* (:class:`Walk`): each direction is row-major or column-major (``transpose``), forwards or
  backwards (``reverse``). The kernels compute such positions by index arithmetic, and torch does the
  scan and merge with strided copies (flips and transposes), several times faster than a gather.
  :data:`SS2D` is VMamba / VM-UNet's four walks (row-major, column-major, both reversed; REFERENCE.md
  section 2); :data:`BIDIRECTIONAL` is Vim's pair (forwards and backwards over a token sequence,
  given as a (b, d, 1, l) map; REFERENCE.md section 5).
* *permutations* (:meth:`DirectionSet.from_permutations`): any (K, l) index of a fixed grid, e.g. a
  zig-zag or Hilbert order. Scan is a gather, merge an ``index_add`` per direction (the positions of a
  permutation are distinct, so the sums are deterministic); the CPU kernels read them from the index,
  the Triton fused kernels take walks only (a permutation set runs there as the composition).

Shape letters: b batch, d channels, h/w map size, l = h*w, K directions.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from ..errors import ConfigError

__all__ = ["BIDIRECTIONAL", "SS2D", "DirectionSet", "Walk", "column_major"]


@dataclass(frozen=True)
class Walk:
    """One direction of a walk set: row-major, or column-major when ``transpose``; backwards when
    ``reverse``."""

    transpose: bool = False
    reverse: bool = False


def column_major(t: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(..., h*w) in row-major order -> (..., h*w) in column-major order (entry j*h + i is (i, j))."""
    return t.reshape(*t.shape[:-1], h, w).transpose(-1, -2).reshape(t.shape)


def _along(walk: Walk, row: torch.Tensor, col: torch.Tensor | None) -> torch.Tensor:
    """A walk's order of a map given in row-major (``row``) and column-major (``col``) order."""
    seq = col if walk.transpose else row
    return seq.flip(-1) if walk.reverse else seq


class DirectionSet:
    """K scan directions over an (h, w) grid; see the module docstring.

    Build one from walks, ``DirectionSet("name", [Walk(...), ...])``, or from an index,
    :meth:`from_permutations`.
    """

    def __init__(self, name: str, walks: tuple[Walk, ...] | list[Walk]) -> None:
        if not walks:
            raise ConfigError(f"direction set {name!r} needs at least one direction.")
        self.name = name
        self.walks: tuple[Walk, ...] | None = tuple(walks)
        self._perm: torch.Tensor | None = None
        self.k = len(self.walks)

    @classmethod
    def from_permutations(cls, name: str, perm: torch.Tensor, grid: tuple[int, int]) -> DirectionSet:
        """Directions given as a (K, h*w) index of the row-major positions each visits, on one grid."""
        h, w = int(grid[0]), int(grid[1])
        perm = torch.as_tensor(perm, dtype=torch.int64).cpu()
        expected = torch.arange(h * w)
        if (
            perm.dim() != 2
            or perm.shape[1] != h * w
            or any(not torch.equal(row.sort().values, expected) for row in perm)
        ):
            raise ConfigError(
                f"direction set {name!r}: perm must be (K, {h * w}), each row a permutation of the "
                f"{h}x{w} grid's row-major positions; got shape {tuple(perm.shape)}."
            )
        self = cls.__new__(cls)
        self.name, self.walks, self.k = name, None, int(perm.shape[0])
        self._perm, self._grid = perm.contiguous(), (h, w)
        return self

    def __repr__(self) -> str:
        return f"DirectionSet({self.name!r}, k={self.k})"

    # -- the index --------------------------------------------------------------------------------

    def index(self, h: int, w: int) -> torch.Tensor:
        """(K, h*w) int64: ``index[k, t]`` is the row-major position direction k visits at step t."""
        if self.walks is None:
            self._check_grid(h, w)
            return self._perm
        return _walk_index(self.walks, h, w)

    def _check_grid(self, h: int, w: int) -> None:
        if self.walks is None and (h, w) != self._grid:
            raise ConfigError(
                f"direction set {self.name!r} is defined on a {self._grid[0]}x{self._grid[1]} grid; "
                f"got a {h}x{w} map."
            )

    # -- scan and merge (differentiable) ----------------------------------------------------------

    def scan(self, x: torch.Tensor) -> torch.Tensor:
        """(b, d, h, w) -> (b, K, d, h*w): each direction's sequence in its own step order."""
        if x.dim() != 4:
            raise ConfigError(f"{self.name} scan: x must be (b, d, h, w), got shape {tuple(x.shape)}.")
        self._check_grid(*x.shape[2:])
        return _Scan.apply(x, self)

    def merge(self, ys: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """(b, K, d, h*w) -> (b, d, h*w): each direction back in row-major order, summed."""
        if ys.dim() != 4 or ys.shape[1] != self.k or ys.shape[3] != h * w:
            raise ConfigError(
                f"{self.name} merge: ys must be (b, {self.k}, d, h*w) with h*w = {h * w}, got shape "
                f"{tuple(ys.shape)}."
            )
        self._check_grid(h, w)
        return _Merge.apply(ys, h, w, self)

    def to_step_order(self, t: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """(b, K, c, h*w) with every direction's values in row-major order -> (b, K, c, h*w) with entry
        [:, k, :, t] the value at the position direction k visits at step t (differentiable).

        For per-position projections computed once on the row-major map (SS2D's x_proj) and then
        needed in each direction's order.
        """
        b, k, c, length = t.shape
        if self.walks is None:
            self._check_grid(h, w)
            index = self._perm.to(t.device).view(1, k, 1, length).expand(b, k, c, length)
            return t.gather(-1, index)
        seqs = [
            _along(wk, t[:, i], column_major(t[:, i], h, w) if wk.transpose else None)  # (b, c, l)
            for i, wk in enumerate(self.walks)
        ]
        return torch.stack(seqs, dim=1)  # (b, K, c, l)

    # -- the same without autograd (kernels' backward passes) -------------------------------------

    def scan_values(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`scan` without autograd."""
        b, d, h, w = x.shape
        if self.walks is None:
            gathered = x.reshape(b, d, h * w)[:, :, self._perm.to(x.device)]  # (b, d, K, l)
            return gathered.transpose(1, 2).contiguous()  # (b, K, d, l)
        row = x.reshape(b, d, h * w)  # (b, d, l) row-major
        col = column_major(row, h, w) if any(wk.transpose for wk in self.walks) else None
        return torch.stack([_along(wk, row, col) for wk in self.walks], dim=1)  # (b, K, d, l)

    def merge_values(self, ys: torch.Tensor, h: int, w: int, stored_forward: bool = False) -> torch.Tensor:
        """:meth:`merge` without autograd; directions added one after the other in index order (the
        fused kernels use the same order).

        ``stored_forward``: the outputs of reversed walks are already in forward step order (the fused
        CPU kernel stores them so), so only transposes remain. Column-major outputs are added as
        transposed views, never copied; the sums are the same, element for element.
        """
        b, _, d, length = ys.shape
        if self.walks is None:
            out = ys.new_zeros(b, d, length)
            for k in range(self.k):
                out.index_add_(-1, self._perm[k].to(ys.device), ys[:, k])
            return out
        parts = []
        for k, wk in enumerate(self.walks):
            y = ys[:, k].flip(-1) if wk.reverse and not stored_forward else ys[:, k]  # (b, d, l)
            # (b, d, h, w) in row-major positions: a view of the column-major sequence, transposed
            parts.append(y.reshape(b, d, w, h).transpose(-1, -2) if wk.transpose else y.reshape(b, d, h, w))
        # A new tensor, never one of the inputs (views of ys), and no out= argument: exported graphs
        # (torch.export, ONNX) keep out= ops, which then refuse inputs that require grad. The first
        # two directions are added into it rather than copied first (one pass over the map fewer);
        # the sums are the same, ((y0 + y1) + y2) + y3.
        if len(parts) == 1:
            return parts[0].clone(memory_format=torch.contiguous_format).view(b, d, length)
        out = (parts[0] + parts[1]).contiguous()  # (b, d, h, w), row-major
        for y in parts[2:]:
            out += y
        return out.view(b, d, length)


@functools.lru_cache(maxsize=64)
def _walk_index(walks: tuple[Walk, ...], h: int, w: int) -> torch.Tensor:
    row = torch.arange(h * w, dtype=torch.int64)
    col = column_major(row, h, w)  # column-major walk: t = j*h + i visits (i, j)
    return torch.stack([_along(wk, row, col) for wk in walks])


class _Scan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, directions):
        ctx.hw, ctx.directions = x.shape[2:], directions
        return directions.scan_values(x)

    @staticmethod
    def backward(ctx, grad):
        h, w = ctx.hw
        merged = ctx.directions.merge_values(grad, h, w)
        return merged.view(grad.shape[0], grad.shape[2], h, w), None


class _Merge(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ys, h, w, directions):
        ctx.hw, ctx.directions = (h, w), directions
        return directions.merge_values(ys, h, w)

    @staticmethod
    def backward(ctx, grad):
        h, w = ctx.hw
        b, d, _ = grad.shape
        return ctx.directions.scan_values(grad.reshape(b, d, h, w)), None, None, None


#: VMamba / VM-UNet's SS2D: row-major, column-major, reversed row-major, reversed column-major.
SS2D = DirectionSet("ss2d", [Walk(False, False), Walk(True, False), Walk(False, True), Walk(True, True)])
#: Vim's bidirectional pair over a sequence (as a (b, d, 1, l) map): forwards, backwards.
BIDIRECTIONAL = DirectionSet("bidirectional", [Walk(False, False), Walk(False, True)])
