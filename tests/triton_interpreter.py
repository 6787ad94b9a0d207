"""A scan layer's Triton backend against ``ref``, run by Triton's CPU interpreter in a subprocess.

The interpreter (``TRITON_INTERPRET=1``) must be set before triton is imported, hence the subprocess;
the tolerances are the scan's fp32 ones (REFERENCE.md section 1), with gradients looser.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton not installed")

_SCRIPT = textwrap.dedent(
    """
    import torch
    from {module} import {cls}
    torch.manual_seed(0)
    tri = {cls}({args}, scan_backend="triton")
    ref = {cls}({args}, scan_backend="ref")
    ref.load_state_dict(tri.state_dict())
    x = torch.randn{shape}
    xt, xr = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    yt, yr = tri(xt), ref(xr)
    torch.testing.assert_close(yt, yr, rtol=6e-4, atol=1e-5)
    yt.square().sum().backward()
    yr.square().sum().backward()
    torch.testing.assert_close(xt.grad, xr.grad, rtol=1e-3, atol=1e-5)
    for (name, pt), pr in zip(tri.named_parameters(), ref.parameters()):
        torch.testing.assert_close(pt.grad, pr.grad, rtol=2e-3, atol=1e-5, msg=name)
    print("OK")
    """
)


def assert_triton_matches_ref(module: str, cls: str, args: str, shape: tuple[int, ...]) -> None:
    """``cls(args)`` of ``module`` with scan_backend triton vs ref on a random input of ``shape``:
    outputs, input gradients and parameter gradients."""
    script = _SCRIPT.format(module=module, cls=cls, args=args, shape=tuple(shape))
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", script]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-3000:]
