"""Reading images and masks from disk into uint8 arrays, with the mask rules of every known dataset.

Images become ``(H, W, C)`` uint8 arrays; masks become ``(H, W)`` uint8 label maps (0 = background).
Mask values are interpreted as follows (REFERENCE.md section 8):

- several files for one case (BUSI ``_mask_1`` extras) are merged by union (element-wise maximum);
- a colour (RGB) mask is reduced to one channel: its channel maximum (any coloured foreground counts);
- GlaS instance labels (file stem ending in ``_anno``, or ``layout_hint="instance"``) -> ``> 0``;
- values within {0, 1} are kept; values exactly {0, 255} (8-bit) or {0, 65535} (16-bit) are mapped to
  {0, 1};
- JPEG masks, and masks that are binary up to compression noise (many grey levels, nearly every pixel
  within 31 of 0 or 255, and not already a valid label map), are thresholded at 128 to {0, 1};
- anything else is a multi-class label map kept as is; a value >= max(2, num_classes) is an error.

``num_classes=1`` means a binary task (one logit channel, labels {0, 1}); ``num_classes=K >= 2`` means K
classes including background (labels 0..K-1). Empty masks (all background) are valid negative cases.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ConfigError, DataError

# Share of pixels that must lie within _NOISE_BAND of 0 or 255 for a mask to count as noisy binary.
_NOISY_BINARY_SHARE = 0.98
_NOISE_BAND = 31
# Compression noise spreads over many grey levels; a few levels ({0, 128, 255}) are a label map instead.
_NOISY_MIN_VALUES = 8
_INSTANCE_STEM = re.compile(r"_anno$", re.IGNORECASE)
_LAYOUT_HINTS = (None, "instance")

PathLike = str | os.PathLike[str]


def read_image(path: PathLike, channels: int = 3) -> np.ndarray:
    """Read an image file as a uint8 array of shape (H, W, channels).

    ``channels=3``: RGB (grayscale replicated, alpha dropped). ``channels=1``: grayscale (ITU-R 601
    luma of colour images). Any other count: the RGB channels (or the one grayscale channel) repeated
    cyclically up to ``channels`` (R, G, B, R, ... or G, G, ...). 16-bit images are scaled linearly
    from [0, 65535] to [0, 255]; float images in [0, 1] are scaled by 255, others clipped to [0, 255].
    An unreadable or corrupt file raises :class:`DataError` naming it.
    """
    if channels < 1:
        raise ConfigError(f"channels={channels}: an image needs at least one channel (1 gray, 3 RGB).")
    with _open(path, "image") as img:
        mode = img.mode
        if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
            array = _to_uint8(np.asarray(img), mode)
        elif mode in ("L", "1", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
            target = "L" if mode in ("L", "1", "LA") else "RGB"
            if channels == 1 and target == "RGB":
                target = "L"
            array = np.asarray(img.convert(target) if img.mode != target else img, dtype=np.uint8)
        else:  # any other PIL mode: let PIL convert to RGB
            array = np.asarray(img.convert("RGB"), dtype=np.uint8)
    if array.ndim == 3 and channels == 1:  # 16-bit/float colour images reach here as RGB arrays
        array = _luma(array)
    if array.ndim == 2:
        array = array[:, :, None]  # (H, W) -> (H, W, 1)
    if array.shape[2] == channels:
        return np.ascontiguousarray(array)
    # (H, W, c) -> (H, W, channels): repeat the channels cyclically
    index = np.arange(channels) % array.shape[2]
    return np.ascontiguousarray(array[:, :, index])


def read_mask(
    paths: PathLike | Sequence[PathLike], num_classes: int = 1, layout_hint: str | None = None
) -> np.ndarray:
    """Read one case's mask file(s) as a uint8 (H, W) label map, following the rules of this module.

    ``paths``: one file or several files of the same case (merged by union). ``num_classes``: 1 for a
    binary task, K >= 2 for K classes including background. ``layout_hint``: ``None`` (infer from file
    names) or ``"instance"`` (instance labels: every non-zero value is foreground).
    Raises :class:`DataError` for an unreadable file, files of different sizes, or label values out of
    range for ``num_classes``.
    """
    if not 1 <= num_classes <= 256:
        raise ConfigError(
            f"num_classes={num_classes}: use 1 for a binary task or K in 2..256 for K classes (uint8 labels)."
        )
    if layout_hint not in _LAYOUT_HINTS:
        raise ConfigError(f"layout_hint={layout_hint!r}: valid values are None and 'instance'.")
    files = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
    if not files:
        raise DataError("read_mask got no mask file: give at least one path.")
    merged: np.ndarray | None = None
    for path in files:
        labels = _read_one_mask(path, num_classes, layout_hint)
        if merged is None:
            merged = labels
        elif labels.shape != merged.shape:
            raise DataError(
                f"The masks of one case differ in size: {files[0]} is {merged.shape[1]}x{merged.shape[0]} "
                f"but {path} is {labels.shape[1]}x{labels.shape[0]} (width x height); all masks of a "
                "case must have the size of its image."
            )
        else:
            merged = np.maximum(merged, labels)  # union of the extra masks
    assert merged is not None
    return merged


def _read_one_mask(path: Path, num_classes: int, layout_hint: str | None) -> np.ndarray:
    with _open(path, "mask") as img:
        is_jpeg = img.format == "JPEG" or path.suffix.lower() in (".jpg", ".jpeg")
        if img.mode == "1":
            values = np.asarray(img).astype(np.uint8)  # bilevel: bool -> {0, 1}
        elif img.mode in ("L", "P"):
            values = np.asarray(img)  # for palette masks the palette index is the label
        elif img.mode in ("LA", "PA"):
            values = np.asarray(img)[..., 0]  # drop alpha
        elif img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
            values = np.asarray(img)
        else:
            rgb = np.asarray(img.convert("RGB"))
            values = rgb.max(axis=2)  # (H, W, 3) -> (H, W): any coloured foreground counts
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise DataError(f"The mask {path} holds non-integer values; masks must be integer label maps.")
    if values.ndim != 2:
        raise DataError(f"The mask {path} has shape {values.shape}; a mask must be a single-channel image.")

    if layout_hint == "instance" or _INSTANCE_STEM.search(path.stem):
        return (values > 0).astype(np.uint8)
    unique = np.unique(values)
    if np.isin(unique, (0, 1)).all():
        return values.astype(np.uint8)
    if np.isin(unique, (0, 255)).all():
        return (values >= 128).astype(np.uint8)
    if np.isin(unique, (0, 65535)).all():  # a 16-bit binary mask: black and the 16-bit white
        return (values > 0).astype(np.uint8)
    top = max(2, num_classes)
    if is_jpeg and unique[-1] >= 128:
        return (values >= 128).astype(np.uint8)  # JPEG cannot store label maps: only binary survives
    if unique[-1] >= top and len(unique) >= _NOISY_MIN_VALUES and _noisy_binary(values):
        return (values >= 128).astype(np.uint8)
    if unique[0] < 0 or unique[-1] >= top:
        bad = unique[(unique < 0) | (unique >= top)]
        shown = ", ".join(str(int(v)) for v in bad[:10]) + (", ..." if len(bad) > 10 else "")
        task = "binary masks hold {0, 1} or {0, 255}" if num_classes == 1 else f"labels 0..{num_classes - 1}"
        raise DataError(
            f"mask values out of range for --num-classes {num_classes}: found values [{shown}] in {path} "
            f"({task}). Pass the right --num-classes (K classes including background) or remap the mask."
        )
    return values.astype(np.uint8)


def _noisy_binary(values: np.ndarray) -> bool:
    """Binary up to compression noise: both extremes present, nearly all pixels near 0 or 255."""
    low = values <= _NOISE_BAND
    high = values >= 255 - _NOISE_BAND
    return bool(low.any() and high.any() and (low | high).mean() >= _NOISY_BINARY_SHARE)


class _open:
    """Context manager: open and fully decode an image with PIL, turning any failure into DataError."""

    def __init__(self, path: PathLike, what: str) -> None:
        self.path, self.what = Path(path), what
        self.img: Image.Image | None = None

    def __enter__(self) -> Image.Image:
        if not self.path.is_file():
            raise DataError(f"The {self.what} file {self.path} does not exist (or is not a file).")
        img: Image.Image | None = None
        try:
            img = Image.open(self.path)
            img.load()  # decode now, so truncated files fail here and not later
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            if img is not None:
                img.close()
            raise DataError(
                f"Cannot read the {self.what} {self.path}: {exc}. The file is corrupt, truncated or not an "
                "image; re-export it as PNG/JPEG/BMP/TIFF or remove the case."
            ) from exc
        self.img = img
        return img

    def __exit__(self, *exc: object) -> None:
        if self.img is not None:
            self.img.close()


def _to_uint8(array: np.ndarray, mode: str) -> np.ndarray:
    """Scale a 16-bit, 32-bit integer or float image to uint8 (see :func:`read_image`)."""
    if mode == "F":
        data = array.astype(np.float64)
        if np.nanmax(data, initial=0.0) <= 1.0:
            data = data * 255.0
        return np.clip(np.nan_to_num(data), 0, 255).round().astype(np.uint8)
    data = array.astype(np.float64)
    if mode.startswith("I;16") or data.max(initial=0) > 255:
        data = data * (255.0 / 65535.0)
    return np.clip(data, 0, 255).round().astype(np.uint8)


def _luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of an (H, W, 3) uint8 array -> (H, W) uint8."""
    weights = np.array([0.299, 0.587, 0.114])
    return np.clip(rgb[..., :3].astype(np.float64) @ weights, 0, 255).round().astype(np.uint8)
