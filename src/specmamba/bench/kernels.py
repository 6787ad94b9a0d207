"""Static report of the Triton scan kernels for a GPU architecture, compiled without a GPU.

``specmamba bench kernels`` / :func:`bench_kernels` compile the forward and backward kernels of the
``triton`` backend, plain and fused SS2D, for ``sm`` (90 = H100) ahead of time (Triton's ``ASTSource``
for a ``GPUTarget``; no driver is needed), with the block sizes the backend launches with and the
integer specialisations of VM-UNet's stage 1 at 256 px. For each kernel they print what the machine
code says: registers per thread and spill bytes (Triton's bundled ``ptxas -v``; the limits, 255 and 0,
are the reference column), and the instruction mix of the main innermost loop (``cuobjdump -sass``),
per state value and step. That loop is the kernels' per-state-component body; each thread handles
BD * BL / (32 * warps) state values of a tile in it.

These are instruction counts, not timings: shuffles (SHFL) issue at a quarter of the rate of float
arithmetic on Hopper, so they weigh more. ``specmamba bench scan --device cuda`` times the kernels.

Shape letters: BD channels per program, BL steps per tile.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import BackendUnavailableError, ConfigError
from .timing import format_table, publish

__all__ = ["STAGE1_INTS", "bench_kernels", "compile_kernel", "innermost_loop", "ptxas_usage"]

#: Integer kernel arguments at VM-UNet's stage 1 (256 px, SS2D): real launches specialise integers
#: divisible by 16 (and pointers, which torch aligns), which changes vectorisation and register use.
STAGE1_INTS: dict[str, int] = {
    "DU": 192,
    "L": 4096,
    "N": 16,
    "G": 4,
    "DG": 192,
    "NCHUNK": 32,
    "HH": 64,
    "WW": 64,
    "TRANSPOSED": 0b1010,  # SS2D's walks: 1 and 3 column-major, 2 and 3 backwards
    "REVERSED": 0b1100,
}
_INPUTS = {"u_ptr", "delta_ptr", "B_ptr", "C_ptr", "D_ptr", "z_ptr", "bias_ptr"}
_SASS_LINE = re.compile(r"^\s*/\*([0-9a-f]+)\*/\s+(.*?)\s*;", re.M)


def _tool(name: str, sm: int) -> str:
    """Path of Triton's bundled NVIDIA tool ``name`` (ptxas for ``sm``, or cuobjdump)."""
    try:
        import triton
        from triton.backends.nvidia.compiler import get_ptxas
    except ImportError as err:
        raise BackendUnavailableError(
            f"bench kernels needs triton with its NVIDIA back end (pip install triton): {err}"
        ) from None
    if name == "ptxas":
        path = get_ptxas(sm).path
    else:
        path = str(Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name)
    if not os.access(path, os.X_OK):
        raise BackendUnavailableError(f"bench kernels: Triton's {name} is not usable here ({path}).")
    return path


def compile_kernel(
    kernel: Any,
    constexprs: Mapping[str, Any],
    num_warps: int,
    ptr_dtype: str = "fp32",
    sm: int = 90,
    ints: Mapping[str, int] = STAGE1_INTS,
) -> dict[str, Any]:
    """Compile a ``triton.jit`` kernel for ``sm`` without a GPU; returns its assembly (``ptx``, ``cubin``).

    Input pointers get ``ptr_dtype``, output and scratch pointers float32, every other argument int32;
    pointers and the ``ints`` divisible by 16 are specialised as a launch would. Raises
    BackendUnavailableError when this triton lacks the ahead-of-time API.
    """
    try:
        import triton
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
    except ImportError as err:
        raise BackendUnavailableError(
            f"bench kernels: this triton cannot compile ahead of time: {err}"
        ) from None
    signature, attrs = {}, {}
    for i, name in enumerate(kernel.arg_names):
        if name in constexprs:
            signature[name] = "constexpr"
            continue
        if name.endswith("_ptr"):
            signature[name] = f"*{ptr_dtype}" if name in _INPUTS else "*fp32"
        else:
            signature[name] = "i32"
        if name.endswith("_ptr") or ints.get(name, 1) % 16 == 0:
            attrs[(i,)] = [["tt.divisibility", 16]]
    try:
        source = ASTSource(fn=kernel, signature=signature, constexprs=dict(constexprs), attrs=attrs)
    except TypeError as err:
        raise BackendUnavailableError(f"bench kernels: this triton's ASTSource differs: {err}") from None
    compiled = triton.compile(source, target=GPUTarget("cuda", sm, 32), options={"num_warps": num_warps})
    return compiled.asm


def ptxas_usage(ptx: str, sm: int = 90) -> tuple[int, int]:
    """(registers per thread, spill-store bytes) of ``ptx`` as ``ptxas -v`` reports them for ``sm``."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "kernel.ptx"
        src.write_text(ptx)
        run = subprocess.run(
            [_tool("ptxas", sm), "-v", f"--gpu-name=sm_{sm}a", str(src), "-o", str(Path(tmp) / "k.cubin")],
            capture_output=True,
            text=True,
        )
    if run.returncode != 0:
        raise RuntimeError(f"ptxas failed on the compiled kernel:\n{run.stderr[-2000:]}")
    registers = int(re.search(r"Used (\d+) registers", run.stderr).group(1))
    spills = re.search(r"(\d+) bytes spill stores", run.stderr)
    return registers, int(spills.group(1)) if spills else 0


def innermost_loop(cubin: bytes, sm: int = 90) -> Counter:
    """Opcode counts of the largest innermost loop of ``cubin``'s SASS.

    A loop is a branch back to a lower address; innermost ones contain no other loop. The largest of
    them is the kernel's main per-state-component body (the backward with a gate also has a smaller
    one, the pass that recomputes the output).
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kernel.cubin"
        path.write_bytes(cubin)
        sass = subprocess.run(
            [_tool("cuobjdump", sm), "-sass", str(path)], capture_output=True, text=True, check=True
        ).stdout
    code = []
    for match in _SASS_LINE.finditer(sass):
        text = re.sub(r"^@!?\w+\s+", "", match.group(2))  # drop the predicate
        code.append((int(match.group(1), 16), text.split()[0].split(".")[0], text))
    spans = []
    for addr, op, text in code:
        target = re.search(r"0x([0-9a-f]+)", text) if op == "BRA" else None
        if target and int(target.group(1), 16) < addr:
            spans.append((int(target.group(1), 16), addr))
    inner = [(a, b) for a, b in spans if not any(a <= c and d <= b and (c, d) != (a, b) for c, d in spans)]
    if not inner:
        raise RuntimeError("no loop found in the kernel's SASS")
    start, end = max(inner, key=lambda span: span[1] - span[0])
    return Counter(op for addr, op, _ in code if start <= addr <= end)


def bench_kernels(
    sm: int = 90,
    ptr_dtype: str = "fp32",
    json_path: str | os.PathLike[str] | None = None,
    verbose: bool = True,
) -> dict:
    """Compile the Triton scan kernels for ``sm``; print and return their registers, spills and loop mix.

    Returns ``{"meta": ..., "rows": [...]}``; each row has ``kernel`` (forward / backward), ``form``
    (plain / ss2d), ``registers``, ``spill_bytes``, ``loop_instructions`` (per thread),
    ``values_per_thread`` and per-value counts ``instructions``, ``shfl``, ``mufu``.
    """
    if ptr_dtype not in ("fp32", "bf16", "fp16"):
        raise ConfigError(f"bench kernels: ptr_dtype must be fp32, bf16 or fp16; got {ptr_dtype!r}.")
    from ..ops import scan_triton

    cfg = scan_triton.launch_config(STAGE1_INTS["DG"])
    num_warps = cfg.pop("num_warps")
    per_thread = cfg["BLOCK_D"] * cfg["BLOCK_L"] / (32 * num_warps)
    rows = []
    for form, k in (("plain", 1), ("ss2d", 4)):
        flags = {"K": k, "HAS_D": True, "HAS_Z": k == 1, "HAS_BIAS": True, "SOFTPLUS": True}
        for name, kernel in (("forward", scan_triton._fwd_kernel), ("backward", scan_triton._bwd_kernel)):
            asm = compile_kernel(kernel, {**cfg, **flags}, num_warps, ptr_dtype, sm)
            registers, spills = ptxas_usage(asm["ptx"], sm)
            mix = innermost_loop(asm["cubin"], sm)
            total = sum(mix.values())
            rows.append(
                {
                    "kernel": name,
                    "form": form,
                    "registers": registers,
                    "spill_bytes": spills,
                    "loop_instructions": total,
                    "values_per_thread": per_thread,
                    "instructions": total / per_thread,
                    "shfl": mix["SHFL"] / per_thread,
                    "mufu": mix["MUFU"] / per_thread,
                }
            )
    meta = {"sm": sm, "ptr_dtype": ptr_dtype, "launch": {**cfg, "num_warps": num_warps}, "ints": STAGE1_INTS}
    result = {"meta": meta, "rows": rows}
    publish(result, _render, verbose, json_path)
    return result


def _render(result: dict) -> str:
    meta = result["meta"]
    launch = meta["launch"]
    head = (
        f"Triton scan kernels compiled for sm_{meta['sm']} ({meta['ptr_dtype']} inputs; BLOCK_D "
        f"{launch['BLOCK_D']}, BLOCK_L {launch['BLOCK_L']}, {launch['num_warps']} warps; VM-UNet stage-1 "
        "integers). Innermost loop counts are per state value and step; limits: 255 registers, 0 spills."
    )
    rows = [
        [
            r["kernel"],
            r["form"],
            r["registers"],
            r["spill_bytes"],
            r["loop_instructions"],
            f"{r['instructions']:.1f}",
            f"{r['shfl']:.1f}",
            f"{r['mufu']:.1f}",
        ]
        for r in result["rows"]
    ]
    header = [
        "kernel",
        "form",
        "registers",
        "spill B",
        "loop instr",
        "instr/value",
        "SHFL/value",
        "MUFU/value",
    ]
    return head + "\n" + format_table(rows, header)
