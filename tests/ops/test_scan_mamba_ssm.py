"""specmamba's scan against mamba-ssm: its CUDA kernel through the ``mamba_ssm`` adapter (needs a CUDA
device), and its pure-PyTorch ``selective_scan_ref`` (runs on CPU, from the package's source).

Both need the mamba-ssm package; ``MAMBA_SKIP_CUDA_BUILD=TRUE pip install mamba-ssm --no-build-isolation``
installs it without its CUDA extension, which is enough for the reference test.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
import torch

from specmamba.ops import selective_scan

needs_mamba_ssm = pytest.mark.skipif(
    importlib.util.find_spec("mamba_ssm") is None, reason="mamba-ssm not installed"
)

NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def _run(case: dict, backend: str) -> list[torch.Tensor]:
    # the loss uses the output only: mamba-ssm's backward ignores gradients through the last state
    leaves = {k: case[k].clone().requires_grad_(True) for k in NAMES}
    out, last = selective_scan(**leaves, delta_softplus=True, return_last_state=True, backend=backend)
    out.backward(torch.randn(out.shape, generator=torch.Generator().manual_seed(0)).to(out))
    return [out.detach(), last.detach()] + [leaves[k].grad for k in NAMES]


@pytest.mark.gpu
@needs_mamba_ssm
@pytest.mark.parametrize("g", [1, 4])
def test_mamba_ssm_matches_ref(g, scan_case):
    case = scan_case(b=2, d=32, length=300, n=16, g=g, device="cuda")
    for a, r in zip(_run(case, "mamba_ssm"), _run(case, "ref")):
        torch.testing.assert_close(a, r, rtol=3e-3, atol=2e-2 * max(1.0, r.abs().max().item()))


def _mamba_ssm_reference():
    """mamba-ssm's ``selective_scan_ref``, compiled from its source file alone.

    Its module imports the CUDA extension at the top, so it cannot be imported on a CPU machine; the
    function itself needs only torch, ``F`` and einops.
    """
    einops = pytest.importorskip("einops")
    spec = importlib.util.find_spec("mamba_ssm")
    source = Path(spec.submodule_search_locations[0]) / "ops" / "selective_scan_interface.py"
    tree = ast.parse(source.read_text())
    (fn,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "selective_scan_ref"]
    namespace = {"torch": torch, "F": torch.nn.functional, "rearrange": einops.rearrange}
    namespace["repeat"] = einops.repeat
    exec(compile(ast.Module([fn], type_ignores=[]), str(source), "exec"), namespace)
    return namespace["selective_scan_ref"]


@needs_mamba_ssm
@pytest.mark.parametrize("backend", ["ref", "cpu"])
@pytest.mark.parametrize(
    ("length", "n", "g", "softplus"), [(1, 4, 1, True), (37, 4, 2, False), (300, 16, 4, True)]
)
def test_backends_match_mamba_ssm_reference(backend, length, n, g, softplus, scan_case):
    """Same conventions as mamba-ssm: layouts, B/C groups, delta_bias, softplus, D, z, last state."""
    reference = _mamba_ssm_reference()
    case = scan_case(b=2, d=16, length=length, n=n, g=g, softplus=softplus)
    expected, expected_last = reference(**case, return_last_state=True)
    out, last = selective_scan(**case, return_last_state=True, backend=backend)
    torch.testing.assert_close(out, expected, rtol=6e-4, atol=2e-3)
    torch.testing.assert_close(last, expected_last, rtol=6e-4, atol=2e-3)


def _kernel_with_its_dtype_checks(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state):
    """Stands in for mamba-ssm's CUDA ``selective_scan_fn``: its dtype TORCH_CHECKs, then ref's math."""
    io = u.dtype
    assert io in (torch.float32, torch.float16, torch.bfloat16)
    assert A.dtype == torch.float32
    assert delta.dtype == B.dtype == C.dtype == io and (z is None or z.dtype == io)
    assert all(t is None or t.dtype == torch.float32 for t in (D, delta_bias))
    assert return_last_state
    return selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, True, backend="ref")


@pytest.mark.parametrize("u_dtype", [torch.bfloat16, torch.float64])
def test_adapter_meets_the_kernels_dtype_rules(u_dtype, scan_case, monkeypatch):
    """Mixed dtypes, as under autocast (bf16 activations, fp32 parameters), or float64 (unsupported
    by the kernel: computed in float32) reach the kernel in the dtypes it accepts, and each input's
    gradient comes back in that input's dtype."""
    from specmamba.ops import scan_mamba_ssm as adapter

    monkeypatch.setattr(adapter, "_selective_scan_fn", lambda: _kernel_with_its_dtype_checks)
    case = scan_case(b=2, d=8, length=20, n=4, g=2)
    dtypes = {"u": u_dtype, "delta": torch.float32, "B": u_dtype, "C": torch.float16, "z": u_dtype}
    leaves = {
        k: case[k].to(dtypes.get(k, torch.float32)).requires_grad_(True)
        for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
    }
    out, last = adapter.scan_mamba_ssm(**leaves, delta_softplus=True)
    assert out.dtype == u_dtype and last.dtype == torch.float32
    out.float().sum().backward()
    for name, leaf in leaves.items():
        assert leaf.grad is not None and leaf.grad.dtype == leaf.dtype, name
    expected = selective_scan(**case, backend="ref")
    tol = 5e-2 if u_dtype == torch.bfloat16 else 2e-2  # bf16 / fp16 rounding of the inputs
    torch.testing.assert_close(out.float(), expected, rtol=tol, atol=tol)
