"""Prediction on a folder of unlabelled images of any size.

Each image is resized to the checkpoint's training size, segmented, and its logits resized back to the
image's own size; elongated or large images can instead be covered by training-size windows
(``sliding_window``, :mod:`specmamba.engine.sliding_window`). Binary models write 0/255 PNG masks;
multi-class models write the label map (0..K-1) as PNG. ``overlay=True`` also writes the image with the
mask tinted and outlined, for a quick look. Several checkpoints make an ensemble and ``tta`` adds
nnU-Net's flips, averaged in probability space (:mod:`specmamba.engine.ensemble`); ``threshold`` sets a
binary model's foreground threshold.

``save_probabilities=True`` also writes ``probabilities/<stem>.npz`` per image, for later fusion or
calibration: a compressed numpy archive (``np.load``) holding ``probabilities``, float32 (K, H, W) at
the image's own size (K = 1: the foreground probability of a binary model; otherwise the softmax over
the K classes, summing to 1 per pixel), and ``num_classes``; :func:`load_probabilities` reads one back.

What the user gives is never lost: the output folder may not be (or contain) the input folder; two
images that would give one mask name (``case.jpg`` and ``case.png``) are refused up front; masks
already in the output folder are replaced only with ``overwrite=True``; and every mask is written into
a staging folder that moves into place only when all images are done (:func:`staged_folder`), so a
bad image or a full disk leaves the output folder as it was.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from ..atomic import atomic_path, staged_folder
from ..data import list_images, read_image
from ..disk import check_output_folder
from ..errors import ConfigError
from ..inference import check_loader_options, resolve_device
from .case_inference import case_probabilities, image_size
from .ensemble import Ensemble
from .sliding_window import SlidingWindow

OVERLAYS = "overlays"
PROBABILITIES = "probabilities"
#: Room asked for per mask (a binary PNG mask is a few KB) and per overlay, per byte of its input.
_MASK_BYTES, _OVERLAY_BYTES_PER_INPUT_BYTE = 16 * 1024, 4
_MAX_LISTED = 10

OVERLAY_COLOURS = np.array(
    [[0, 0, 0], [255, 60, 60], [60, 200, 60], [60, 120, 255], [255, 200, 0], [200, 60, 255]], dtype=np.uint8
)


def predict(
    checkpoint: str | Path | list[str | Path],
    images: str | Path,
    out: str | Path,
    overlay: bool = False,
    device: str = "auto",
    batch_size: int = 8,
    workers: int = 0,
    progress: bool = True,
    overwrite: bool = False,
    cpu_bf16: bool = False,
    tta: bool = False,
    threshold: float | None = None,
    save_probabilities: bool = False,
    sliding_window: str = "auto",
    sw_overlap: float = 0.5,
    sw_scale: float | None = 1.0,
) -> dict[str, Any]:
    """Segment every image in ``images``; masks go to ``out/<stem>.png``, overlays to ``out/overlays``,
    probabilities (``save_probabilities``) to ``out/probabilities/<stem>.npz``.

    ``checkpoint``: one path, or several for an ensemble. ``tta``: nnU-Net's flips. ``threshold``: a
    binary model's foreground threshold (0.5). ``sliding_window`` (auto | on | off), ``sw_overlap``,
    ``sw_scale``: training-size windows over large or elongated images
    (:mod:`specmamba.engine.sliding_window`; ``auto`` windows images of aspect ratio >= 1.5).
    ``cpu_bf16``: bf16 autocast on CPU too (faster, slightly different masks; see
    :func:`specmamba.inference.autocast`).

    Raises ConfigError / OutputError before any work when ``out`` is (or contains) ``images``, would
    overwrite files without ``overwrite``, or cannot be written; nothing is written unless every
    image is segmented.
    """
    check_loader_options(batch_size, workers)
    paths = list_images(images)
    out_dir = Path(out)
    outputs = planned_outputs(paths, overlay, save_probabilities)
    check_prediction_folder(Path(images), out_dir, outputs, overwrite)
    ensemble = Ensemble(checkpoint, resolve_device(device), tta=tta, cpu_bf16=cpu_bf16, threshold=threshold)
    cfg = ensemble.config
    window = SlidingWindow(cfg["img_size"], sliding_window, sw_overlap, sw_scale, batch_size)  # checks
    need = len(paths) * _MASK_BYTES
    if overlay:
        need += _OVERLAY_BYTES_PER_INPUT_BYTE * sum(p.stat().st_size for p in paths)
    if save_probabilities:  # float32 per class and pixel, before compression
        need += sum(4 * max(1, cfg["num_classes"]) * math.prod(image_size(p)) for p in paths)
    check_output_folder(out_dir, "-o", need)
    with staged_folder(out_dir) as stage:
        cases = case_probabilities(ensemble, paths, window, batch_size, workers, progress, "predict")
        for i, probs, _ in cases:
            labels = ensemble.labels(probs).astype(np.uint8)
            mask_png = labels * 255 if cfg["num_classes"] == 1 else labels
            mask_name, overlay_name, probs_name = outputs[paths[i]]
            _save_png(mask_png, stage / mask_name)
            if overlay_name:
                _save_png(make_overlay(read_image(paths[i], channels=3), labels), stage / overlay_name)
            if probs_name:
                save_probabilities_file(stage / probs_name, probs.cpu().numpy(), cfg["num_classes"])
    return {
        "n_images": len(outputs),
        "out": str(out_dir),
        "masks": [str(out_dir / names[0]) for names in outputs.values()],
        "overlays": str(out_dir / OVERLAYS) if overlay else None,
        "probabilities": str(out_dir / PROBABILITIES) if save_probabilities else None,
        "n_passes": ensemble.n_passes,
    }


def save_probabilities_file(path: Path, probs: np.ndarray, num_classes: int) -> None:
    """Write (K, H, W) probabilities to ``path`` in the documented .npz format (module docstring)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, probabilities=probs.astype(np.float32), num_classes=np.int64(num_classes))


def load_probabilities(path: str | Path) -> np.ndarray:
    """The float32 (K, H, W) probabilities of a ``probabilities/<stem>.npz`` written by predict."""
    with np.load(path) as archive:
        if "probabilities" not in archive:
            raise ConfigError(f"{path} holds no 'probabilities' array; is it a file of specmamba predict?")
        return archive["probabilities"]


def planned_outputs(
    paths: list[Path], overlay: bool, probabilities: bool = False
) -> dict[Path, tuple[str, str | None, str | None]]:
    """Each image -> (its mask's name, its overlay's and probabilities' names or None) under the output
    folder.

    Two images with one stem (``case.jpg``, ``case.png``) would write one mask: ConfigError naming them.
    """
    by_stem: dict[str, list[Path]] = {}
    for path in paths:
        by_stem.setdefault(path.stem, []).append(path)
    clashes = [names for names in by_stem.values() if len(names) > 1]
    if clashes:
        shown = "; ".join(" and ".join(p.name for p in names) for names in clashes[:_MAX_LISTED])
        raise ConfigError(
            f"{len(clashes)} mask name(s) would be written twice, by images of the same name: {shown}. "
            "Each mask is named after its image without the extension; rename or move one of each."
        )
    return {
        p: (
            f"{p.stem}.png",
            f"{OVERLAYS}/{p.stem}_overlay.png" if overlay else None,
            f"{PROBABILITIES}/{p.stem}.npz" if probabilities else None,
        )
        for p in paths
    }


def check_prediction_folder(
    images: Path, out: Path, outputs: dict[Path, tuple[str, str | None, str | None]], overwrite: bool
) -> None:
    """Refuse an output folder that is or contains the input folder (never allowed: the masks would
    sit among, or replace, the images), or that holds files predict would replace (unless
    ``overwrite``). A file in the way is :func:`check_output_folder`'s to report."""
    source, target = images.resolve(), out.resolve()
    if target == source or target in source.parents:
        what = "the input folder" if target == source else "a folder containing the input folder"
        raise ConfigError(
            f"-o {out} is {what} {images}: masks written there would mix with (or replace) the input images. "
            "Choose an output folder outside the input folder."
        )
    existing = [name for names in outputs.values() for name in names if name and (out / name).exists()]
    if existing and not overwrite:
        shown = ", ".join(existing[:_MAX_LISTED]) + (
            f" (and {len(existing) - _MAX_LISTED} more)" if len(existing) > _MAX_LISTED else ""
        )
        raise ConfigError(
            f"-o {out} already holds {len(existing)} of the files this prediction writes ({shown}). "
            "Pass --overwrite to replace them, or choose another output folder."
        )


def make_overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """RGB uint8 image with each class tinted (``alpha``) and its outline drawn in full colour."""
    out = image.astype(np.float32)
    for k in range(1, int(labels.max(initial=0)) + 1):
        region = labels == k
        colour = OVERLAY_COLOURS[1 + (k - 1) % (len(OVERLAY_COLOURS) - 1)].astype(np.float32)
        out[region] = (1 - alpha) * out[region] + alpha * colour
        outline = region & ~ndimage.binary_erosion(region, iterations=2)
        out[outline] = colour
    return out.clip(0, 255).astype(np.uint8)


def _save_png(array: np.ndarray, path: Path) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
