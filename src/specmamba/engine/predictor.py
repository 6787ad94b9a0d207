"""Prediction on a folder of unlabelled images of any size.

Each image is resized to the checkpoint's training size, segmented, and its logits resized back to the
image's own size. Binary models write 0/255 PNG masks; multi-class models write the label map (0..K-1)
as PNG. ``overlay=True`` also writes the image with the mask tinted and outlined, for a quick look.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..atomic import atomic_path
from ..data import ImageFolderDataset, list_images, read_image
from ..inference import autocast, case_labels, resolve_device
from ..models.rebuild import load_training_checkpoint

OVERLAY_COLOURS = np.array(
    [[0, 0, 0], [255, 60, 60], [60, 200, 60], [60, 120, 255], [255, 200, 0], [200, 60, 255]], dtype=np.uint8
)


def predict(
    checkpoint: str | Path,
    images: str | Path,
    out: str | Path,
    overlay: bool = False,
    device: str = "auto",
    batch_size: int = 8,
    workers: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Segment every image in ``images``; masks go to ``out/<stem>.png``, overlays to ``out/overlays``."""
    ckpt, model = load_training_checkpoint(checkpoint)
    cfg = ckpt["config"]
    dev = resolve_device(device)
    paths = list_images(images)
    model = model.to(dev).eval()
    dataset = ImageFolderDataset(
        paths,
        img_size=cfg["img_size"],
        in_chans=cfg["in_chans"],
        mean=ckpt["normalization"]["mean"],
        std=ckpt["normalization"]["std"],
    )
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    out_dir = Path(out)
    written: list[str] = []
    with torch.no_grad():
        for batch in tqdm(loader, desc="predict", disable=not progress, dynamic_ncols=True):
            with autocast(dev, cfg.get("amp", True)):
                logits = model(batch["image"].to(dev))
            for i, path in enumerate(batch["path"]):
                height, width = int(batch["orig_size"][0][i]), int(batch["orig_size"][1][i])
                labels = case_labels(logits, i, (height, width)).astype(np.uint8)
                mask_png = labels * 255 if cfg["num_classes"] == 1 else labels
                target = out_dir / f"{Path(path).stem}.png"
                _save_png(mask_png, target)
                written.append(str(target))
                if overlay:
                    _save_png(
                        make_overlay(read_image(path, channels=3), labels),
                        out_dir / "overlays" / f"{Path(path).stem}_overlay.png",
                    )
    return {
        "n_images": len(written),
        "out": str(out_dir),
        "masks": written,
        "overlays": str(out_dir / "overlays") if overlay else None,
    }


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
