"""Training, evaluation, prediction, checkpoints and distributed helpers."""

from __future__ import annotations

from .config import TrainConfig, resolve_config
from .evaluator import evaluate
from .predictor import predict
from .release import export_release, load_release
from .trainer import resume_config, train

__all__ = [
    "TrainConfig",
    "evaluate",
    "export_release",
    "load_release",
    "predict",
    "resolve_config",
    "resume_config",
    "train",
]
