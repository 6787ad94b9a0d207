"""Sliding-window inference: training-size windows over an image, blended with Gaussian weights.

The windows are MONAI's (:func:`monai.inferers.sliding_window_inference`): square windows of the
checkpoint's training size, ``overlap`` of a window between neighbours (0.5 by default, nnU-Net's
step of half a patch), each window's logits weighted by a Gaussian centred on it (sigma = 1/8 of the
window, MONAI's and nnU-Net's value) so that window borders, where the network sees the least
context, count least; images smaller than the window are zero-padded (the normalised mean colour).

**At which scale the windows slide (a decision; the issue leaves it open).** ``specmamba train`` fits
every image, whatever its shape, into one square of the training size, so a checkpoint knows objects
at about the scale "the image's shorter side spans one window". By default (``scale=1.0``) the image
is therefore resampled, keeping its aspect ratio, so that its shorter side is one window, and the
windows slide along the longer side: the model sees the scale it was trained at, without the
squeeze that the square resize applies to elongated images. ``scale=s`` makes the shorter side ``s``
windows (finer detail, more windows); ``scale=None`` slides over the image at its own resolution,
MONAI's behaviour, right for models trained on crops of full-resolution images.

**When the windows are used (``mode``).** ``off``: never (the whole image is resized to the training
square, as in training). ``on``: always. ``auto`` (the default of predict and evaluate): only when the
image, at the working scale, is at least :data:`AUTO_LENGTH` windows long on its longer side, i.e. for
the default scale when its aspect ratio is 1.5 or more (the square resize would squeeze it by 1.5x
or more). Nearly square images (all of ../shared/data's ISIC 2017, 798 of Kvasir-SEG's 801) keep the
whole-image resize. Measured on Kvasir-SEG's 161 validation cases (unet_small trained 6 epochs at
96 px): Dice 0.597 resized whole, 0.596 with windows at scale 1, 0.425 at scale 2, 0.202 at the native
resolution; a model trained on whole resized images is best used at the scale it was trained at.

Shape letters: B batch, C channels, K logit channels, S the window (training) size, H/W a case's own
size, h/w the working size the windows slide over.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import ConfigError

__all__ = ["AUTO_LENGTH", "SLIDING_MODES", "SlidingWindow"]

SLIDING_MODES = ("auto", "on", "off")
#: ``auto`` slides when the working image's longer side is at least this many windows.
AUTO_LENGTH = 1.5
#: Gaussian sigma as a fraction of the window (MONAI's default, nnU-Net's 1/8).
SIGMA_SCALE = 0.125


@dataclass(frozen=True)
class SlidingWindow:
    """Where and how windows of ``window`` x ``window`` pixels slide (module docstring).

    Args:
        window: the window side, the checkpoint's training size.
        mode: ``auto`` | ``on`` | ``off``.
        overlap: the fraction of a window shared by neighbouring windows, 0 <= overlap < 1.
        scale: the image's shorter side in windows after resampling; None keeps its own resolution.
        batch_size: windows per forward pass.
    """

    window: int
    mode: str = "auto"
    overlap: float = 0.5
    scale: float | None = 1.0
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.mode not in SLIDING_MODES:
            raise ConfigError(
                f"--sliding-window must be one of {', '.join(SLIDING_MODES)}; got {self.mode!r}."
            )
        if not 0.0 <= float(self.overlap) < 1.0:
            raise ConfigError(
                f"--sw-overlap must lie in [0, 1) (a fraction of the window); got {self.overlap}."
            )
        if self.scale is not None and not float(self.scale) > 0.0:
            raise ConfigError(
                f"--sw-scale must be a positive number of windows (or 'native'); got {self.scale}."
            )

    def working_size(self, height: int, width: int) -> tuple[int, int] | None:
        """The (h, w) an image of (``height``, ``width``) is resampled to before the windows slide over
        it, or None when it takes the whole-image resize to the training square instead."""
        if self.mode == "off":
            return None
        if self.scale is None:
            size = (height, width)
        else:
            factor = self.scale * self.window / min(height, width)
            size = (max(1, round(height * factor)), max(1, round(width * factor)))
        if self.mode == "auto" and max(size) < AUTO_LENGTH * self.window:
            return None
        return size

    def resample(self, image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, h, w): the training pipeline's resampling (bilinear, antialiased)."""
        if tuple(image.shape[-2:]) == tuple(size):
            return image
        return F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)

    def logits(self, model: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, K, h, w): ``model``'s logits of every window, Gaussian-blended."""
        from monai.inferers import sliding_window_inference

        return sliding_window_inference(
            image,
            roi_size=(self.window, self.window),
            sw_batch_size=self.batch_size,
            predictor=model,
            overlap=self.overlap,
            mode="gaussian",
            sigma_scale=SIGMA_SCALE,
            padding_mode="constant",
            cval=0.0,
        )
