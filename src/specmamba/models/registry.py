"""Model registry: small factory functions around one configurable class per architecture.

``register_model`` records a factory under its function name; ``create_model`` builds it, dropping
keyword arguments that are ``None`` so that command-line defaults never override model defaults, and
tags the model with its name and kwargs so that checkpoints describe themselves.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from typing import Any

from torch import nn

from ..errors import ConfigError

_MODEL_ENTRYPOINTS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register ``fn`` as the factory of the model named ``fn.__name__``."""
    name = fn.__name__
    if name in _MODEL_ENTRYPOINTS and _MODEL_ENTRYPOINTS[name] is not fn:
        raise ValueError(f"model {name!r} is registered twice ({fn.__module__})")
    _MODEL_ENTRYPOINTS[name] = fn
    return fn


def list_models(filter: str = "", include_test: bool = True) -> list[str]:
    """Sorted registered names matching the fnmatch pattern ``filter`` ('' matches all).

    ``include_test=False`` hides the small ``test_*`` variants meant for fast tests.
    """
    names = sorted(_MODEL_ENTRYPOINTS)
    if filter:
        names = [n for n in names if fnmatch.fnmatch(n, filter)]
    if not include_test:
        names = [n for n in names if not n.startswith("test_")]
    return names


def is_model(name: str) -> bool:
    return name in _MODEL_ENTRYPOINTS


def model_entrypoint(name: str) -> Callable[..., nn.Module]:
    """The factory registered as ``name``; an unknown name raises ConfigError listing close matches."""
    try:
        return _MODEL_ENTRYPOINTS[name]
    except KeyError:
        close = difflib.get_close_matches(name, _MODEL_ENTRYPOINTS, n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"Unknown model {name!r}.{hint} Registered models: {', '.join(list_models(include_test=False))} "
            "(run `specmamba models` for the full list with parameter counts)."
        ) from None


def create_model(name: str, checkpoint_path: str | None = None, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name``.

    Keyword arguments that are ``None`` are dropped. The model gets two attributes,
    ``specmamba_name`` and ``specmamba_kwargs``, that checkpoints store to rebuild it.
    ``checkpoint_path`` loads weights: a specmamba checkpoint, or an official layout that the
    architecture converts through its ``convert_state_dict`` hook (see ``weights.load_weights``).
    """
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    model = model_entrypoint(name)(**kwargs)
    model.specmamba_name = name
    model.specmamba_kwargs = dict(kwargs)
    if checkpoint_path is not None:
        from .weights import load_weights

        load_weights(model, checkpoint_path)
    return model
