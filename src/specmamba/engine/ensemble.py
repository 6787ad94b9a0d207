"""Several checkpoints and test-time flips as one predictor, averaged in probability space.

What users of nnU-Net and MONAI expect at inference, for ``specmamba predict`` and ``evaluate``:

* **TTA** (``tta=True``): nnU-Net's default mirroring for 2-D images, i.e. the image as it is, flipped
  left-right, flipped up-down, and both (4 forward passes per member); each pass's logits are flipped
  back before they are combined.
* **Ensembles**: any number of checkpoints of ``specmamba train``. They must agree on the number of
  classes, the input channels and the training size (a ConfigError names the checkpoint that does
  not); each member sees the batch in its own normalisation (an exact affine re-mapping of the first
  member's, so members trained on differently normalised data still combine; a member normalised
  like the first sees the batch unchanged).
* **The average**: every pass's logits are resized (bilinear) to the case's own size, turned into
  probabilities (sigmoid for one class, softmax over the classes otherwise), and summed in a fixed
  order (members in the order given, then the four flips), then divided by the number of passes. With
  one member and no TTA the labels are the single-model ones (sigmoid >= 0.5 is logit >= 0, but for
  logits within float32 rounding of 0).
* **Labels**: binary models threshold the foreground probability (``threshold``, 0.5 by default);
  multi-class models take the argmax.

Shape letters: B batch, K logit channels (1 for a binary model), h/w the training size, H/W a case's
own size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..inference import autocast, resize_logits
from ..models.rebuild import load_training_checkpoint
from .sliding_window import SlidingWindow

__all__ = ["FLIPS", "Ensemble", "check_threshold"]

#: nnU-Net's 2-D mirroring set: the spatial dims flipped by each test-time pass (B, K, H, W tensors).
FLIPS: tuple[tuple[int, ...], ...] = ((), (3,), (2,), (2, 3))
#: What the members of an ensemble must share: the input pipeline and the output classes.
_SHARED = ("num_classes", "in_chans", "img_size")


def check_threshold(threshold: float | None, num_classes: int) -> float:
    """The binary threshold to use: ``threshold`` (0 < t < 1; binary models only) or 0.5."""
    if threshold is None:
        return 0.5
    if num_classes != 1:
        raise ConfigError(
            f"--threshold {threshold} applies to binary models; this checkpoint has {num_classes} classes "
            "(their labels are the argmax of the class probabilities). Drop --threshold."
        )
    if not 0.0 < float(threshold) < 1.0:
        raise ConfigError(f"--threshold must lie strictly between 0 and 1; got {threshold}.")
    return float(threshold)


@dataclass
class _Member:
    path: Path
    ckpt: dict[str, Any]
    model: nn.Module
    mean: torch.Tensor  # (1, C, 1, 1)
    std: torch.Tensor


class Ensemble:
    """The checkpoints in ``checkpoints`` (one or more paths) on ``device``, with optional flip TTA.

    Args:
        checkpoints: paths of ``specmamba train`` checkpoints; the first one's config and
            normalisation define the input pipeline (:attr:`config`, :attr:`normalization`).
        device: a torch device.
        tta: nnU-Net's flip set (:data:`FLIPS`) on every member.
        cpu_bf16: bf16 autocast on CPU too (see :func:`specmamba.inference.autocast`).
        threshold: the foreground threshold of binary models (None: 0.5).
    """

    def __init__(
        self,
        checkpoints: str | Path | Sequence[str | Path],
        device: torch.device,
        tta: bool = False,
        cpu_bf16: bool = False,
        threshold: float | None = None,
    ) -> None:
        paths = (
            [Path(checkpoints)] if isinstance(checkpoints, (str, Path)) else [Path(p) for p in checkpoints]
        )
        if not paths:
            raise ConfigError("--checkpoint: give at least one checkpoint.")
        self.device = device
        self.flips = FLIPS if tta else FLIPS[:1]
        self.cpu_bf16 = cpu_bf16
        self.members = [self._load(path) for path in paths]
        self.check_agree(_SHARED, f"an ensemble's checkpoints must agree on {', '.join(_SHARED)}")
        self.threshold = check_threshold(threshold, self.num_classes)

    def _load(self, path: Path) -> _Member:
        ckpt, model = load_training_checkpoint(path)
        mean, std = (
            torch.tensor(ckpt["normalization"][key], dtype=torch.float32, device=self.device).view(
                1, -1, 1, 1
            )
            for key in ("mean", "std")
        )
        return _Member(path, ckpt, model.to(self.device).eval(), mean, std)

    @property
    def config(self) -> dict[str, Any]:
        """The first checkpoint's training config (sizes, classes, split)."""
        return self.members[0].ckpt["config"]

    @property
    def normalization(self) -> dict[str, list[float]]:
        """The normalisation the input batches must carry: the first checkpoint's."""
        return self.members[0].ckpt["normalization"]

    @property
    def num_classes(self) -> int:
        return int(self.config["num_classes"])

    @property
    def n_passes(self) -> int:
        """Forward passes per batch: members x flips."""
        return len(self.members) * len(self.flips)

    def check_agree(self, keys: Sequence[str], why: str) -> None:
        """ConfigError unless every member's config has the first one's value at each of ``keys``."""
        first = self.members[0]
        for member in self.members[1:]:
            for key in keys:
                if member.ckpt["config"].get(key) != first.ckpt["config"].get(key):
                    raise ConfigError(
                        f"--checkpoint {member.path} has {key} = {member.ckpt['config'].get(key)!r}, but "
                        f"{first.path} has {first.ckpt['config'].get(key)!r}; {why}."
                    )

    @torch.no_grad()
    def logits(self, images: torch.Tensor, window: SlidingWindow | None = None) -> list[torch.Tensor]:
        """Every pass's (B, K, h, w) float32 logits of a batch normalised like the first member, in the
        averaging order (members, then flips), each flipped back to the image's orientation.

        ``window``: each pass slides the training-size windows over the (flipped) batch instead of
        taking it whole (:mod:`specmamba.engine.sliding_window`)."""
        first = self.members[0]
        images = images.to(self.device).float()
        raw = images * first.std + first.mean if len(self.members) > 1 else None
        passes = []
        for member in self.members:
            # A member normalised like the first sees the batch itself: the round trip through raw
            # pixels would perturb it by float32 rounding, which the network amplifies.
            same = torch.equal(member.mean, first.mean) and torch.equal(member.std, first.std)
            x = images if same else (raw - member.mean) / member.std
            for dims in self.flips:
                with autocast(self.device, member.ckpt["config"].get("amp", True), self.cpu_bf16):
                    view = x.flip(dims) if dims else x
                    out = member.model(view) if window is None else window.logits(member.model, view)
                out = out.float()
                passes.append(out.flip(dims) if dims else out)
        return passes

    def case_probabilities(
        self, passes: list[torch.Tensor], index: int, size: tuple[int, int]
    ) -> torch.Tensor:
        """(K, H, W) float32 probabilities of case ``index``: the mean over ``passes`` of each pass's
        logits resized to ``size`` = (H, W), then sigmoid (K == 1) or softmax over K."""
        total = None
        for logits in passes:
            resized = resize_logits(logits[index : index + 1], tuple(size))[0]
            probs = torch.sigmoid(resized) if resized.shape[0] == 1 else torch.softmax(resized, dim=0)
            total = probs if total is None else total + probs
        return total / len(passes)

    def labels(self, probs: torch.Tensor) -> np.ndarray:
        """(H, W) int64 label map of (K, H, W) probabilities: foreground >= threshold, or the argmax."""
        if probs.shape[0] == 1:
            return (probs[0] >= self.threshold).long().cpu().numpy()
        return probs.argmax(dim=0).cpu().numpy()
