"""The trainer: data folder -> model -> run folder, alone or under torchrun (DDP).

One epoch = a pass over the training split (shuffled by a permutation that depends only on the seed
and the epoch, augmentation drawn per sample from the seed, the epoch and the sample index), then
validation Dice/IoU on the validation split. After every epoch ``checkpoint_last.pt`` is written, and
``checkpoint_best.pt`` when validation Dice improved. Because all randomness is a function of
(seed, epoch, index) plus RNG states stored in the checkpoint, ``resume`` continues a stopped run exactly
where its last completed epoch ended: the resumed run reaches the same weights as an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from ..atomic import atomic_write_text
from ..data import (
    SegmentationDataset,
    compute_mean_std,
    default_mean_std,
    find_pairs,
    select_split,
    validate_pairs,
)
from ..errors import ConfigError, InputSizeError, TrainingDivergedError
from ..losses import build_loss
from ..metrics import dice, iou
from ..models.interface import valid_input_size
from ..models.registry import create_model
from ..models.weights import read_checkpoint
from .checkpoint import make_checkpoint, restore_rng_state, save_checkpoint
from .config import TrainConfig, config_to_yaml
from .distributed import (
    DistContext,
    barrier,
    broadcast_object,
    gather_objects,
    init_distributed,
    shutdown_distributed,
)
from .inference import autocast, logits_to_labels, resolve_device
from .release import export_release
from .run_folder import RunFolder
from .schedule import warmup_cosine

log = logging.getLogger(__name__)

# Options that may change when a run is resumed; anything else must match the stored config.
RESUMABLE_OVERRIDES = ("epochs", "workers", "progress", "device")


def train(config: TrainConfig, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Train ``config.model`` on ``config.data`` into the run folder ``config.out``.

    Returns the summary dict (also written to ``summary.json``). Under torchrun every rank calls this;
    only rank 0 writes files. Raises SpecMambaError subclasses for bad input before anything is written.
    """
    device = resolve_device(config.device, local_rank=_local_rank())
    ctx = init_distributed(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        return Trainer(config, device, ctx, resume=resume, overwrite=overwrite).run()
    finally:
        shutdown_distributed(ctx)


def resume_config(run_dir: str | Path, **overrides: Any) -> TrainConfig:
    """The stored config of the run in ``run_dir``, with the overrides a resume may change."""
    run = RunFolder(run_dir)
    if not run.last.is_file():
        raise ConfigError(f"--resume: {run.last} does not exist, so there is no run to resume in {run.root}.")
    stored = dict(read_checkpoint(run.last)["config"])
    if overrides.get("model_kwargs") is not None:  # merged key by key, as in resolve_config
        overrides = {
            **overrides,
            "model_kwargs": {**stored.get("model_kwargs", {}), **overrides["model_kwargs"]},
        }
    for key, value in overrides.items():
        if value is None or stored.get(key) == value:
            continue
        if key not in RESUMABLE_OVERRIDES:
            flag = "--model-kwarg" if key == "model_kwargs" else f"--{key.replace('_', '-')}"
            raise ConfigError(
                f"--resume continues the stored run, so {flag} cannot change "
                f"({stored.get(key)!r} -> {value!r}); only {', '.join(RESUMABLE_OVERRIDES)} may. "
                "Start a new run in another --out folder instead."
            )
        stored[key] = value
    stored["out"] = str(run_dir)
    config = TrainConfig(**stored)
    config.validate()
    return config


class Trainer:
    """One training run; construct and call ``run()``."""

    def __init__(
        self, config: TrainConfig, device: torch.device, ctx: DistContext, resume: bool, overwrite: bool
    ) -> None:
        self.config, self.device, self.ctx = config, device, ctx
        self.resume, self.overwrite = resume, overwrite
        self.run_folder = RunFolder(config.out)
        self.show_progress = config.progress and ctx.is_main

    # -- set-up ---------------------------------------------------------------------------------------

    def _prepare_data(self) -> None:
        cfg = self.config
        pairs = find_pairs(cfg.data, allow_unpaired=cfg.allow_unpaired)
        self.train_pairs = select_split(pairs, "train", cfg.data, cfg.val_fraction, cfg.split_seed)
        self.val_pairs = select_split(pairs, "val", cfg.data, cfg.val_fraction, cfg.split_seed)
        if not self.train_pairs or not self.val_pairs:
            raise ConfigError(
                f"--data {cfg.data}: the split gave {len(self.train_pairs)} training and "
                f"{len(self.val_pairs)} validation cases; both need at least one (add data or change "
                "--val-fraction)."
            )
        # Read every pair once before anything is written: bad data never leaves a half-written run.
        validate_pairs(self.train_pairs + self.val_pairs, cfg.num_classes, cfg.in_chans)
        if cfg.normalization == "imagenet":
            mean, std = default_mean_std(cfg.in_chans)
        else:
            mean, std = compute_mean_std(self.train_pairs, cfg.in_chans)
        self.normalization = {"mean": [float(m) for m in mean], "std": [float(s) for s in std]}

    def _build_model(self) -> nn.Module:
        cfg = self.config
        model = create_model(
            cfg.model, in_chans=cfg.in_chans, num_classes=cfg.num_classes, **cfg.model_kwargs
        )
        valid = valid_input_size(model, cfg.img_size)
        if valid != cfg.img_size:
            raise InputSizeError(
                f"--img-size {cfg.img_size} cannot be used with {cfg.model}: it needs sizes that are "
                f"multiples of {getattr(model, 'input_multiple', 1)}; use --img-size {valid}."
            )
        return model

    def _loaders(self) -> tuple[DataLoader, DataLoader]:
        cfg = self.config
        common = dict(
            img_size=cfg.img_size,
            in_chans=cfg.in_chans,
            num_classes=cfg.num_classes,
            mean=self.normalization["mean"],
            std=self.normalization["std"],
        )
        train_set = SegmentationDataset(
            self.train_pairs,
            train=True,
            seed=cfg.seed,
            hflip=cfg.hflip,
            vflip=cfg.vflip,
            rotate_degrees=cfg.rotate_degrees,
            **common,
        )
        val_set = SegmentationDataset(self.val_pairs, train=False, **common)
        # DistributedSampler also serves the single-process case: its permutation depends only on
        # (seed, epoch), which is what makes resumed runs identical to uninterrupted ones.
        self.train_sampler = DistributedSampler(
            train_set,
            num_replicas=self.ctx.world_size,
            rank=self.ctx.rank,
            shuffle=True,
            seed=cfg.seed,
        )
        per_rank = len(self.train_sampler)
        drop_last = per_rank > cfg.batch_size  # avoid a tiny last batch, but never an empty epoch
        loader_args = dict(
            num_workers=cfg.workers, pin_memory=self.device.type == "cuda", persistent_workers=False
        )
        train_loader = DataLoader(
            train_set,
            batch_size=cfg.batch_size,
            sampler=self.train_sampler,
            drop_last=drop_last,
            **loader_args,
        )
        # Validation shards without padding so every case is scored exactly once across ranks.
        val_indices = list(range(self.ctx.rank, len(val_set), self.ctx.world_size))
        val_loader = DataLoader(
            torch.utils.data.Subset(val_set, val_indices),
            batch_size=cfg.batch_size,
            shuffle=False,
            **loader_args,
        )
        return train_loader, val_loader

    # -- loop -----------------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        cfg = self.config
        self._prepare_data()
        torch.manual_seed(cfg.seed)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        model = self._build_model()
        n_params = sum(p.numel() for p in model.parameters())
        if self.ctx.is_main:
            self.run_folder.prepare(resume=self.resume, overwrite=self.overwrite)
        barrier(self.ctx)

        model.to(self.device)
        train_loader, val_loader = self._loaders()
        steps_per_epoch = len(train_loader)
        optimizer = _build_optimizer(model, cfg)
        scheduler = warmup_cosine(
            optimizer,
            total_steps=cfg.epochs * steps_per_epoch,
            warmup_steps=round(cfg.warmup_epochs * steps_per_epoch),
            base_lr=cfg.lr,
            min_lr=cfg.min_lr,
        )
        criterion = build_loss(cfg.loss, cfg.num_classes)

        start_epoch, best_score, best_epoch, history = 0, -math.inf, 0, []
        if self.resume:
            ckpt = read_checkpoint(self.run_folder.last)
            model.load_state_dict(ckpt["state_dict"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            start_epoch, best_score, best_epoch = ckpt["epoch"], ckpt["best_score"], ckpt["best_epoch"]
            history = list(ckpt.get("history", []))
            self.normalization = ckpt["normalization"]
            restore_rng_state(ckpt["rng"])
            if self.ctx.is_main:
                log.info("resuming %s after epoch %d", self.run_folder.root, start_epoch)
        if self.ctx.is_main:
            atomic_write_text(self.run_folder.config, config_to_yaml(cfg))

        if self.ctx.enabled:
            ddp_args = {"device_ids": [self.device.index]} if self.device.type == "cuda" else {}
            model = nn.parallel.DistributedDataParallel(model, **ddp_args)

        train_start = time.perf_counter()
        images_seen = 0
        for epoch in range(start_epoch, cfg.epochs):
            epoch_start = time.perf_counter()
            self.train_sampler.set_epoch(epoch)
            train_loader.dataset.set_epoch(epoch)
            train_loss, n_images = self._train_epoch(
                model, train_loader, optimizer, scheduler, criterion, epoch
            )
            images_seen += n_images
            val = self._validate(model, val_loader, criterion)
            row = {
                "epoch": epoch + 1,
                "lr": optimizer.param_groups[0]["lr"],
                "train_loss": train_loss,
                "val_loss": val["loss"],
                "val_dice": val["dice"],
                "val_iou": val["iou"],
                "val_cases": val["n_cases"],
                "epoch_time_s": round(time.perf_counter() - epoch_start, 3),
            }
            history.append(row)
            improved = val["dice"] > best_score
            if improved:
                best_score, best_epoch = val["dice"], epoch + 1
            if self.ctx.is_main:
                ckpt = make_checkpoint(
                    model,
                    cfg.to_dict(),
                    self.normalization,
                    epoch + 1,
                    best_score,
                    best_epoch,
                    optimizer,
                    scheduler,
                )
                ckpt["history"] = history
                save_checkpoint(ckpt, self.run_folder.last)
                if improved:
                    save_checkpoint(_weights_only(ckpt), self.run_folder.best)
                self.run_folder.write_metrics(history)
                self.run_folder.write_summary(
                    self._summary(
                        history,
                        best_epoch,
                        n_params,
                        time.perf_counter() - train_start,
                        images_seen,
                        finished=epoch + 1 == cfg.epochs,
                    )
                )
                if self.show_progress:
                    tqdm.write(
                        f"epoch {epoch + 1}/{cfg.epochs}  train_loss {train_loss:.4f}  val_loss "
                        f"{val['loss']:.4f}  val_dice {val['dice']:.4f}  val_iou {val['iou']:.4f}"
                        + ("  (best)" if improved else "")
                    )
            barrier(self.ctx)

        summary = self._summary(
            history, best_epoch, n_params, time.perf_counter() - train_start, images_seen, finished=True
        )
        if self.ctx.is_main:
            if cfg.export and self.run_folder.best.is_file():
                export_release(read_checkpoint(self.run_folder.best), self.run_folder.release)
            self.run_folder.write_summary(summary)
        return broadcast_object(summary, self.ctx)

    def _train_epoch(self, model, loader, optimizer, scheduler, criterion, epoch: int) -> tuple[float, int]:
        cfg = self.config
        model.train()
        total, count = 0.0, 0
        bar = tqdm(
            loader,
            desc=f"train {epoch + 1}/{cfg.epochs}",
            disable=not self.show_progress,
            leave=False,
            dynamic_ncols=True,
        )
        for batch in bar:
            images = batch["image"].to(self.device, non_blocking=True)
            masks = batch["mask"].to(self.device, non_blocking=True)
            with autocast(self.device, cfg.amp):
                logits = model(images)
            loss = criterion(logits.float(), masks)
            if not torch.isfinite(loss):
                raise TrainingDivergedError(
                    f"The training loss became {loss.item()} at epoch {epoch + 1}: lower --lr, or keep "
                    "gradient clipping on (grad_clip in the config). The last completed epoch is saved."
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            total += loss.item() * images.shape[0]
            count += images.shape[0]
            bar.set_postfix(loss=f"{total / count:.4f}")
        # Mean over every image that every rank trained on.
        totals = gather_objects((total, count), self.ctx)
        all_total, all_count = sum(t for t, _ in totals), sum(c for _, c in totals)
        return all_total / max(all_count, 1), all_count

    @torch.no_grad()
    def _validate(self, model, loader, criterion) -> dict[str, float]:
        """Per-case Dice/IoU at training resolution, gathered over ranks, each case counted once."""
        model.eval()
        cases: dict[str, tuple[float, float, float]] = {}
        for batch in tqdm(loader, desc="validate", disable=not self.show_progress, leave=False):
            images = batch["image"].to(self.device)
            masks = batch["mask"].to(self.device)
            with autocast(self.device, self.config.amp):
                logits = model(images)
            logits = logits.float()
            labels = logits_to_labels(logits)
            case_dice, case_iou = _foreground_scores(labels, masks, logits.shape[1])
            for i, name in enumerate(batch["name"]):
                case_loss = criterion(logits[i : i + 1], masks[i : i + 1]).item()
                cases[name] = (float(case_dice[i]), float(case_iou[i]), case_loss)
        merged: dict[str, tuple[float, float, float]] = {}
        for part in gather_objects(cases, self.ctx):
            merged.update(part)
        n = max(len(merged), 1)
        return {
            "dice": sum(v[0] for v in merged.values()) / n,
            "iou": sum(v[1] for v in merged.values()) / n,
            "loss": sum(v[2] for v in merged.values()) / n,
            "n_cases": len(merged),
        }

    def _summary(self, history, best_epoch, n_params, seconds, images_seen, finished) -> dict[str, Any]:
        cfg = self.config
        best = next((r for r in history if r["epoch"] == best_epoch), {})
        last = history[-1] if history else {}
        return {
            "model": cfg.model,
            "parameters": n_params,
            "data": str(cfg.data),
            "n_train": len(self.train_pairs),
            "n_val": len(self.val_pairs),
            "img_size": cfg.img_size,
            "epochs_completed": last.get("epoch", 0),
            "epochs": cfg.epochs,
            "finished": finished,
            "best_epoch": best_epoch,
            "best_val_dice": best.get("val_dice"),
            "best_val_iou": best.get("val_iou"),
            "last_val_dice": last.get("val_dice"),
            "train_seconds_this_session": round(seconds, 2),
            "train_images_per_s": round(images_seen / seconds, 2) if seconds > 0 else None,
            "device": str(self.device),
            "world_size": self.ctx.world_size,
            "checkpoint_best": str(self.run_folder.best),
            "checkpoint_last": str(self.run_folder.last),
        }


def _foreground_scores(labels: torch.Tensor, masks: torch.Tensor, num_classes: int):
    """Per-case Dice and IoU; for several classes, the mean over the foreground classes."""
    if num_classes == 1:
        return dice(labels.bool(), masks.bool()), iou(labels.bool(), masks.bool())
    per_class = [(dice(labels == k, masks == k), iou(labels == k, masks == k)) for k in range(1, num_classes)]
    return (
        torch.stack([d for d, _ in per_class]).mean(0),
        torch.stack([j for _, j in per_class]).mean(0),
    )


def _build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def _weights_only(ckpt: dict[str, Any]) -> dict[str, Any]:
    """A best checkpoint: everything but the optimizer/scheduler/RNG states (smaller, for deployment)."""
    return {k: v for k, v in ckpt.items() if k not in ("optimizer", "scheduler", "rng")}


def _local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))
