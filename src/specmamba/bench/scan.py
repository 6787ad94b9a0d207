"""Selective-scan benchmark: every available backend at the VM-UNet stage shapes and Vim's, in one run.

``specmamba bench scan`` / :func:`bench_scan` measure, for the stage shapes of REFERENCE.md section 1
(VM-UNet at 256x256 input, d = k * 2c scan channels, l = h * w, n = 16, g = k = 4 groups) and the
bidirectional shapes of vim_tiny (stages ``vim196`` and ``vim1024``: E = 384 inner channels per
direction, both directions in one call as Vim's mixer runs them, d = 2E = 768, g = 2, l = 196 for a
224-px image and 1024 for a 512-px one; REFERENCE.md section 5), for each backend: forward ms,
forward+backward ms (the fast backends timed in turns, so their ratios survive the machine's drift),
peak extra memory of a forward+backward, effective bandwidth of the forward
(bytes of the minimal inputs + outputs / time) and speed-up over ``ref``. The sequential ``ref`` is
timed in the same run where its estimated time (a short prefix of the sequence, timed and
extrapolated linearly in l) is under ``ref_budget_s``; otherwise its row says "skipped (est. N s)"
and speed-ups are computed against the estimate (marked ``~``). Where the ``mamba_ssm`` backend runs
(CUDA with mamba-ssm installed), every row also gives mamba-ssm's forward+backward time over its
own (``vs_mamba_ssm_fwd_bwd``; the GPU target is >= 1 for triton).

At the SS2D stages it also times the fused SS2D entry (``ss2d_selective_scan``) against the unfused
composition (torch cross-scan + scan + torch cross-merge, with mamba-ssm's scan when it is
installed), in turns, and reports the ratio fused / composed.

Shape letters: b batch, d scan channels, l sequence length, n state size, g groups of B/C, h, w map.
"""

from __future__ import annotations

import functools
import math
import os
import platform
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ..cpu_malloc import malloc_state
from ..errors import BackendUnavailableError, ConfigError
from ..ops import available_backends, cross_merge, cross_scan, selective_scan, ss2d_selective_scan
from .peak import UPDATE_FLOPS, gemm_peak, rate, scan_flops
from .timing import format_table, peak_extra_bytes, publish, time_interleaved, time_ms

__all__ = ["STAGES", "bench_scan", "make_scan_inputs"]

#: stage -> (d, l): VM-UNet widths c = 96 * 2**(i-1), d = 4 directions * 2c, l = (64 / 2**(i-1))**2.
STAGES: dict[int | str, tuple[int, int]] = {1: (768, 4096), 2: (1536, 1024), 3: (3072, 256), 4: (6144, 64)}
#: Vim's bidirectional stages -> (d, l): vim_tiny's E = 384 per direction, two directions in one call.
VIM_STAGES: dict[int | str, tuple[int, int]] = {"vim196": (768, 196), "vim1024": (768, 1024)}
DEFAULT_STAGES: tuple[int | str, ...] = (1, 2, 3, 4, "vim196", "vim1024")
STATE = 16
GROUPS = 4  # SS2D: one B/C group per direction
VIM_GROUPS = 2
_REF_PREFIX = 64  # steps of the ref scan timed to estimate a full run


def make_scan_inputs(
    batch: int, d: int, length: int, device: str | torch.device = "cpu", seed: int = 0, groups: int = GROUPS
) -> dict:
    """SS2D-like fp32 inputs: A = -(1..n), dt bias = softplus^-1(dt), dt log-uniform in [1e-3, 1e-1]."""
    gen = torch.Generator().manual_seed(seed)
    n, g = STATE, groups
    dt = torch.exp(torch.rand(d, generator=gen) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3)).clamp(
        min=1e-4
    )
    inputs = {
        "u": torch.randn(batch, d, length, generator=gen),
        "delta": 0.1 * torch.randn(batch, d, length, generator=gen),
        "A": -torch.arange(1, n + 1, dtype=torch.float32).repeat(d, 1),
        "B": torch.randn(batch, g, n, length, generator=gen),
        "C": torch.randn(batch, g, n, length, generator=gen),
        "D": torch.ones(d),
        "delta_bias": dt + torch.log(-torch.expm1(-dt)),  # inverse softplus
    }
    return {k: v.to(device) for k, v in inputs.items()}


def _io_bytes(batch: int, d: int, length: int, backward: bool, groups: int = GROUPS) -> int:
    """Bytes that a pass must at least read and write (fp32): u, delta, B, C in, y out (+ grads)."""
    seq, bc = batch * d * length, batch * groups * STATE * length
    fwd = 3 * seq + 2 * bc + 3 * d * STATE
    bwd = 5 * seq + 4 * bc if backward else 0  # u, delta, dout, B, C in; du, ddelta, dB, dC out
    return 4 * (fwd + bwd)


def _scan(backend: str) -> Callable[..., Any]:
    """The scan a row times: the public entry on ``backend``."""
    return functools.partial(selective_scan, backend=backend)


def _scan_calls(inp: dict, backend: str) -> tuple[Callable[[], Any], Callable[[], Any]]:
    scan = _scan(backend)

    def fwd() -> Any:
        with torch.no_grad():
            return scan(**inp, delta_softplus=True)

    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in inp.items()}

    def fwd_bwd() -> Any:
        for v in leaves.values():
            v.grad = None
        out = scan(**leaves, delta_softplus=True)
        out.backward(torch.ones_like(out))

    return fwd, fwd_bwd


def _ss2d_calls(inp: dict, h: int, w: int, backend: str, fused: bool) -> Callable[[], Any]:
    b, d, length = inp["u"].shape
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in inp.items()}
    x = leaves["u"][:, : d // 4].detach().clone().reshape(b, d // 4, h, w).requires_grad_(True)
    rest = {k: v for k, v in leaves.items() if k != "u"}

    def fwd_bwd() -> Any:
        x.grad = None
        if fused:
            y = ss2d_selective_scan(x, **rest, delta_softplus=True, backend=backend)
        else:
            xs = cross_scan(x).reshape(b, d, length)
            ys = selective_scan(xs, **rest, delta_softplus=True, backend=backend)
            y = cross_merge(ys.view(b, 4, d // 4, length), h, w)
        y.backward(torch.ones_like(y))

    return fwd_bwd


def _flop_fields(batch: int, d: int, length: int, fwd_ms: float, fwd_bwd_ms: float, peak: dict) -> dict:
    """GFLOP/s of a row's two figures and their share of the run's GEMM peak (``peak.py``)."""
    out = {}
    for key, ms, backward in (("fwd", fwd_ms, False), ("fwd_bwd", fwd_bwd_ms, True)):
        flops = scan_flops(batch, d, length, STATE, backward)
        out[f"{key}_gflops"], out[f"{key}_peak_share"] = rate(flops, ms / 1e3, peak)
    return out


def _estimate_ref_ms(inp: dict, device: str) -> tuple[float, float]:
    """Time ref on the first ``_REF_PREFIX`` steps and extrapolate linearly to the full length."""
    length = inp["u"].shape[-1]
    m = min(length, _REF_PREFIX)
    pre = {k: (v[..., :m].contiguous() if k in ("u", "delta", "B", "C") else v) for k, v in inp.items()}
    fwd, fwd_bwd = _scan_calls(pre, "ref")
    scale = length / m
    return time_ms(fwd, device, repeats=1).median_ms * scale, time_ms(
        fwd_bwd, device, repeats=1
    ).median_ms * scale


def _fmt_speedup(ref_ms: float | None, ms: float | None, estimated: bool) -> str | None:
    if ref_ms is None or not ms:
        return None
    return f"{'~' if estimated else ''}{ref_ms / ms:.1f}x"


def bench_scan(
    device: str = "cpu",
    batch: int | None = None,
    backends: Sequence[str] | None = None,
    stages: Sequence[int | str] | None = None,
    repeats: int | None = None,
    json_path: str | os.PathLike[str] | None = None,
    ref_budget_s: float = 60.0,
    ss2d: bool = True,
    verbose: bool = True,
    shapes: Mapping[int | str, tuple[int, int]] | None = None,
) -> dict:
    """Benchmark the selective-scan backends at the VM-UNet stage shapes; print a table, return a dict.

    Args:
        device: ``cpu`` or ``cuda``.
        batch: batch size (default 1 on CPU, 8 on CUDA).
        backends: backends to time (default: every available one but ``chunked``, the export
            backend, and ``triton`` on CPU, i.e. through its interpreter: those only when asked for).
            ``ref`` is always included as the reference.
        stages: subset of 1..4 (SS2D) and ``vim196``, ``vim1024`` (bidirectional, g = 2); default all.
        repeats: timed calls per figure (median reported; default 3 on CPU, 20 on CUDA).
        json_path: also write the results there (atomically) as JSON.
        ref_budget_s: time ``ref`` only where its estimate is below this many seconds.
        ss2d: also time the fused SS2D entry against the unfused composition.
        verbose: print the table.
        shapes: replace the (d, l) of stages, e.g. ``{1: (64, 256)}`` for a quick check (SS2D stages: d a
            multiple of 4, l a perfect square; Vim's: d even).

    Returns ``{"meta": ..., "scan": [row, ...], "ss2d": [row, ...]}`` with times in ms, memory in MB.
    """
    dev = torch.device(device)
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"bench scan: device must be 'cpu' or 'cuda', got {device!r}.")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError(
            "bench scan --device cuda: CUDA is not available here; use --device cpu."
        )
    stages = DEFAULT_STAGES if stages is None else stages
    table = {**STAGES, **VIM_STAGES, **(shapes or {})}
    bad = [s for s in stages if s not in table]
    if bad or not stages:
        raise ConfigError(
            f"bench scan: stages must be a non-empty subset of {', '.join(map(str, table))}; got "
            f"{list(stages)}."
        )
    for stage in stages:
        d, length = table[stage]
        if stage in VIM_STAGES:
            if d % VIM_GROUPS:
                raise ConfigError(f"bench scan: stage {stage} shape (d={d}, l={length}) needs an even d.")
        elif d % GROUPS or math.isqrt(length) ** 2 != length:
            raise ConfigError(
                f"bench scan: stage {stage} shape (d={d}, l={length}) needs d % 4 == 0 and a square l."
            )
    batch = batch if batch is not None else (1 if dev.type == "cpu" else 8)
    if batch < 1:
        raise ConfigError(f"bench scan: batch must be >= 1, got {batch}.")
    repeats = repeats if repeats is not None else (3 if dev.type == "cpu" else 20)
    avail = available_backends(dev)
    if backends is None:
        backends = [b for b in avail if b != "chunked" and not (dev.type == "cpu" and b == "triton")]
    missing = [b for b in backends if b not in avail]
    if missing:
        from ..ops import resolve_backend

        resolve_backend(missing[0], dev)  # raises with the reason and the fix
    fast = [b for b in backends if b != "ref"]
    peak = gemm_peak(dev)
    meta = {
        "device": str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
        "batch": batch,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "repeats": repeats,
        "ref_budget_s": ref_budget_s,
        "shapes": {str(s): list(table[s]) for s in stages},
        "gemm": peak,
        "cpu_malloc": malloc_state() if dev.type == "cpu" else None,
    }
    scan_rows: list[dict] = []
    ss2d_rows: list[dict] = []
    for stage in stages:
        d, length = table[stage]
        groups = VIM_GROUPS if stage in VIM_STAGES else GROUPS
        inp = make_scan_inputs(batch, d, length, dev, groups=groups)
        est_fwd, est_fb = _estimate_ref_ms(inp, str(dev))
        ref = {"fwd": est_fwd, "fwd_bwd": est_fb}
        ref_est = {"fwd": True, "fwd_bwd": True}
        fwd, fwd_bwd = _scan_calls(inp, "ref")
        ref_row: dict[str, Any] = {"stage": stage, "d": d, "l": length, "g": groups, "backend": "ref"}
        for key, call, est in (("fwd", fwd, est_fwd), ("fwd_bwd", fwd_bwd, est_fb)):
            if est < ref_budget_s * 1e3:
                reps = max(1, min(repeats, int(ref_budget_s * 1e3 / max(est, 1e-3))))  # within budget
                ref[key] = time_ms(call, dev, repeats=reps, warmup=0 if est > 2e3 else 1).median_ms
                ref_est[key] = False
            ref_row[f"{key}_ms"] = ref[key]
            ref_row[f"{key}_estimated"] = ref_est[key]
        ref_row["peak_extra_mb"] = None
        if not ref_est["fwd_bwd"]:
            mem = peak_extra_bytes(fwd_bwd, dev)
            ref_row["peak_extra_mb"] = mem / 2**20 if mem is not None else None
        ref_row["fwd_gbps"] = _io_bytes(batch, d, length, False, groups) / (ref["fwd"] * 1e6)
        ref_row["speedup_fwd"] = ref_row["speedup_fwd_bwd"] = 1.0
        ref_row.update(_flop_fields(batch, d, length, ref["fwd"], ref["fwd_bwd"], peak))
        scan_rows.append(ref_row)
        # The fast backends in turns, so that their ratios survive the machine's drift.
        calls = [_scan_calls(inp, backend) for backend in fast]
        t_fwd = time_interleaved([c[0] for c in calls], dev, repeats=repeats, warmup=2)
        t_fwd_bwd = time_interleaved([c[1] for c in calls], dev, repeats=repeats, warmup=2)
        for backend, (_, fwd_bwd), tf, tfb in zip(fast, calls, t_fwd, t_fwd_bwd):
            t_f, t_fb = tf.median_ms, tfb.median_ms
            mem = peak_extra_bytes(fwd_bwd, dev)
            scan_rows.append(
                {
                    "stage": stage,
                    "d": d,
                    "l": length,
                    "g": groups,
                    "backend": backend,
                    "fwd_ms": t_f,
                    "fwd_bwd_ms": t_fb,
                    "fwd_estimated": False,
                    "fwd_bwd_estimated": False,
                    "peak_extra_mb": mem / 2**20 if mem is not None else None,
                    "fwd_gbps": _io_bytes(batch, d, length, False, groups) / (t_f * 1e6),
                    "speedup_fwd": ref["fwd"] / t_f,
                    "speedup_fwd_bwd": ref["fwd_bwd"] / t_fb,
                    **_flop_fields(batch, d, length, t_f, t_fb, peak),
                }
            )
        by_backend = {r["backend"]: r for r in scan_rows if r["stage"] == stage}
        anchor = by_backend.get("mamba_ssm")
        for r in by_backend.values():  # > 1: faster than mamba-ssm's CUDA kernel (the GPU target)
            r["vs_mamba_ssm_fwd_bwd"] = anchor["fwd_bwd_ms"] / r["fwd_bwd_ms"] if anchor else None
        if ss2d and groups == GROUPS:  # the SS2D entry against its composition (SS2D stages only)
            side = math.isqrt(length)
            for backend in (b for b in fast if b in ("cpu", "triton")):
                base = "mamba_ssm" if "mamba_ssm" in avail else backend
                fused = _ss2d_calls(inp, side, side, backend, True)
                composed = _ss2d_calls(inp, side, side, base, False)
                t_fused, t_comp = time_interleaved([fused, composed], dev, repeats=repeats, warmup=2)
                ss2d_rows.append(
                    {
                        "stage": stage,
                        "d": d // 4,
                        "h": side,
                        "w": side,
                        "fused_backend": backend,
                        "composed_with": base,
                        "fused_fwd_bwd_ms": t_fused.median_ms,
                        "composed_fwd_bwd_ms": t_comp.median_ms,
                        "ratio": t_fused.median_ms / t_comp.median_ms,
                    }
                )
        del inp
    result = {"meta": meta, "scan": scan_rows, "ss2d": ss2d_rows}
    publish(result, _render, verbose, json_path)
    return result


def _fmt_gflops(row: dict, key: str) -> str | None:
    if row.get(f"{key}_gflops") is None or row.get(f"{key}_estimated"):
        return None
    pct = row.get(f"{key}_peak_share")
    return f"{row[f'{key}_gflops']:.1f}" + (f" ({100 * pct:.0f}%)" if pct is not None else "")


def _render(result: dict) -> str:
    meta = result["meta"]
    head = (
        f"selective scan on {meta['device']}, batch {meta['batch']}, {meta['threads']} threads, fp32, "
        f"n = {STATE}, median of {meta['repeats']}"
    )
    gemm = meta.get("gemm")
    if gemm:
        head += (
            f"\nmachine peak (same run): fp32 GEMM {gemm['side']}^3 in {gemm['ms']:.2f} ms = "
            f"{gemm['gflops']:.0f} GFLOP/s; the scan's GFLOP/s count {UPDATE_FLOPS} FLOPs per state update "
            "(fwd+bwd: 3x the forward)"
        )
    if meta.get("cpu_malloc"):
        head += f"\nCPU malloc: {meta['cpu_malloc']}"
    with_anchor = any(r.get("vs_mamba_ssm_fwd_bwd") is not None for r in result["scan"])
    rows = []
    for r in result["scan"]:

        def ms(key: str, r: dict = r) -> str:
            if r[f"{key}_estimated"]:
                return f"skipped (est. {r[f'{key}_ms'] / 1e3:.0f} s)"
            return f"{r[f'{key}_ms']:.2f}"

        ref = next(x for x in result["scan"] if x["stage"] == r["stage"] and x["backend"] == "ref")
        sp_f = sp_fb = "1.0x" if r["backend"] == "ref" else None
        if r["backend"] != "ref":
            sp_f = _fmt_speedup(ref["fwd_ms"], r["fwd_ms"], ref["fwd_estimated"])
            sp_fb = _fmt_speedup(ref["fwd_bwd_ms"], r["fwd_bwd_ms"], ref["fwd_bwd_estimated"])
        row = [
            r["stage"],
            r["d"],
            r["l"],
            r["g"],
            r["backend"],
            ms("fwd"),
            ms("fwd_bwd"),
            r["peak_extra_mb"],
            r["fwd_gbps"],
            sp_f,
            sp_fb,
            _fmt_gflops(r, "fwd"),
            _fmt_gflops(r, "fwd_bwd"),
        ]
        if with_anchor:
            ratio = r["vs_mamba_ssm_fwd_bwd"]
            row.append(f"{ratio:.2f}x" if ratio is not None and not r["fwd_bwd_estimated"] else None)
        rows.append(row)
    header = [
        "stage",
        "d",
        "l",
        "g",
        "backend",
        "fwd ms",
        "fwd+bwd ms",
        "peak extra MB",
        "fwd GB/s",
        "x ref fwd",
        "x ref fwd+bwd",
        "fwd GFLOP/s (% peak)",
        "fwd+bwd GFLOP/s (% peak)",
    ] + (["x mamba_ssm fwd+bwd"] if with_anchor else [])
    text = head + "\n" + format_table(rows, header)
    if result["ss2d"]:
        srows = [
            [
                r["stage"],
                r["d"],
                f"{r['h']}x{r['w']}",
                r["fused_backend"],
                r["composed_with"],
                r["fused_fwd_bwd_ms"],
                r["composed_fwd_bwd_ms"],
                f"{r['ratio']:.2f}",
            ]
            for r in result["ss2d"]
        ]
        sheader = [
            "stage",
            "d",
            "map",
            "fused",
            "composed with",
            "fused fwd+bwd ms",
            "composed fwd+bwd ms",
            "fused/composed",
        ]
        text += "\n\nSS2D: fused entry vs torch cross-scan + scan + torch cross-merge\n" + format_table(
            srows, sheader
        )
    return text
