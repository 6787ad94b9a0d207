"""Normalisation statistics: ImageNet's, or a dataset's per-channel mean/std, cached on disk.

:func:`compute_mean_std` reads every training image once and caches the result as JSON in
``cache_dir()/mean_std`` (``$SPECMAMBA_CACHE`` or ``~/.cache/specmamba``), keyed by a hash of the
sorted image paths with their sizes and modification times; the data folder is never written, and a
cache that cannot be written (read-only home) only warns.

Shape letters: C channels, H/W image height/width.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..atomic import write_json
from ..errors import DataError
from .io import read_image
from .layouts import SamplePair

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "cache_dir", "compute_mean_std", "default_mean_std"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_CACHE_VERSION = 1


def default_mean_std(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """ImageNet statistics for 3 channels; their channel average, repeated, for any other count."""
    if channels == 3:
        return IMAGENET_MEAN, IMAGENET_STD
    mean, std = sum(IMAGENET_MEAN) / 3, sum(IMAGENET_STD) / 3
    return (mean,) * channels, (std,) * channels


def cache_dir() -> Path:
    """``$SPECMAMBA_CACHE`` or ``~/.cache/specmamba``: where derived data (never the data itself) goes."""
    return Path(os.environ.get("SPECMAMBA_CACHE") or Path.home() / ".cache" / "specmamba").expanduser()


def compute_mean_std(
    pairs: Sequence[SamplePair | str | os.PathLike[str]], channels: int = 3
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std, on the [0, 1] scale, of all pixels of the given images.

    Accepts sample pairs (their images are used) or image paths. Results are cached as JSON in
    ``cache_dir()/mean_std``, keyed by a hash of the sorted image paths with their sizes and
    modification times, so an unchanged dataset is read once; the data folder is never written.
    """
    paths = sorted(str(Path(p.image if isinstance(p, SamplePair) else p).resolve()) for p in pairs)
    if not paths:
        raise DataError("compute_mean_std got no images: the split is empty, so there is nothing to measure.")
    key = _cache_key(paths, channels)
    cache_file = cache_dir() / "mean_std" / f"{key}.json"
    cached = _read_cache(cache_file, channels)
    if cached is not None:
        return cached

    total = np.zeros(channels, dtype=np.float64)
    total_sq = np.zeros(channels, dtype=np.float64)
    count = 0
    for path in paths:
        pixels = read_image(path, channels).reshape(-1, channels).astype(np.float64) / 255.0  # (H*W, C)
        total += pixels.sum(0)
        total_sq += np.square(pixels).sum(0)
        count += pixels.shape[0]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    std = np.maximum(std, 1e-6)  # a constant channel must not divide by zero later
    result = (tuple(float(m) for m in mean), tuple(float(s) for s in std))
    payload = {
        "version": _CACHE_VERSION,
        "channels": channels,
        "num_images": len(paths),
        "mean": list(result[0]),
        "std": list(result[1]),
    }
    try:
        write_json(cache_file, payload, indent=1)
    except OSError as exc:  # a read-only home must not stop training
        warnings.warn(f"could not write the mean/std cache {cache_file}: {exc}", stacklevel=2)
    return result


def _cache_key(paths: list[str], channels: int) -> str:
    digest = hashlib.sha256(f"v{_CACHE_VERSION} channels={channels}\n".encode())
    for path in paths:
        try:
            st = os.stat(path)
        except OSError as exc:
            raise DataError(f"Cannot read the image {path}: {exc}.") from exc
        digest.update(f"{path}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


def _read_cache(path: Path, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        mean, std = payload["mean"], payload["std"]
        if payload.get("version") != _CACHE_VERSION or len(mean) != channels or len(std) != channels:
            return None
        return tuple(float(m) for m in mean), tuple(float(s) for s in std)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing or corrupt cache: recompute
