"""Which selective-scan backend the scan layers of a model use, and switching it model-wide.

A *scan module* is any layer that runs :func:`specmamba.ops.selective_scan` (SS2D, Vim's
bidirectional mixer): it sets the class attribute ``uses_selective_scan = True``, keeps its backend in
``self.scan_backend`` and counts its work with ``scan_state_updates(input)`` (the benchmarks' FLOPs).
:func:`set_scan_backend` and :func:`scan_backend_of` then work on any model that contains such
layers, whatever its architecture.
"""

from __future__ import annotations

from torch import nn

from ..errors import ConfigError
from ..ops import BACKENDS

__all__ = ["check_scan_backend", "scan_backend_of", "scan_modules", "set_scan_backend"]


def check_scan_backend(scan_backend: str) -> str:
    """Return ``scan_backend`` if it names a selective-scan backend, else raise ConfigError.

    Whether the backend can run is decided at call time (it depends on the tensors' device).
    """
    if scan_backend not in BACKENDS:
        raise ConfigError(
            f"scan_backend must be one of {', '.join(BACKENDS)} ('auto' picks the fused numba kernel on CPU "
            f"and Triton on CUDA); got {scan_backend!r}."
        )
    return scan_backend


def scan_modules(model: nn.Module) -> list[nn.Module]:
    """The scan modules inside ``model`` (itself included), in ``model.modules()`` order."""
    return [m for m in model.modules() if getattr(m, "uses_selective_scan", False)]


def _require_scan_modules(model: nn.Module) -> list[nn.Module]:
    found = scan_modules(model)
    if not found:
        name = getattr(model, "specmamba_name", None) or type(model).__name__
        raise ConfigError(f"{name} has no selective-scan layer, so it has no scan backend to choose.")
    return found


def scan_backend_of(model: nn.Module) -> str:
    """The backend of the model's scan modules (the first one's); ConfigError if it has none."""
    return _require_scan_modules(model)[0].scan_backend


def set_scan_backend(model: nn.Module, scan_backend: str) -> nn.Module:
    """Switch every scan module of ``model`` to ``scan_backend`` (weights unchanged); returns ``model``."""
    check_scan_backend(scan_backend)
    for m in _require_scan_modules(model):
        m.scan_backend = scan_backend
    return model
