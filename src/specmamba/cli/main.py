"""Entry point of the ``specmamba`` command: builds the parser, runs a subcommand, reports errors.

Errors the user caused (``SpecMambaError``) are printed as one paragraph without a traceback and exit
with status 2; so are the OS errors of a full or read-only disk that reach this far. An interrupted
training run exits with 130 and says how to resume it, when there is something to resume. Warnings
print as one ``warning:`` line, without Python's source line.
"""

from __future__ import annotations

import argparse
import errno
import logging
import shlex
import sys
import textwrap
import warnings
from collections.abc import Sequence
from pathlib import Path

from .. import __version__
from ..cpu_malloc import tune_cpu_malloc
from ..disk import output_error
from ..errors import SpecMambaError
from . import audit, bench, demo, evaluate, export, models, predict, study, synth, train

#: OS errors that are the user's disk, not a bug: reported as a paragraph like SpecMambaError.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})
WIDTH = 100

SUBCOMMANDS = (models, synth, train, evaluate, predict, export, audit, demo, study, bench)


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
    warnings.formatwarning = _one_line_warning
    tune_cpu_malloc()  # freed tensor memory kept for reuse: no page faults per step (cpu_malloc.py)
    try:
        return int(args.func(args) or 0)
    except SpecMambaError as err:
        print(f"specmamba {args.command}: error: {format_error(str(err))}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno not in DISK_ERRNOS:
            raise
        message = str(output_error(err, err.filename or "the output"))
        print(f"specmamba {args.command}: error: {format_error(message)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nspecmamba {args.command}: interrupted.", file=sys.stderr)
        if args.command == "train":
            print(format_error(_resume_hint(args.out)), file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = _python_formatwarning


def format_error(message: str, width: int = WIDTH) -> str:
    """An error paragraph wrapped for the terminal: flags never split at their hyphens, and the
    message's own lines (``- item`` lists) kept as lines, indented under the first."""
    lines = []
    for k, line in enumerate(message.splitlines() or [""]):
        lead = "" if k == 0 else "  "
        hanging = "    " if k and line.startswith("- ") else "  "  # a bullet's text stays aligned
        lines.append(
            textwrap.fill(
                line,
                width=width,
                initial_indent=lead,
                subsequent_indent=hanging,
                break_on_hyphens=False,
                break_long_words=False,
            )
        )
    return "\n".join(lines)


def _resume_hint(out: str) -> str:
    from ..engine.run_folder import RunFolder

    if RunFolder(out).last.is_file():
        return (
            f"The run in {out} is saved up to its last completed epoch: continue it with "
            f"`specmamba train --out {shlex.quote(str(Path(out)))} --resume`."
        )
    return f"No epoch was completed, so no new run was saved in {out}."


_python_formatwarning = warnings.formatwarning


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"
