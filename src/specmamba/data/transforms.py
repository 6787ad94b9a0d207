"""Paired image/mask transforms: resize, flips, rotation, normalisation.

Every transform takes and returns ``(image, mask)`` where ``image`` is float32 (C, H, W) on the
[0, 255] scale until :class:`Normalize` and ``mask`` is an int64 (H, W) label map or ``None``
(unlabelled images). Geometry is applied identically to both: images are resampled bilinearly, masks
with nearest neighbour, so a mask only ever holds labels it held before.

Randomness comes from the ``torch.Generator`` passed to each call (``None``: torch's global RNG, which
``DataLoader`` seeds per worker from ``torch.manual_seed``), so a seed makes augmentation reproducible.
:class:`RandomRotation` draws a fresh angle for every sample: the official VM-UNet code drew one angle
when the transform was built and rotated every image of the run by it (REFERENCE.md section 2).

Shape letters: C channels, H/W height/width, S the square output size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .statistics import IMAGENET_MEAN, IMAGENET_STD

Pair = tuple[torch.Tensor, "torch.Tensor | None"]


def to_tensor(image: np.ndarray, mask: np.ndarray | None = None) -> Pair:
    """(H, W, C) uint8 image -> float32 (C, H, W) on [0, 255]; (H, W) mask -> int64 (H, W)."""
    if image.ndim == 2:
        image = image[:, :, None]
    # np.require copies read-only arrays (np.asarray of a PIL image), which torch cannot wrap safely
    img = torch.from_numpy(np.require(image, requirements=["C", "W"]))
    img = img.permute(2, 0, 1).float()  # (H, W, C) -> (C, H, W)
    return img, None if mask is None else torch.from_numpy(np.require(mask, requirements=["C", "W"])).long()


def _uniform(generator: torch.Generator | None) -> float:
    return float(torch.rand((), generator=generator))


class Resize:
    """Resize to a square ``size`` x ``size``: image bilinear (antialiased), mask nearest."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ConfigError(f"img_size={size}: the output size must be a positive number of pixels.")
        self.size = int(size)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor | None, generator=None) -> Pair:
        s = self.size
        if image.shape[-2:] != (s, s):
            image = F.interpolate(
                image[None], size=(s, s), mode="bilinear", align_corners=False, antialias=True
            )[0]  # (1, C, H, W) -> (C, S, S)
        if mask is not None and mask.shape[-2:] != (s, s):
            mask = F.interpolate(mask[None, None].float(), size=(s, s), mode="nearest-exact")[0, 0].long()
        return image, mask


class RandomFlip:
    """Flip image and mask together with probability ``p`` along "horizontal" (W) or "vertical" (H)."""

    def __init__(self, p: float = 0.5, axis: str = "horizontal") -> None:
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"flip probability {p}: must be between 0 and 1.")
        if axis not in ("horizontal", "vertical"):
            raise ConfigError(f"flip axis {axis!r}: valid values are 'horizontal' and 'vertical'.")
        self.p, self.axis = p, axis

    def __call__(self, image: torch.Tensor, mask: torch.Tensor | None, generator=None) -> Pair:
        if self.p > 0 and _uniform(generator) < self.p:
            dim = -1 if self.axis == "horizontal" else -2
            image = image.flip(dim)
            mask = None if mask is None else mask.flip(dim)
        return image, mask


class RandomRotation:
    """Rotate by an angle drawn uniformly in [-degrees, degrees], anew for every sample.

    Applied with probability ``p``. Image bilinear, mask nearest; pixels rotated in from outside the
    frame are 0 in the image and background (0) in the mask.
    """

    def __init__(self, degrees: float, p: float = 1.0) -> None:
        if degrees < 0:
            raise ConfigError(f"rotate_degrees={degrees}: must be >= 0 (angles are drawn in [-d, d]).")
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"rotation probability {p}: must be between 0 and 1.")
        self.degrees, self.p = float(degrees), p

    def draw_angle(self, generator: torch.Generator | None = None) -> float:
        """One angle in degrees, uniform in [-degrees, degrees]."""
        return (2.0 * _uniform(generator) - 1.0) * self.degrees

    def __call__(self, image: torch.Tensor, mask: torch.Tensor | None, generator=None) -> Pair:
        if self.degrees == 0 or self.p == 0 or _uniform(generator) >= self.p:
            return image, mask
        return rotate(image, mask, self.draw_angle(generator))


def rotate(image: torch.Tensor, mask: torch.Tensor | None, angle: float) -> Pair:
    """Rotate (C, H, W) image and (H, W) mask by ``angle`` degrees about the centre, zero fill."""
    h, w = image.shape[-2:]
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    # Rotation in pixel units expressed in normalised [-1, 1] coordinates, whose x and y scales differ
    # by w / h for non-square images.
    theta = torch.tensor([[c, -s * h / w, 0.0], [s * w / h, c, 0.0]], dtype=torch.float32)[None]  # (1, 2, 3)
    grid = F.affine_grid(theta, [1, 1, h, w], align_corners=False)  # (1, H, W, 2)
    image = F.grid_sample(image[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    if mask is not None:
        mask = F.grid_sample(
            mask[None, None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False
        )[0, 0].long()  # (1, 1, H, W) -> (H, W)
    return image, mask


class Normalize:
    """``(x / 255 - mean) / std`` per channel; ``mean``/``std`` of length 1 or C, on the [0, 1] scale."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = torch.as_tensor(list(mean), dtype=torch.float32)
        self.std = torch.as_tensor(list(std), dtype=torch.float32)
        if self.mean.ndim != 1 or self.std.ndim != 1 or len(self.mean) == 0 or len(self.std) == 0:
            raise ConfigError(f"mean={list(mean)} std={list(std)}: give one value per channel.")
        if bool((self.std <= 0).any()):
            raise ConfigError(f"std={list(std)}: every standard deviation must be positive.")

    def __call__(self, image: torch.Tensor, mask: torch.Tensor | None, generator=None) -> Pair:
        c = image.shape[0]
        if len(self.mean) not in (1, c) or len(self.std) not in (1, c):
            raise ConfigError(
                f"mean has {len(self.mean)} and std {len(self.std)} values but the image has {c} channels: "
                "give one value per channel (or a single value for all)."
            )
        image = (image / 255.0 - self.mean[:, None, None]) / self.std[:, None, None]  # (C,) -> (C, 1, 1)
        return image, mask


class Compose:
    """Apply transforms in order to a numpy (image, mask) pair; returns torch tensors.

    Input: image uint8 (H, W, C), mask uint8 (H, W) label map or ``None``. Output: image float32
    (C, S, S), mask int64 (S, S) or ``None``.
    """

    def __init__(self, transforms: Sequence) -> None:
        self.transforms = list(transforms)

    def __call__(
        self,
        image: np.ndarray | torch.Tensor,
        mask: np.ndarray | torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Pair:
        if isinstance(image, np.ndarray):
            image = to_tensor(image)[0]
        if isinstance(mask, np.ndarray):
            mask = torch.from_numpy(np.require(mask, requirements=["C", "W"])).long()
        for t in self.transforms:
            image, mask = t(image, mask, generator)
        return image.contiguous(), None if mask is None else mask.contiguous()

    def __repr__(self) -> str:
        return f"Compose({', '.join(type(t).__name__ for t in self.transforms)})"


def build_transforms(
    img_size: int | None,
    train: bool,
    hflip: float = 0.5,
    vflip: float = 0.5,
    rotate_degrees: float = 30.0,
    rotate_p: float = 1.0,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Compose:
    """Resize to ``img_size`` (None: keep each image's own size); for training also flips and a fresh
    random rotation; then normalise.

    ``hflip``/``vflip``: flip probabilities; ``rotate_degrees``: angles uniform in [-d, d], applied
    with probability ``rotate_p`` (0 degrees turns rotation off).
    """
    steps: list = [] if img_size is None else [Resize(img_size)]
    if train:
        steps += [
            RandomFlip(hflip, "horizontal"),
            RandomFlip(vflip, "vertical"),
            RandomRotation(rotate_degrees, rotate_p),
        ]
    steps.append(Normalize(mean, std))
    return Compose(steps)
