"""find_pairs / list_images: every supported layout, built from tiny real image files, and every error."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

from specmamba.data import SamplePair, find_pairs, list_images
from specmamba.errors import DataError


def _names(pairs: list[SamplePair]) -> list[str]:
    return [p.name for p in pairs]


def test_same_name_folders_kvasir(tmp_path, make_pair):
    for name in ["cju2", "cju1", "cju3"]:
        make_pair(tmp_path / "images" / f"{name}.jpg", tmp_path / "masks" / f"{name}.jpg")
    pairs = find_pairs(tmp_path)
    assert _names(pairs) == ["cju1", "cju2", "cju3"]
    assert pairs[0] == SamplePair(
        "cju1", tmp_path / "images" / "cju1.jpg", (tmp_path / "masks" / "cju1.jpg",)
    )


def test_isic_suffix_and_superpixels_ignored(tmp_path, make_pair, save_image):
    for i in range(3):
        make_pair(
            tmp_path / "images" / f"ISIC_{i:07d}.jpg", tmp_path / "masks" / f"ISIC_{i:07d}_segmentation.png"
        )
    # ISIC 2017 ships superpixel maps next to the images; they are not cases
    save_image(tmp_path / "images" / "ISIC_0000000_superpixels.png", np.zeros((4, 4, 3), np.uint8))
    pairs = find_pairs(tmp_path)
    assert _names(pairs) == ["ISIC_0000000", "ISIC_0000001", "ISIC_0000002"]
    assert pairs[1].masks == (tmp_path / "masks" / "ISIC_0000001_segmentation.png",)


@pytest.mark.parametrize(
    "image_dir, mask_dir, image_ext, mask_ext",
    [
        ("Images", "Masks", ".JPG", ".PNG"),
        ("image", "mask", ".png", ".bmp"),
        ("imgs", "labels", ".jpeg", ".tiff"),
        ("images", "labels", ".tif", ".png"),
    ],
)
def test_folder_names_and_extensions_case_insensitive(
    tmp_path, make_pair, image_dir, mask_dir, image_ext, mask_ext
):
    make_pair(tmp_path / image_dir / f"a{image_ext}", tmp_path / mask_dir / f"a{mask_ext}")
    make_pair(tmp_path / image_dir / f"b{image_ext}", tmp_path / mask_dir / f"b_mask{mask_ext}")
    pairs = find_pairs(tmp_path)
    assert _names(pairs) == ["a", "b"]
    assert pairs[1].masks[0].name == f"b_mask{mask_ext}"


def test_flat_ph2(tmp_path, make_pair):
    for case in ["IMD003", "IMD002"]:
        make_pair(tmp_path / f"{case}.bmp", tmp_path / f"{case}_lesion.bmp")
    pairs = find_pairs(tmp_path)
    assert _names(pairs) == ["IMD002", "IMD003"]
    assert pairs[0].image.name == "IMD002.bmp" and pairs[0].masks[0].name == "IMD002_lesion.bmp"


def test_flat_busi_recursive_with_extra_masks(tmp_path, make_pair, save_image):
    make_pair(tmp_path / "benign" / "benign (1).png", tmp_path / "benign" / "benign (1)_mask.png")
    for k in (10, 2, 1):  # numeric order, not string order
        save_image(tmp_path / "benign" / f"benign (1)_mask_{k}.png", np.zeros((12, 16), np.uint8))
    make_pair(tmp_path / "malignant" / "malignant (1).png", tmp_path / "malignant" / "malignant (1)_mask.png")
    make_pair(tmp_path / "normal" / "normal (1).png", tmp_path / "normal" / "normal (1)_mask.png")
    (tmp_path / "benign" / ".DS_Store").write_bytes(b"\0\1")
    pairs = find_pairs(tmp_path)
    assert _names(pairs) == ["benign (1)", "malignant (1)", "normal (1)"]
    assert [m.name for m in pairs[0].masks] == [
        "benign (1)_mask.png",
        "benign (1)_mask_1.png",
        "benign (1)_mask_2.png",
        "benign (1)_mask_10.png",
    ]


def test_flat_glas(tmp_path, make_pair):
    make_pair(tmp_path / "train_1.bmp", tmp_path / "train_1_anno.bmp")
    make_pair(tmp_path / "testA_1.bmp", tmp_path / "testA_1_anno.bmp")
    assert _names(find_pairs(tmp_path)) == ["testA_1", "train_1"]


def test_cvc_clinicdb(tmp_path, make_pair):
    for i in (1, 2):
        make_pair(tmp_path / "Original" / f"{i}.tif", tmp_path / "Ground Truth" / f"{i}.tif")
    pairs = find_pairs(tmp_path)
    assert _names(pairs) == ["1", "2"]
    assert pairs[0].masks[0].parent.name == "Ground Truth"


def test_nnunet_raw(tmp_path, make_pair):
    (tmp_path / "dataset.json").write_text("{}")
    for case in ("case_b", "case_a"):
        make_pair(tmp_path / "imagesTr" / f"{case}_0000.png", tmp_path / "labelsTr" / f"{case}.png")
    pairs = find_pairs(tmp_path)
    assert _names(pairs) == ["case_a", "case_b"]
    assert pairs[0].image.name == "case_a_0000.png" and pairs[0].masks[0].name == "case_a.png"


def test_nnunet_extra_channels_rejected(tmp_path, make_pair, save_image):
    make_pair(tmp_path / "imagesTr" / "c_0000.png", tmp_path / "labelsTr" / "c.png")
    save_image(tmp_path / "imagesTr" / "c_0001.png", np.zeros((12, 16), np.uint8))
    with pytest.raises(DataError, match="extra input channels"):
        find_pairs(tmp_path)


def test_missing_root_and_file_root(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        find_pairs(tmp_path / "nope")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(DataError, match="is a file"):
        find_pairs(tmp_path / "f.txt")


def test_empty_folder_names_layouts(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(DataError) as info:
        find_pairs(tmp_path)
    message = str(info.value)
    assert "No images found" in message and "imagesTr" in message and "Ground Truth" in message
    assert "_segmentation" in message


def test_images_without_masks_capped_list(tmp_path, make_pair, save_image):
    make_pair(tmp_path / "images" / "paired.png", tmp_path / "masks" / "paired.png")
    for i in range(13):
        save_image(tmp_path / "images" / f"lonely{i:02d}.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DataError) as info:
        find_pairs(tmp_path)
    message = str(info.value)
    assert "13 images without a mask" in message
    assert len(re.findall(r"lonely\d\d", message)) == 10 and "and 3 more" in message
    assert "--allow-unpaired" in message


def test_masks_without_images(tmp_path, make_pair, save_image):
    make_pair(tmp_path / "images" / "paired.png", tmp_path / "masks" / "paired.png")
    for i in range(2):
        save_image(tmp_path / "masks" / f"ghost{i}_segmentation.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(DataError) as info:
        find_pairs(tmp_path)
    message = str(info.value)
    assert "2 masks without an image" in message and "ghost0_segmentation.png" in message
    assert "more)" not in message


def test_allow_unpaired_warns_and_skips(tmp_path, make_pair, save_image):
    make_pair(tmp_path / "images" / "a.png", tmp_path / "masks" / "a.png")
    save_image(tmp_path / "images" / "b.png", np.zeros((4, 4, 3), np.uint8))
    save_image(tmp_path / "masks" / "c.png", np.zeros((4, 4), np.uint8))
    save_image(tmp_path / "masks" / "d.png", np.zeros((4, 4), np.uint8))
    with pytest.warns(UserWarning, match="Skipped 1 images without a mask and 2 masks without an image"):
        pairs = find_pairs(tmp_path, allow_unpaired=True)
    assert _names(pairs) == ["a"]


def test_paired_layout_gives_no_warning(tmp_path, make_pair):
    make_pair(tmp_path / "images" / "a.png", tmp_path / "masks" / "a.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        find_pairs(tmp_path, allow_unpaired=True)


def test_flat_images_only_says_no_masks(tmp_path, save_image):
    save_image(tmp_path / "x.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DataError, match="no masks"):
        find_pairs(tmp_path)


def test_duplicate_stems_are_ambiguous(tmp_path, make_pair, save_image):
    make_pair(tmp_path / "images" / "a.png", tmp_path / "masks" / "a.png")
    save_image(tmp_path / "images" / "a.jpg", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DataError, match="same name 'a'"):
        find_pairs(tmp_path)


def test_two_main_masks_for_one_case(tmp_path, make_pair, save_image):
    make_pair(tmp_path / "images" / "a.png", tmp_path / "masks" / "a.png")
    save_image(tmp_path / "masks" / "a_segmentation.png", np.zeros((12, 16), np.uint8))
    with pytest.raises(DataError, match="2 candidate masks"):
        find_pairs(tmp_path)


def test_list_images(tmp_path, save_image):
    for name in ["b.PNG", "a.jpg", "c.bmp", ".hidden.png"]:
        save_image(tmp_path / name, np.zeros((4, 4, 3), np.uint8))
    save_image(tmp_path / "sub" / "d.png", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "readme.txt").write_text("x")
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG", "c.bmp"]
    with pytest.raises(DataError, match="does not exist"):
        list_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="No image files"):
        list_images(tmp_path / "empty")
