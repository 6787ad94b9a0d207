"""``specmamba demo``: the whole pipeline on built-in synthetic data, on CPU."""

from __future__ import annotations

import argparse

from ..engine.demo import run_demo


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="synthetic data -> train -> evaluate -> predict, on CPU")
    parser.add_argument("--out", default="specmamba-demo", help="demo folder (default ./specmamba-demo)")
    parser.add_argument("--n", type=int, default=240, help="synthetic image/mask pairs (default 240)")
    parser.add_argument("--size", type=int, default=128, help="image side (default 128)")
    parser.add_argument("--epochs", type=int, help="override the preset's epochs")
    parser.add_argument("--model", help="override the preset's model (default unet_small)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace a non-demo folder at --out")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = run_demo(
        args.out,
        n=args.n,
        size=args.size,
        epochs=args.epochs,
        model=args.model,
        seed=args.seed,
        progress=args.progress,
        overwrite=args.overwrite,
    )
    print(f"\nspecmamba demo finished in {result['seconds']} s")
    print(f"  validation Dice (best epoch): {result['best_val_dice']:.4f}")
    print(
        f"  evaluation Dice / BF1 (val, original size): {result['eval_dice_mean']:.4f} / "
        f"{result['eval_bf1_mean']:.4f}"
    )
    for key in ("data", "run", "checkpoint", "release", "evaluation", "predictions", "overlays"):
        print(f"  {key + ':':<12} {result[key]}")
    return 0
