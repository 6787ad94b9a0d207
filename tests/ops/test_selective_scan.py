"""Public selective_scan: argument checking, backend dispatch, actionable errors, lazy imports."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
import torch

from specmamba.errors import BackendUnavailableError, ConfigError
from specmamba.ops import available_backends, resolve_backend, selective_scan

ss_mod = sys.modules["specmamba.ops.selective_scan"]


def _bad(case: dict, **changes) -> dict:
    return {**case, **changes}


@pytest.mark.parametrize(
    ("change", "word"),
    [
        (lambda c: {"u": c["u"][0]}, "u must be (b, d, l)"),
        (lambda c: {"u": c["u"][..., :0], "delta": c["delta"][..., :0]}, "length"),
        (lambda c: {"delta": c["delta"][:, :, :-1]}, "delta"),
        (lambda c: {"A": c["A"][:-1]}, "A must be (d, n)"),
        (lambda c: {"A": torch.complex(c["A"], c["A"])}, "real"),
        (lambda c: {"C": c["C"][:, :, :-1]}, "same shape"),
        (lambda c: {"B": c["B"][:, :, :-1], "C": c["C"][:, :, :-1]}, "B/C"),
        (lambda c: {"B": c["B"].repeat(1, 3, 1, 1), "C": c["C"].repeat(1, 3, 1, 1)}, "divisible by g"),
        (lambda c: {"D": c["D"][:-1]}, "D must be"),
        (lambda c: {"delta_bias": c["delta_bias"][None]}, "delta_bias must be"),
        (lambda c: {"z": c["z"][:, :-1]}, "z must"),
        (lambda c: {"u": c["u"].long()}, "float16/bfloat16/float32/float64"),
    ],
)
def test_bad_arguments_raise_config_error(change, word, scan_case):
    case = scan_case(b=2, d=8, length=6, n=4, g=2)
    with pytest.raises(ConfigError, match=word.replace("(", r"\(").replace(")", r"\)")):
        selective_scan(**_bad(case, **change(case)), backend="ref")


def test_unknown_backend(scan_case):
    with pytest.raises(ConfigError, match="backend must be one of"):
        selective_scan(**scan_case(), backend="cuda")


def test_triton_on_cpu_tensors_says_why(monkeypatch, scan_case):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton not installed")
    with pytest.raises(BackendUnavailableError, match="needs CUDA tensors"):
        selective_scan(**scan_case(), backend="triton")


@pytest.mark.skipif(importlib.util.find_spec("mamba_ssm") is not None, reason="mamba-ssm is installed")
def test_mamba_ssm_missing_says_how_to_get_it(scan_case):
    with pytest.raises(BackendUnavailableError, match="pip install mamba-ssm"):
        selective_scan(**scan_case(), backend="mamba_ssm")


def test_missing_numba_error_and_auto_fallback(monkeypatch, scan_case):
    monkeypatch.setattr(ss_mod, "_has_module", lambda name: name != "numba")
    case = scan_case()
    with pytest.raises(BackendUnavailableError, match="pip install numba"):
        selective_scan(**case, backend="cpu")
    with pytest.warns(RuntimeWarning, match="falling back"):
        out = selective_scan(**case, backend="auto")
    torch.testing.assert_close(out, selective_scan(**case, backend="ref"))


def test_available_backends_and_auto():
    assert {"ref", "cpu"} <= set(available_backends("cpu"))
    assert resolve_backend("auto", "cpu") == "cpu"
    if not torch.cuda.is_available():
        assert available_backends("cuda") == []
        with pytest.raises(BackendUnavailableError, match="CUDA is not available"):
            resolve_backend("ref", "cuda")


def test_auto_on_cpu_is_the_cpu_backend(scan_case):
    case = scan_case(b=1, d=8, length=20, n=4)
    assert torch.equal(selective_scan(**case), selective_scan(**case, backend="cpu"))


@pytest.mark.parametrize("backend", ["ref", "cpu"])
def test_return_last_state_and_three_dim_bc(backend, scan_case):
    case = scan_case(b=2, d=4, length=10, n=3, g=1)
    out = selective_scan(**case, backend=backend)
    out2, last = selective_scan(**case, return_last_state=True, backend=backend)
    assert torch.equal(out, out2) and last.shape == (2, 4, 3)
    three = selective_scan(**{**case, "B": case["B"][:, 0], "C": case["C"][:, 0]}, backend=backend)
    torch.testing.assert_close(three, out, rtol=0, atol=0)


def test_import_is_lazy():
    code = (
        "import sys, specmamba.ops as o; "
        "assert 'specmamba.ops.scan_cpu' not in sys.modules; "
        "assert 'specmamba.ops.scan_triton' not in sys.modules; "
        "print(o.selective_scan.__module__)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
