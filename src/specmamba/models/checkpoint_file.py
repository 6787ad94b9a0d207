"""The checkpoint file: reading a file from disk without executing code, and finding its state dict.

The specmamba checkpoint (written by the engine with ``torch.save``; readable with
``torch.load(path, map_location="cpu", weights_only=True)``) is a dict::

    {"format": "specmamba-checkpoint", "format_version": 1,
     "model_name": str, "model_kwargs": dict, "state_dict": dict, ...}

Other keys (optimizer, epoch, config, criterion_state) belong to the engine. Besides that format,
raw state dicts, ``{"state_dict": sd}`` / ``{"model": sd}`` wrappers, DDP (``module.``) and
``torch.compile`` (``_orig_mod.``) prefixes and ``.safetensors`` files are read. Nothing is
downloaded: every path is local. Pickled Python objects are never executed: files are read with
``torch.load(weights_only=True)``, and a file that pickles other objects beside its tensors (Vim's
released checkpoints hold an argparse Namespace) is read by ``safe_pickle.load_tensors_only``, which
builds its tensors and containers and leaves every other object unbuilt.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import CheckpointError
from .safe_pickle import load_tensors_only, unloaded_names

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_FORMAT_VERSION",
    "check_specmamba_format",
    "extract_state_dict",
    "is_specmamba_checkpoint",
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

PathLike = str | os.PathLike[str]

log = logging.getLogger(__name__)


def read_checkpoint(path: PathLike) -> dict[str, Any]:
    """Load a checkpoint file onto the CPU without executing pickled code.

    ``.safetensors`` files give their flat ``{name: tensor}`` dict; anything else is read with
    ``torch.load(weights_only=True)`` (or, for a file that pickles other objects too, their tensors only,
    see the module docstring) and must hold a dict. A specmamba checkpoint is checked for a
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
        if "weights only" not in str(exc).lower() and "weights_only" not in str(exc):
            raise _corrupt(p, exc) from exc
        obj = _read_tensors_only(p)
    except Exception as exc:  # torch raises RuntimeError, EOFError, OSError... for damaged files
        raise _corrupt(p, exc) from exc
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"Checkpoint {p} holds a {type(obj).__name__}, not a dict of tensors or a specmamba checkpoint."
        )
    obj = dict(obj)
    if obj.get("format") == CHECKPOINT_FORMAT:
        check_specmamba_format(obj, str(p))
    return obj


def _read_tensors_only(p: Path) -> Any:
    """A file that pickles other objects beside its tensors (an argparse Namespace, the training code's
    classes): its tensors, with those objects left unbuilt (``safe_pickle``), and a log line naming them."""
    obj = load_tensors_only(p)
    left = unloaded_names(obj)
    log.info(
        "Checkpoint %s also pickles %s; read its tensors without building those objects (nothing in the file "
        "was executed).",
        p,
        ", ".join(left) or "objects",
    )
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


def check_specmamba_format(obj: Mapping[str, Any], source: str) -> None:
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
