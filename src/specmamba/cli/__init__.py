"""The ``specmamba`` command: thin argparse shims over importable functions.

Each module here adds one subcommand through ``register(subparsers)`` and runs it through
``run(args) -> int``; the work itself lives in importable functions (engine, data, bench).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from ..engine.sliding_window import AUTO_LENGTH, SLIDING_MODES


def int_at_least(minimum: int) -> Callable[[str], int]:
    """argparse type for a whole number >= ``minimum`` (argparse names the flag in its error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def add_inference_flags(parser: argparse.ArgumentParser) -> None:
    """The flags shared by the commands that run a trained model over a folder."""
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--batch-size", type=int_at_least(1), default=8, help="images per forward pass")
    parser.add_argument("--workers", type=int_at_least(0), default=0, help="data-loading worker processes")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def add_ensemble_flags(parser: argparse.ArgumentParser) -> None:
    """--checkpoint (repeatable: an ensemble), --tta, --threshold and the sliding-window flags, shared by
    predict and evaluate."""
    parser.add_argument(
        "--checkpoint",
        required=True,
        action="append",
        help="checkpoint_best.pt or checkpoint_last.pt of specmamba train; repeat it to ensemble several "
        "(they must agree on classes, input channels and training size)",
    )
    parser.add_argument(
        "--tta",
        action="store_true",
        help="test-time augmentation: nnU-Net's flips (none, left-right, up-down, both), averaged in "
        "probability space with the ensemble's members",
    )
    parser.add_argument(
        "--threshold", type=float, help="foreground probability threshold of a binary model (default 0.5)"
    )
    parser.add_argument(
        "--sliding-window",
        choices=SLIDING_MODES,
        default="auto",
        help="cover each image with training-size windows, Gaussian-blended: on, off (resize the whole "
        "image, as in training) or auto (default: windows only where the image, at the working scale, is "
        f"{AUTO_LENGTH:g} windows long or more, i.e. aspect ratio >= {AUTO_LENGTH:g} at --sw-scale 1)",
    )
    parser.add_argument(
        "--sw-overlap", type=float, default=0.5, help="fraction of a window shared by neighbours (0.5)"
    )
    parser.add_argument(
        "--sw-scale",
        type=_window_scale,
        default=1.0,
        help="the image's shorter side, in windows, before the windows slide (default 1: the scale of "
        "training); 'native' slides over the image at its own resolution",
    )


def ensemble_kwargs(args: argparse.Namespace) -> dict:
    """The ensemble flags as predict's / evaluate's keywords (one checkpoint stays a single path)."""
    checkpoints = args.checkpoint
    return {
        "checkpoint": checkpoints[0] if len(checkpoints) == 1 else checkpoints,
        "tta": args.tta,
        "threshold": args.threshold,
        "sliding_window": args.sliding_window,
        "sw_overlap": args.sw_overlap,
        "sw_scale": args.sw_scale,
    }


def _window_scale(text: str) -> float | None:
    """--sw-scale: a positive number, or 'native' (None)."""
    if text == "native":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number or 'native', got {text!r}") from None


def inference_kwargs(args: argparse.Namespace) -> dict:
    return {
        "device": args.device,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "progress": args.progress,
    }


def comma_list(
    kind: type, choices: Sequence[str] | None = None, nonempty: bool = False
) -> Callable[[str], list]:
    """argparse type for a comma-separated list (``1,2,0.5``), optionally limited to ``choices``."""

    def parse(text: str) -> list:
        try:
            values = [kind(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}") from None
        if choices is not None and (not values or any(v not in choices for v in values)):
            raise argparse.ArgumentTypeError(f"{text!r}: choose one or more of {', '.join(choices)}")
        if nonempty and not values:
            raise argparse.ArgumentTypeError(f"expected at least one value, got {text!r}")
        return values

    return parse
