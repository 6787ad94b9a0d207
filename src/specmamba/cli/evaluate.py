"""``specmamba evaluate``: per-case metrics of a checkpoint on a labelled split."""

from __future__ import annotations

import argparse

from ..engine.evaluator import evaluate
from . import add_inference_flags, inference_kwargs

REPORTED = ("dice", "iou", "bf1", "hd95")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evaluate", help="score a checkpoint on a labelled split")
    parser.add_argument("--checkpoint", required=True, help="checkpoint_best.pt or checkpoint_last.pt")
    parser.add_argument("--data", required=True, help="folder of image/mask pairs")
    parser.add_argument("--split", default="val", help="train, val, test or all (default val)")
    parser.add_argument("--out", help="output folder (default: <checkpoint folder>/eval_<split>)")
    add_inference_flags(parser)
    parser.add_argument("--allow-unpaired", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    summary = evaluate(
        args.checkpoint,
        args.data,
        split=args.split,
        out=args.out,
        allow_unpaired=args.allow_unpaired,
        **inference_kwargs(args),
    )
    print(
        f"{summary['n_cases']} cases of split {args.split!r} ({summary['n_empty_target']} with empty masks)"
    )
    for name in REPORTED:
        stats = summary["metrics"][name]
        print(f"  {name:<6} mean {stats['mean']:.4f}  std {stats['std']:.4f}  median {stats['median']:.4f}")
    print(f"per-case table and summary written to {summary['out']}")
    return 0
