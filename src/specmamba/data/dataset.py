"""PyTorch datasets over image/mask pairs (training, evaluation) and over unlabelled images (prediction).

:class:`SegmentationDataset` reads a :class:`SamplePair`, checks that image and mask have the same
size, and applies the paired transforms. With a ``seed``, the augmentation of sample ``i`` in epoch
``e`` is drawn from a generator seeded by (seed, e, i) (call :meth:`SegmentationDataset.set_epoch`
each epoch), so it does not depend on the number of DataLoader workers or DDP ranks; without one it
comes from torch's global RNG. :func:`validate_pairs` reads a whole split once up front and reports
every problem in one error, so that bad data stops a run before anything is written.

Shape letters: C channels (``in_chans``), S the square output size (``img_size``), H/W the size on disk.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError
from .io import read_image, read_mask
from .layouts import SamplePair, list_images
from .statistics import default_mean_std
from .transforms import build_transforms

# transform(image uint8 (H, W, C), mask uint8 (H, W) | None, generator) -> (float32 (C, S, S), int64 (S, S))
PairTransform = Callable[..., tuple[torch.Tensor, "torch.Tensor | None"]]
_MAX_PROBLEMS = 10


def _check_same_size(pair: SamplePair, image: np.ndarray, mask: np.ndarray) -> None:
    if image.shape[:2] != mask.shape:
        (ih, iw), (mh, mw) = image.shape[:2], mask.shape
        raise DataError(
            f"Image and mask differ in size for case {pair.name!r}: {pair.image} is {iw}x{ih} but "
            f"{pair.masks[0]} is {mw}x{mh} (width x height). A mask must have exactly the size of its "
            "image; re-export the mask or remove the case."
        )


class SegmentationDataset(Dataset):
    """Image/mask pairs as training or evaluation samples.

    Each item is ``{"image": float32 (C, S, S) normalised, "mask": int64 (S, S) label map,
    "name": str, "orig_size": (H, W)}``. Masks follow :func:`specmamba.data.read_mask` (``num_classes``
    1 = binary {0, 1}; K >= 2 = labels 0..K-1). ``transform`` replaces the default pipeline of
    :func:`build_transforms` (resize, and for ``train`` flips and rotation, then normalisation with
    ``mean``/``std``, default ImageNet); it is called as ``transform(image, mask, generator)``.
    """

    def __init__(
        self,
        pairs: Sequence[SamplePair],
        img_size: int = 256,
        in_chans: int = 3,
        num_classes: int = 1,
        train: bool = False,
        transform: PairTransform | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        hflip: float = 0.5,
        vflip: float = 0.5,
        rotate_degrees: float = 30.0,
        rotate_p: float = 1.0,
        seed: int | None = None,
        layout_hint: str | None = None,
    ) -> None:
        self.pairs = list(pairs)
        self.in_chans, self.num_classes, self.train = in_chans, num_classes, train
        self.layout_hint, self.seed, self.epoch = layout_hint, seed, 0
        if transform is None:
            default_mean, default_std = default_mean_std(in_chans)
            transform = build_transforms(
                img_size,
                train,
                hflip=hflip,
                vflip=vflip,
                rotate_degrees=rotate_degrees,
                rotate_p=rotate_p,
                mean=default_mean if mean is None else mean,
                std=default_std if std is None else std,
            )
        self.transform = transform

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of ``epoch`` (only matters when a ``seed`` was given)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.pairs)

    def _generator(self, index: int) -> torch.Generator | None:
        if self.seed is None:
            return None
        # Independent stream per (seed, epoch, index): same result for any number of workers/ranks.
        state = np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1, dtype=np.uint64)[0]
        return torch.Generator().manual_seed(int(state))

    def __getitem__(self, index: int) -> dict[str, Any]:
        pair = self.pairs[index]
        image = read_image(pair.image, self.in_chans)
        mask = read_mask(pair.masks, self.num_classes, self.layout_hint)
        _check_same_size(pair, image, mask)
        image_t, mask_t = self.transform(image, mask, self._generator(index))
        assert mask_t is not None
        return {
            "image": image_t,
            "mask": mask_t,
            "name": pair.name,
            "orig_size": (int(image.shape[0]), int(image.shape[1])),
        }


class ImageFolderDataset(Dataset):
    """Unlabelled images for prediction: a folder (non-recursive) or a list of image files.

    Each item is ``{"image": float32 (C, S, S) normalised, "name": file stem, "orig_size": (H, W),
    "path": str}``; images are resized to ``img_size`` (None: kept at their own size, (C, H, W), for
    sliding-window inference) and normalised with ``mean``/``std``.
    """

    def __init__(
        self,
        images: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        img_size: int | None = 256,
        in_chans: int = 3,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        if isinstance(images, (str, os.PathLike)):
            self.paths = list_images(images)
        else:
            self.paths = [Path(p) for p in images]
            if not self.paths:
                raise DataError("ImageFolderDataset got an empty list of images: give at least one file.")
        self.in_chans = in_chans
        default_mean, default_std = default_mean_std(in_chans)
        self.transform = build_transforms(
            img_size,
            train=False,
            mean=default_mean if mean is None else mean,
            std=default_std if std is None else std,
        )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.paths[index]
        image = read_image(path, self.in_chans)
        image_t, _ = self.transform(image, None)
        return {
            "image": image_t,
            "name": path.stem,
            "orig_size": (int(image.shape[0]), int(image.shape[1])),
            "path": str(path),
        }


def validate_pairs(
    pairs: Sequence[SamplePair], num_classes: int = 1, in_chans: int = 3, layout_hint: str | None = None
) -> dict[str, int]:
    """Read every pair once; raise ONE :class:`DataError` listing the problems found (first 10 shown).

    Checks that each image and mask decodes, that mask values fit ``num_classes`` and that image and
    mask sizes match. Returns ``{"num_pairs": n, "num_empty_masks": k}`` (empty masks are valid).
    """
    problems: list[str] = []
    empty = 0
    for pair in pairs:
        try:
            image = read_image(pair.image, in_chans)
            mask = read_mask(pair.masks, num_classes, layout_hint)
            _check_same_size(pair, image, mask)
        except DataError as exc:
            problems.append(str(exc))
            continue
        empty += int(not mask.any())
    if problems:
        shown = "\n".join(f"- {p}" for p in problems[:_MAX_PROBLEMS])
        more = f"\n(and {len(problems) - _MAX_PROBLEMS} more)" if len(problems) > _MAX_PROBLEMS else ""
        raise DataError(
            f"{len(problems)} of {len(pairs)} cases cannot be used; fix or remove them, then "
            f"run again:\n{shown}{more}"
        )
    return {"num_pairs": len(pairs), "num_empty_masks": empty}
