"""SegmentationDataset / ImageFolderDataset item contracts, seeded augmentation, and validate_pairs."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from specmamba.data import ImageFolderDataset, SegmentationDataset, find_pairs, validate_pairs
from specmamba.errors import DataError


@pytest.fixture
def dataset_dir(tmp_path, make_pair):
    for i, size in enumerate([(20, 30), (25, 25), (18, 40)]):
        make_pair(tmp_path / "images" / f"c{i}.png", tmp_path / "masks" / f"c{i}.png", size=size, seed=i)
    return tmp_path


def test_item_contract(dataset_dir):
    ds = SegmentationDataset(find_pairs(dataset_dir), img_size=16, in_chans=3, num_classes=1)
    assert len(ds) == 3
    item = ds[2]
    assert set(item) == {"image", "mask", "name", "orig_size"}
    assert item["image"].shape == (3, 16, 16) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (16, 16) and item["mask"].dtype == torch.int64
    assert set(item["mask"].unique().tolist()) == {0, 1}
    assert item["name"] == "c2" and item["orig_size"] == (18, 40)
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["image"].shape == (2, 3, 16, 16) and batch["name"] == ["c0", "c1"]
    assert batch["orig_size"][0].tolist() == [20, 25]


def test_normalisation_and_channels(dataset_dir):
    pairs = find_pairs(dataset_dir)
    plain = SegmentationDataset(pairs, img_size=20, mean=[0.0], std=[1.0])[1]["image"]
    assert 0.0 <= float(plain.min()) and float(plain.max()) <= 1.0
    gray = SegmentationDataset(pairs, img_size=20, in_chans=1)[1]["image"]
    assert gray.shape == (1, 20, 20)


def test_seeded_augmentation_depends_on_seed_epoch_index(dataset_dir):
    pairs = find_pairs(dataset_dir)
    a = SegmentationDataset(pairs, img_size=16, train=True, seed=3)
    b = SegmentationDataset(pairs, img_size=16, train=True, seed=3)
    assert torch.equal(a[0]["image"], b[0]["image"])  # same (seed, epoch, index): same sample
    first = a[0]["image"]
    a.set_epoch(1)
    assert not torch.equal(a[0]["image"], first)  # a new epoch draws new augmentations
    a.set_epoch(0)
    assert torch.equal(a[0]["image"], first)
    eval_ds = SegmentationDataset(pairs, img_size=16, train=False)
    assert torch.equal(eval_ds[0]["image"], eval_ds[0]["image"])


def test_size_mismatch_names_both_files(tmp_path, save_image):
    save_image(tmp_path / "images" / "a.png", np.zeros((10, 12, 3), np.uint8))
    save_image(tmp_path / "masks" / "a.png", np.zeros((10, 11), np.uint8))
    ds = SegmentationDataset(find_pairs(tmp_path), img_size=8)
    with pytest.raises(DataError) as info:
        ds[0]
    message = str(info.value)
    assert "images/a.png is 12x10" in message.replace("\\", "/")
    assert "masks/a.png is 11x10" in message.replace("\\", "/")


def test_image_folder_dataset(tmp_path, save_image):
    save_image(tmp_path / "b.jpg", np.zeros((10, 14, 3), np.uint8))
    save_image(tmp_path / "a.png", np.full((7, 5), 80, np.uint8))
    ds = ImageFolderDataset(tmp_path, img_size=12)
    item = ds[0]
    assert set(item) == {"image", "name", "orig_size", "path"}
    assert item["name"] == "a" and item["orig_size"] == (7, 5) and item["path"] == str(tmp_path / "a.png")
    assert item["image"].shape == (3, 12, 12)
    listed = ImageFolderDataset([tmp_path / "b.jpg"], img_size=12, in_chans=1)
    assert listed[0]["image"].shape == (1, 12, 12) and len(listed) == 1
    with pytest.raises(DataError):
        ImageFolderDataset([], img_size=12)
    with pytest.raises(DataError):
        ImageFolderDataset(tmp_path / "missing", img_size=12)


def test_validate_pairs_ok_and_counts_empty_masks(dataset_dir, save_image):
    save_image(dataset_dir / "images" / "empty.png", np.zeros((6, 6, 3), np.uint8))
    save_image(dataset_dir / "masks" / "empty.png", np.zeros((6, 6), np.uint8))
    assert validate_pairs(find_pairs(dataset_dir), num_classes=1) == {"num_pairs": 4, "num_empty_masks": 1}


def test_validate_pairs_reports_all_problems_at_once(tmp_path, make_pair, save_image):
    make_pair(tmp_path / "images" / "good.png", tmp_path / "masks" / "good.png")
    (tmp_path / "images" / "corrupt.png").write_bytes(b"junk")
    save_image(tmp_path / "masks" / "corrupt.png", np.zeros((4, 4), np.uint8))
    save_image(tmp_path / "images" / "sized.png", np.zeros((4, 4, 3), np.uint8))
    save_image(tmp_path / "masks" / "sized.png", np.zeros((5, 4), np.uint8))
    save_image(tmp_path / "images" / "labels.png", np.zeros((4, 4, 3), np.uint8))
    save_image(tmp_path / "masks" / "labels.png", np.array([[0, 1, 2, 3]] * 4, np.uint8))
    with pytest.raises(DataError) as info:
        validate_pairs(find_pairs(tmp_path), num_classes=1)
    message = str(info.value)
    assert message.startswith("3 of 4 cases cannot be used")
    assert "corrupt.png" in message and "sized" in message and "out of range for --num-classes 1" in message
    assert (
        validate_pairs([p for p in find_pairs(tmp_path) if p.name in ("good", "labels")], 4)["num_pairs"] == 2
    )


def test_validate_pairs_caps_listing(tmp_path, save_image):
    for i in range(12):
        (tmp_path / "images").mkdir(exist_ok=True)
        (tmp_path / "images" / f"bad{i:02d}.png").write_bytes(b"junk")
        save_image(tmp_path / "masks" / f"bad{i:02d}.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(DataError) as info:
        validate_pairs(find_pairs(tmp_path))
    message = str(info.value)
    assert len(re.findall(r"^- ", message, flags=re.MULTILINE)) == 10 and "(and 2 more)" in message
