"""specmamba: train, evaluate, deploy and spectrally audit Vision-Mamba segmentation networks.

>>> import specmamba as sm
>>> sm.list_models("*unet*")
>>> model = sm.create_model("unet_resnet50", in_chans=3, num_classes=1)   # returns logits
>>> y = sm.ops.selective_scan(u, delta, A, B, C, D, delta_bias=b, delta_softplus=True)
"""

from __future__ import annotations

from . import models, ops  # noqa: F401  (models registers the architectures)
from .errors import SpecMambaError
from .models.registry import create_model, list_models, register_model

__version__ = "0.1.0"
__all__ = ["SpecMambaError", "__version__", "create_model", "list_models", "ops", "register_model"]
