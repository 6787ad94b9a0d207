"""The Triton backend: kernel logic under Triton's CPU interpreter (CI), and on a real GPU when present.

``triton.jit`` chooses the interpreter when the module is decorated, i.e. when ``scan_triton`` is first
imported with ``TRITON_INTERPRET=1`` set. The interpreter checks therefore run in a fresh subprocess
with that variable, on tiny shapes (the interpreter executes every program in Python). They cover:
several tiles (l > 128, one an exact multiple), l = 1, a non-power-of-two n, groups, every option on
and off, the gradient through the last state, the public dispatch, and the fused directional kernels
(SS2D's four walks over two tiles, Vim's bidirectional pair) against the composition.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

from specmamba.ops import selective_scan, ss2d_selective_scan

needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton not installed")

_INTERPRETER_SCRIPT = r"""
import json
import torch
from specmamba.ops import selective_scan, ss2d_selective_scan
from specmamba.ops.scan_triton import scan_triton  # noqa: F401  (decorated under the interpreter)

def rel(a, r):
    return float((a.double() - r.double()).abs().max() / max(1.0, float(r.double().abs().max())))

def case(b, d, l, n, g, on, seed):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen)
    delta = r(b, d, l) * 0.5 - 1.0 if on else torch.rand(b, d, l, generator=gen) * 0.5 + 0.01
    return dict(u=r(b, d, l), delta=delta, A=-torch.rand(d, n, generator=gen) * 2 - 0.05, B=r(b, g, n, l),
                C=r(b, g, n, l), D=r(d) if on else None, z=r(b, d, l) if on else None,
                delta_bias=r(d) * 0.1 if on else None, delta_softplus=on)

def run(c, backend):
    leaves = {k: (v.clone().requires_grad_(True) if isinstance(v, torch.Tensor) else v) for k, v in c.items()}
    out, last = selective_scan(**leaves, return_last_state=True, backend=backend)
    gen = torch.Generator().manual_seed(5)
    g_out, g_last = torch.randn(out.shape, generator=gen), torch.randn(last.shape, generator=gen)
    ((out * g_out).sum() + (last * g_last).sum()).backward()
    res = {"out": out.detach(), "last": last.detach()}
    res.update({"d" + k: v.grad for k, v in leaves.items() if isinstance(v, torch.Tensor)})
    return res

report = {}
for shape, on in [((1, 4, 7, 4, 2), True), ((2, 8, 40, 3, 1), False), ((1, 2, 1, 4, 1), True),
                  ((1, 8, 33, 4, 4), True), ((2, 6, 65, 8, 3), False), ((1, 4, 300, 3, 2), True),
                  ((1, 2, 256, 2, 1), False)]:
    c = case(*shape, on, seed=sum(shape))
    want, got = run(c, "ref"), run(c, "triton")
    report[str(shape) + str(on)] = {k: rel(got[k], want[k]) for k in want}
    report[str(shape) + str(on)]["dtype_ok"] = float(got["out"].dtype == want["out"].dtype)

gen = torch.Generator().manual_seed(1)
b, d, h, w, n = 2, 4, 12, 11, 4  # 132 steps: two tiles
ss = dict(x=torch.randn(b, d, h, w, generator=gen),
          delta=torch.randn(b, 4, d, h * w, generator=gen) * 0.5 - 1,
          A=-torch.rand(4 * d, n, generator=gen) - 0.05, B=torch.randn(b, 4, n, h * w, generator=gen),
          C=torch.randn(b, 4, n, h * w, generator=gen), D=torch.randn(4 * d, generator=gen),
          delta_bias=torch.randn(4 * d, generator=gen) * 0.1)
from specmamba.ops import BIDIRECTIONAL, SS2D

def fused(inputs, directions):
    res = {}
    for backend in ("ref", "triton"):
        leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items()}
        y = ss2d_selective_scan(**leaves, delta_softplus=True, backend=backend, directions=directions)
        y.backward(torch.randn(y.shape, generator=torch.Generator().manual_seed(2)))
        res[backend] = [y.detach()] + [leaves[k].grad for k in inputs]
    return {name: rel(a, r) for name, a, r in zip(["y", *inputs], res["triton"], res["ref"])}

report["ss2d"] = fused(ss, SS2D)
l = 150  # a token sequence as a (b, d, 1, l) map, over two tiles, forwards and backwards
bi = dict(x=torch.randn(b, d, 1, l, generator=gen), delta=torch.randn(b, 2, d, l, generator=gen) * 0.5 - 1,
          A=-torch.rand(2 * d, n, generator=gen) - 0.05, B=torch.randn(b, 2, n, l, generator=gen),
          C=torch.randn(b, 2, n, l, generator=gen), D=torch.randn(2 * d, generator=gen),
          delta_bias=torch.randn(2 * d, generator=gen) * 0.1)
report["bidirectional"] = fused(bi, BIDIRECTIONAL)
print("REPORT" + json.dumps(report))
"""


@needs_triton
def test_triton_kernels_under_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _INTERPRETER_SCRIPT], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT"))
    report = json.loads(line[len("REPORT") :])
    assert len(report) == 9
    for case, errors in report.items():
        assert errors.pop("dtype_ok", 1.0) == 1.0, case
        for name, err in errors.items():
            # REFERENCE.md fp32 tolerances (ddelta the loosest), relative to the largest value
            assert err < 2e-3, f"{case} {name}: {err:.2e}"


def _cuda_case(seed: int, length: int, g: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    b, d, n = 2, 64, 16
    case = {
        "u": torch.randn(b, d, length, generator=gen),
        "delta": torch.randn(b, d, length, generator=gen) * 0.5 - 1,
        "A": -torch.rand(d, n, generator=gen) - 0.05,
        "B": torch.randn(b, g, n, length, generator=gen),
        "C": torch.randn(b, g, n, length, generator=gen),
        "D": torch.randn(d, generator=gen),
        "z": torch.randn(b, d, length, generator=gen),
        "delta_bias": torch.randn(d, generator=gen) * 0.1,
    }
    return {k: v.cuda() for k, v in case.items()}


def _cuda_ss2d_case(seed: int, b: int, d: int, h: int, w: int, n: int = 16) -> dict:
    gen = torch.Generator().manual_seed(seed)
    case = {
        "x": torch.randn(b, d, h, w, generator=gen),
        "delta": torch.randn(b, 4, d, h * w, generator=gen) - 1,
        "A": -torch.rand(4 * d, n, generator=gen) - 0.05,
        "B": torch.randn(b, 4, n, h * w, generator=gen),
        "C": torch.randn(b, 4, n, h * w, generator=gen),
        "D": torch.randn(4 * d, generator=gen),
        "delta_bias": torch.randn(4 * d, generator=gen) * 0.1,
    }
    return {k: v.cuda() for k, v in case.items()}


def _ss2d_grads(case: dict, backend: str) -> list[torch.Tensor]:
    leaves = {k: v.clone().requires_grad_(True) for k, v in case.items()}
    y = ss2d_selective_scan(**leaves, backend=backend)
    y.sum().backward()
    return [y.detach()] + [v.grad for v in leaves.values()]


def _grads(case: dict, backend: str) -> list[torch.Tensor]:
    leaves = {k: v.clone().requires_grad_(True) for k, v in case.items()}
    out, last = selective_scan(**leaves, delta_softplus=True, return_last_state=True, backend=backend)
    (out.sum() + last.sum()).backward()
    return [out.detach(), last.detach()] + [v.grad for v in leaves.values()]


@pytest.mark.gpu
@needs_triton
@pytest.mark.parametrize("length", [1, 2, 7, 64, 257, 1024])
@pytest.mark.parametrize("g", [1, 2, 4])
def test_triton_matches_ref_on_gpu(length, g):
    case = _cuda_case(length + g, length, g)
    for a, r in zip(_grads(case, "triton"), _grads(case, "ref")):
        torch.testing.assert_close(a, r, rtol=3e-3, atol=2e-2 * max(1.0, r.abs().max().item()))


@pytest.mark.gpu
@needs_triton
def test_fused_ss2d_triton_equals_composition_on_gpu():
    case = _cuda_ss2d_case(0, b=2, d=32, h=12, w=10)
    for a, r in zip(_ss2d_grads(case, "triton"), _ss2d_grads(case, "ref")):
        torch.testing.assert_close(a, r, rtol=3e-3, atol=2e-2 * max(1.0, r.abs().max().item()))


@pytest.mark.gpu
@needs_triton
def test_triton_is_bitwise_deterministic_on_gpu():
    """Same inputs, same bits, forward and backward, over many tiles: no atomics by design, and a race
    between the threads that store a tile's carry and those that load it would show up here."""
    plain = _cuda_case(3, 1000, 4)
    ss2d = _cuda_ss2d_case(4, b=2, d=16, h=40, w=40)  # 1600 steps: 13 tiles per direction
    for run in (lambda: _grads(plain, "triton"), lambda: _ss2d_grads(ss2d, "triton")):
        first = run()
        for _ in range(2):
            assert all(torch.equal(a, b) for a, b in zip(first, run()))
