"""``specmamba demo``: the whole pipeline on built-in synthetic data, on CPU."""

from __future__ import annotations

import argparse

from ..demo import DEMO_MODELS, run_demo


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="synthetic data -> train -> evaluate -> predict -> spectral audit, on CPU"
    )
    parser.add_argument("--out", default="specmamba-demo", help="demo folder (default ./specmamba-demo)")
    parser.add_argument("--n", type=int, default=240, help="synthetic image/mask pairs (default 240)")
    parser.add_argument("--size", type=int, default=128, help="image side (default 128)")
    parser.add_argument("--epochs", type=int, help="override the preset's epochs")
    parser.add_argument(
        "--model",
        action="append",
        dest="models",
        help=f"a model to train (repeat the flag; default {' and '.join(DEMO_MODELS)})",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-audit", dest="audit", action="store_false", help="skip the spectral audit")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-demo folder at --out")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = run_demo(
        args.out,
        n=args.n,
        size=args.size,
        epochs=args.epochs,
        models=args.models,
        seed=args.seed,
        progress=args.progress,
        overwrite=args.overwrite,
        audit=args.audit,
    )
    print(f"\nspecmamba demo finished in {result['seconds']} s")
    for name, trained in result["models"].items():
        dice, bf1 = trained["eval_dice_mean"], trained["eval_bf1_mean"]
        print(
            f"  {name:<12} validation Dice (best epoch) {trained['best_val_dice']:.4f}; evaluation "
            f"Dice / BF1 (val, original size) {dice:.4f} / {bf1:.4f}"
        )
        print(f"  {'':<12} run: {trained['run']}")
    print(f"  data:        {result['data']}")
    print(f"  predictions: {result['predictions']} (overlays: {result['overlays']})")
    if "audit" in result:
        print(f"  audit:       {result['audit_report']} ({result['audit_seconds']} s)")
    return 0
