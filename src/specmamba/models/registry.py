"""Model registry: small factory functions around one configurable class per architecture.

``register_model`` records a factory under its function name; ``create_model`` builds it, dropping
keyword arguments that are ``None`` so that command-line defaults never override model defaults, and
tags the model with its name and architecture kwargs so that checkpoints describe themselves.
``rebuild.py`` builds a saved model again from those.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import re
import typing
from collections.abc import Callable
from typing import Any

from torch import nn

from ..errors import ConfigError
from .interface import architecture_kwargs
from .weights import load_weights

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
    ``specmamba_name`` and ``specmamba_kwargs`` (the kwargs that describe the architecture, i.e.
    without weight-initialisation options such as ``encoder_weights``), that checkpoints store to
    rebuild it with :func:`rebuild_model`.
    ``checkpoint_path`` loads weights: a specmamba checkpoint, or an official layout that the
    architecture converts through its ``convert_state_dict`` hook (see ``weights.load_weights``).
    """
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    factory = model_entrypoint(name)
    try:
        model = factory(**kwargs)
    except TypeError as err:
        unknown = re.search(r"unexpected keyword argument '(\w+)'", str(err))
        if unknown is None or unknown.group(1) not in kwargs:
            raise
        others = [option for option in model_options(name) if option not in kwargs]  # not those given
        raise ConfigError(
            f"{name}: unknown model option {unknown.group(1)!r}; the other options {name} takes: "
            f"{', '.join(others) or 'none'}."
        ) from None
    model.specmamba_name = name
    model.specmamba_kwargs = architecture_kwargs(kwargs)
    if checkpoint_path is not None:
        load_weights(model, checkpoint_path)
    return model


def model_options(name: str) -> list[str]:
    """Keyword options of model ``name``: its factory's, plus its class's where the factory passes
    ``**kwargs`` on (factories declare the class they return)."""
    factory = model_entrypoint(name)
    params = list(inspect.signature(factory).parameters.values())
    names = [p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    if any(p.kind == p.VAR_KEYWORD for p in params):
        returned = typing.get_type_hints(factory).get("return")
        if isinstance(returned, type):
            init = inspect.signature(returned.__init__).parameters.values()
            keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
            names += [p.name for p in init if p.name != "self" and p.kind in keyword]
    return sorted(dict.fromkeys(n for n in names if n != "model_name"))
