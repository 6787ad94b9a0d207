"""Selective-scan engine: the Mamba-1 scan on CPU and GPU, and the SS2D cross-scan of VMamba / VM-UNet.

>>> from specmamba.ops import selective_scan, ss2d_selective_scan, available_backends
>>> y = selective_scan(u, delta, A, B, C, D, delta_bias=b, delta_softplus=True)   # backend="auto"
>>> available_backends("cpu")
['ref', 'chunked', 'cpu']

Importing this package imports only torch; numba and triton are loaded by the backends that use them.
"""

from __future__ import annotations

from .cross_scan import cross_merge, cross_scan, direction_index, ss2d_selective_scan
from .directions import BIDIRECTIONAL, SS2D, DirectionSet, Walk
from .selective_scan import BACKENDS, available_backends, resolve_backend, selective_scan

__all__ = [
    "BACKENDS",
    "BIDIRECTIONAL",
    "SS2D",
    "DirectionSet",
    "Walk",
    "available_backends",
    "cross_merge",
    "cross_scan",
    "direction_index",
    "resolve_backend",
    "selective_scan",
    "ss2d_selective_scan",
]
