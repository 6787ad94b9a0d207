"""The ``specmamba`` command: thin argparse shims over importable functions.

Each module here adds one subcommand through ``register(subparsers)`` and runs it through
``run(args) -> int``; the work itself lives in importable functions (engine, data, bench).
"""
