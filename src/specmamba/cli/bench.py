"""``specmamba bench``: benchmarks from the command line (a thin shim over :mod:`specmamba.bench`).

``specmamba bench scan [--device cpu|cuda] [--batch B] [--backends ref,cpu] [--stages 1,2] [--json OUT]``
prints the selective-scan table of :func:`specmamba.bench.bench_scan`;
``specmamba bench model [--model vmunet] [--device cpu|cuda|all] [--json OUT]`` the whole-model table of
:func:`specmamba.bench.bench_model`; ``specmamba bench kernels [--sm 90] [--json OUT]`` the static report
of the Triton scan kernels of :func:`specmamba.bench.bench_kernels` (no GPU needed). Each optionally
writes its results as JSON.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import comma_list

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bench`` command (with its ``scan`` subcommand) to the main CLI's subparsers."""
    bench = subparsers.add_parser("bench", help="benchmark the selective scan and whole models")
    sub = bench.add_subparsers(dest="bench_command", metavar="{scan,model,kan,kernels}", required=True)
    scan = sub.add_parser(
        "scan",
        help="time every selective-scan backend at the VM-UNet stage shapes",
        description="Forward ms, forward+backward ms, peak extra memory, effective bandwidth and speed-up "
        "over the sequential reference, for each available backend at the four VM-UNet stage shapes and "
        "vim_tiny's bidirectional ones.",
    )
    scan.add_argument(
        "--device", choices=["cpu", "cuda"], default="cpu", help="device to benchmark (default cpu)"
    )
    scan.add_argument("--batch", type=int, default=None, help="batch size (default 1 on cpu, 8 on cuda)")
    scan.add_argument(
        "--backends",
        type=comma_list(str),
        default=None,
        help="comma-separated backends, e.g. ref,cpu,chunked (default: all available but chunked)",
    )
    scan.add_argument(
        "--stages",
        type=comma_list(_stage),
        default=None,
        help="comma-separated stages: VM-UNet's 1-4 and Vim's vim196, vim1024 (default all)",
    )
    scan.add_argument(
        "--repeats", type=int, default=None, help="timed calls per figure (default 3 cpu / 20 cuda)"
    )
    scan.add_argument(
        "--ref-budget",
        type=float,
        default=60.0,
        help="time the sequential ref only where its estimate is below this many seconds",
    )
    scan.add_argument("--no-ss2d", action="store_true", help="skip the fused SS2D vs composition comparison")
    scan.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    scan.set_defaults(func=run)

    model = sub.add_parser(
        "model",
        help="time a whole model: CPU inference and training, and on CUDA training/inference throughput",
        description="CPU inference seconds per image (batch 1) and training images/s; on CUDA, training "
        "images/s in fp32 and bf16 autocast, batch-1 latency, batch throughput and peak memory, each next "
        "to the official implementation's figures of REFERENCE.md.",
    )
    model.add_argument(
        "--model", default="vmunet", help="registered model for the CPU section (default vmunet)"
    )
    model.add_argument(
        "--cuda-model", default="vmunet_deep", help="model of the CUDA section (default vmunet_deep)"
    )
    model.add_argument(
        "--compare-to",
        default="vmunet",
        help="second model timed on CPU in the same run, with the ratios (default vmunet; 'none' for none)",
    )
    model.add_argument("--device", choices=["cpu", "cuda", "all"], default="cpu")
    model.add_argument("--batch", type=int, default=None, help="CPU inference batch (1) / CUDA batch (32)")
    model.add_argument("--train-batch", type=int, default=None, help="CPU training batch (default 2)")
    model.add_argument("--img-size", type=int, default=256)
    model.add_argument(
        "--backends", type=comma_list(str), default=None, help="scan backends to time, e.g. cpu,ref"
    )
    model.add_argument("--repeats", type=int, default=None, help="timed calls per figure")
    model.add_argument("--threads", type=int, default=None, help="CPU threads during the run")
    model.add_argument(
        "--ref-budget",
        type=float,
        default=60.0,
        help="time the sequential ref scan only where its estimate is below this many seconds",
    )
    model.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    model.set_defaults(func=run)

    kan = sub.add_parser(
        "kan",
        help="time the batched KAN convolution against the per-channel-pair loop of public KAN convs",
        description="KANConv2d (one KANLinear over unfolded patches) against the loop over every (output, "
        "input) channel pair that public KAN convolutions run, on the same weights (outputs checked first).",
    )
    kan.add_argument("--batch", type=int, default=2)
    kan.add_argument("--channels", type=int, default=16, help="input channels (default 16)")
    kan.add_argument("--out-channels", type=int, default=16, help="output channels (default 16)")
    kan.add_argument("--size", type=int, default=32, help="map side (default 32)")
    kan.add_argument("--repeats", type=int, default=3)
    kan.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    kan.set_defaults(func=run)

    kernels = sub.add_parser(
        "kernels",
        help="compile the Triton scan kernels for a GPU (no GPU needed): registers, spills, instruction mix",
        description="Compile the Triton selective-scan kernels ahead of time for an NVIDIA architecture and "
        "report registers per thread, spill bytes and the instruction mix of their main loop per state "
        "value and step. Instruction counts, not timings: `bench scan --device cuda` times them.",
    )
    kernels.add_argument("--sm", type=int, default=90, help="compute capability x10 (default 90 = H100)")
    kernels.add_argument(
        "--dtype", choices=["fp32", "bf16", "fp16"], default="fp32", help="dtype of the input tensors"
    )
    kernels.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    kernels.set_defaults(func=run)


def _stage(text: str) -> int | str:
    """A ``--stages`` entry: VM-UNet's stages are numbers, Vim's names."""
    return int(text) if text.isdigit() else text


def run(args: argparse.Namespace) -> int:
    """Run the benchmark selected by ``args.bench_command``; returns the exit status."""
    if args.bench_command == "scan":
        from ..bench.scan import bench_scan

        bench_scan(
            device=args.device,
            batch=args.batch,
            backends=args.backends,
            stages=args.stages,
            repeats=args.repeats,
            json_path=args.json,
            ref_budget_s=args.ref_budget,
            ss2d=not args.no_ss2d,
        )
        return 0
    if args.bench_command == "model":
        from ..bench.model import bench_model

        bench_model(
            model=args.model,
            device=args.device,
            batch=args.batch,
            img_size=args.img_size,
            json_path=args.json,
            cuda_model=args.cuda_model,
            compare_to=None if args.compare_to.lower() == "none" else args.compare_to,
            train_batch=args.train_batch,
            backends=args.backends,
            repeats=args.repeats,
            ref_budget_s=args.ref_budget,
            threads=args.threads,
        )
        return 0
    if args.bench_command == "kan":
        from ..bench.kan_conv import bench_kan_conv

        bench_kan_conv(
            batch=args.batch,
            channels=args.channels,
            out_channels=args.out_channels,
            size=args.size,
            repeats=args.repeats,
            json_path=args.json,
        )
        return 0
    if args.bench_command == "kernels":
        from ..bench.kernels import bench_kernels

        bench_kernels(sm=args.sm, ptr_dtype=args.dtype, json_path=args.json)
        return 0
    raise SystemExit(f"specmamba bench: unknown benchmark {args.bench_command!r}")
