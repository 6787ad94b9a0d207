"""read_image / read_mask: channel handling, bit depths, the mask rules, and unreadable files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from specmamba.data import read_image, read_mask
from specmamba.errors import ConfigError, DataError


def _load(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.array(img)


@pytest.fixture
def rgb() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(6, 9, 3), dtype=np.uint8)


def test_read_rgb_gray_and_channel_counts(tmp_path, save_image, rgb):
    path = save_image(tmp_path / "x.png", rgb)
    out = read_image(path)
    assert out.dtype == np.uint8 and out.shape == (6, 9, 3)
    np.testing.assert_array_equal(out, rgb)
    gray = read_image(path, channels=1)
    expected = np.asarray(Image.fromarray(rgb).convert("L"))
    assert gray.shape == (6, 9, 1)
    np.testing.assert_array_equal(gray[..., 0], expected)
    four = read_image(path, channels=4)  # documented: channels repeated cyclically R, G, B, R
    np.testing.assert_array_equal(four[..., :3], rgb)
    np.testing.assert_array_equal(four[..., 3], rgb[..., 0])
    with pytest.raises(ConfigError):
        read_image(path, channels=0)


def test_grayscale_replicated_to_rgb(tmp_path, save_image):
    gray = np.arange(30, dtype=np.uint8).reshape(5, 6)
    out = read_image(save_image(tmp_path / "g.bmp", gray))
    assert out.shape == (5, 6, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)


def test_rgba_and_palette_images(tmp_path, rgb):
    rgba = np.concatenate([rgb, np.full((6, 9, 1), 7, np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), rgb)
    Image.fromarray(rgb).convert("P").save(tmp_path / "p.png")
    out = read_image(tmp_path / "p.png")
    assert out.shape == (6, 9, 3) and out.dtype == np.uint8


def test_16bit_scaled_to_8bit(tmp_path):
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    out = read_image(tmp_path / "deep.png", channels=1)[..., 0]
    np.testing.assert_array_equal(out, [[0, 1, 128, 255]])


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\0" * 40])
def test_corrupt_image_names_file(tmp_path, content):
    path = tmp_path / "broken.png"
    path.write_bytes(content)
    with pytest.raises(DataError, match="broken.png"):
        read_image(path)


def test_truncated_jpeg(tmp_path, rgb):
    Image.fromarray(np.tile(rgb, (20, 20, 1))).save(tmp_path / "t.jpg", quality=95)
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="t.jpg"):
        read_image(tmp_path / "t.jpg")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(DataError, match="does not exist"):
        read_mask(tmp_path / "nope.png")


def _disc(h: int = 24, w: int = 24) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return (((yy - h / 2) ** 2 + (xx - w / 2) ** 2) < (h / 3) ** 2).astype(np.uint8)


def test_binary_0_255_and_0_1(tmp_path, save_image):
    disc = _disc()
    out = read_mask(save_image(tmp_path / "m255.png", disc * 255))
    assert out.dtype == np.uint8 and out.shape == disc.shape
    np.testing.assert_array_equal(out, disc)
    np.testing.assert_array_equal(read_mask(save_image(tmp_path / "m01.png", disc)), disc)


def test_jpeg_mask_thresholded(tmp_path, save_image):
    disc = _disc(48, 48)
    path = save_image(tmp_path / "m.jpg", disc * 255, quality=70)
    raw = _load(path)
    assert len(np.unique(raw)) > 2  # the file really carries compression noise
    out = read_mask(path)
    assert set(np.unique(out)) == {0, 1}
    np.testing.assert_array_equal(out, (raw >= 128).astype(np.uint8))
    assert (out != disc).mean() < 0.02


def test_noisy_png_mask_thresholded(tmp_path, save_image):
    disc = _disc(48, 48)
    noisy = _load(save_image(tmp_path / "m.jpg", disc * 255, quality=60))
    out = read_mask(save_image(tmp_path / "resaved.png", noisy))  # a JPEG mask re-saved as PNG
    np.testing.assert_array_equal(out, (noisy >= 128).astype(np.uint8))


def test_glas_instances_binarised(tmp_path, save_image):
    instances = np.zeros((10, 10), np.uint8)
    instances[1:4, 1:4], instances[5:9, 5:9], instances[0, 9] = 1, 7, 200
    out = read_mask(save_image(tmp_path / "train_1_anno.bmp", instances), num_classes=1)
    np.testing.assert_array_equal(out, (instances > 0).astype(np.uint8))
    hinted = read_mask(save_image(tmp_path / "cells.png", instances), layout_hint="instance")
    np.testing.assert_array_equal(hinted, out)
    with pytest.raises(ConfigError):
        read_mask(tmp_path / "cells.png", layout_hint="glas-ish")


def test_multiclass_label_map_kept_and_range_checked(tmp_path, save_image):
    labels = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    path = save_image(tmp_path / "labels.png", labels)
    np.testing.assert_array_equal(read_mask(path, num_classes=3), labels)
    with pytest.raises(DataError) as info:
        read_mask(path, num_classes=1)
    message = str(info.value)
    assert "mask values out of range for --num-classes 1" in message
    assert "[2]" in message and "labels.png" in message
    many = save_image(tmp_path / "five.png", np.array([[0, 3, 5]], np.uint8))
    with pytest.raises(DataError, match=r"found values \[3, 5\]"):
        read_mask(many, num_classes=3)
    np.testing.assert_array_equal(read_mask(many, num_classes=6), [[0, 3, 5]])


def test_palette_mask_uses_indices(tmp_path):
    labels = np.array([[0, 1], [2, 0]], np.uint8)
    img = Image.fromarray(labels, "L").convert("P")
    img.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    img.save(tmp_path / "pal.png")
    with Image.open(tmp_path / "pal.png") as img:
        assert img.mode == "P"
    np.testing.assert_array_equal(read_mask(tmp_path / "pal.png", num_classes=3), labels)


def test_rgb_mask_reduced_to_one_channel(tmp_path, save_image):
    disc = _disc()
    red = np.zeros((*disc.shape, 3), np.uint8)
    red[..., 0] = disc * 255  # a red lesion on black: its luma (76) alone would fall below 128
    np.testing.assert_array_equal(read_mask(save_image(tmp_path / "red.png", red)), disc)
    gray3 = np.repeat((disc * 255)[..., None], 3, axis=2)
    np.testing.assert_array_equal(read_mask(save_image(tmp_path / "g3.png", gray3)), disc)


def test_16bit_label_mask(tmp_path):
    labels = np.array([[0, 1, 2]], np.uint16)
    Image.fromarray(labels).save(tmp_path / "l16.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "l16.png", num_classes=3), [[0, 1, 2]])


def test_busi_extra_masks_merged_by_union(tmp_path, save_image):
    a = np.zeros((8, 8), np.uint8)
    b = np.zeros((8, 8), np.uint8)
    a[1:3, 1:3] = 255
    b[5:7, 4:8] = 255
    out = read_mask([save_image(tmp_path / "x_mask.png", a), save_image(tmp_path / "x_mask_1.png", b)])
    np.testing.assert_array_equal(out, ((a > 0) | (b > 0)).astype(np.uint8))
    save_image(tmp_path / "x_mask_2.png", np.zeros((8, 9), np.uint8))
    with pytest.raises(DataError, match="differ in size"):
        read_mask([tmp_path / "x_mask.png", tmp_path / "x_mask_2.png"])


def test_empty_mask_is_valid(tmp_path, save_image):
    out = read_mask(save_image(tmp_path / "empty.png", np.zeros((5, 7), np.uint8)))
    assert out.shape == (5, 7) and not out.any()


def test_corrupt_mask(tmp_path):
    (tmp_path / "m.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="Cannot read the mask .*m.png"):
        read_mask(tmp_path / "m.png")
    with pytest.raises(ConfigError):
        read_mask(tmp_path / "m.png", num_classes=0)


def test_grey_level_label_map_is_not_mistaken_for_noise(tmp_path, save_image):
    # {0, 128, 255} with few 128 pixels: nearly all pixels are near 0/255, but it is a 3-level label map
    labels = np.zeros((50, 50), np.uint8)
    labels[:25] = 255
    labels[0, :10] = 128
    path = save_image(tmp_path / "levels.png", labels)
    with pytest.raises(DataError, match=r"found values \[128, 255\]"):
        read_mask(path, num_classes=3)
