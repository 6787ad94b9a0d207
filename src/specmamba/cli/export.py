"""``specmamba export``: a checkpoint as one ONNX or torch.export file that runs without specmamba."""

from __future__ import annotations

import argparse

from ..engine.export import FORMATS, VERIFY_RTOL, export_checkpoint
from . import int_at_least


def _chunk(text: str) -> int | None:
    """--chunk-length: a whole number >= 1, or 'auto' (None)."""
    return None if text == "auto" else int_at_least(1)(text)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="export a checkpoint to ONNX or torch.export (runs without specmamba)"
    )
    parser.add_argument("--checkpoint", required=True, help="checkpoint_best.pt or checkpoint_last.pt")
    parser.add_argument("--out", required=True, help="folder for model.onnx / model.pt2 and export.json")
    parser.add_argument(
        "--format", choices=list(FORMATS), default="onnx", help="onnx (onnxruntime; default) or torch-export"
    )
    parser.add_argument(
        "--chunk-length",
        type=_chunk,
        default=None,
        help="chunk length of the exported scan (default auto: the power of two nearest sqrt(length))",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="run the exported file beside the package on 3 inputs; fail if logits differ by more than "
        f"{VERIFY_RTOL:g} of the largest logit (at least {VERIFY_RTOL:g})",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an export already in --out")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    meta = export_checkpoint(
        args.checkpoint,
        args.out,
        fmt=args.format,
        chunk=args.chunk_length,
        verify=args.verify,
        overwrite=args.overwrite,
    )
    shape = "x".join(str(v) for v in meta["input"]["shape"])
    print(
        f"wrote {meta['out']}/{meta['file']} ({meta['model_name']}, input {shape}) and "
        f"{meta['out']}/export.json"
    )
    if "verify" in meta:
        check = meta["verify"]
        verdict = "ok" if check["passed"] else f"FAILED: above the tolerance {check['tolerance']:.3g}"
        print(
            f"verify: largest logit difference {check['max_abs_diff']:.3g} over {check['n_inputs']} inputs, "
            f"tolerance {check['tolerance']:.3g} ({verdict})"
        )
        return 0 if check["passed"] else 1
    return 0
