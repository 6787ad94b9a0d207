"""``specmamba train``: train a model on a data folder into a run folder (DDP under torchrun)."""

from __future__ import annotations

import argparse
import json
import os

import yaml

from ..engine.config import resolve_config
from ..engine.trainer import resume_config, train
from ..losses import LOSS_NAMES

# Flags that map one-to-one onto TrainConfig fields; all default to None so that only flags actually
# given override the preset and the defaults.
CONFIG_FLAGS: tuple[tuple[str, type, str], ...] = (
    ("--data", str, "folder of image/mask pairs (any layout `specmamba` detects)"),
    ("--model", str, "registered model name (see `specmamba models`)"),
    ("--epochs", int, "number of epochs"),
    ("--batch-size", int, "images per step (per process under torchrun)"),
    ("--img-size", int, "square training size in pixels"),
    ("--lr", float, "peak learning rate"),
    ("--min-lr", float, "final learning rate of the cosine schedule"),
    ("--weight-decay", float, "weight decay"),
    ("--optimizer", str, "adamw or adam"),
    ("--warmup-epochs", float, "linear warmup length in epochs"),
    ("--loss", str, f"training loss: {', '.join(LOSS_NAMES)}"),
    ("--in-chans", int, "input channels (3 = RGB, 1 = grayscale)"),
    ("--num-classes", int, "1 = binary (one logit channel), K >= 2 = K classes incl. background"),
    ("--val-fraction", float, "share of cases held out for validation (seeded split)"),
    ("--max-train-cases", int, "train on the first N cases of the training split (a seeded subset)"),
    ("--split-seed", int, "seed of the train/val split (42 reproduces the audit protocol)"),
    ("--folds", int, "k-fold cross-validation: cut the seeded order into K parts (0: --val-fraction split)"),
    ("--fold", int, "which of the --folds parts validates (0..K-1)"),
    ("--seed", int, "seed of initialisation, shuffling and augmentation"),
    ("--normalization", str, "dataset (mean/std of the training split) or imagenet"),
    ("--device", str, "auto, cpu, cuda or cuda:N"),
    ("--workers", int, "data-loading worker processes"),
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model on a data folder",
        description="Train a segmentation model. Flags override the --config preset, which overrides "
        "the defaults; the resolved config is written to OUT/config.yaml.",
    )
    parser.add_argument("--out", required=True, help="run folder (checkpoints, metrics.csv, summary.json)")
    parser.add_argument("--config", help="YAML preset: a file, or the name of a shipped preset")
    for flag, kind, text in CONFIG_FLAGS:
        parser.add_argument(flag, type=kind, default=None, help=text)
    parser.add_argument(
        "--deterministic",
        action="store_true",
        default=None,
        help="use deterministic algorithms (slower on GPU)",
    )
    parser.add_argument(
        "--model-kwarg",
        dest="model_kwargs",
        metavar="KEY=VALUE",
        type=option_pair,
        action="append",
        default=None,
        help="model option, repeatable; VALUE is read as YAML (e.g. drop_path_rate=0.1, "
        "depths=[2,2,9,2], scan_backend=triton); merged into the preset's model_kwargs",
    )
    parser.add_argument(
        "--loss-kwarg",
        dest="loss_kwargs",
        metavar="KEY=VALUE",
        type=option_pair,
        action="append",
        default=None,
        help="loss option, repeatable; VALUE is read as YAML (e.g. dice_weight=0.5, aux_weight=0.2); "
        "merged into the preset's loss_kwargs",
    )
    amp = parser.add_mutually_exclusive_group()
    amp.add_argument(
        "--amp", dest="amp", action="store_true", default=None, help="bf16 autocast on CUDA (the default)"
    )
    amp.add_argument(
        "--no-amp",
        dest="amp",
        action="store_false",
        default=None,
        help="train in fp32 on CUDA instead of bf16 autocast",
    )
    parser.add_argument(
        "--allow-unpaired",
        action="store_true",
        default=None,
        help="skip images without masks and masks without images (with a warning)",
    )
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", default=None, help="no progress bars"
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    group.add_argument("--overwrite", action="store_true", help="replace a previous run in --out")
    parser.set_defaults(func=run)


def option_pair(text: str) -> tuple[str, object]:
    """argparse type of ``--model-kwarg`` / ``--loss-kwarg``: ``KEY=VALUE`` -> (KEY, VALUE read as YAML)."""
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(
            f"expected KEY=VALUE with KEY an option name (e.g. drop_path_rate=0.1); got {text!r}"
        )
    try:
        return key, yaml.safe_load(value)
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(f"{key}: {value!r} is not a YAML value") from None


def config_overrides(args: argparse.Namespace) -> dict:
    names = [flag[2:].replace("-", "_") for flag, _, _ in CONFIG_FLAGS]
    names += ["deterministic", "amp", "allow_unpaired", "progress"]
    overrides = {name: getattr(args, name) for name in names}
    for key in ("model_kwargs", "loss_kwargs"):
        overrides[key] = dict(getattr(args, key)) if getattr(args, key) else None
    return overrides


def run(args: argparse.Namespace) -> int:
    overrides = config_overrides(args)
    if args.resume:
        config = resume_config(args.out, **overrides)
    else:
        config = resolve_config(args.config, out=args.out, **overrides)
    summary = train(config, resume=args.resume, overwrite=args.overwrite)
    if os.environ.get("RANK", "0") == "0":
        print(
            json.dumps(
                {k: summary[k] for k in ("best_epoch", "best_val_dice", "best_val_iou", "checkpoint_best")},
                indent=2,
            )
        )
    return 0
