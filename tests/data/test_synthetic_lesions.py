"""Synthetic lesion dataset: layout, determinism, overwrite rules; the task is learnable, not trivial."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from specmamba.data import find_pairs, make_synthetic_dataset, read_mask, render_sample
from specmamba.errors import DataError


def _load(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.array(img)


def _arrays(root):
    return [(_load(p.image), _load(p.masks[0])) for p in find_pairs(root)]


def test_layout_and_determinism(tmp_path):
    out = make_synthetic_dataset(tmp_path / "a", n=5, size=32, seed=3)
    assert out == tmp_path / "a"
    pairs = find_pairs(out)
    assert [p.name for p in pairs] == [f"synth_{i:04d}" for i in range(5)]
    assert pairs[0].image == out / "images" / "synth_0000.png" and pairs[0].masks == (
        out / "masks" / "synth_0000.png",
    )
    image, mask = _load(pairs[0].image), _load(pairs[0].masks[0])
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8 and mask.shape == (32, 32)
    assert set(np.unique(mask)) <= {0, 255} and read_mask(pairs[0].masks).any()
    assert "seed: 3" in (out / "README.txt").read_text()

    again = make_synthetic_dataset(tmp_path / "b", n=5, size=32, seed=3)
    for (ia, ma), (ib, mb) in zip(_arrays(out), _arrays(again), strict=True):
        assert np.array_equal(ia, ib) and np.array_equal(ma, mb)
    prefix = make_synthetic_dataset(tmp_path / "c", n=2, size=32, seed=3)  # image i depends on (seed, i) only
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(_arrays(prefix), _arrays(out)))
    other = make_synthetic_dataset(tmp_path / "d", n=2, size=32, seed=4)
    assert not np.array_equal(_arrays(other)[0][0], _arrays(out)[0][0])


def test_refuses_non_empty_folder_unless_overwrite(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        make_synthetic_dataset(tmp_path, n=2, size=16)
    make_synthetic_dataset(tmp_path, n=3, size=16, overwrite=True)
    make_synthetic_dataset(tmp_path, n=2, size=16, seed=1, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["synth_0000.png", "synth_0001.png"]
    assert (tmp_path / "keep.txt").read_text() == "mine"  # only the generator's own files are replaced
    assert "seed: 1" in (tmp_path / "README.txt").read_text()


def test_lesions_varied_single_blob_and_learnable_contrast():
    diameters, contrasts = [], []
    for i in range(60):
        image, mask = render_sample(np.random.default_rng(i), 64)
        assert set(np.unique(mask)) == {0, 1}
        assert ndimage.label(mask)[1] == 1  # one lesion
        diameters.append(np.sqrt(4 * mask.sum() / np.pi) / 64)
        luma = image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        ring = ndimage.binary_dilation(mask, iterations=3) & ~mask.astype(bool)
        contrasts.append(luma[ring].mean() - luma[mask > 0].mean())
    assert 0.06 <= min(diameters) < 0.15 and 0.25 < max(diameters) <= 0.45  # 8-35% of the side
    assert min(contrasts) > 3 and np.median(contrasts) > 20  # darker than the skin around it
    assert max(contrasts) - min(contrasts) > 30  # from subtle to strong


def test_not_solved_by_thresholding_one_channel():
    samples = [render_sample(np.random.default_rng(100 + i), 64) for i in range(40)]
    images = np.stack([s[0] for s in samples]).astype(np.float64)  # (N, S, S, 3)
    masks = np.stack([s[1] for s in samples]).astype(bool)
    channels = [images[..., c] for c in range(3)] + [images @ np.array([0.299, 0.587, 0.114])]
    best = 0.0
    for channel in channels:
        for threshold in range(10, 250, 5):
            pred = channel < threshold
            inter = (pred & masks).sum((1, 2))
            dice = 2 * inter / np.maximum(pred.sum((1, 2)) + masks.sum((1, 2)), 1)
            best = max(best, float(dice.mean()))
    assert 0.2 < best < 0.75  # some signal in intensity, but a global threshold is far from the answer


def test_hairs_are_drawn_but_not_in_the_mask(monkeypatch):
    from specmamba.data import synthetic

    with_hairs = [render_sample(np.random.default_rng(i), 64) for i in range(12)]
    # dark thin strokes far from the lesion exist in several images ...
    assert (
        sum(
            int(((image.max(axis=2) < 90) & ~ndimage.binary_dilation(mask, iterations=4)).sum() > 5)
            for image, mask in with_hairs
        )
        >= 3
    )
    # ... and removing them changes the images but not a single mask pixel
    monkeypatch.setattr(synthetic, "_hairs", lambda rng, image: image)
    without = [render_sample(np.random.default_rng(i), 64) for i in range(12)]
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(with_hairs, without))
    assert sum(not np.array_equal(a[0], b[0]) for a, b in zip(with_hairs, without)) >= 6
