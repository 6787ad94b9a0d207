"""Dataset folder layouts: find the (image, mask) pairs under a folder, whatever layout it uses.

Medical segmentation datasets are distributed in a handful of folder layouts (REFERENCE.md section 8).
:func:`find_pairs` recognises them, in this order:

1. nnU-Net raw: ``imagesTr/case_0000.png`` + ``labelsTr/case.png`` (the ``_0000`` channel suffix is
   stripped to pair; ``dataset.json`` beside them is not needed).
2. CVC-ClinicDB: ``Original/1.tif`` + ``Ground Truth/1.tif``.
3. Two sibling folders ``images/`` + ``masks/`` (also ``image/`` + ``mask/``, ``imgs/`` + ``labels/``,
   ``images/`` + ``labels/``; folder names are case-insensitive). A mask belongs to the image with the
   same stem (Kvasir-SEG) or with the same stem plus a known mask suffix: ISIC ``X_segmentation``,
   PH2 ``X_lesion``, BUSI ``X_mask`` (and extra ``X_mask_1``, ``X_mask_2``... merged by the reader),
   GlaS ``X_anno``.
4. A flat folder where images and masks sit side by side, told apart by those suffixes (PH2, BUSI,
   GlaS). If the folder holds no image file itself, its sub-folders are searched recursively (BUSI's
   ``benign/``, ``malignant/``, ``normal/``); a mask pairs with the image of the same base name in the
   same folder.

A folder where more than one of these layouts is present (say images/ + masks/ beside flat pairs or an
nnU-Net imagesTr/) is refused, naming each: picking one would silently ignore the others' cases.

File types: .jpg .jpeg .png .bmp .tif .tiff, case-insensitive. Hidden files (``.DS_Store``, macOS
``._x.jpg`` forks) and ISIC ``_superpixels`` images are ignored. Case names are image stems (without
the nnU-Net channel suffix) and must be unique within a dataset.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})

# base name + mask suffix; the non-greedy base lets "a_mask_mask" resolve to base "a_mask".
_MASK_NAME = re.compile(
    r"^(?P<base>.+?)(?P<suffix>_segmentation|_lesion|_mask(?:_(?P<extra>\d+))?|_anno)$", re.IGNORECASE
)
_IGNORED_NAME = re.compile(r"_superpixels$", re.IGNORECASE)
_NNUNET_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")

# (image folder, mask folder) names of the two-folder layout, compared case-insensitively.
_FOLDER_PAIRS = (
    ("images", "masks"),
    ("image", "mask"),
    ("imgs", "labels"),
    ("images", "labels"),
    ("imgs", "masks"),
)
_MASK_SUFFIX_TEXT = "_segmentation, _lesion, _mask (+ _mask_N extras), _anno"
_LAYOUTS_TEXT = (
    "images/ + masks/ (or image/ + mask/, imgs/ + labels/) with masks of the same name or with a mask "
    f"suffix ({_MASK_SUFFIX_TEXT}); a flat folder (searched recursively when it holds only sub-folders) "
    "with images and suffixed masks side by side (PH2, BUSI, GlaS); CVC-ClinicDB Original/ + "
    "Ground Truth/; nnU-Net raw imagesTr/ + labelsTr/"
)
_MAX_LISTED = 10


@dataclass(frozen=True)
class SamplePair:
    """One labelled case: its name, its image file and its mask file(s).

    ``masks`` holds the main mask first, then any extra masks of the same case (BUSI ``_mask_1``...)
    that :func:`specmamba.data.read_mask` merges by union.
    """

    name: str
    image: Path
    masks: tuple[Path, ...]


def is_image_file(path: Path) -> bool:
    """True for a visible file with one of the supported image extensions (case-insensitive)."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") and path.is_file()


def list_images(root: str | os.PathLike[str]) -> list[Path]:
    """Every image file directly in ``root`` (not recursive), sorted by file name.

    For prediction on unlabelled images. A missing folder, a file, or a folder without any image
    raises :class:`DataError`.
    """
    folder = _check_folder(root, "image folder")
    files = sorted((p for p in folder.iterdir() if is_image_file(p)), key=lambda p: p.name)
    if not files:
        raise DataError(
            f"No image files in {folder}: expected files ending in "
            f"{', '.join(sorted(IMAGE_SUFFIXES))} (case-insensitive) directly in that folder "
            "(sub-folders are not searched)."
        )
    return files


def find_pairs(root: str | os.PathLike[str], allow_unpaired: bool = False) -> list[SamplePair]:
    """Detect the layout under ``root`` and return its (image, mask) pairs, sorted by name.

    Images without a mask and masks without an image raise :class:`DataError` (naming up to 10 of
    them), unless ``allow_unpaired`` is true: they are then skipped with a warning saying how many.
    """
    folder = _check_folder(root, "--data folder")
    subdirs = {p.name.lower(): p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")}
    direct = [p for p in folder.iterdir() if is_image_file(p)]

    found = []  # (what the user sees, the pairing function of that layout, its arguments)
    if "imagestr" in subdirs and "labelstr" in subdirs:
        found.append(
            (
                _pair_text(subdirs["imagestr"], subdirs["labelstr"]),
                _pair_nnunet,
                subdirs["imagestr"],
                subdirs["labelstr"],
            )
        )
    for image_name, mask_name in (("original", "ground truth"), *_FOLDER_PAIRS):
        if image_name in subdirs and mask_name in subdirs:
            pair = subdirs[image_name], subdirs[mask_name]
            found.append((_pair_text(*pair), _pair_folders, *pair))
    if direct:
        found.append(
            (f"{len(direct)} image files directly in the folder (flat pairs)", _pair_flat, folder, direct)
        )
    if len(found) > 1:
        raise DataError(
            f"The --data folder {folder} mixes dataset layouts: {'; '.join(f[0] for f in found)}. "
            "Using one would silently leave out the cases of the others: keep one layout per folder, or "
            "point --data at the sub-folder that holds the dataset you mean."
        )
    if found:
        _, pairing, *args = found[0]
        return pairing(*args, allow_unpaired)
    nested = [p for p in folder.rglob("*") if is_image_file(p) and not _hidden_below(p, folder)]
    if nested:
        return _pair_flat(folder, nested, allow_unpaired)
    raise DataError(
        f"No images found in --data folder {folder}. Layouts looked for: {_LAYOUTS_TEXT}. "
        f"Supported file types: {', '.join(sorted(IMAGE_SUFFIXES))}."
    )


# -- layouts ----------------------------------------------------------------------------------------


def _pair_folders(image_dir: Path, mask_dir: Path, allow_unpaired: bool) -> list[SamplePair]:
    """Two sibling folders: masks match images by stem, or by stem + a known mask suffix."""
    images = _by_stem(_files(image_dir), image_dir)
    if not images:
        raise DataError(
            f"The image folder {image_dir} holds no image files (supported: "
            f"{', '.join(sorted(IMAGE_SUFFIXES))}); put the images there or point --data elsewhere."
        )
    masks: dict[str, list[tuple[int, Path]]] = {}
    orphan_masks: list[str] = []
    for path in _files(mask_dir):
        stem = path.stem
        if stem in images:
            masks.setdefault(stem, []).append((-1, path))
            continue
        match = _MASK_NAME.match(stem)
        if match and match["base"] in images:
            masks.setdefault(match["base"], []).append((_extra_index(match), path))
        else:
            orphan_masks.append(path.name)
    return _assemble(images, masks, orphan_masks, image_dir, mask_dir, allow_unpaired)


def _pair_flat(root: Path, files: list[Path], allow_unpaired: bool) -> list[SamplePair]:
    """Images and suffixed masks side by side; a mask pairs with the same base name in its folder."""
    image_files, mask_files = [], []
    for path in files:
        if _IGNORED_NAME.search(path.stem):
            continue
        (mask_files if _MASK_NAME.match(path.stem) else image_files).append(path)
    if not image_files and not mask_files:
        raise DataError(f"No images found in --data folder {root}. Layouts looked for: {_LAYOUTS_TEXT}.")
    if not mask_files:
        raise DataError(
            f"Found {len(image_files)} images but no masks in --data folder {root}. Layouts looked for: "
            f"{_LAYOUTS_TEXT}. If these are unlabelled images, use them for prediction instead."
        )
    images = _by_stem(image_files, root)
    masks: dict[str, list[tuple[int, Path]]] = {}
    orphan_masks: list[str] = []
    for path in mask_files:
        match = _MASK_NAME.match(path.stem)
        assert match is not None  # selected above
        image = images.get(match["base"])
        if image is not None and image.parent == path.parent:
            masks.setdefault(match["base"], []).append((_extra_index(match), path))
        else:
            orphan_masks.append(_relative(path, root))
    return _assemble(images, masks, orphan_masks, root, root, allow_unpaired)


def _pair_nnunet(image_dir: Path, label_dir: Path, allow_unpaired: bool) -> list[SamplePair]:
    """nnU-Net raw: ``imagesTr/<case>_0000.ext`` pairs with ``labelsTr/<case>.ext``."""
    images: dict[str, Path] = {}
    extra_channels: list[str] = []
    for path in _files(image_dir):
        match = _NNUNET_CHANNEL.match(path.stem)
        if match is None:
            raise DataError(
                f"{path} in the nnU-Net folder {image_dir} has no channel suffix: nnU-Net raw images are "
                "named <case>_0000.<ext> (the 4-digit suffix is the input channel)."
            )
        if match["channel"] != "0000":
            extra_channels.append(path.name)
            continue
        images[match["case"]] = path
    if extra_channels:
        raise DataError(
            f"The nnU-Net folder {image_dir} has {len(extra_channels)} files of extra input channels "
            f"({_names(extra_channels)}); specmamba reads one image file per case (RGB or grayscale). "
            "Merge the channels of each case into one image file named <case>_0000.<ext>."
        )
    if not images:
        raise DataError(f"The nnU-Net image folder {image_dir} holds no <case>_0000 image files.")
    labels: dict[str, list[tuple[int, Path]]] = {}
    orphan_labels: list[str] = []
    for path in _files(label_dir):
        if path.stem in images:
            labels.setdefault(path.stem, []).append((-1, path))
        else:
            orphan_labels.append(path.name)
    return _assemble(images, labels, orphan_labels, image_dir, label_dir, allow_unpaired)


# -- helpers ----------------------------------------------------------------------------------------


def _pair_text(image_dir: Path, mask_dir: Path) -> str:
    return f"{image_dir.name}/ + {mask_dir.name}/"


def _check_folder(root: str | os.PathLike[str], what: str) -> Path:
    folder = Path(root).expanduser()
    if not folder.exists():
        raise DataError(f"The {what} {folder} does not exist: give the path of an existing folder.")
    if not folder.is_dir():
        raise DataError(f"The {what} {folder} is a file, not a folder: give the folder that holds the data.")
    return folder


def _files(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if is_image_file(p)), key=lambda p: p.name)


def _hidden_below(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _by_stem(files: Iterable[Path], root: Path) -> dict[str, Path]:
    """Index image files by stem; two files with one stem make the pairing ambiguous."""
    out: dict[str, Path] = {}
    for path in files:
        if _IGNORED_NAME.search(path.stem):
            continue
        if path.stem in out:
            raise DataError(
                f"Two images in {root} have the same name {path.stem!r}: {_relative(out[path.stem], root)} "
                f"and {_relative(path, root)}. Case names must be unique; remove or rename one (if the "
                "folder holds several datasets or splits, point --data at one of them)."
            )
        out[path.stem] = path
    return out


def _extra_index(match: re.Match[str]) -> int:
    """Sort key of a mask within its case: the main mask (-1) first, then _mask_1, _mask_2, ..."""
    return int(match["extra"]) if match["extra"] is not None else -1


def _names(names: list[str]) -> str:
    shown = ", ".join(sorted(names)[:_MAX_LISTED])
    more = len(names) - _MAX_LISTED
    return f"{shown} (and {more} more)" if more > 0 else shown


def _assemble(
    images: dict[str, Path],
    masks: dict[str, list[tuple[int, Path]]],
    orphan_masks: list[str],
    image_dir: Path,
    mask_dir: Path,
    allow_unpaired: bool,
) -> list[SamplePair]:
    orphan_images = [_relative(images[name], image_dir) for name in images if name not in masks]
    if orphan_images or orphan_masks:
        if not allow_unpaired:
            problems = []
            if orphan_images:
                problems.append(
                    f"{len(orphan_images)} images without a mask in {image_dir}: {_names(orphan_images)}"
                )
            if orphan_masks:
                problems.append(
                    f"{len(orphan_masks)} masks without an image in {mask_dir}: {_names(orphan_masks)}"
                )
            raise DataError(
                f"Found {' and '.join(problems)}. Every image needs a mask with the same name or with a "
                f"mask suffix ({_MASK_SUFFIX_TEXT}) and every mask an image; add the missing files, or "
                "pass --allow-unpaired (allow_unpaired=True) to skip the unpaired ones."
            )
        warnings.warn(
            f"Skipped {len(orphan_images)} images without a mask and {len(orphan_masks)} masks without an "
            f"image under {image_dir.parent if image_dir != mask_dir else image_dir} (--allow-unpaired).",
            stacklevel=4,
        )
    for name, found in masks.items():
        main = [p.name for index, p in found if index < 0]
        if len(main) > 1:
            raise DataError(
                f"Case {name!r} has {len(main)} candidate masks in {mask_dir}: {', '.join(sorted(main))}. "
                "Keep exactly one main mask per image (extra BUSI-style masks are named <case>_mask_1, "
                "<case>_mask_2, ...)."
            )
    pairs = [
        SamplePair(name=name, image=images[name], masks=tuple(p for _, p in sorted(found)))
        for name, found in masks.items()
    ]
    if not pairs:
        raise DataError(
            f"No image has a mask under {image_dir.parent if image_dir != mask_dir else image_dir}: "
            f"nothing is left to train or evaluate on. Masks are matched by name or mask suffix "
            f"({_MASK_SUFFIX_TEXT})."
        )
    return sorted(pairs, key=lambda p: p.name)
