"""Building a saved model again: the one path from saved name + kwargs to a model.

Checkpoints and releases record the registry name and the architecture kwargs of their model
(``interface.architecture_kwargs``: no weight-initialisation options). :func:`rebuild_model` builds
that model again; :func:`build_model_from_checkpoint` also loads the checkpoint's weights. The
engine (evaluate, predict, release) and the spectral audit rebuild models only through these.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import CheckpointError
from .checkpoint_file import CHECKPOINT_FORMAT, PathLike, is_specmamba_checkpoint, read_checkpoint
from .interface import architecture_kwargs
from .registry import create_model, is_model, list_models
from .weights import load_checkpoint

__all__ = ["build_model_from_checkpoint", "load_training_checkpoint", "rebuild_model"]


def build_model_from_checkpoint(
    path: PathLike | Mapping[str, Any], *, source: str | None = None, **overrides: Any
) -> nn.Module:
    """Create the model a specmamba checkpoint (a path, or a dict already read) describes; load its weights.

    The model is built by :func:`rebuild_model` from the saved name and
    kwargs, leaving out arguments that only initialise weights (``encoder_weights``...); ``overrides``
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
    model = rebuild_model(obj["model_name"], obj.get("model_kwargs"), f"Checkpoint {path}", **overrides)
    load_checkpoint(model, obj, strict=True, source=str(path))
    return model


def rebuild_model(name: str, saved_kwargs: Any, source: str, **overrides: Any) -> nn.Module:
    """The model ``name`` built again from the kwargs a checkpoint or release saved (``source`` names it).

    Weight-initialisation options are left out (a saved file records the trained weights; the file
    that initialised them may not exist here); ``overrides`` (None values ignored) replace saved
    kwargs, for options that do not change tensor shapes. An architecture this version does not have
    raises CheckpointError naming ``source``.
    """
    kwargs = architecture_kwargs(dict(saved_kwargs or {}))
    kwargs.update({k: v for k, v in overrides.items() if v is not None})
    if not is_model(name):
        raise CheckpointError(
            f"{source} holds a {name!r} model, which this version of specmamba does not have. Registered "
            f"models: {', '.join(list_models(include_test=False))}."
        )
    return create_model(name, **kwargs)


def load_training_checkpoint(path: str | Path) -> tuple[dict[str, Any], nn.Module]:
    """(checkpoint dict, model with its weights) of a checkpoint written by ``specmamba train``.

    Evaluation and prediction need the training config (image size, channels, classes, split) and the
    normalisation stored in such a checkpoint; anything else raises CheckpointError naming the file.
    """
    ckpt = read_checkpoint(path)
    if not is_specmamba_checkpoint(ckpt) or not {"config", "normalization"} <= set(ckpt):
        raise CheckpointError(
            f"{path} is not a checkpoint written by `specmamba train` (it lacks the model name, training "
            "config or normalisation). Pass a run's checkpoint_best.pt or checkpoint_last.pt; to load bare "
            "weights into a model use specmamba.create_model(NAME, checkpoint_path=PATH)."
        )
    return ckpt, build_model_from_checkpoint(ckpt, source=str(path))
