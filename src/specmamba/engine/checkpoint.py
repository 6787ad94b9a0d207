"""Self-describing training checkpoints, written atomically.

A checkpoint is a plain dict saved with ``torch.save`` and loadable with
``torch.load(path, weights_only=True)``: model name + kwargs + state dict (enough to rebuild the model
anywhere, see ``specmamba.models.rebuild``), the criterion's state, the resolved training config,
the normalisation statistics, and for resuming the optimizer, scheduler, epoch, best score and RNG
states. Only tensors and Python primitives go in, never pickled objects.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import atomic_open
from ..errors import CheckpointError
from ..models.checkpoint_file import CHECKPOINT_FORMAT, CHECKPOINT_FORMAT_VERSION


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare model inside a DistributedDataParallel / DataParallel wrapper."""
    return model.module if hasattr(model, "module") else model


def rng_state() -> dict[str, Any]:
    """The RNG states a resumed run must restore to continue exactly (weights_only-safe values)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def make_checkpoint(
    model: nn.Module,
    config: dict[str, Any],
    normalization: dict[str, list[float]],
    epoch: int,
    best_score: float,
    best_epoch: int,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    criterion: nn.Module | None = None,
) -> dict[str, Any]:
    """The checkpoint dict after ``epoch`` completed epochs (1-based count).

    ``criterion``'s state dict (learnable loss weights; empty for plain losses) is stored as
    ``criterion_state``, for resuming exactly.
    """
    bare = unwrap_model(model)
    ckpt: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "model_name": bare.specmamba_name,
        "model_kwargs": dict(bare.specmamba_kwargs),
        "state_dict": {k: v.detach().cpu() for k, v in bare.state_dict().items()},
        "config": config,
        "normalization": normalization,
        "epoch": epoch,
        "best_score": best_score,
        "best_epoch": best_epoch,
        "torch_version": str(torch.__version__),
    }
    if criterion is not None:
        ckpt["criterion_state"] = {k: v.detach().cpu() for k, v in criterion.state_dict().items()}
    if optimizer is not None:
        ckpt["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        ckpt["scheduler"] = scheduler.state_dict()
    ckpt["rng"] = rng_state()
    return ckpt


def check_optimizer_state(state: dict[str, Any], optimizer: torch.optim.Optimizer, source: str) -> None:
    """Raise CheckpointError unless a saved optimizer state fits ``optimizer`` parameter by parameter.

    ``Optimizer.load_state_dict`` matches states to parameters by position only; a checkpoint written
    by a version that registered a model's parameters in another order would load silently wrong
    moments. Per-parameter tensors (Adam's ``exp_avg``...) must have their parameter's shape.
    """
    params = [p for group in optimizer.param_groups for p in group["params"]]
    saved_groups = state.get("param_groups", [])
    saved = [i for group in saved_groups for i in group["params"]]
    if len(saved_groups) != len(optimizer.param_groups) or len(saved) != len(params):
        raise CheckpointError(
            f"{source}: its optimizer state covers {len(saved)} parameters in {len(saved_groups)} group(s), "
            f"but this run optimises {len(params)} in {len(optimizer.param_groups)}; the run cannot be "
            "resumed exactly. Start a new run (--overwrite or another --out), or fine-tune from its weights."
        )
    for index, p in zip(saved, params):
        for name, value in state.get("state", {}).get(index, {}).items():
            if isinstance(value, torch.Tensor) and value.ndim and tuple(value.shape) != tuple(p.shape):
                raise CheckpointError(
                    f"{source}: optimizer state {name!r} of parameter {index} has shape {tuple(value.shape)} "
                    f"but the parameter in that position has {tuple(p.shape)}: the checkpoint was written "
                    "with another parameter order, so the run cannot be resumed exactly. Start a new run, "
                    "or fine-tune from its weights."
                )


def save_checkpoint(ckpt: dict[str, Any], path: str | Path) -> None:
    """Write ``ckpt`` to ``path`` atomically (an interrupted save leaves the old file intact).

    Saved through a Python file object, so that a full disk is the OSError it is (torch.save on a
    path reports it as an "enforce fail" RuntimeError) and becomes an OutputError naming ``path``.
    """
    with atomic_open(path, "wb") as fh:
        torch.save(ckpt, fh)
