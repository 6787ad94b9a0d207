"""``specmamba synth OUT --n N --size S --seed K``: write a synthetic lesion dataset."""

from __future__ import annotations

import argparse

from ..data import make_synthetic_dataset


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("synth", help="write a synthetic dermoscopy-like lesion dataset")
    parser.add_argument("out", help="output folder (gets images/ and masks/)")
    parser.add_argument("--n", type=int, default=200, help="number of image/mask pairs (default 200)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--num-classes",
        type=int,
        default=1,
        help="1: binary lesion masks (0/255); 3: label maps 0 skin, 1 lesion, 2 lesion core",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty folder")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = make_synthetic_dataset(
        args.out,
        n=args.n,
        size=args.size,
        seed=args.seed,
        overwrite=args.overwrite,
        num_classes=args.num_classes,
    )
    classes = "" if args.num_classes == 1 else f", {args.num_classes} classes"
    setting = f"{args.size}x{args.size}, seed {args.seed}{classes}"
    print(f"wrote {args.n} synthetic image/mask pairs ({setting}) to {out}")
    return 0
