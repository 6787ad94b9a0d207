"""Entry point of the ``specmamba`` command: builds the parser, runs a subcommand, reports errors.

Errors the user caused (``SpecMambaError``) are printed as one paragraph without a traceback and exit
with status 2; an interrupted run exits with 130 and says how to resume.
"""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap
from collections.abc import Sequence

from .. import __version__
from ..errors import SpecMambaError
from . import audit, bench, demo, evaluate, models, predict, synth, train

SUBCOMMANDS = (models, synth, train, evaluate, predict, audit, demo, bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="specmamba",
        description="Train, evaluate, deploy and spectrally audit Vision-Mamba segmentation networks.",
    )
    parser.add_argument("--version", action="version", version=f"specmamba {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded in reports as the command run
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    # Our own progress messages at INFO; other libraries (e.g. fontTools subsetting PDF fonts) stay quiet.
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("specmamba").setLevel(logging.INFO)
    try:
        return int(args.func(args) or 0)
    except SpecMambaError as err:
        message = textwrap.fill(str(err), width=100, subsequent_indent="  ")
        print(f"specmamba {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nspecmamba {args.command}: interrupted.", file=sys.stderr)
        if args.command == "train":
            print(
                "The last completed epoch is saved: continue with `specmamba train --out RUN --resume`.",
                file=sys.stderr,
            )
        return 130
