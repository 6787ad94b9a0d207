"""Loading weights into a model, with errors and reports that say what does not fit.

:func:`load_weights` / :func:`load_checkpoint` take a file (read by ``checkpoint_file``) or a dict
already read: a specmamba checkpoint must hold the model's architecture; any other layout is
unwrapped, stripped of DDP/compile prefixes and passed through the model's optional
``convert_state_dict(sd) -> sd`` hook (official layouts of other repositories), then loaded
strictly, unless the hook returns a :class:`ConvertedStateDict` marked ``partial`` (e.g. a
pretrained classification encoder), which loads what fits and reports the rest.
:func:`load_checkpoint` returns a :class:`LoadReport` (loaded / skipped with reasons / missing);
:func:`load_weights` is the same with the short :class:`LoadResult`. Building a model from a
checkpoint is ``rebuild.build_model_from_checkpoint``.

Shape letters (conv weights): O output channels, I input channels, kh/kw kernel size.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from torch import Tensor, nn

from ..errors import CheckpointError
from .checkpoint_file import (
    PathLike,
    check_specmamba_format,
    extract_state_dict,
    is_specmamba_checkpoint,
    read_checkpoint,
    strip_prefixes,
)
from .interface import FACTORY_CHANNEL_DEFAULTS, architecture_kwargs, model_display_name

__all__ = [
    "ConvertedStateDict",
    "LoadReport",
    "LoadResult",
    "StateDictDiff",
    "adapt_input_conv",
    "diff_state_dict",
    "load_checkpoint",
    "load_weights",
]

# How many offending tensors an error message lists.
_SHOW = 5

log = logging.getLogger(__name__)


class LoadResult(NamedTuple):
    """Keys the model has that the checkpoint lacked, and checkpoint keys the model does not have."""

    missing_keys: list[str]
    unexpected_keys: list[str]


@dataclass
class StateDictDiff:
    """How a state dict differs from a model's: missing, unexpected and shape-mismatched tensors."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    #: (key, shape in the checkpoint, shape in the model)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)


@dataclass
class ConvertedStateDict:
    """What a model's ``convert_state_dict`` hook may return instead of a plain dict.

    ``state_dict`` holds the tensors renamed to the model's layout; ``layout`` names the layout that was
    recognised; ``partial=True`` says that it covers only part of the model by design (a pretrained
    encoder), so it is loaded non-strictly (shapes still must match); ``skipped`` maps checkpoint
    tensors that were left out to the reason; ``notes`` lists adaptations (e.g. input channels).
    """

    state_dict: dict[str, Tensor]
    layout: str
    partial: bool = False
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class LoadReport:
    """What :func:`load_checkpoint` did: tensors loaded, checkpoint tensors skipped, model tensors missing."""

    source: str
    layout: str
    #: model tensors that received a value from the checkpoint
    loaded: list[str] = field(default_factory=list)
    #: checkpoint tensors that were not loaded -> why
    skipped: dict[str, str] = field(default_factory=dict)
    #: model tensors the checkpoint gave no value (they keep their initialisation)
    missing: list[str] = field(default_factory=list)
    #: checkpoint tensors with no counterpart in the model (non-strict loads of unconverted layouts)
    unexpected: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """True when every model tensor was loaded."""
        return not self.missing

    def summary(self) -> str:
        """A short human-readable account (counts, and the first names of each list)."""
        lines = [f"Loaded {len(self.loaded)} tensor(s) from {self.source} ({self.layout})."]
        if self.skipped:
            by_reason: dict[str, list[str]] = {}
            for key, why in self.skipped.items():
                by_reason.setdefault(why, []).append(key)
            shown = "; ".join(f"{why}: {_fmt_keys(keys)}" for why, keys in by_reason.items())
            lines.append(f"Skipped {len(self.skipped)} checkpoint tensor(s): {shown}.")
        if self.unexpected:
            lines.append(
                f"{len(self.unexpected)} checkpoint tensor(s) not in the model: {_fmt_keys(self.unexpected)}."
            )
        if self.missing:
            lines.append(
                f"{len(self.missing)} model tensor(s) keep their initialisation: {_fmt_keys(self.missing)}."
            )
        lines += self.notes
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


# ----------------------------------------------------------------------------------------------------
# State dicts


def diff_state_dict(model_state: Mapping[str, Any], state_dict: Mapping[str, Any]) -> StateDictDiff:
    """Compare a checkpoint's ``state_dict`` with a model's ``model.state_dict()``.

    BatchNorm ``num_batches_tracked`` counters missing from the checkpoint are not reported: old
    files (e.g. torchvision's ResNet weights) lack them and BatchNorm fills them in when loading.
    """
    diff = StateDictDiff()
    for key, value in model_state.items():
        if key not in state_dict:
            if not key.endswith("num_batches_tracked"):
                diff.missing.append(key)
            continue
        got = tuple(getattr(state_dict[key], "shape", ()))
        want = tuple(getattr(value, "shape", ()))
        if got != want:
            diff.mismatched.append((key, got, want))
    diff.unexpected = [k for k in state_dict if k not in model_state]
    return diff


def adapt_input_conv(weight: Tensor, in_chans: int) -> Tensor:
    """Adapt a first-layer conv weight (O, I, kh, kw) to ``in_chans`` input channels.

    As timm does for pretrained weights: 1 channel -> sum over the I input channels (a grey image
    fed as I identical channels gives the same response); other counts -> tile the I channels and
    scale by I / in_chans so that the summed response to a constant image is unchanged.
    """
    out_chs, chs, kh, kw = weight.shape
    if in_chans == chs:
        return weight
    w = weight.float()
    if in_chans == 1:
        w = w.sum(dim=1, keepdim=True)  # (O, 1, kh, kw)
    else:
        reps = math.ceil(in_chans / chs)
        w = w.repeat(1, reps, 1, 1)[:, :in_chans] * (chs / in_chans)  # (O, in_chans, kh, kw)
    return w.to(weight.dtype)


# ----------------------------------------------------------------------------------------------------
# Loading into models


def _built_with(model: nn.Module) -> dict[str, Any]:
    """The architecture kwargs ``model`` was built with, channel counts included."""
    kwargs = architecture_kwargs(getattr(model, "specmamba_kwargs", None) or {})
    for key in FACTORY_CHANNEL_DEFAULTS:
        if isinstance(getattr(model, key, None), int):
            kwargs.setdefault(key, getattr(model, key))
    return kwargs


def _fmt_keys(keys: list[str]) -> str:
    more = f", ... ({len(keys) - _SHOW} more)" if len(keys) > _SHOW else ""
    return ", ".join(keys[:_SHOW]) + more


def _shape_error(
    model: nn.Module, diff: StateDictDiff, source: str, ckpt: Mapping[str, Any] | None
) -> CheckpointError:
    name = model_display_name(model)
    shown = "; ".join(
        f"{k}: checkpoint {tuple(got)} vs model {tuple(want)}" for k, got, want in diff.mismatched[:_SHOW]
    )
    more = f"; ... ({len(diff.mismatched) - _SHOW} more)" if len(diff.mismatched) > _SHOW else ""
    advice = " Build the model with the arguments the checkpoint was trained with."
    if ckpt is not None:
        saved = {**FACTORY_CHANNEL_DEFAULTS, **architecture_kwargs(ckpt.get("model_kwargs") or {})}
        current = _built_with(model)
        differ = [k for k in saved if k in current and saved[k] != current[k]]
        if differ:
            pairs = ", ".join(f"{k}={saved[k]!r} (model: {current[k]!r})" for k in differ)
            advice = (
                f" The checkpoint was saved with {pairs}. Rebuild the model with those arguments, e.g. "
                "specmamba.models.build_model_from_checkpoint(path)."
            )
    return CheckpointError(
        f"Checkpoint {source} does not fit {name}: {len(diff.mismatched)} tensor(s) have other shapes "
        f"({shown}{more}).{advice}"
    )


def _load_object(model: nn.Module, obj: Mapping[str, Any], source: str, strict: bool | None) -> LoadReport:
    name = model_display_name(model)
    ckpt: Mapping[str, Any] | None = None
    layout, partial, skipped, notes = "specmamba checkpoint", False, {}, []
    if is_specmamba_checkpoint(obj):
        check_specmamba_format(obj, source)
        ckpt = obj
        own = getattr(model, "specmamba_name", None) or getattr(model, "model_name", None)
        if own is not None and obj["model_name"] != own:
            raise CheckpointError(
                f"Checkpoint {source} holds a {obj['model_name']!r} model but the model to load it into is "
                f"{own!r}. Load it with build_model_from_checkpoint(path) or "
                f"create_model({obj['model_name']!r}, checkpoint_path=path)."
            )
        state_dict = strip_prefixes(obj["state_dict"])
    else:
        layout = "state dict"
        state_dict = strip_prefixes(extract_state_dict(obj, f"Checkpoint {source}"))
        convert = getattr(model, "convert_state_dict", None)
        if callable(convert):
            try:
                converted = convert(state_dict)
            except CheckpointError as exc:
                raise CheckpointError(f"Checkpoint {source}: {exc}") from exc
            if isinstance(converted, ConvertedStateDict):
                state_dict, layout, partial = converted.state_dict, converted.layout, converted.partial
                skipped, notes = dict(converted.skipped), list(converted.notes)
            else:
                state_dict = converted
    strict = (not partial) if strict is None else strict
    model_state = model.state_dict()
    diff = diff_state_dict(model_state, state_dict)
    if diff.mismatched:
        raise _shape_error(model, diff, source, ckpt)
    if strict and (diff.missing or diff.unexpected):
        parts = []
        if diff.missing:
            parts.append(
                f"{len(diff.missing)} model tensor(s) are missing from it ({_fmt_keys(diff.missing)})"
            )
        if diff.unexpected:
            parts.append(
                f"{len(diff.unexpected)} of its tensors are not in the model ({_fmt_keys(diff.unexpected)})"
            )
        kind = (
            f" It holds a {layout}, which covers only part of the model."
            if partial
            else (" It probably holds another architecture.")
        )
        raise CheckpointError(
            f"Checkpoint {source} does not match {name}: {' and '.join(parts)}.{kind} Pass strict=False to "
            "load only the tensors whose names match."
        )
    loaded = [k for k in model_state if k in state_dict]
    if not loaded:
        raise CheckpointError(
            f"Checkpoint {source} has no tensor that {name} has (its first tensors: "
            f"{_fmt_keys(list(state_dict))}; the model's: {_fmt_keys(list(model_state))}). It holds another "
            "architecture."
        )
    result = model.load_state_dict(state_dict, strict=strict)
    return LoadReport(
        source=source,
        layout=layout,
        loaded=loaded,
        skipped=skipped,
        missing=list(result.missing_keys),
        unexpected=list(result.unexpected_keys),
        notes=notes,
    )


def load_checkpoint(
    model: nn.Module,
    path_or_state_dict: PathLike | Mapping[str, Any],
    strict: bool | None = None,
    source: str | None = None,
) -> LoadReport:
    """Load weights into ``model`` in place and report what was loaded.

    ``path_or_state_dict``: a file (specmamba checkpoint, ``.pt``/``.pth`` state dict or wrapper,
    ``.safetensors``) or an already loaded dict. Layouts of other repositories go through the model's
    ``convert_state_dict`` hook (VM-UNet: the official VM-UNet layout, loaded strictly, and VMamba-v0
    classification checkpoints, loaded into the encoder with the decoder mirrored).

    ``strict``: None (default) = strict, except for layouts the model's converter marks as partial
    (pretrained encoders); True / False force it. Shape mismatches always raise CheckpointError naming
    the tensors; so does a checkpoint of which no tensor fits. Returns a :class:`LoadReport`.
    ``source`` names an in-memory dict's file in messages.
    """
    if isinstance(path_or_state_dict, Mapping):
        report = _load_object(model, path_or_state_dict, source or "(in-memory dict)", strict)
    else:
        report = _load_object(model, read_checkpoint(path_or_state_dict), str(path_or_state_dict), strict)
    if report.missing or report.skipped or report.notes:
        log.info("%s", report.summary())
    return report


def load_weights(
    model: nn.Module, checkpoint: PathLike | Mapping[str, Any], strict: bool | None = None
) -> LoadResult:
    """Load a checkpoint (path, or an already loaded dict) into ``model`` in place.

    A specmamba checkpoint must hold the same architecture as ``model`` (its ``model_name`` equal to
    the model's registry name) with the same tensor shapes; other layouts are unwrapped, stripped of
    DDP/compile prefixes and passed through ``model.convert_state_dict`` if the model has one.
    Shape mismatches always raise CheckpointError (listing the first tensors with both shapes and the
    constructor arguments that differ); when strict so do missing or unexpected tensors. ``strict=None``
    (default) is strict except for layouts the converter marks partial (see :func:`load_checkpoint`,
    which returns the full report). Returns the keys that were missing / unexpected.
    """
    report = load_checkpoint(model, checkpoint, strict)
    return LoadResult(report.missing, report.unexpected)
