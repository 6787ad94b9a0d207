"""Every case's averaged probabilities at its own size: the loop that predict and evaluate share.

Cases that take the whole-image resize go through the model in batches of the training square, as in
training; cases that the :class:`~specmamba.engine.sliding_window.SlidingWindow` claims are read at
their own size, one at a time, resampled to their working size, and windowed. Either way the
:class:`~specmamba.engine.ensemble.Ensemble` averages its passes in probability space at the case's own
size, so the two paths differ only in how each pass's logits are made. Batched cases come first, then
windowed ones, each group in the order given.

Shape letters: K logit channels, H/W a case's own size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data import ImageFolderDataset
from .ensemble import Ensemble
from .sliding_window import SlidingWindow

__all__ = ["case_probabilities", "image_size"]


def image_size(path: str | Path) -> tuple[int, int]:
    """(H, W) of an image file, from its header only."""
    with Image.open(path) as image:
        return image.size[1], image.size[0]


def case_probabilities(
    ensemble: Ensemble,
    images: Sequence[Path],
    window: SlidingWindow | None = None,
    batch_size: int = 8,
    workers: int = 0,
    progress: bool = True,
    desc: str = "predict",
) -> Iterator[tuple[int, torch.Tensor, bool]]:
    """Yield ``(i, probs, windowed)`` for every image ``images[i]``: its (K, H, W) float32
    probabilities, and whether sliding windows made them.

    ``window`` None (or mode ``off``) resizes every image whole, as in training.
    """
    cfg = ensemble.config
    data_kwargs = {
        "in_chans": cfg["in_chans"],
        "mean": ensemble.normalization["mean"],
        "std": ensemble.normalization["std"],
    }
    plans = [window.working_size(*image_size(p)) if window else None for p in images]
    whole = [i for i, plan in enumerate(plans) if plan is None]
    windowed = [i for i, plan in enumerate(plans) if plan is not None]
    with torch.no_grad(), tqdm(total=len(images), desc=desc, disable=not progress, dynamic_ncols=True) as bar:
        if whole:
            dataset = ImageFolderDataset([images[i] for i in whole], img_size=cfg["img_size"], **data_kwargs)
            loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
            done = 0
            for batch in loader:
                passes = ensemble.logits(batch["image"])
                for j in range(len(batch["path"])):
                    size = (int(batch["orig_size"][0][j]), int(batch["orig_size"][1][j]))
                    yield whole[done + j], ensemble.case_probabilities(passes, j, size), False
                done += len(batch["path"])
                bar.update(len(batch["path"]))
        if windowed:
            dataset = ImageFolderDataset([images[i] for i in windowed], img_size=None, **data_kwargs)
            loader = DataLoader(dataset, batch_size=1, shuffle=False, num_workers=workers)
            for index, item in zip(windowed, loader):
                native = item["image"]  # (1, C, H, W)
                working = window.resample(native, plans[index])
                passes = ensemble.logits(working, window=window)
                yield index, ensemble.case_probabilities(passes, 0, tuple(native.shape[-2:])), True
                bar.update(1)
