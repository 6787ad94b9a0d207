"""Data: dataset folders of any common layout, splits, transforms, datasets and synthetic lesions.

>>> from specmamba.data import find_pairs, select_split, SegmentationDataset
>>> pairs = find_pairs("data/isic2017")                     # layout detected, sorted by name
>>> train = select_split(pairs, "train", "data/isic2017")   # train.txt, or the seeded 80/20 protocol
>>> item = SegmentationDataset(train, img_size=256, train=True, seed=0)[0]
"""

from __future__ import annotations

from .dataset import ImageFolderDataset, SegmentationDataset, validate_pairs
from .io import read_image, read_mask
from .layouts import IMAGE_SUFFIXES, SamplePair, find_pairs, is_image_file, list_images
from .splits import SPLITS, check_folds, read_split_lists, seeded_split, select_split, split_options
from .statistics import IMAGENET_MEAN, IMAGENET_STD, cache_dir, compute_mean_std, default_mean_std
from .synthetic import make_synthetic_dataset, render_sample
from .transforms import (
    Compose,
    Normalize,
    RandomFlip,
    RandomRotation,
    Resize,
    build_transforms,
    rotate,
    to_tensor,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_SUFFIXES",
    "SPLITS",
    "Compose",
    "ImageFolderDataset",
    "Normalize",
    "RandomFlip",
    "RandomRotation",
    "Resize",
    "SamplePair",
    "SegmentationDataset",
    "build_transforms",
    "cache_dir",
    "check_folds",
    "compute_mean_std",
    "default_mean_std",
    "find_pairs",
    "is_image_file",
    "list_images",
    "make_synthetic_dataset",
    "read_image",
    "read_mask",
    "read_split_lists",
    "render_sample",
    "rotate",
    "seeded_split",
    "select_split",
    "split_options",
    "to_tensor",
    "validate_pairs",
]
