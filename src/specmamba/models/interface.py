"""The interface every specmamba segmentation model follows, and the helpers that implement it.

Every architecture in ``specmamba.models``:

- is built as ``Model(in_chans=..., num_classes=..., ...)`` with any positive ``in_chans`` and
  ``num_classes`` (1 = binary, a single logit channel; K >= 2 = K mutually exclusive classes);
- returns logits ``(B, num_classes, H, W)`` at the input resolution from ``forward`` (no sigmoid or
  softmax inside the model);
- exposes ``feature_info``: four dicts ``{"num_chs", "reduction", "module"}`` naming its encoder
  stages, ``module`` being a dotted name usable with ``model.get_submodule`` whose output is that
  stage's map (the spectral audit hooks exactly these points);
- implements ``forward_intermediates(x)`` returning those four stage maps as ``(B, C, H, W)``;
- declares ``input_multiple`` (and optionally ``min_input_size``) and raises
  :class:`~specmamba.errors.InputSizeError` naming the nearest valid sizes for any other input.

:class:`SegmentationModel` is a small base class that stores these attributes and performs the
checks; models subclass it and implement ``forward`` and ``forward_intermediates``.

Keyword arguments that only initialise weights (``encoder_weights``) are listed in
:data:`WEIGHT_INIT_KWARGS`: they do not change the architecture, so checkpoints are rebuilt without
them (the weights come from the checkpoint instead).

Shape letters: B batch, C channels, H/W height/width.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..errors import ConfigError, InputSizeError

__all__ = [
    "WEIGHT_INIT_KWARGS",
    "ChannelsFirst",
    "SegmentationModel",
    "check_input_channels",
    "check_input_size",
    "make_feature_info",
    "model_display_name",
    "nearest_valid_sizes",
    "run_encoder_stages",
    "valid_input_size",
    "validate_channels",
]

#: Factory keyword arguments that only load initial weights and leave the architecture unchanged.
WEIGHT_INIT_KWARGS: frozenset[str] = frozenset({"encoder_weights", "pretrained", "checkpoint_path"})


def make_feature_info(
    num_chs: list[int] | tuple[int, ...],
    reductions: list[int] | tuple[int, ...],
    modules: list[str] | tuple[str, ...],
) -> list[dict[str, Any]]:
    """Build a ``feature_info`` list (one ``{"num_chs", "reduction", "module"}`` dict per stage)."""
    if not len(num_chs) == len(reductions) == len(modules):
        raise ValueError("num_chs, reductions and modules must have the same length")
    return [
        {"num_chs": int(c), "reduction": int(r), "module": str(m)}
        for c, r, m in zip(num_chs, reductions, modules)
    ]


class ChannelsFirst(nn.Module):
    """(B, h, w, C) -> (B, C, h, w) view, as a module so that ``feature_info`` can name it as the hook
    point of a channels-last encoder stage's feature map."""

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(0, 3, 1, 2)


def run_encoder_stages(stages: nn.ModuleList, x: Tensor) -> tuple[list[Tensor], list[Tensor], Tensor]:
    """Run encoder stages that each return (stage map, next input).

    Returns (the stage maps, the input each stage received, the last stage's output): the maps are
    ``forward_intermediates``, the inputs the decoder's skips.
    """
    features, inputs = [], []
    for stage in stages:
        inputs.append(x)
        feature, x = stage(x)
        features.append(feature)
    return features, inputs, x


def validate_channels(in_chans: Any, num_classes: Any, model_name: str) -> None:
    """Raise ConfigError unless ``in_chans`` and ``num_classes`` are positive integers."""
    for arg, value, hint in (
        ("in_chans", in_chans, "e.g. 3 for RGB, 1 for grey-level images"),
        ("num_classes", num_classes, "1 for binary segmentation (one logit channel) or K >= 2 classes"),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{model_name}: {arg} must be a positive integer ({hint}); got {value!r}.")


def nearest_valid_sizes(size: int, multiple: int, min_size: int | None = None) -> tuple[int, int]:
    """The valid side length nearest to ``size`` and the runner-up on the other side.

    Valid sides are multiples of ``multiple`` that are at least ``min_size`` (default: ``multiple``).
    Ties go up (more context rather than less). When ``size`` is below the minimum both values are
    the minimum.
    """
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    floor_size = max(min_size or multiple, multiple)
    floor_size = -(-floor_size // multiple) * multiple  # the smallest valid size is itself a multiple
    down = max(size // multiple * multiple, floor_size)
    up = max(-(-size // multiple) * multiple, floor_size)
    if size - down < up - size:
        return down, up
    return up, down


def valid_input_size(model: nn.Module, size: int) -> int:
    """The side length nearest to ``size`` that ``model`` accepts (per its ``input_multiple``).

    Models without ``input_multiple`` accept any size >= ``min_input_size`` (default 1).
    """
    multiple = int(getattr(model, "input_multiple", 1) or 1)
    min_size = getattr(model, "min_input_size", None)
    return nearest_valid_sizes(int(size), multiple, min_size)[0]


def check_input_size(x: Tensor, multiple: int, model_name: str, min_size: int | None = None) -> None:
    """Raise InputSizeError unless ``x`` is a ``(B, C, H, W)`` batch whose H and W the model can take.

    Valid H and W are multiples of ``multiple`` and at least ``min_size`` (default: ``multiple``).
    The message names the model, the size given, the nearest valid size and the runner-up, e.g.
    "unet_resnet50 needs height and width that are multiples of 32; got 250x250: use 256x256
    (or 224x224)".
    """
    if x.ndim != 4:
        raise InputSizeError(
            f"{model_name} expects a batch of images shaped (B, C, H, W); got a tensor of shape "
            f"{tuple(x.shape)}. Add the batch dimension with x.unsqueeze(0) for a single image."
        )
    h, w = int(x.shape[-2]), int(x.shape[-1])
    lowest = max(min_size or multiple, multiple)
    if h % multiple == 0 and w % multiple == 0 and h >= lowest and w >= lowest:
        return
    nh, ah = nearest_valid_sizes(h, multiple, min_size)
    nw, aw = nearest_valid_sizes(w, multiple, min_size)
    alternative = f" (or {ah}x{aw})" if (ah, aw) != (nh, nw) else ""
    at_least = f" and at least {lowest}" if lowest > multiple else ""
    raise InputSizeError(
        f"{model_name} needs height and width that are multiples of {multiple}{at_least}; got {h}x{w}: "
        f"use {nh}x{nw}{alternative}. Resize or pad the images to such a size (e.g. the image-size "
        f"option of the data pipeline)."
    )


def check_input_channels(x: Tensor, in_chans: int, model_name: str) -> None:
    """Raise InputSizeError unless ``x`` has ``in_chans`` channels in dimension 1."""
    if x.ndim >= 2 and int(x.shape[1]) != in_chans:
        raise InputSizeError(
            f"{model_name} was built with in_chans={in_chans} but the input has {int(x.shape[1])} channels "
            f"(shape {tuple(x.shape)}). Build the model with in_chans={int(x.shape[1])}, or convert the "
            f"images to {in_chans} channel(s)."
        )


def model_display_name(model: nn.Module) -> str:
    """The registry name of ``model`` if known (``specmamba_name`` or ``model_name``), else its class."""
    return (
        getattr(model, "specmamba_name", None) or getattr(model, "model_name", None) or type(model).__name__
    )


class SegmentationModel(nn.Module):
    """Base class of the segmentation models: stores the interface attributes and checks inputs.

    Subclasses call ``super().__init__(in_chans, num_classes, model_name)``, set ``feature_info`` (see
    :func:`make_feature_info`) and implement ``forward`` (logits at input resolution) and
    ``forward_intermediates`` (the four encoder stage maps), both starting with
    ``self.check_input(x)``.
    """

    #: Height and width must be multiples of this.
    input_multiple: int = 1
    #: Smallest accepted height/width (None: ``input_multiple``).
    min_input_size: int | None = None
    #: Registry name used in messages when the model was not built through ``create_model``.
    model_name: str | None = None

    def __init__(self, in_chans: int, num_classes: int, model_name: str | None = None) -> None:
        super().__init__()
        if model_name is not None:
            self.model_name = model_name
        validate_channels(in_chans, num_classes, model_display_name(self))
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.feature_info: list[dict[str, Any]] = []

    def check_input(self, x: Tensor) -> None:
        """Raise InputSizeError unless ``x`` is (B, in_chans, H, W) with a valid H and W."""
        name = model_display_name(self)
        check_input_size(x, self.input_multiple, name, self.min_input_size)
        check_input_channels(x, self.in_chans, name)

    def forward_intermediates(self, x: Tensor) -> list[Tensor]:
        """The encoder stage maps described by ``feature_info``, each (B, C, H, W)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement forward_intermediates")
