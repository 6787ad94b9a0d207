"""The real datasets in ../shared/data (ISIC 2017, Kvasir-SEG); skipped where that folder is absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from specmamba.data import SegmentationDataset, find_pairs, read_mask, select_split

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
ISIC = DATA / "isic2017"
KVASIR = DATA / "kvasir-seg"


def _load(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.array(img)


@pytest.mark.skipif(not ISIC.is_dir(), reason="real data ../shared/data/isic2017 not available")
def test_isic2017_pairs_and_items():
    pairs = find_pairs(ISIC)
    assert len(pairs) == 2000
    assert pairs[0].name == "ISIC_0000000" and pairs[0].masks[0].name == "ISIC_0000000_segmentation.png"
    train, val = select_split(pairs, "train", ISIC), select_split(pairs, "val", ISIC)
    assert (len(train), len(val)) == (1600, 400)
    ds = SegmentationDataset(pairs[:3], img_size=64, train=True, seed=0)
    for i in range(3):
        item = ds[i]
        assert item["image"].shape == (3, 64, 64) and item["orig_size"] == (256, 256)
        assert set(item["mask"].unique().tolist()) <= {0, 1} and item["mask"].any()


@pytest.mark.skipif(not KVASIR.is_dir(), reason="real data ../shared/data/kvasir-seg not available")
def test_kvasir_pairs_and_jpeg_masks_binary():
    pairs = find_pairs(KVASIR)
    assert len(pairs) == 801
    assert all(p.image.name == p.masks[0].name for p in pairs[:20])  # same-name layout
    for pair in pairs[:4]:
        raw = _load(pair.masks[0])
        mask = read_mask(pair.masks)
        assert mask.shape == raw.shape[:2] and set(np.unique(mask)) == {0, 1}
        assert len(np.unique(raw)) > 2  # the files are noisy, the labels are not
    item = SegmentationDataset(pairs[:1], img_size=48)[0]
    assert item["image"].shape == (3, 48, 48) and set(item["mask"].unique().tolist()) <= {0, 1}
