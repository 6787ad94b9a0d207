"""The demo: synthetic data -> train two models -> evaluate -> predict -> spectral audit, on CPU.

It sits on top of the engine and the spectral audit (the one module besides the CLI that uses both).

It exercises the whole pipeline a user will run on real data, on the built-in synthetic lesion dataset
(``specmamba.data.synthetic``), with the shipped ``demo`` preset: a small CNN (``unet_small``) and a
tiny VM-UNet (``test_vmunet``) are trained, scored, used for prediction, and audited side by side.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text, write_json
from .data import make_synthetic_dataset
from .engine.config import resolve_config
from .engine.evaluator import evaluate
from .engine.predictor import predict
from .engine.trainer import train
from .errors import ConfigError
from .spectral.audit import AuditSettings, run_audit

MARKER = "SPECMAMBA_DEMO.txt"
#: What the demo did (paths, scores, timings), written last: a finished demo has it.
SUMMARY = "demo_summary.json"
DEMO_MODELS = ("unet_small", "test_vmunet")
#: Images of the validation split the demo's shift test runs on (all images get every other measure).
DEMO_SHIFT_IMAGES = 24


def _prepare(root: Path, overwrite: bool) -> None:
    if root.exists() and any(root.iterdir()):
        if not ((root / MARKER).is_file() or overwrite):
            raise ConfigError(
                f"Demo folder {root} exists and is not empty (and is not an earlier demo): choose another "
                "--out, or pass --overwrite to replace it."
            )
        shutil.rmtree(root)
    root.mkdir(parents=True)
    atomic_write_text(root / MARKER, "Written by `specmamba demo`; safe to delete.\n")


def run_demo(
    out: str | Path = "specmamba-demo",
    n: int = 240,
    size: int = 128,
    epochs: int | None = None,
    models: Sequence[str] | None = None,
    seed: int = 0,
    progress: bool = True,
    overwrite: bool = False,
    audit: bool = True,
) -> dict[str, Any]:
    """Run the whole pipeline into ``out``; returns the paths and the scores (also ``out/demo_summary.json``).

    ``models`` (default :data:`DEMO_MODELS`) are trained one after the other on the same data; the
    first one also predicts the whole image folder with overlays. ``audit`` ends the demo with the
    spectral audit of every trained model.
    """
    models = list(models or DEMO_MODELS)
    if not models:
        raise ConfigError("the demo needs at least one model name.")
    root = Path(out)
    _prepare(root, overwrite)
    start = time.perf_counter()

    data = make_synthetic_dataset(root / "data", n=n, size=size, seed=seed)
    trained: dict[str, dict[str, Any]] = {}
    for name in models:
        run = root / "runs" / name
        config = resolve_config(
            "demo",
            data=str(data),
            out=str(run),
            epochs=epochs,
            model=name,
            img_size=size,
            progress=progress,
            seed=seed,
        )
        summary = train(config)
        checkpoint = run / "checkpoint_best.pt"
        evaluation = evaluate(
            checkpoint, data, split="val", out=run / "eval_val", device="cpu", progress=progress
        )
        trained[name] = {
            "run": str(run),
            "checkpoint": str(checkpoint),
            "release": str(run / "model"),
            "evaluation": str(run / "eval_val"),
            "best_val_dice": summary["best_val_dice"],
            "eval_dice_mean": evaluation["metrics"]["dice"]["mean"],
            "eval_bf1_mean": evaluation["metrics"]["bf1"]["mean"],
        }
    first = trained[models[0]]
    predictions = predict(
        first["checkpoint"],
        data / "images",
        root / "predictions",
        overlay=True,
        device="cpu",
        progress=progress,
    )
    result: dict[str, Any] = {
        "data": str(data),
        "models": trained,
        "predictions": predictions["out"],
        "overlays": predictions["overlays"],
    }
    if audit:
        audit_start = time.perf_counter()
        summary = run_audit(
            [t["checkpoint"] for t in trained.values()],
            data,
            root / "audit",
            split="val",
            device="cpu",
            settings=AuditSettings(shift_images=DEMO_SHIFT_IMAGES),
            progress=progress,
            command="specmamba demo",
        )
        result["audit"] = str(root / "audit")
        result["audit_report"] = str(root / "audit" / "report.html")
        result["audit_seconds"] = round(time.perf_counter() - audit_start, 1)
        result["audit_architectures"] = summary["architectures"]
    result["seconds"] = round(time.perf_counter() - start, 1)
    write_json(root / SUMMARY, result)
    return result
