"""Reusable building blocks of the architectures (one idea per file)."""

from __future__ import annotations

from .drop_path import DropPath, drop_path, linear_drop_path_rates

__all__ = ["DropPath", "drop_path", "linear_drop_path_rates"]
