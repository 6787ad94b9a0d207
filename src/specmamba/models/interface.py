"""The interface every specmamba segmentation model follows, and the helpers that implement it.

Every architecture in ``specmamba.models``:

- is built as ``Model(in_chans=..., num_classes=..., ...)`` with any positive ``in_chans`` and
  ``num_classes`` (1 = binary, a single logit channel; K >= 2 = K mutually exclusive classes);
- in eval mode returns logits ``(B, num_classes, H, W)`` at the input resolution from ``forward``
  (no sigmoid or softmax inside the model); in train mode it may return a
  :class:`~specmamba.output.SegOutput` (main logits, auxiliary logits, extra loss terms) for the
  trainer's criterion;
- exposes ``feature_info``: one or more dicts ``{"num_chs", "reduction", "module"}`` naming its
  encoder stages, shallowest first, with non-decreasing reductions (a hierarchical encoder has four
  distinct ones; a plain ViT-like backbone may have several stages at one reduction); ``module`` is
  a dotted name usable with ``model.get_submodule`` whose output is that stage's map (the spectral
  audit hooks exactly these points; :mod:`~specmamba.models.hook_points` turns channels-last maps
  and token sequences, with extra tokens at any position, into (B, C, h, w));
  :func:`validate_feature_info` checks these rules;
- implements ``forward_intermediates(x)`` returning those stage maps as ``(B, C, H, W)``;
- declares ``input_multiple`` (and optionally ``min_input_size``), or ``fixed_input_size`` for a
  model that takes one size only (a learned position embedding it does not interpolate), and raises
  :class:`~specmamba.errors.InputSizeError` naming the nearest valid sizes for any other input;
  ``interpolates_pos_embed = True`` says that it resizes a position embedding learned at
  ``pos_embed_size`` to other inputs (accepted, but not what it was trained on);
- when it contains selective-scan layers, switches all of them with ``set_scan_backend``.

:class:`SegmentationModel` is a small base class that stores these attributes and performs the
checks; models subclass it and implement ``forward`` and ``forward_intermediates``.

Keyword arguments that only initialise weights (``encoder_weights``) are listed in
:data:`WEIGHT_INIT_KWARGS`: they do not change the architecture, so :func:`architecture_kwargs`
leaves them out of what a checkpoint records and rebuilds (the weights come from the checkpoint).

Shape letters: B batch, C channels, H/W height/width.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from ..errors import ConfigError, InputSizeError
from ..layers.scan_backend import scan_backend_of, scan_modules, set_scan_backend
from .hook_points import ChannelsFirst

__all__ = [
    "EXECUTION_KWARGS",
    "FACTORY_CHANNEL_DEFAULTS",
    "WEIGHT_INIT_KWARGS",
    "ChannelsFirst",
    "SegmentationModel",
    "architecture_kwargs",
    "architecture_label",
    "check_input_channels",
    "check_input_size",
    "make_feature_info",
    "model_display_name",
    "nearest_valid_sizes",
    "run_encoder_stages",
    "stage_ints",
    "valid_input_size",
    "validate_channels",
    "validate_feature_info",
]

#: Factory keyword arguments that only load initial weights and leave the architecture unchanged.
WEIGHT_INIT_KWARGS: frozenset[str] = frozenset({"encoder_weights", "pretrained", "checkpoint_path"})


#: The channel defaults every registered factory has (``in_chans=3, num_classes=1``), so that saved
#: kwargs without them still say what was built.
FACTORY_CHANNEL_DEFAULTS: dict[str, int] = {"in_chans": 3, "num_classes": 1}


def architecture_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The factory kwargs that describe the architecture: ``kwargs`` without :data:`WEIGHT_INIT_KWARGS`.

    The one rule of what a checkpoint records and what rebuilding a saved model passes to its factory.
    """
    return {k: v for k, v in kwargs.items() if k not in WEIGHT_INIT_KWARGS}


#: Factory keyword arguments that choose how a model runs, not what it computes.
EXECUTION_KWARGS: frozenset[str] = frozenset({"scan_backend"})


def architecture_label(model_name: str, model_kwargs: Mapping[str, Any]) -> str:
    """``model_name``, with the options that make it another network than its factory's default:
    ``spec_vmamba(spectral=False)``. Channel counts at their defaults, weight-init and execution
    options (``scan_backend``) are left out, so two checkpoints are one architecture (for instance two
    training seeds) exactly when their labels are equal."""
    options = {
        key: value
        for key, value in architecture_kwargs(model_kwargs).items()
        if key not in EXECUTION_KWARGS and FACTORY_CHANNEL_DEFAULTS.get(key, object()) != value
    }
    if not options:
        return model_name
    return f"{model_name}({', '.join(f'{key}={value!r}' for key, value in sorted(options.items()))})"


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


def validate_feature_info(info: Any, model_name: str) -> list[dict[str, Any]]:
    """``info`` checked against the interface: at least one ``{"num_chs", "reduction", "module"}`` dict,
    positive integers, reductions non-decreasing. Returns it; raises ConfigError naming the entry."""
    if not isinstance(info, list | tuple) or not info:
        raise ConfigError(
            f"{model_name}: feature_info must list at least one encoder stage as a "
            "{num_chs, reduction, module} dict; got " + repr(info) + "."
        )
    previous = 0
    for i, entry in enumerate(info):
        ok = isinstance(entry, Mapping) and set(entry) >= {"num_chs", "reduction", "module"}
        if ok:
            chs, red = entry["num_chs"], entry["reduction"]
            ok = all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in (chs, red))
            ok = ok and isinstance(entry["module"], str) and bool(entry["module"])
        if not ok:
            raise ConfigError(
                f"{model_name}: feature_info[{i}] = {entry!r} must be a dict with positive integers "
                "'num_chs' and 'reduction' and a dotted 'module' name."
            )
        if entry["reduction"] < previous:
            raise ConfigError(
                f"{model_name}: feature_info reductions must not decrease from stage to stage (shallowest "
                f"first); stage {i} has {entry['reduction']} after {previous}."
            )
        previous = entry["reduction"]
    return list(info)


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


def stage_ints(name: str, value: Any, label: str, length: int | None = None, minimum: int = 0) -> list[int]:
    """``value`` as a list of integers >= ``minimum`` (one per stage; ``length`` of them if given)."""
    try:
        out = [int(v) for v in value]
        ok = not any(isinstance(v, bool) or int(v) != v for v in value)
    except (TypeError, ValueError):
        out, ok = [], False
    ok = ok and bool(out) and all(v >= minimum for v in out) and (length is None or len(out) == length)
    if not ok:
        count = f"{length} integers" if length is not None else "one or more integers"
        raise ConfigError(f"{label}: {name} must be {count} >= {minimum} (one per stage); got {value!r}.")
    return out


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

    Models without ``input_multiple`` accept any size >= ``min_input_size`` (default 1); a model with
    ``fixed_input_size`` accepts that size only.
    """
    fixed = getattr(model, "fixed_input_size", None)
    if fixed is not None:
        return int(fixed)
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
    #: The one side length (H = W) the model takes, or None (any valid multiple).
    fixed_input_size: int | None = None
    #: True when the model resizes a position embedding learned for ``pos_embed_size`` to other inputs.
    interpolates_pos_embed: bool = False
    #: The input side its position embedding was learned at (informational), or None.
    pos_embed_size: int | None = None
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
        fixed = self.fixed_input_size
        if fixed is not None and tuple(x.shape[-2:]) != (fixed, fixed):
            raise InputSizeError(
                f"{name} takes {fixed}x{fixed} inputs only (its position embedding is learned for that "
                f"grid and not interpolated); got {x.shape[-2]}x{x.shape[-1]}: resize the images to "
                f"{fixed}x{fixed}."
            )
        check_input_channels(x, self.in_chans, name)

    @property
    def scan_backend(self) -> str | None:
        """The selective-scan backend of the model's scan layers; None for a model without any."""
        return scan_backend_of(self) if scan_modules(self) else None

    def set_scan_backend(self, scan_backend: str) -> SegmentationModel:
        """Switch every selective-scan layer to ``scan_backend`` (weights unchanged); returns the model."""
        return set_scan_backend(self, scan_backend)

    def forward_intermediates(self, x: Tensor) -> list[Tensor]:
        """The encoder stage maps described by ``feature_info``, each (B, C, H, W)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement forward_intermediates")
