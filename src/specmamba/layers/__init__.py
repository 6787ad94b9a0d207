"""Reusable building blocks of the architectures (one idea per file)."""

from __future__ import annotations

from .drop_path import DropPath, drop_path, linear_drop_path_rates
from .patch import FinalPatchExpand2D, PatchEmbed2D, PatchExpand2D, PatchMerging2D, pixel_shuffle_last
from .ss2d import SS2D
from .vss_block import VSSBlock

__all__ = [
    "SS2D",
    "DropPath",
    "FinalPatchExpand2D",
    "PatchEmbed2D",
    "PatchExpand2D",
    "PatchMerging2D",
    "VSSBlock",
    "drop_path",
    "linear_drop_path_rates",
    "pixel_shuffle_last",
]
