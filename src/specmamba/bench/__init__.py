"""Benchmarks: figures printed next to the reference they are compared with, measured in the same run.

``bench_scan`` times the selective-scan backends at the VM-UNet stage shapes (``specmamba bench scan``);
``bench_model`` times whole models for inference and training (``specmamba bench model``);
``bench_kernels`` reports the Triton scan kernels' registers, spills and instruction mix for a GPU
architecture, compiled without a GPU (``specmamba bench kernels``; imported lazily, it needs triton);
``timing`` holds the helpers (wall time, peak memory, tables) that every benchmark shares.
"""

from __future__ import annotations

from .model import bench_model
from .scan import STAGES, bench_scan, make_scan_inputs
from .timing import Timing, format_table, peak_extra_bytes, time_interleaved, time_ms

__all__ = [
    "STAGES",
    "Timing",
    "bench_model",
    "bench_scan",
    "format_table",
    "make_scan_inputs",
    "peak_extra_bytes",
    "time_interleaved",
    "time_ms",
]
