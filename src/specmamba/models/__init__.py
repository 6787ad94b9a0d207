"""Segmentation architectures behind one registry (see ``registry.py``)."""

from __future__ import annotations

from .registry import create_model, is_model, list_models, model_entrypoint, model_options, register_model
from .weights import load_checkpoint

# Importing the architecture modules registers their models.
from . import unet, unet_resnet  # noqa: E402, F401  isort: skip
from . import vmunet  # noqa: E402, F401  isort: skip
from . import swin_unet  # noqa: E402, F401  isort: skip

__all__ = [
    "create_model",
    "is_model",
    "list_models",
    "load_checkpoint",
    "model_entrypoint",
    "model_options",
    "register_model",
]
