"""Synthetic dermoscopy-like lesion dataset: the built-in data of ``specmamba demo`` and of the tests.

Each image shows skin (a tone with smooth low-frequency colour variation, reddish blotches and a fine
noise texture), one irregular pigmented lesion and a few dark hairs. The lesion outline is a star-shaped
blob whose radius is a random sum of Fourier harmonics of the angle,
``r(phi) = r0 * (1 + sum_k a_k cos(k phi + p_k))``, with an equivalent diameter of 8-35% of the image
side; its colour is a brown mixed into the local skin with a contrast from subtle to strong, mottled by
a low-frequency field, with a darker core or rim, dark globules and sometimes a blue-grey veil; its
edge is soft (a logistic ramp 0.6-3 px wide). The mask is the lesion (ramp >= 0.5); hairs, which cross
lesion and skin alike, and the dark vignette of some dermoscopes are not in the mask, so one-channel
thresholding does not solve the task, while a small network learns it within a few CPU epochs.

With ``num_classes=3`` the lesion also has an inner region, label 2 (its core, at 35-60% of the
outline's radius, drawn darker and bluer so that it can be seen), inside label 1: a three-class task for
the multi-class pipeline. The binary images are unchanged by that option (it draws its random numbers
after theirs).

Layout: ``out/images/synth_0000.png`` (RGB) + ``out/masks/synth_0000.png`` (0/255 for the binary task,
the labels 0/1/2 for three classes), same names, and ``out/README.txt``. Image ``i`` depends only on
(seed, i, size, num_classes): a smaller ``n`` gives a prefix.

Shape letters: S image side, 3 RGB channels.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..atomic import atomic_path, atomic_write_text
from ..errors import ConfigError, DataError

# RGB anchors (0-255) between which colours are interpolated.
_SKIN_LIGHT = np.array([236.0, 200.0, 178.0])
_SKIN_DARK = np.array([186.0, 132.0, 100.0])
_LESION_LIGHT = np.array([168.0, 112.0, 78.0])
_LESION_DARK = np.array([62.0, 38.0, 30.0])
_VEIL = np.array([112.0, 118.0, 138.0])
_CORE = np.array([40.0, 40.0, 70.0])
_GENERATOR_VERSION = 1
SYNTHETIC_CLASSES = (1, 3)


def make_synthetic_dataset(
    out: str | os.PathLike[str],
    n: int = 200,
    size: int = 256,
    seed: int = 0,
    overwrite: bool = False,
    num_classes: int = 1,
) -> Path:
    """Write ``n`` synthetic lesion images with their masks under ``out``; returns ``out``.

    ``num_classes`` 1: binary 0/255 masks; 3: label maps 0 (skin), 1 (lesion), 2 (its core).

    Deterministic for a given ``seed``. A non-empty ``out`` raises :class:`DataError` unless
    ``overwrite`` is true; then the files of an earlier synthetic set (``images/synth_*.png``,
    ``masks/synth_*.png``, ``README.txt``) are replaced and nothing else in ``out`` is touched.
    """
    if n < 1:
        raise ConfigError(f"--n {n}: the synthetic dataset needs at least one image.")
    if size < 16:
        raise ConfigError(f"--size {size}: synthetic images need at least 16 x 16 pixels.")
    if num_classes not in SYNTHETIC_CLASSES:
        raise ConfigError(
            f"--num-classes {num_classes}: the synthetic data has 1 (binary lesion masks) or 3 classes "
            "(background, lesion, lesion core)."
        )
    root = Path(out).expanduser()
    if root.exists() and not root.is_dir():
        raise DataError(f"The output {root} is a file: give a folder path for the synthetic dataset.")
    if root.is_dir() and any(root.iterdir()):
        if not overwrite:
            raise DataError(
                f"The output folder {root} is not empty: choose a new folder, or pass --overwrite to replace "
                "an earlier synthetic dataset there."
            )
        for old in [*root.glob("images/synth_*.png"), *root.glob("masks/synth_*.png"), root / "README.txt"]:
            if old.is_file():
                old.unlink()
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)

    width = max(4, len(str(n - 1)))
    for i in range(n):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(i,)))
        image, mask = render_sample(rng, size, num_classes)
        name = f"synth_{i:0{width}d}.png"
        _save_png(Image.fromarray(image, "RGB"), root / "images" / name)
        _save_png(
            Image.fromarray(mask * np.uint8(255) if num_classes == 1 else mask, "L"), root / "masks" / name
        )
    atomic_write_text(root / "README.txt", _readme(n, size, seed, num_classes))
    return root


def render_sample(rng: np.random.Generator, size: int, num_classes: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic case: RGB image uint8 (S, S, 3) and mask uint8 (S, S): {0, 1}, or {0, 1, 2} for
    ``num_classes=3`` (2 = the lesion's core)."""
    s = size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)  # (S, S) pixel coordinates

    skin = _skin(rng, s)  # (S, S, 3)

    # Lesion outline: radius as a random Fourier series of the angle around the centre.
    diameter = rng.uniform(0.08, 0.35)  # equivalent diameter, as a fraction of the side
    r0 = diameter * s / 2
    margin = max(r0 * 1.1, 0.18 * s)
    cy, cx = rng.uniform(margin, s - margin, size=2)
    dy, dx = yy - cy, xx - cx
    rho = np.hypot(dy, dx)
    phi = np.arctan2(dy, dx)
    k = np.arange(2, 13, dtype=np.float32)  # harmonics 2..12: low ones set the shape, high ones the rim
    amp = rng.uniform(0.0, 1.0, size=k.size) * rng.uniform(0.2, 0.5) / k
    phase = rng.uniform(0.0, 2 * np.pi, size=k.size)
    radius = r0 * (1.0 + np.tensordot(amp, np.cos(k[:, None, None] * phi + phase[:, None, None]), axes=1))
    radius = np.maximum(radius, 0.35 * r0)  # (S, S)
    signed = rho - radius  # < 0 inside the lesion, in pixels
    edge = min(rng.uniform(0.6, 3.0), 0.15 * r0)  # small lesions keep a visible outline
    alpha = 1.0 / (1.0 + np.exp(np.clip(signed / edge, -50, 50)))  # soft edge, 0.5 on the outline
    mask = (signed < 0).astype(np.uint8)

    # Lesion colour: a brown mixed into the local skin by the contrast, then textured.
    # two browns blended by a smooth field give lighter and darker areas within the lesion
    shades = rng.uniform(0, 1, size=2)
    browns = _LESION_LIGHT + shades[:, None] * (_LESION_DARK - _LESION_LIGHT) + rng.normal(0, 6, (2, 3))
    blend = np.clip(0.5 + 0.6 * _smooth_field(rng, s, cells=rng.integers(3, 7)), 0, 1)[..., None]
    brown = browns[0] * (1 - blend) + browns[1] * blend  # (S, S, 3)
    # subtle to strong; small lesions are never also faint, so every case stays learnable
    contrast = rng.uniform(0.45 + 0.6 * max(0.0, 0.2 - diameter), 1.0)
    lesion = skin * (1 - contrast) + brown * contrast
    mottle = _smooth_field(rng, s, cells=rng.integers(5, 11))[..., None]
    lesion = lesion * (1.0 + rng.uniform(0.05, 0.22) * mottle)
    core = rng.uniform(-0.15, 0.3)  # > 0: darker centre, < 0: darker rim
    lesion = lesion * (1.0 - core * np.clip(1.0 - rho / radius, 0, 1))[..., None]
    lesion = lesion * (1.0 - rng.uniform(0.15, 0.45) * _globules(rng, s, cy, cx, r0, yy, xx))[..., None]
    if rng.uniform() < 0.3:  # blue-grey veil over part of the lesion
        veil = np.clip(_smooth_field(rng, s, cells=4) * 1.5, 0, 1)[..., None] * rng.uniform(0.3, 0.7)
        lesion = lesion * (1 - veil) + _VEIL * veil
    image = skin * (1 - alpha[..., None]) + lesion * alpha[..., None]

    image = _vignette(rng, image, yy, xx)
    image = _hairs(rng, image)
    image = image * rng.uniform(0.88, 1.08) + rng.normal(0.0, 2.0, size=image.shape)  # exposure, sensor
    if num_classes == 3:  # drawn last, so the binary images stay what they were
        image, mask = _core(rng, image, mask, rho, radius, edge)
    return np.clip(image, 0, 255).round().astype(np.uint8), mask


def _core(
    rng: np.random.Generator,
    image: np.ndarray,
    mask: np.ndarray,
    rho: np.ndarray,
    radius: np.ndarray,
    edge: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The lesion's core (label 2): the region within 35-60% of the outline's radius, darker and bluer."""
    signed = rho - rng.uniform(0.35, 0.6) * radius  # < 0 inside the core
    alpha = 1.0 / (1.0 + np.exp(np.clip(signed / edge, -50, 50)))[..., None]
    strength = rng.uniform(0.5, 0.8)
    image = image * (1 - strength * alpha) + _CORE * strength * alpha
    return image, np.where(signed < 0, 2, mask).astype(np.uint8)


def _smooth_field(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise (S, S) of about unit amplitude: a cells x cells grid upsampled bicubically."""
    coarse = rng.standard_normal((int(cells), int(cells))).astype(np.float32)
    return np.asarray(Image.fromarray(coarse, "F").resize((size, size), Image.BICUBIC))


def _skin(rng: np.random.Generator, s: int) -> np.ndarray:
    """Skin background (S, S, 3): tone, smooth shading, reddish blotches, fine texture."""
    tone = _SKIN_LIGHT + rng.uniform(0, 1) * (_SKIN_DARK - _SKIN_LIGHT) + rng.normal(0, 6, 3)
    shade = 1.0 + rng.uniform(0.03, 0.10) * _smooth_field(rng, s, cells=3)
    skin = tone * shade[..., None]  # (S, S) -> (S, S, 3)
    red = np.clip(_smooth_field(rng, s, cells=rng.integers(2, 5)), 0, None) * rng.uniform(0, 9)
    skin = skin + red[..., None] * np.array([0.6, -1.0, -0.8])
    pores = _smooth_field(rng, s, cells=max(4, s // 4)) * rng.uniform(1.5, 5.0)
    return skin + pores[..., None] + rng.normal(0.0, rng.uniform(1.5, 4.0), size=(s, s, 3))


def _globules(
    rng: np.random.Generator, s: int, cy: float, cx: float, r0: float, yy: np.ndarray, xx: np.ndarray
) -> np.ndarray:
    """Dark dots inside the lesion: a sum of small Gaussian blobs (S, S) in [0, 1]."""
    count = int(rng.integers(0, 10)) if rng.uniform() < 0.5 else 0
    if count == 0:
        return np.zeros((s, s), dtype=np.float32)
    ang = rng.uniform(0, 2 * np.pi, count)
    dist = r0 * np.sqrt(rng.uniform(0, 0.6, count))
    py, px = cy + dist * np.sin(ang), cx + dist * np.cos(ang)
    sigma = rng.uniform(0.6, 1.6, count) * max(1.0, s / 128)
    blobs = np.exp(
        -((yy[None] - py[:, None, None]) ** 2 + (xx[None] - px[:, None, None]) ** 2)
        / (2 * sigma[:, None, None] ** 2)
    )  # (count, S, S)
    return np.clip(blobs.sum(0), 0, 1)


def _vignette(rng: np.random.Generator, image: np.ndarray, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Dark circular frame of contact dermoscopes, in about a third of the images."""
    if rng.uniform() >= 0.35:
        return image
    s = image.shape[0]
    dist = np.hypot(yy - s / 2, xx - s / 2) / (s / 2)
    frame = np.clip((dist - rng.uniform(1.0, 1.3)) / rng.uniform(0.05, 0.25), 0, 1)[..., None]
    return image * (1 - frame) + np.array([28.0, 22.0, 22.0]) * frame


def _hairs(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """0-6 dark curved hairs (quadratic Bezier strokes), antialiased by drawing at twice the size."""
    count = int(rng.integers(0, 7))
    if count == 0:
        return image
    s = image.shape[0]
    big = 2 * s
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    t = np.linspace(0.0, 1.0, 48)[:, None]
    for _ in range(count):
        p0, p2 = rng.uniform(-0.1, 1.1, size=(2, 2)) * big
        p1 = (p0 + p2) / 2 + rng.normal(0, 0.25, 2) * big  # control point bends the hair
        curve = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2  # (48, 2)
        width = max(1, round(rng.uniform(0.6, 1.6) * big / 256))
        draw.line([tuple(p) for p in curve], fill=int(rng.uniform(150, 255)), width=width, joint="curve")
    cover = np.asarray(canvas.resize((s, s), Image.BILINEAR), dtype=np.float32)[..., None] / 255.0
    hair_colour = rng.uniform(20, 60) + rng.normal(0, 4, 3)
    return image * (1 - cover) + hair_colour * cover


def _save_png(img: Image.Image, path: Path) -> None:
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG", compress_level=3)


def _readme(n: int, size: int, seed: int, num_classes: int) -> str:
    labels = (
        "0 background / 255 lesion" if num_classes == 1 else "labels 0 background, 1 lesion, 2 lesion core"
    )
    return (
        "Synthetic dermoscopy-like lesion segmentation dataset, written by specmamba "
        f"(specmamba.data.synthetic, generator version {_GENERATOR_VERSION}).\n\n"
        f"images: {n}, size: {size}x{size}, seed: {seed}, classes: {num_classes}\n"
        f"layout: images/synth_XXXX.png (RGB) + masks/synth_XXXX.png ({labels})\n\n"
        "Every image is generated from random numbers: skin with one irregular pigmented lesion, soft "
        "lesion edges and dark hairs (hairs are not part of the mask). No patient data is involved. "
        "Regenerate with: specmamba synth OUT --n "
        f"{n} --size {size} --seed {seed}"
        + (f" --num-classes {num_classes}" if num_classes != 1 else "")
        + "\n"
    )
