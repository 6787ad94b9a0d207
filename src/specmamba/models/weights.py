"""Reading checkpoints and loading weights into models, with errors that say what does not fit.

The specmamba checkpoint (written by the engine with ``torch.save``; readable with
``torch.load(path, map_location="cpu", weights_only=True)``) is a dict::

    {"format": "specmamba-checkpoint", "format_version": 1,
     "model_name": str, "model_kwargs": dict, "state_dict": dict, ...}

Other keys (optimizer, epoch, config) are ignored here. Besides that format, :func:`load_weights`
accepts raw state dicts, ``{"state_dict": sd}`` / ``{"model": sd}`` wrappers, DDP (``module.``) and
``torch.compile`` (``_orig_mod.``) prefixes, and ``.safetensors`` files; those are passed through the
model's optional ``convert_state_dict(sd) -> sd`` hook (official layouts of other repositories) and
then loaded strictly, unless the hook returns a :class:`ConvertedStateDict` marked ``partial`` (e.g. a
pretrained classification encoder), which loads what fits and reports the rest.
:func:`load_checkpoint` returns a :class:`LoadReport` (loaded / skipped with reasons / missing);
:func:`load_weights` is the same with the short :class:`LoadResult`.

Nothing is downloaded: every path is local. Pickled Python objects are never executed
(``weights_only=True``).

Shape letters (conv weights): O output channels, I input channels, kh/kw kernel size.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from ..errors import CheckpointError, ConfigError
from .interface import WEIGHT_INIT_KWARGS, model_display_name
from .registry import create_model, is_model, list_models, model_entrypoint

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_FORMAT_VERSION",
    "ConvertedStateDict",
    "LoadReport",
    "LoadResult",
    "StateDictDiff",
    "adapt_input_conv",
    "build_model_from_checkpoint",
    "diff_state_dict",
    "extract_state_dict",
    "is_specmamba_checkpoint",
    "load_checkpoint",
    "load_weights",
    "read_checkpoint",
    "strip_prefixes",
]

CHECKPOINT_FORMAT = "specmamba-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1

# Wrappers under which other training scripts store the state dict, tried in this order.
_STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict", "module")
# Prefixes added by DistributedDataParallel / DataParallel and by torch.compile.
_PREFIXES = ("module.", "_orig_mod.")
# How many offending tensors an error message lists.
_SHOW = 5

PathLike = str | os.PathLike[str]

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
# Reading files


def read_checkpoint(path: PathLike) -> dict[str, Any]:
    """Load a checkpoint file onto the CPU without executing pickled code.

    ``.safetensors`` files give their flat ``{name: tensor}`` dict; anything else is read with
    ``torch.load(weights_only=True)`` and must hold a dict. A specmamba checkpoint is checked for a
    readable ``format_version``, a ``model_name`` and a ``state_dict``. A missing, unreadable,
    corrupt or truncated file raises CheckpointError naming the file.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(
            f"Checkpoint file {p} does not exist. Pass the path of a .pt/.pth/.safetensors file."
        )
    if p.is_dir():
        found = [n for n in ("checkpoint_best.pt", "checkpoint_last.pt") if (p / n).is_file()]
        hint = f" It contains {', '.join(found)}: pass {p / found[0]}." if found else ""
        raise CheckpointError(f"Checkpoint path {p} is a folder, not a checkpoint file.{hint}")
    if p.suffix == ".safetensors":
        return _read_safetensors(p)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower() or "weights_only" in str(exc):
            raise CheckpointError(
                f"Checkpoint {p} contains pickled Python objects other than tensors and plain containers, "
                "which specmamba does not execute (torch.load(weights_only=True)). If you trust the file, "
                "re-save only its tensors: torch.save(torch.load(path, weights_only=False)['state_dict'], "
                f"new_path). Details: {_first_line(exc)}"
            ) from exc
        raise _corrupt(p, exc) from exc
    except Exception as exc:  # torch raises RuntimeError, EOFError, OSError... for damaged files
        raise _corrupt(p, exc) from exc
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"Checkpoint {p} holds a {type(obj).__name__}, not a dict of tensors or a specmamba checkpoint."
        )
    obj = dict(obj)
    if obj.get("format") == CHECKPOINT_FORMAT:
        _check_specmamba_format(obj, str(p))
    return obj


def _read_safetensors(p: Path) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return dict(load_file(str(p), device="cpu"))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise _corrupt(p, exc) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _corrupt(p: Path, exc: BaseException) -> CheckpointError:
    return CheckpointError(
        f"Checkpoint {p} cannot be read: it is truncated, corrupt or not a PyTorch/safetensors file "
        f"({type(exc).__name__}: {_first_line(exc)}). Copy it again, or use checkpoint_last.pt / "
        "checkpoint_best.pt of the run folder."
    )


def _check_specmamba_format(obj: Mapping[str, Any], source: str) -> None:
    version = obj.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise CheckpointError(f"Checkpoint {source} has no valid format_version (got {version!r}).")
    if version > CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"Checkpoint {source} has format_version {version}, written by a newer specmamba; this version "
            f"reads format_version <= {CHECKPOINT_FORMAT_VERSION}. Upgrade specmamba to load it."
        )
    if not isinstance(obj.get("model_name"), str):
        raise CheckpointError(f"Checkpoint {source} does not say which model it holds (no 'model_name').")
    if not isinstance(obj.get("state_dict"), Mapping):
        raise CheckpointError(f"Checkpoint {source} has no 'state_dict' dict of tensors.")
    if not isinstance(obj.get("model_kwargs", {}), Mapping):
        raise CheckpointError(f"Checkpoint {source} has a 'model_kwargs' entry that is not a dict.")


def is_specmamba_checkpoint(obj: Any) -> bool:
    """True when ``obj`` (a loaded checkpoint) is in the specmamba checkpoint format."""
    return isinstance(obj, Mapping) and obj.get("format") == CHECKPOINT_FORMAT


# ----------------------------------------------------------------------------------------------------
# State dicts


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, Tensor) for v in obj.values())


def extract_state_dict(obj: Mapping[str, Any], source: str = "the checkpoint") -> dict[str, Tensor]:
    """The ``{name: tensor}`` dict inside a loaded checkpoint.

    Accepts a specmamba checkpoint, a raw state dict, or a wrapper with the state dict under
    ``state_dict``, ``model``, ``model_state_dict`` or ``module``. Anything else raises CheckpointError.
    """
    if is_specmamba_checkpoint(obj):
        return dict(obj["state_dict"])
    for key in _STATE_DICT_KEYS:
        if _is_tensor_dict(obj.get(key)):
            return dict(obj[key])
    if _is_tensor_dict(obj):
        return dict(obj)
    keys = ", ".join(map(repr, list(obj)[:10])) or "none"
    raise CheckpointError(
        f"{source} holds no state dict: expected a dict of tensors, or one under "
        f"{' / '.join(map(repr, _STATE_DICT_KEYS))}; its top-level keys are {keys}."
    )


def strip_prefixes(
    state_dict: Mapping[str, Tensor], prefixes: tuple[str, ...] = _PREFIXES
) -> dict[str, Tensor]:
    """Remove a prefix shared by every key (DDP's ``module.``, torch.compile's ``_orig_mod.``)."""
    sd = dict(state_dict)
    changed = True
    while changed and sd:
        changed = False
        for prefix in prefixes:
            if all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix) :]: v for k, v in sd.items()}
                changed = True
    return sd


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


def _factory_kwargs(name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The factory's defaults for ``name`` overlaid with ``kwargs`` (the arguments that built it)."""
    out: dict[str, Any] = {}
    if is_model(name):
        for p in inspect.signature(model_entrypoint(name)).parameters.values():
            if p.default is not inspect.Parameter.empty:
                out[p.name] = p.default
    out.update(kwargs)
    return {k: v for k, v in out.items() if k not in WEIGHT_INIT_KWARGS}


def _model_kwargs(model: nn.Module) -> dict[str, Any]:
    name = getattr(model, "specmamba_name", None)
    if name is not None and isinstance(getattr(model, "specmamba_kwargs", None), Mapping):
        return _factory_kwargs(name, model.specmamba_kwargs)
    return {
        k: getattr(model, k) for k in ("in_chans", "num_classes") if isinstance(getattr(model, k, None), int)
    }


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
        saved = _factory_kwargs(ckpt["model_name"], ckpt.get("model_kwargs") or {})
        current = _model_kwargs(model)
        differ = [k for k in saved if k in current and saved[k] != current[k]]
        if differ:
            pairs = ", ".join(f"{k}={saved[k]!r} (model: {current[k]!r})" for k in differ)
            advice = (
                f" The checkpoint was saved with {pairs}. Rebuild the model with those arguments, e.g. "
                "specmamba.models.weights.build_model_from_checkpoint(path)."
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
        _check_specmamba_format(obj, source)
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
    model: nn.Module, path_or_state_dict: PathLike | Mapping[str, Any], strict: bool | None = None
) -> LoadReport:
    """Load weights into ``model`` in place and report what was loaded.

    ``path_or_state_dict``: a file (specmamba checkpoint, ``.pt``/``.pth`` state dict or wrapper,
    ``.safetensors``) or an already loaded dict. Layouts of other repositories go through the model's
    ``convert_state_dict`` hook (VM-UNet: the official VM-UNet layout, loaded strictly, and VMamba-v0
    classification checkpoints, loaded into the encoder with the decoder mirrored).

    ``strict``: None (default) = strict, except for layouts the model's converter marks as partial
    (pretrained encoders); True / False force it. Shape mismatches always raise CheckpointError naming
    the tensors; so does a checkpoint of which no tensor fits. Returns a :class:`LoadReport`.
    """
    if isinstance(path_or_state_dict, Mapping):
        report = _load_object(model, path_or_state_dict, "(in-memory dict)", strict)
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


def build_model_from_checkpoint(
    path: PathLike | Mapping[str, Any], *, source: str | None = None, **overrides: Any
) -> nn.Module:
    """Create the model a specmamba checkpoint (a path, or a dict already read) describes; load its weights.

    The model is built with ``create_model(checkpoint["model_name"], **checkpoint["model_kwargs"])``,
    leaving out arguments that only initialise weights (``encoder_weights``...); ``overrides``
    (None values ignored) replace saved arguments, for options that do not change tensor shapes.
    A raw state dict raises CheckpointError, since it does not say which architecture it holds.
    ``source`` names a dict's file in error messages.
    """
    obj = path if isinstance(path, Mapping) else read_checkpoint(path)
    if isinstance(path, Mapping):
        path = source or "the checkpoint"
    if not is_specmamba_checkpoint(obj):
        raise CheckpointError(
            f"Checkpoint {path} is not a specmamba checkpoint (no 'format': {CHECKPOINT_FORMAT!r}), so it "
            "does not say which architecture it holds. Use create_model(NAME, checkpoint_path=path) with the "
            f"architecture's name (one of: {', '.join(list_models(include_test=False))})."
        )
    name = obj["model_name"]
    kwargs = {k: v for k, v in dict(obj.get("model_kwargs") or {}).items() if k not in WEIGHT_INIT_KWARGS}
    kwargs.update({k: v for k, v in overrides.items() if v is not None})
    try:
        model = create_model(name, **kwargs)
    except ConfigError as exc:
        if not is_model(name):
            raise CheckpointError(
                f"Checkpoint {path} holds a {name!r} model, which this version of specmamba does not have. "
                f"{exc}"
            ) from exc
        raise
    _load_object(model, obj, str(path), strict=True)
    return model
