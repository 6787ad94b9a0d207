"""The demo: synthetic data -> train -> evaluate -> predict, on CPU, in a few minutes.

It exercises the whole pipeline a user will run on real data, on the built-in synthetic lesion dataset
(``specmamba.data.synthetic``), with the shipped ``demo`` preset.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text
from ..data import make_synthetic_dataset
from ..errors import ConfigError
from .config import resolve_config
from .evaluator import evaluate
from .predictor import predict
from .trainer import train

MARKER = "SPECMAMBA_DEMO.txt"


def run_demo(
    out: str | Path = "specmamba-demo",
    n: int = 240,
    size: int = 128,
    epochs: int | None = None,
    model: str | None = None,
    seed: int = 0,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Run the whole pipeline into ``out``; returns the paths and the scores."""
    root = Path(out)
    if root.exists() and any(root.iterdir()):
        if not ((root / MARKER).is_file() or overwrite):
            raise ConfigError(
                f"Demo folder {root} exists and is not empty (and is not an earlier demo): choose another "
                "--out, or pass --overwrite to replace it."
            )
        shutil.rmtree(root)
    root.mkdir(parents=True)
    atomic_write_text(root / MARKER, "Written by `specmamba demo`; safe to delete.\n")
    start = time.perf_counter()

    data = make_synthetic_dataset(root / "data", n=n, size=size, seed=seed)
    config = resolve_config(
        "demo",
        data=str(data),
        out=str(root / "run"),
        epochs=epochs,
        model=model,
        img_size=size,
        progress=progress,
        seed=seed,
    )
    summary = train(config)
    checkpoint = root / "run" / "checkpoint_best.pt"
    evaluation = evaluate(checkpoint, data, split="val", out=root / "eval", device="cpu", progress=progress)
    predictions = predict(
        checkpoint, data / "images", root / "predictions", overlay=True, device="cpu", progress=progress
    )
    return {
        "data": str(data),
        "run": str(root / "run"),
        "checkpoint": str(checkpoint),
        "release": str(root / "run" / "model"),
        "evaluation": str(root / "eval"),
        "predictions": predictions["out"],
        "overlays": predictions["overlays"],
        "best_val_dice": summary["best_val_dice"],
        "eval_dice_mean": evaluation["metrics"]["dice"]["mean"],
        "eval_bf1_mean": evaluation["metrics"]["bf1"]["mean"],
        "seconds": round(time.perf_counter() - start, 1),
    }
