"""``python -m specmamba`` (and ``torchrun --nproc_per_node=N -m specmamba train ...``)."""

from __future__ import annotations

import sys

from .cli.main import main

if __name__ == "__main__":
    sys.exit(main())
