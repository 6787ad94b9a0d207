"""Shared helpers of the data tests: tiny real image files written with PIL into tmp_path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _save(path: Path, array: np.ndarray, mode: str | None = None, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array, mode) if mode else Image.fromarray(array)
    image.save(path, **kwargs)
    return path


@pytest.fixture
def save_image() -> Callable[..., Path]:
    """``save_image(path, array, mode=None, **pil_kwargs)``: write a real image file, creating folders."""
    return _save


@pytest.fixture
def make_pair() -> Callable[..., tuple[Path, Path]]:
    """``make_pair(image_path, mask_path, size=(h, w), seed=0)``: random RGB image + 0/255 disc mask."""

    def make(image_path: Path, mask_path: Path, size: tuple[int, int] = (12, 16), seed: int = 0):
        rng = np.random.default_rng(seed)
        h, w = size
        image = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        yy, xx = np.mgrid[0:h, 0:w]
        mask = (((yy - h / 2) ** 2 + (xx - w / 2) ** 2) < (min(h, w) / 3) ** 2).astype(np.uint8) * 255
        return _save(image_path, image), _save(mask_path, mask)

    return make
