"""``specmamba models [FILTER]``: registered models with parameter counts."""

from __future__ import annotations

import argparse

from ..models.registry import create_model, list_models


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list registered models with parameter counts")
    parser.add_argument("filter", nargs="?", default="", help="fnmatch pattern, e.g. '*unet*'")
    parser.add_argument("--in-chans", type=int, default=3)
    parser.add_argument("--num-classes", type=int, default=1)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    names = list_models(args.filter)
    if not names:
        print(f"no registered model matches {args.filter!r}; all models: {', '.join(list_models())}")
        return 1
    width = max(len(n) for n in names)
    print(f"{'model':<{width}}  parameters ({args.in_chans} -> {args.num_classes} channels)")
    for name in names:
        model = create_model(name, in_chans=args.in_chans, num_classes=args.num_classes)
        count = sum(p.numel() for p in model.parameters())
        print(f"{name:<{width}}  {count:>12,}  ({count / 1e6:.2f}M)")
    return 0
