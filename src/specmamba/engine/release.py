"""Release export: ``model/config.json`` + ``model/model.safetensors``.

The safetensors file holds only tensors (no code, no pickle), the JSON the model name, its kwargs and
the normalisation a user needs to run it; ``load_release`` rebuilds the model from the two.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from ..atomic import atomic_path, write_json
from ..errors import CheckpointError
from ..models.interface import architecture_kwargs
from ..models.rebuild import rebuild_model


def export_release(ckpt: dict[str, Any], folder: str | Path) -> Path:
    """Write the release pair for a checkpoint dict into ``folder``; returns the folder."""
    folder = Path(folder)
    config = {
        "model_name": ckpt["model_name"],
        "model_kwargs": architecture_kwargs(ckpt["model_kwargs"]),
        "normalization": ckpt.get("normalization"),
        "img_size": ckpt.get("config", {}).get("img_size"),
        "epoch": ckpt.get("epoch"),
        "best_score": ckpt.get("best_score"),
    }
    state = {k: v.contiguous() for k, v in ckpt["state_dict"].items()}
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": "specmamba-release", "model_name": ckpt["model_name"]})
    write_json(folder / "config.json", config)
    return folder


def load_release(folder: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a release folder; returns (model in eval mode, config dict)."""
    folder = Path(folder)
    config_path, weights_path = folder / "config.json", folder / "model.safetensors"
    for path in (config_path, weights_path):
        if not path.is_file():
            raise CheckpointError(
                f"{path} is missing: a release folder holds config.json and model.safetensors."
            )
    config = json.loads(config_path.read_text(encoding="utf-8"))
    model = rebuild_model(config["model_name"], config.get("model_kwargs"), f"Release {folder}")
    model.load_state_dict(load_file(str(weights_path)))
    return model.eval(), config
