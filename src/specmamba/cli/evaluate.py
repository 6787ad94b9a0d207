"""``specmamba evaluate``: per-case metrics of a checkpoint on a labelled split."""

from __future__ import annotations

import argparse

from ..engine.evaluator import evaluate
from . import add_ensemble_flags, add_inference_flags, ensemble_kwargs, inference_kwargs

REPORTED = ("dice", "iou", "bf1", "hd95")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evaluate", help="score a checkpoint on a labelled split")
    add_ensemble_flags(parser)
    parser.add_argument("--data", required=True, help="folder of image/mask pairs")
    parser.add_argument("--split", default="val", help="train, val, test or all (default val)")
    parser.add_argument(
        "--out", help="output folder (default: <first checkpoint's folder>/eval_<split>[_tta][_ensembleN])"
    )
    add_inference_flags(parser)
    parser.add_argument("--allow-unpaired", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    summary = evaluate(
        data=args.data,
        split=args.split,
        out=args.out,
        allow_unpaired=args.allow_unpaired,
        **ensemble_kwargs(args),
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
