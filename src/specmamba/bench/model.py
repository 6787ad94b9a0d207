"""Whole-model benchmark: VM-UNet inference and training speed and memory, next to the official figures.

``specmamba bench model`` / :func:`bench_model` measure, in one run, the figures of REFERENCE.md
section 2 and print each one beside the figure the official VM-UNet code reached (the reference):

* CPU (``device="cpu"``): inference seconds per image at batch 1 for each scan backend (``cpu`` =
  the fused numba kernel, what ``auto`` picks; ``ref`` = the sequential PyTorch loop, timed only when
  its estimate, extrapolated from one forward at a quarter of the side, is under ``ref_budget_s``),
  and training images/s (forward, BCE + Dice, backward, AdamW step) at a small batch, with the peak
  extra resident memory of a step; inference (fused scan) and training once more under the opt-in
  CPU bf16 autocast (:func:`specmamba.inference.autocast`; rows with ``precision`` "bf16"), each
  timed in turns with its fp32 twin so that the pair's ratio survives the machine's drift. On a CPU
  without oneDNN's bf16 kernels (no AVX-512) the bf16 rows are skipped and the header says why.
  References: the official network with its scan swapped for pure-PyTorch ones on a 2-core CPU
  (paper configuration, 256x256, batch 1): 15.3 s sequential, 11.8 s with mambapy's parallel scan
  (the official CUDA kernel does not run on CPU at all).
* CUDA (``device="cuda"``): training images/s at batch 32 in fp32 and with bf16 autocast, their
  peak allocated memory (``torch.cuda.max_memory_allocated``, everything the process holds:
  weights, optimizer state, activations), inference latency at batch 1 and throughput at batch 32,
  all for ``cuda_model`` (``vmunet_deep``, the 44.27M configuration the official figures were
  measured with on one H100: 83.7 / 103.5 img/s, 25.0 GiB, 32.0 ms, 301 img/s).
* ``device="all"``: both sections (CUDA only where available).
* ``compare_to`` (``vmunet`` by default): when the CPU section's model is another one, the same CPU
  figures of that model are measured in the same run (fused ``cpu`` scan backend), followed by the
  ratios of the two (inference time and training speed of ``model`` over ``compare_to``'s), so a new
  architecture is always set against VM-UNet on the same machine and load.

References are printed only where the measurement matches their setting (model, 256x256, batch);
otherwise the row says so. Timings are medians (see :mod:`specmamba.bench.timing`); JSON output is
written atomically. The header reports the thread count and the load average: on a CPU shared with
other processes, OpenMP's default spin-waiting makes multi-threaded figures erratic (several times
slower); ``OMP_WAIT_POLICY=passive`` in the environment, or ``threads=1``, gives steadier ones.

Shape letters: B batch, C input channels, S image side.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from ..cpu_malloc import malloc_state
from ..engine.optimizer import build_optimizer
from ..errors import BackendUnavailableError, ConfigError
from ..inference import why_cpu_bf16_is_slow
from ..layers.scan_backend import scan_modules
from ..losses import build_criterion
from ..models import create_model
from ..models.interface import valid_input_size
from ..ops import BACKENDS, available_backends
from .peak import UPDATE_FLOPS, gemm_peak, model_flops, rate
from .timing import format_table, peak_extra_bytes, publish, synchronize, time_interleaved, time_ms

__all__ = ["REFERENCE", "bench_model"]

#: Figures of the official VM-UNet code (REFERENCE.md section 2), each with the setting it holds for.
REFERENCE: dict[str, dict[str, Any]] = {
    "cpu_infer_s": {
        "model": "vmunet",
        "img_size": 256,
        "batch": 1,
        "value": 15.3,
        "alt": 11.8,
        "note": "official code, 2-core CPU, sequential PyTorch scan (mambapy pscan: 11.8 s)",
    },
    "cuda_train_fp32_img_s": {
        "model": "vmunet_deep",
        "img_size": 256,
        "batch": 32,
        "value": 83.7,
        "note": "official code + CUDA scan, H100",
    },
    "cuda_train_bf16_img_s": {
        "model": "vmunet_deep",
        "img_size": 256,
        "batch": 32,
        "value": 103.5,
        "note": "official code + CUDA scan, H100, bf16 autocast",
    },
    "cuda_train_fp32_peak_gib": {
        "model": "vmunet_deep",
        "img_size": 256,
        "batch": 32,
        "value": 25.0,
        "note": "official code + CUDA scan, H100",
    },
    "cuda_infer_b1_ms": {
        "model": "vmunet_deep",
        "img_size": 256,
        "batch": 1,
        "value": 32.0,
        "note": "official code + CUDA scan, H100 (1967 ms with the sequential scan)",
    },
    "cuda_infer_img_s": {
        "model": "vmunet_deep",
        "img_size": 256,
        "batch": 32,
        "value": 301.0,
        "note": "official code + CUDA scan, H100",
    },
}

_GIB = 2.0**30


def _row(
    section: str,
    figure: str,
    value: float,
    unit: str,
    *,
    higher_is_better: bool,
    key: str | None = None,
    setting: tuple[str, int, int] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One result row; the reference ``key`` counts only for its own (model, img_size, batch) ``setting``.

    ``better_by`` > 1 means specmamba is better (faster, or less memory) than the reference.
    """
    ref = REFERENCE[key] if key else None
    applies = ref is not None and (ref["model"], ref["img_size"], ref["batch"]) == setting
    note = None
    if ref is not None:
        note = (
            ref["note"]
            if applies
            else f"reference is for {ref['model']}, {ref['img_size']}px, batch {ref['batch']}"
        )
    better = None
    if applies and value:
        better = value / ref["value"] if higher_is_better else ref["value"] / value
    return {
        "section": section,
        "figure": figure,
        "value": value,
        "unit": unit,
        "reference": ref["value"] if applies else None,
        "reference_note": note,
        "better_by": better,
        **extra,
    }


def _train_step(model: torch.nn.Module, x: Tensor, masks: Tensor, amp: bool) -> Callable[[], None]:
    """One optimisation step (forward, BCE + Dice through the trainer's criterion, so deep-supervision
    outputs count as in training, backward, AdamW), with bf16 autocast if ``amp``."""
    criterion = build_criterion(
        "bce_dice", model.num_classes, aux_weighting=getattr(model, "aux_weighting", None)
    ).to(x.device)
    optimizer = build_optimizer(model, criterion, "adamw", lr=1e-3, weight_decay=1e-2)  # the trainer's
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            output = model(x)
        criterion(output, masks).total.backward()  # the losses compute in float32
        optimizer.step()

    return step


def _infer(model: torch.nn.Module, x: Tensor, amp: bool = False) -> Callable[[], None]:
    def call() -> None:
        with torch.no_grad(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            model(x)

    return call


def _inputs(model: torch.nn.Module, batch: int, img_size: int, device: torch.device) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, model.in_chans, img_size, img_size, generator=gen)  # (B, C, S, S)
    masks = (torch.rand(batch, img_size, img_size, generator=gen) > 0.5).long()  # (B, S, S) labels
    return x.to(device), masks.to(device)


def _bench_cpu(
    model_name: str,
    img_size: int,
    batch: int,
    train_batch: int,
    backends: Sequence[str],
    repeats: int,
    ref_budget_s: float,
    peak: dict[str, Any] | None = None,
    bf16: bool = True,
) -> list[dict[str, Any]]:
    """The CPU rows of ``model_name``: inference per backend, training; bf16 autocast rows if ``bf16``."""
    dev = torch.device("cpu")
    torch.manual_seed(0)
    model = create_model(model_name).eval()
    x, _ = _inputs(model, batch, img_size, dev)
    setting = (model_name, img_size, batch)
    infer_flops = model_flops(model, x)  # per batch (see peak.py for what is counted)
    rows = []
    bf16_s = None
    for backend in backends:
        model.set_scan_backend(backend)
        label = f"inference, s per {img_size}x{img_size} image (batch {batch}), scan backend {backend}"
        estimated = False
        if backend == "ref":
            # One forward at a quarter of the side, scaled by the area (every layer is linear in it).
            small = valid_input_size(model, max(img_size // 4, model.input_multiple))
            xs, _ = _inputs(model, batch, small, dev)
            small_s = time_ms(_infer(model, xs), dev, repeats=1, warmup=0).median_ms / 1e3
            estimate_s = small_s * (img_size / small) ** 2
            if estimate_s > ref_budget_s:
                seconds, estimated = estimate_s, True
            else:
                seconds = time_ms(_infer(model, x), dev, repeats=1, warmup=0).median_ms / 1e3
        elif backend == "cpu" and bf16:  # with the opt-in CPU bf16 autocast (inference.autocast), in turns
            calls = [_infer(model, x), _infer(model, x, amp=True)]
            seconds, bf16_s = (t.median_ms / 1e3 for t in time_interleaved(calls, dev, repeats, warmup=1))
        else:
            seconds = time_ms(_infer(model, x), dev, repeats=repeats, warmup=1).median_ms / 1e3
        rows.append(
            _row(
                "cpu",
                label,
                seconds / batch,
                "s",
                higher_is_better=False,
                key="cpu_infer_s",
                setting=setting,
                backend=backend,
                estimated=estimated,
                model=model_name,
                precision="fp32",
                **_flop_fields(infer_flops, seconds, peak),
            )
        )
    if bf16_s is not None:
        rows.append(
            _row(
                "cpu",
                f"inference, s per {img_size}x{img_size} image (batch {batch}), scan backend cpu, "
                "bf16 autocast",
                bf16_s / batch,
                "s",
                higher_is_better=False,
                key="cpu_infer_s",
                setting=setting,
                backend="cpu",
                estimated=False,
                model=model_name,
                precision="bf16",
                **_flop_fields(infer_flops, bf16_s, peak),
            )
        )
    model.set_scan_backend("auto")
    xt, masks = _inputs(model, train_batch, img_size, dev)
    train_flops = model_flops(model, xt, backward=True)  # in train mode: auxiliary heads count
    precisions = (False, True) if bf16 else (False,)
    steps = [_train_step(model, xt, masks, amp=amp) for amp in precisions]  # fp32, bf16: in turns
    timings = time_interleaved(steps, dev, repeats, warmup=1)
    for amp, step, timing in zip(precisions, steps, timings):
        mem = peak_extra_bytes(step, dev)
        tag = "bf16 autocast" if amp else "fp32"
        rows.append(
            _row(
                "cpu",
                f"training, images/s (batch {train_batch}, {tag}, AdamW step)",
                train_batch / (timing.median_ms / 1e3),
                "img/s",
                higher_is_better=True,
                backend="auto",
                peak_extra_gib=mem / _GIB if mem is not None else None,
                model=model_name,
                precision="bf16" if amp else "fp32",
                **_flop_fields(train_flops, timing.median_ms / 1e3, peak),
            )
        )
    return rows


def _flop_fields(flops: float, seconds: float, peak: dict[str, Any] | None) -> dict[str, Any]:
    """A row's FLOPs, GFLOP/s and share of the run's GEMM peak."""
    gflops, peak_share = rate(flops, seconds, peak)
    return {"gflop": flops / 1e9, "gflops": gflops, "peak_share": peak_share}


def _ratio_rows(rows: list[dict[str, Any]], model: str, other: str) -> list[dict[str, Any]]:
    """``model``'s fused-scan inference time and training speed over ``other``'s, from one run's rows."""

    def pick(name: str, unit: str) -> float:
        return next(
            r["value"]
            for r in rows
            if r["model"] == name
            and r["unit"] == unit
            and r.get("backend") in ("cpu", "auto")
            and r.get("precision") == "fp32"
        )

    return [
        _row(
            "cpu",
            f"inference time of {model} / {other} (same run)",
            pick(model, "s") / pick(other, "s"),
            "x",
            higher_is_better=False,
        ),
        _row(
            "cpu",
            f"training speed of {model} / {other} (same run)",
            pick(model, "img/s") / pick(other, "img/s"),
            "x",
            higher_is_better=True,
        ),
    ]


def _bench_accelerator(
    model_name: str,
    img_size: int,
    batch: int,
    backends: Sequence[str],
    repeats: int,
    dev: torch.device,
) -> list[dict[str, Any]]:
    """The CUDA section: training (fp32, bf16) and inference of ``model_name`` at ``batch``.

    Runs on any device so that its logic is tested on CPU; peak memory rows only on CUDA, where
    ``max_memory_allocated`` counts everything the process holds (weights, optimizer state,
    activations), as the official figure does.
    """
    on_cuda = dev.type == "cuda"
    rows = []
    for backend in backends:
        torch.manual_seed(0)
        model = create_model(model_name, scan_backend=backend).to(dev)
        for amp in (False, True):
            x, masks = _inputs(model, batch, img_size, dev)
            step = _train_step(model, x, masks, amp)
            time_ms(step, dev, repeats=1, warmup=3)  # compile the kernels, settle the allocator
            if on_cuda:
                synchronize(dev)
                torch.cuda.reset_peak_memory_stats(dev)
            timing = time_ms(step, dev, repeats=repeats, warmup=0)
            tag = "bf16" if amp else "fp32"
            setting = (model_name, img_size, batch)
            rows.append(
                _row(
                    "cuda",
                    f"training, images/s (batch {batch}, {tag})",
                    batch / (timing.median_ms / 1e3),
                    "img/s",
                    higher_is_better=True,
                    key=f"cuda_train_{tag}_img_s",
                    setting=setting,
                    backend=backend,
                )
            )
            if on_cuda:
                rows.append(
                    _row(
                        "cuda",
                        f"training peak memory, GiB (batch {batch}, {tag})",
                        torch.cuda.max_memory_allocated(dev) / _GIB,
                        "GiB",
                        higher_is_better=False,
                        key=None if amp else "cuda_train_fp32_peak_gib",
                        setting=setting,
                        backend=backend,
                    )
                )
            del step, x, masks
        model.eval()
        x1, _ = _inputs(model, 1, img_size, dev)
        timing = time_ms(_infer(model, x1), dev, repeats=max(repeats, 20), warmup=3)
        rows.append(
            _row(
                "cuda",
                "inference latency, ms (batch 1, fp32)",
                timing.median_ms,
                "ms",
                higher_is_better=False,
                key="cuda_infer_b1_ms",
                setting=(model_name, img_size, 1),
                backend=backend,
            )
        )
        xb, _ = _inputs(model, batch, img_size, dev)
        timing = time_ms(_infer(model, xb), dev, repeats=repeats, warmup=3)
        rows.append(
            _row(
                "cuda",
                f"inference throughput, images/s (batch {batch}, fp32)",
                batch / (timing.median_ms / 1e3),
                "img/s",
                higher_is_better=True,
                key="cuda_infer_img_s",
                setting=(model_name, img_size, batch),
                backend=backend,
            )
        )
        del model, x1, xb
        if on_cuda:
            torch.cuda.empty_cache()
    return rows


def bench_model(
    model: str = "vmunet",
    device: str = "cpu",
    batch: int | None = None,
    img_size: int = 256,
    json_path: str | os.PathLike[str] | None = None,
    *,
    cuda_model: str | None = "vmunet_deep",
    compare_to: str | None = "vmunet",
    train_batch: int | None = None,
    backends: Sequence[str] | None = None,
    repeats: int | None = None,
    ref_budget_s: float = 60.0,
    threads: int | None = None,
    verbose: bool = True,
) -> dict:
    """Benchmark a VM-UNet variant; print the table, return ``{"meta": ..., "rows": [...]}``.

    Args:
        model: registry name for the CPU section (any model with selective-scan layers).
        device: ``cpu``, ``cuda`` or ``all`` (CPU, then CUDA where available).
        batch: inference batch on CPU (default 1); training and throughput batch on CUDA (default 32).
        img_size: square input side (a size the model accepts).
        json_path: also write the result there (atomically) as JSON.
        cuda_model: model of the CUDA section (default ``vmunet_deep``, the setting of the official
            figures); None = ``model``.
        compare_to: a second model whose CPU figures are measured in the same run, with the ratios
            (default ``vmunet``; None, or ``model`` itself, for none).
        train_batch: CPU training batch (default 2).
        backends: scan backends to time; CPU default ``cpu`` and ``ref``, CUDA default ``auto``.
        repeats: timed calls per figure (median; default 3 on CPU, 10 on CUDA).
        ref_budget_s: run the sequential ``ref`` scan on CPU only when its estimate is below this.
        threads: CPU threads (``torch.set_num_threads``) during the run, restored afterwards; None = the
            current setting. On a shared machine 1 thread often gives steadier figures.
        verbose: print the table.

    Rows hold ``value`` and ``unit``, the official ``reference`` (None where the setting differs) and
    ``better_by`` (> 1: specmamba is better, i.e. faster or smaller). Raises ConfigError for bad
    arguments, BackendUnavailableError for ``device="cuda"`` without CUDA.
    """
    if device not in ("cpu", "cuda", "all"):
        raise ConfigError(f"bench model: device must be 'cpu', 'cuda' or 'all'; got {device!r}.")
    if device == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError(
            "bench model --device cuda: CUDA is not available here; use --device cpu."
        )
    for name, value in (
        ("batch", batch),
        ("train_batch", train_batch),
        ("repeats", repeats),
        ("threads", threads),
    ):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"bench model: {name} must be a positive integer; got {value!r}.")
    bad = [b for b in backends or () if b not in BACKENDS]
    if bad:
        raise ConfigError(f"bench model: backends must be among {', '.join(BACKENDS)}; got {bad}.")
    cuda_model = cuda_model or model
    probe = create_model(model)
    if not scan_modules(probe):
        raise ConfigError(
            f"bench model: {model!r} has no selective scan to benchmark; use a VM-UNet variant."
        )
    if valid_input_size(probe, img_size) != img_size:
        raise ConfigError(
            f"bench model: img_size {img_size} does not fit {model} (multiples of {probe.input_multiple}); "
            f"use {valid_input_size(probe, img_size)}."
        )
    del probe
    if compare_to not in (None, model):
        other = create_model(compare_to)
        if not scan_modules(other) or valid_input_size(other, img_size) != img_size:
            raise ConfigError(
                f"bench model: compare_to {compare_to!r} must be a model with selective-scan layers that "
                f"takes {img_size}x{img_size} inputs (e.g. vmunet)."
            )
        del other
    run_cpu = device in ("cpu", "all")
    run_cuda = device == "cuda" or (device == "all" and torch.cuda.is_available())
    cpu_backends = list(backends) if backends else ["cpu", "ref"]
    missing = [b for b in cpu_backends if b != "auto" and b not in available_backends("cpu")]
    if run_cpu and missing:
        from ..ops import resolve_backend

        resolve_backend(missing[0], "cpu")  # raises with the reason and the fix
    meta: dict[str, Any] = {
        "model": model,
        "compare_to": compare_to if run_cpu and compare_to not in (None, model) else None,
        "cuda_model": cuda_model if run_cuda else None,
        "img_size": img_size,
        "threads": threads or torch.get_num_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "repeats": {"cpu": repeats or 3, "cuda": repeats or 10},
        "gpu": torch.cuda.get_device_name() if run_cuda else None,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_malloc": malloc_state(),
    }
    slow_bf16 = why_cpu_bf16_is_slow()
    if run_cpu and slow_bf16:
        meta["cpu_bf16"] = f"bf16 rows skipped: {slow_bf16}"
    if device == "all" and not run_cuda:
        meta["cuda"] = "not available: CUDA section skipped"
    rows: list[dict[str, Any]] = []
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        if run_cpu:
            peak = meta["gemm"] = gemm_peak("cpu")
            rows += _bench_cpu(
                model,
                img_size,
                batch or 1,
                train_batch or 2,
                cpu_backends,
                repeats or 3,
                ref_budget_s,
                peak,
                bf16=not slow_bf16,
            )
            if meta["compare_to"] and "cpu" in cpu_backends:
                rows += _bench_cpu(
                    compare_to,
                    img_size,
                    batch or 1,
                    train_batch or 2,
                    ["cpu"],
                    repeats or 3,
                    ref_budget_s,
                    peak,
                    bf16=not slow_bf16,
                )
                rows += _ratio_rows(rows, model, compare_to)
        if run_cuda:
            cuda_backends = list(backends) if backends else ["auto"]
            rows += _bench_accelerator(
                cuda_model, img_size, batch or 32, cuda_backends, repeats or 10, torch.device("cuda")
            )
    finally:
        torch.set_num_threads(before)
    result = {"meta": meta, "rows": rows}
    publish(result, render, verbose, json_path)
    return result


def render(result: dict) -> str:
    """The console table of a :func:`bench_model` result."""
    meta = result["meta"]
    head = (
        f"model benchmark: {meta['model']} (CPU)"
        + (f", {meta['cuda_model']} on {meta['gpu']}" if meta.get("gpu") else "")
        + f", {meta['img_size']}x{meta['img_size']}, {meta['threads']} CPU threads, torch {meta['torch']}"
    )
    if meta.get("load_average"):
        head += ", load average " + " ".join(f"{v:.2f}" for v in meta["load_average"])
    if meta.get("cuda"):
        head += f"\nCUDA {meta['cuda']}"
    if meta.get("cpu_bf16"):
        head += f"\nCPU {meta['cpu_bf16']}"
    if meta.get("cpu_malloc"):
        head += f"\nCPU malloc: {meta['cpu_malloc']}"
    gemm = meta.get("gemm")
    if gemm:
        head += (
            f"\nCPU peak (same run): fp32 GEMM {gemm['side']}^3 in {gemm['ms']:.2f} ms = "
            f"{gemm['gflops']:.0f} GFLOP/s; model GFLOP/s = aten FLOPs + {UPDATE_FLOPS} per scan state "
            "update (training: 3x the forward)"
        )

    table = []
    for r in result["rows"]:
        value = r["value"]
        shown = (
            f"~{value:.3g} (estimated, not run)"
            if r.get("estimated")
            else (f"{value:.3g}" if isinstance(value, float) else str(value))
        )
        ref = f"{r['reference']:.3g}" if r["reference"] is not None else "-"
        better = f"{r['better_by']:.2f}x" if r["better_by"] is not None else "-"
        note = r["reference_note"] or ""
        if r.get("peak_extra_gib") is not None:
            note = f"peak extra RSS {r['peak_extra_gib']:.2f} GiB" + (f"; {note}" if note else "")
        if r.get("gflops") is not None and not r.get("estimated"):
            pct = f", {100 * r['peak_share']:.1f}% of peak" if r.get("peak_share") is not None else ""
            note = f"{r['gflops']:.1f} GFLOP/s{pct}" + (f"; {note}" if note else "")
        figure = f"{r['model']}: {r['figure']}" if meta.get("compare_to") and "model" in r else r["figure"]
        table.append([r["section"], figure, f"{shown} {r['unit']}", ref, better, note])
    header = ["device", "figure", "specmamba", "official", "better by", "reference / notes"]
    return head + "\n" + format_table(table, header)
