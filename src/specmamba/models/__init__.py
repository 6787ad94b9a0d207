"""Segmentation architectures behind one registry (see ``registry.py``).

``interface.py`` is the contract every model follows; ``hook_points.py`` the stage-map adapters;
``checkpoint_file.py`` reads checkpoint files, ``weights.py`` loads them into a model, ``rebuild.py``
builds a saved model again; one file per architecture registers its factories.
"""

from __future__ import annotations

from ..output import SegOutput
from .checkpoint_file import read_checkpoint
from .rebuild import build_model_from_checkpoint, rebuild_model
from .registry import create_model, is_model, list_models, model_entrypoint, model_options, register_model
from .weights import load_checkpoint, load_weights

# Importing the architecture modules registers their models.
from . import unet, unet_resnet  # noqa: E402, F401  isort: skip
from . import vmunet  # noqa: E402, F401  isort: skip
from . import swin_unet  # noqa: E402, F401  isort: skip
from . import spec_vmamba  # noqa: E402, F401  isort: skip
from . import vmaml_unet  # noqa: E402, F401  isort: skip
from . import vim_seg  # noqa: E402, F401  isort: skip

__all__ = [
    "SegOutput",
    "build_model_from_checkpoint",
    "create_model",
    "is_model",
    "list_models",
    "load_checkpoint",
    "load_weights",
    "model_entrypoint",
    "model_options",
    "read_checkpoint",
    "rebuild_model",
    "register_model",
]
