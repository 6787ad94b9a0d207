"""Paired transforms (geometry, fresh rotation angle per sample, normalisation) and the mean/std cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from specmamba.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Normalize,
    RandomFlip,
    RandomRotation,
    Resize,
    SamplePair,
    build_transforms,
    compute_mean_std,
    rotate,
)
from specmamba.data import statistics as statistics_module
from specmamba.errors import ConfigError, DataError


def _sample(h: int = 20, w: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[2:9, 3:12], mask[10:18, 14:27] = 1, 2  # a three-label map
    return image, mask


def test_resize_shapes_dtypes_and_label_set():
    image, mask = _sample()
    out_image, out_mask = build_transforms(16, train=False)(image, mask)
    assert out_image.shape == (3, 16, 16) and out_image.dtype == torch.float32
    assert out_mask.shape == (16, 16) and out_mask.dtype == torch.int64
    assert set(out_mask.unique().tolist()) == {0, 1, 2}
    up_image, up_mask = Resize(64)(
        torch.from_numpy(image).permute(2, 0, 1).float(), torch.from_numpy(mask).long()
    )
    assert up_image.shape == (3, 64, 64) and set(up_mask.unique().tolist()) == {0, 1, 2}


def test_no_mask_passes_through():
    image, _ = _sample()
    out_image, out_mask = build_transforms(8, train=True)(image, None, torch.Generator().manual_seed(0))
    assert out_image.shape == (3, 8, 8) and out_mask is None


def test_rotation_by_90_matches_rot90_exactly():
    image, mask = _sample(16, 16)
    img_t = torch.from_numpy(image).permute(2, 0, 1).float()
    mask_t = torch.from_numpy(mask).long()
    rot_image, rot_mask = rotate(img_t, mask_t, 90.0)
    candidates = [torch.rot90(img_t, k, dims=(1, 2)) for k in (1, -1)]
    errors = [float((rot_image - c).abs().max()) for c in candidates]
    k = (1, -1)[int(np.argmin(errors))]
    assert min(errors) < 1e-3  # geometry is exact, whatever the sign convention
    assert torch.equal(rot_mask, torch.rot90(mask_t, k, dims=(0, 1)))


def test_rotation_keeps_labels_and_fills_with_background():
    image = np.full((32, 32, 3), 200, np.uint8)
    mask = np.ones((32, 32), np.uint8) * 2
    mask[:4] = 1
    rot_image, rot_mask = rotate(
        torch.from_numpy(image).permute(2, 0, 1).float(), torch.from_numpy(mask).long(), 45
    )
    assert set(rot_mask.unique().tolist()) <= {0, 1, 2}
    assert rot_mask[0, 0] == 0 and rot_image[:, 0, 0].abs().max() < 1e-3  # corners rotated in from outside
    assert rot_mask[16, 16] == 2 and torch.allclose(rot_image[:, 16, 16], torch.tensor(200.0))


def test_fresh_angle_per_sample():
    rotation = RandomRotation(30.0)
    gen = torch.Generator().manual_seed(0)
    angles = [rotation.draw_angle(gen) for _ in range(50)]
    assert len(set(angles)) == 50 and all(-30 <= a <= 30 for a in angles)
    assert min(angles) < -15 and max(angles) > 15  # spread over the range, not one angle for the run
    # the same sample passed twice through one pipeline comes out rotated differently
    image, mask = _sample(24, 24)
    pipeline = build_transforms(24, train=True, hflip=0.0, vflip=0.0, rotate_degrees=30.0)
    gen = torch.Generator().manual_seed(1)
    first, second = pipeline(image, mask, gen), pipeline(image, mask, gen)
    assert not torch.equal(first[0], second[0])


def test_augmentation_reproducible_with_seed():
    image, mask = _sample(24, 24)
    pipeline = build_transforms(24, train=True)
    a = pipeline(image, mask, torch.Generator().manual_seed(5))
    b = pipeline(image, mask, torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_flips():
    image, mask = _sample()
    img_t, mask_t = torch.from_numpy(image).permute(2, 0, 1).float(), torch.from_numpy(mask).long()
    h_img, h_mask = RandomFlip(1.0, "horizontal")(img_t, mask_t)
    assert torch.equal(h_img, img_t.flip(-1)) and torch.equal(h_mask, mask_t.flip(-1))
    v_img, v_mask = RandomFlip(1.0, "vertical")(img_t, mask_t)
    assert torch.equal(v_img, img_t.flip(-2)) and torch.equal(v_mask, mask_t.flip(-2))
    n_img, _ = RandomFlip(0.0)(img_t, mask_t)
    assert torch.equal(n_img, img_t)
    with pytest.raises(ConfigError):
        RandomFlip(1.5)


def test_normalize_values_and_errors():
    image = torch.full((3, 2, 2), 255.0)
    out, _ = Normalize(IMAGENET_MEAN, IMAGENET_STD)(image, None)
    expected = (1.0 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(out[:, 0, 0], expected)
    with pytest.raises(ConfigError, match="channels"):
        Normalize([0.5, 0.5], [0.2, 0.2])(image, None)
    with pytest.raises(ConfigError, match="positive"):
        Normalize([0.5], [0.0])


def _write_images(tmp_path, save_image) -> list[SamplePair]:
    rng = np.random.default_rng(3)
    pairs = []
    for i, (h, w) in enumerate([(5, 7), (9, 4)]):
        image = save_image(
            tmp_path / "data" / "images" / f"i{i}.png", rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        )
        pairs.append(SamplePair(f"i{i}", image, (image,)))
    return pairs


def test_mean_std_values_and_cache(tmp_path, save_image, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("SPECMAMBA_CACHE", str(cache))
    pairs = _write_images(tmp_path, save_image)
    data_files_before = sorted((tmp_path / "data").rglob("*"))
    pixels = np.concatenate([statistics_module.read_image(p.image).reshape(-1, 3) for p in pairs]) / 255.0
    mean, std = compute_mean_std(pairs, 3)
    np.testing.assert_allclose(mean, pixels.mean(0), atol=1e-9)
    np.testing.assert_allclose(std, pixels.std(0), atol=1e-9)
    written = list(cache.rglob("*.json"))
    assert len(written) == 1 and json.loads(written[0].read_text())["mean"] == list(mean)
    assert sorted((tmp_path / "data").rglob("*")) == data_files_before  # the data folder is never written

    def no_reading(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(statistics_module, "read_image", no_reading)
    assert compute_mean_std(list(reversed(pairs)), 3) == (mean, std)  # order does not change the key
    with pytest.raises(AssertionError):  # another channel count is another cache entry
        compute_mean_std(pairs, 1)


def test_mean_std_cache_invalidated_by_changed_image(tmp_path, save_image, monkeypatch):
    monkeypatch.setenv("SPECMAMBA_CACHE", str(tmp_path / "cache"))
    pairs = _write_images(tmp_path, save_image)
    first = compute_mean_std(pairs, 3)
    save_image(pairs[0].image, np.zeros((5, 7, 3), np.uint8))
    second = compute_mean_std(pairs, 3)
    assert second != first and len(list((tmp_path / "cache").rglob("*.json"))) == 2
    with pytest.raises(DataError):
        compute_mean_std([], 3)
