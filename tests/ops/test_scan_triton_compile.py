"""The Triton kernels compile for an H100 (sm_90) without a GPU, and their registers do not spill.

The interpreter tests (test_scan_triton.py) check the kernels' arithmetic; they cannot see what only
the real compiler sees: type and layout errors of the GPU lowering, and register pressure. Here each
kernel is compiled ahead of time (Triton's ``ASTSource`` for a ``GPUTarget``; no driver needed) with
exactly the block sizes :func:`launch_config` gives, then assembled by Triton's own ``ptxas -v``; a
spill to local memory would make the scan several times slower on the device, so it fails the test.
Skipped where Triton or its bundled NVIDIA tool chain is missing. Also here: inputs too large for the
kernels' int32 offsets are refused.
"""

from __future__ import annotations

import re
import subprocess

import pytest

triton = pytest.importorskip("triton")
try:  # the ahead-of-time API of triton 3.x; another version skips rather than fails
    from triton.backends.compiler import GPUTarget
    from triton.backends.nvidia.compiler import get_ptxas
    from triton.compiler import ASTSource
except ImportError as err:
    pytest.skip(f"this triton has no ahead-of-time compile API: {err}", allow_module_level=True)

SM = 90  # H100


@pytest.fixture(scope="module")
def ptxas() -> str:
    try:
        tool = get_ptxas(SM).path
        subprocess.run([tool, "--version"], check=True, capture_output=True)
    except Exception as err:  # no bundled ptxas for this platform
        pytest.skip(f"Triton's ptxas is not usable here: {err}")
    return tool


# Integer arguments as at VM-UNet's stage 1 (256 px): real launches specialise integers divisible by
# 16 (and pointers, which torch aligns), and that changes vectorisation and so the register use.
_STAGE1_INTS = {"DU": 192, "L": 4096, "N": 16, "G": 4, "DG": 192, "NCHUNK": 32, "HH": 64, "WW": 64}


def _compile(kernel, constexprs: dict, num_warps: int, ptr_dtype: str) -> str:
    """PTX of ``kernel`` for sm_90 with fp32 outputs and ``ptr_dtype`` inputs."""
    inputs = {"u_ptr", "delta_ptr", "B_ptr", "C_ptr", "D_ptr", "z_ptr", "bias_ptr"}
    signature, attrs = {}, {}
    for i, name in enumerate(kernel.arg_names):
        if name in constexprs:
            signature[name] = "constexpr"
            continue
        if name.endswith("_ptr"):
            signature[name] = f"*{ptr_dtype}" if name in inputs else "*fp32"
        else:
            signature[name] = "i32"
        if name.endswith("_ptr") or _STAGE1_INTS.get(name, 1) % 16 == 0:
            attrs[(i,)] = [["tt.divisibility", 16]]
    try:
        source = ASTSource(fn=kernel, signature=signature, constexprs=constexprs, attrs=attrs)
    except TypeError as err:  # a triton whose ASTSource takes other arguments
        pytest.skip(f"this triton's ASTSource differs: {err}")
    compiled = triton.compile(source, target=GPUTarget("cuda", SM, 32), options={"num_warps": num_warps})
    return compiled.asm["ptx"]


def _resources(ptxas: str, ptx: str, tmp_path) -> tuple[int, int]:
    """(registers per thread, spill-store bytes) reported by ``ptxas -v``."""
    src = tmp_path / "kernel.ptx"
    src.write_text(ptx)
    run = subprocess.run(
        [ptxas, "-v", f"--gpu-name=sm_{SM}a", str(src), "-o", str(tmp_path / "kernel.cubin")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    registers = int(re.search(r"Used (\d+) registers", run.stderr).group(1))
    spills = re.search(r"(\d+) bytes spill stores", run.stderr)
    return registers, int(spills.group(1)) if spills else 0


@pytest.mark.parametrize("ptr_dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("k", [1, 4], ids=["plain", "ss2d"])
@pytest.mark.parametrize("which", ["forward", "backward"])
def test_kernel_compiles_for_sm90_without_spilling(ptxas, tmp_path, which, k, ptr_dtype):
    from specmamba.ops import scan_triton

    cfg = scan_triton.launch_config(dg=192)  # VM-UNet stage 1: 192 channels per group
    num_warps = cfg.pop("num_warps")
    flags = {"K": k, "HAS_D": True, "HAS_Z": k == 1, "HAS_BIAS": True, "SOFTPLUS": True}
    kernel = scan_triton._fwd_kernel if which == "forward" else scan_triton._bwd_kernel
    ptx = _compile(kernel, {**cfg, **flags}, num_warps, ptr_dtype)
    registers, spilled = _resources(ptxas, ptx, tmp_path)
    assert spilled == 0, f"{which} kernel spills {spilled} B per thread ({registers} registers), {cfg}"
    assert registers <= 255


def test_launch_config_keeps_a_program_in_one_group():
    from specmamba.ops.scan_triton import launch_config

    assert launch_config(192)["BLOCK_D"] == 16
    assert launch_config(12)["BLOCK_D"] == 4  # largest power of two dividing the group
    assert launch_config(7)["BLOCK_D"] == 1


def test_inputs_beyond_int32_offsets_are_refused_with_the_batch_that_fits():
    from specmamba.errors import ConfigError
    from specmamba.ops.scan_triton import check_offsets_fit_int32

    check_offsets_fit_int32(32, 768, 4096, 16, 16)  # VM-UNet stage 1 at 256 px, batch 32
    with pytest.raises(ConfigError, match=r"batch of at most 170\b"):
        check_offsets_fit_int32(256, 768, 4096 * 4, 16, 16)  # 512 px, batch 256: delta overflows
