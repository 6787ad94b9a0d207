"""The trainer: data folder -> model -> run folder, alone or under torchrun (DDP).

One epoch = a pass over the training split (shuffled by a permutation that depends only on the seed
and the epoch, augmentation drawn per sample from the seed, the epoch and the sample index), then
validation Dice/IoU on the validation split. After every epoch ``checkpoint_last.pt`` is written, and
``checkpoint_best.pt`` when validation Dice improved. Because all randomness is a function of
(seed, epoch, index) plus RNG states stored in the checkpoint, ``resume`` continues a stopped run exactly
where its last completed epoch ended: the resumed run reaches the same weights as an uninterrupted one.
The run folder's rules (one writer, the order of the saves, ``--overwrite`` setting the old run aside)
are in :mod:`specmamba.engine.run_folder`; a resume refuses a checkpoint_last.pt of another run (its
run id or config differs from the folder's) and an ``--epochs`` below the epochs already completed.

The contract between data, model and criterion (DESIGN.md, "Training contract"):

* **batch**: a dict from :class:`~specmamba.data.SegmentationDataset`: ``image`` (B, C, H, W) float,
  normalised; ``mask`` (B, H, W) int64 labels (0/1, or 0..K-1); ``name`` the case names.
* **model output**: in train mode logits (B, K, H, W) or a :class:`~specmamba.output.SegOutput`
  (``logits``, ``aux`` auxiliary logits at any resolution, ``terms`` extra scalar loss terms); in
  eval mode (validation, and everything after training) logits only.
* **criterion**: one :class:`~specmamba.losses.SegCriterion` built from ``loss`` and ``loss_kwargs``
  (``specmamba.losses.criterion`` gives the rule), called as ``criterion(output, mask)`` with the
  output in float32, returning (total, terms). The total is back-propagated; every term's mean over
  the epoch is a ``train_loss_<name>`` column of ``metrics.csv`` when there is more than one.
  Validation scores each case with the same criterion (``val_loss``). The criterion's diagnostics
  (learned auxiliary weights) are logged as ``train_<name>`` columns, epoch means.
* **criterion state**: a criterion's parameters (learnable loss weights) are trained with the model,
  in a second optimizer group without weight decay, clipped with the model's and averaged over DDP
  ranks; its state dict goes into every checkpoint (``criterion_state``) and is restored on resume.

``Trainer.run`` is the sequence of named steps below: data, seeding, model and criterion, run folder,
loaders, optimizer and schedule, resume, then per epoch train, validate, save, report.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
import uuid
from dataclasses import dataclass, field
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
    split_options,
    validate_pairs,
)
from ..disk import check_output_folder
from ..errors import ConfigError, InputSizeError, TrainingDivergedError
from ..inference import autocast, logits_to_labels, resolve_device
from ..losses import SegCriterion, build_criterion
from ..metrics import dice, iou
from ..models.checkpoint_file import read_checkpoint
from ..models.interface import valid_input_size
from ..models.registry import create_model
from ..output import SegOutput
from .checkpoint import check_optimizer_state, make_checkpoint, restore_rng_state, save_checkpoint
from .config import (
    COMMAND_LINE,
    MERGED_OPTIONS,
    PATH_FIELDS,
    TrainConfig,
    check_types,
    config_to_yaml,
    merge_overrides,
    resolved_path,
)
from .distributed import (
    DistContext,
    average_gradients,
    barrier,
    broadcast_object,
    gather_objects,
    init_distributed,
    shutdown_distributed,
)
from .optimizer import build_optimizer
from .release import export_release
from .run_folder import RunFolder
from .schedule import warmup_cosine

log = logging.getLogger(__name__)

# Options that may change when a run is resumed; anything else must match the stored config.
RESUMABLE_OVERRIDES = ("epochs", "workers", "progress", "device")
#: Prefix that keeps the criterion's diagnostics (not loss terms) apart in the epoch sums.
_DIAGNOSTIC = "diagnostic:"
#: Room a run asks for, per byte of its parameters: checkpoint_last.pt (weights and two Adam moments)
#: and its temporary copy while it is replaced, checkpoint_best.pt and the release; plus 1 MB of tables.
_BYTES_PER_PARAMETER_BYTE = 8
_TABLE_BYTES = 1 << 20


def train(config: TrainConfig, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Train ``config.model`` on ``config.data`` into the run folder ``config.out``.

    Returns the summary dict (also written to ``summary.json``). Under torchrun every rank calls this;
    only rank 0 writes files. Raises SpecMambaError subclasses for bad input before anything is written.
    """
    config.validate()
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
    if run.root.is_dir():
        with run.locked():
            run.recover_set_aside()  # a killed --overwrite may have left the run to resume aside
    if not run.last.is_file():
        raise ConfigError(f"--resume: {run.last} does not exist, so there is no run to resume in {run.root}.")
    stored = dict(read_checkpoint(run.last)["config"])
    given = check_types({k: v for k, v in overrides.items() if v is not None}, COMMAND_LINE)
    for key, value in merge_overrides(stored, given).items():  # dict options merged, as in resolve_config
        if key in PATH_FIELDS:  # compared resolved: a relative path means the same folder from anywhere
            value = resolved_path(value)
            stored[key] = resolved_path(stored[key]) if stored.get(key) else stored.get(key)
        if stored.get(key) == value:
            continue
        if key not in RESUMABLE_OVERRIDES:
            flag = MERGED_OPTIONS.get(key, f"--{key.replace('_', '-')}")
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
        self.run_id = uuid.uuid4().hex  # a resumed run keeps the id of the run it continues
        self.saved_epochs = 0  # epochs this process has saved

    # -- set-up ---------------------------------------------------------------------------------------

    def _prepare_data(self) -> None:
        cfg = self.config
        pairs = find_pairs(cfg.data, allow_unpaired=cfg.allow_unpaired)
        split = split_options(cfg.to_dict())
        self.train_pairs = select_split(pairs, "train", cfg.data, **split)
        self.val_pairs = select_split(pairs, "val", cfg.data, **split)
        if cfg.max_train_cases is not None:
            self.train_pairs = self.train_pairs[: cfg.max_train_cases]
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

    # -- the run, step by step --------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        with self.run_folder.locked() if self.ctx.is_main else contextlib.nullcontext():
            self._prepare_data()
            self._seed()
            model = self._build_model()
            criterion = self._build_criterion(model)
            n_params = sum(p.numel() for p in model.parameters())
            if self.ctx.is_main:
                weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
                need = _BYTES_PER_PARAMETER_BYTE * weight_bytes + _TABLE_BYTES
                check_output_folder(self.run_folder.root, "--out", need)
                self.run_folder.prepare(resume=self.resume, overwrite=self.overwrite)
            try:
                return self._run_epochs(model, criterion, n_params)
            except BaseException:
                if self.ctx.is_main and not self.saved_epochs:
                    self.run_folder.restore_set_aside()  # nothing new saved: the replaced run comes back
                raise

    def _run_epochs(self, model: nn.Module, criterion: SegCriterion, n_params: int) -> dict[str, Any]:
        barrier(self.ctx)
        model.to(self.device)
        criterion.to(self.device)
        train_loader, val_loader = self._loaders()
        optimizer, scheduler = self._build_optimization(model, criterion, len(train_loader))
        state = self._restore(model, criterion, optimizer, scheduler) if self.resume else _RunState()
        net = self._wrap_distributed(model)
        timer = _Timer()
        for epoch in range(state.start_epoch, self.config.epochs):
            row = self._epoch(net, criterion, train_loader, val_loader, optimizer, scheduler, epoch, timer)
            improved = state.record(row)
            if self.ctx.is_main:
                self._save_epoch(model, criterion, optimizer, scheduler, state, improved)
                self.run_folder.write_summary(
                    self._summary(state, n_params, timer, finished=epoch + 1 == self.config.epochs)
                )
                self._report_epoch(row, improved)
            barrier(self.ctx)
        return self._finish(state, n_params, timer)

    def _seed(self) -> None:
        torch.manual_seed(self.config.seed)
        if self.config.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False

    def _build_criterion(self, model: nn.Module) -> SegCriterion:
        """The criterion of ``loss`` / ``loss_kwargs``, weighing auxiliary outputs as the model asks."""
        cfg = self.config
        weighting = getattr(model, "aux_weighting", None)
        return build_criterion(cfg.loss, cfg.num_classes, aux_weighting=weighting, **cfg.loss_kwargs)

    def _build_optimization(
        self, model: nn.Module, criterion: nn.Module, steps_per_epoch: int
    ) -> tuple[torch.optim.Optimizer, Any]:
        cfg = self.config
        optimizer = _build_optimizer(model, criterion, cfg)
        scheduler = warmup_cosine(
            optimizer,
            total_steps=cfg.epochs * steps_per_epoch,
            warmup_steps=round(cfg.warmup_epochs * steps_per_epoch),
            base_lr=cfg.lr,
            min_lr=cfg.min_lr,
        )
        return optimizer, scheduler

    def _restore(self, model, criterion, optimizer, scheduler) -> _RunState:
        """Load the last checkpoint's weights, criterion, optimizer, scheduler and RNG states, after
        checking it belongs to this run; rewrite the files a kill may have left behind it."""
        ckpt = read_checkpoint(self.run_folder.last)
        if self.ctx.is_main:
            self.run_folder.check_belongs(ckpt, ignored=(*RESUMABLE_OVERRIDES, *PATH_FIELDS))
        if ckpt["epoch"] > self.config.epochs:
            raise ConfigError(
                f"--epochs {self.config.epochs} is fewer than the {ckpt['epoch']} epochs the run in "
                f"{self.run_folder.root} has completed; resume with --epochs {ckpt['epoch']} or more "
                "(or start a new run)."
            )
        self.run_id = ckpt.get("run_id") or self.run_id
        model.load_state_dict(ckpt["state_dict"])
        criterion.load_state_dict(ckpt.get("criterion_state", {}))
        check_optimizer_state(ckpt["optimizer"], optimizer, str(self.run_folder.last))
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        self.normalization = ckpt["normalization"]
        restore_rng_state(ckpt["rng"])
        if self.ctx.is_main:
            self.run_folder.reconcile(ckpt, config_to_yaml(self.config), _weights_only(ckpt))
            log.info("resuming %s after epoch %d", self.run_folder.root, ckpt["epoch"])
        return _RunState(ckpt["epoch"], ckpt["best_score"], ckpt["best_epoch"], list(ckpt.get("history", [])))

    def _wrap_distributed(self, model: nn.Module) -> nn.Module:
        if not self.ctx.enabled:
            return model
        ddp_args = {"device_ids": [self.device.index]} if self.device.type == "cuda" else {}
        # a model that may leave parameters unused in a step (VMAML-UNet's wavelet levels on small maps)
        ddp_args["find_unused_parameters"] = bool(getattr(model, "ddp_find_unused_parameters", False))
        return nn.parallel.DistributedDataParallel(model, **ddp_args)

    def _epoch(self, net, criterion, train_loader, val_loader, optimizer, scheduler, epoch, timer) -> dict:
        """Train one epoch, validate; returns the epoch's metrics.csv row."""
        epoch_start = time.perf_counter()
        self.train_sampler.set_epoch(epoch)
        train_loader.dataset.set_epoch(epoch)
        train_terms, n_images = self._train_epoch(net, train_loader, optimizer, scheduler, criterion, epoch)
        timer.images += n_images
        val = self._validate(net, val_loader, criterion)
        row = {
            "epoch": epoch + 1,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": train_terms.pop("loss"),
        }
        diagnostics = {k: train_terms.pop(k) for k in list(train_terms) if k.startswith(_DIAGNOSTIC)}
        if len(train_terms) > 1:  # one term is the loss itself; several each get a column
            row.update({f"train_loss_{name}": value for name, value in train_terms.items()})
        row.update({f"train_{name[len(_DIAGNOSTIC) :]}": value for name, value in diagnostics.items()})
        row.update(
            {
                "val_loss": val["loss"],
                "val_dice": val["dice"],
                "val_iou": val["iou"],
                "val_cases": val["n_cases"],
                "epoch_time_s": round(time.perf_counter() - epoch_start, 3),
            }
        )
        return row

    def _save_epoch(self, model, criterion, optimizer, scheduler, state: _RunState, improved: bool) -> None:
        ckpt = make_checkpoint(
            model,
            self.config.to_dict(),
            self.normalization,
            state.epochs_done,
            state.best_score,
            state.best_epoch,
            optimizer,
            scheduler,
            criterion=criterion,
        )
        ckpt["history"] = state.history
        ckpt["run_id"] = self.run_id
        # checkpoint_last.pt first: everything after it can be rebuilt from it (RunFolder.reconcile).
        save_checkpoint(ckpt, self.run_folder.last)
        if not self.saved_epochs:
            self.run_folder.discard_set_aside()
        self.saved_epochs += 1
        if improved:
            save_checkpoint(_weights_only(ckpt), self.run_folder.best)
        self.run_folder.write_metrics(state.history)
        atomic_write_text(self.run_folder.config, config_to_yaml(self.config))

    def _report_epoch(self, row: dict[str, Any], improved: bool) -> None:
        if self.show_progress:
            tqdm.write(
                f"epoch {row['epoch']}/{self.config.epochs}  train_loss {row['train_loss']:.4f}  val_loss "
                f"{row['val_loss']:.4f}  val_dice {row['val_dice']:.4f}  val_iou {row['val_iou']:.4f}"
                + ("  (best)" if improved else "")
            )

    def _finish(self, state: _RunState, n_params: int, timer: _Timer) -> dict[str, Any]:
        summary = self._summary(state, n_params, timer, finished=True)
        if self.ctx.is_main:
            if self.config.export and self.run_folder.best.is_file():
                export_release(read_checkpoint(self.run_folder.best), self.run_folder.release)
            self.run_folder.write_summary(summary)
        return broadcast_object(summary, self.ctx)

    def _train_epoch(self, model, loader, optimizer, scheduler, criterion, epoch: int):
        """One pass over the training split; returns (mean of every loss term, images trained on).

        The means are over every image that every rank trained on; key ``loss`` is the total.
        """
        cfg = self.config
        model.train()
        criterion.train()
        sums: dict[str, float] = {}
        count = 0
        extra_params = [p for p in criterion.parameters() if p.requires_grad]
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
                output = model(images)
            loss, terms = criterion(_float_output(output), masks)
            if not torch.isfinite(loss):
                raise TrainingDivergedError(
                    f"The training loss became {loss.item()} at epoch {epoch + 1}: lower --lr, or keep "
                    f"gradient clipping on (grad_clip in the config). {self._saved_text()}"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            average_gradients(extra_params, self.ctx)
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_([*model.parameters(), *extra_params], cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            n = images.shape[0]
            for name, value in {"loss": loss, **terms}.items():
                sums[name] = sums.get(name, 0.0) + value.item() * n
            for name, value in criterion.diagnostics().items():  # e.g. learned auxiliary weights
                key = f"{_DIAGNOSTIC}{name}"
                sums[key] = sums.get(key, 0.0) + value * n
            count += n
            bar.set_postfix(loss=f"{sums['loss'] / count:.4f}")
        parts = gather_objects((sums, count), self.ctx)
        all_count = sum(c for _, c in parts)
        means = {name: sum(p[name] for p, _ in parts) / max(all_count, 1) for name in sums}
        return means, all_count

    @torch.no_grad()
    def _validate(self, model, loader, criterion) -> dict[str, float]:
        """Per-case Dice/IoU and loss at training resolution, gathered over ranks, each case counted once."""
        model.eval()
        criterion.eval()
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
                case_loss = criterion(logits[i : i + 1], masks[i : i + 1]).total.item()
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

    def _saved_text(self) -> str:
        """What is on disk if the run stops now, for error messages."""
        if self.saved_epochs or self.resume:
            return f"The last completed epoch is saved in {self.run_folder.last}."
        if self.overwrite:
            return (
                "No epoch was completed: nothing new was saved, and the previous run in "
                f"{self.config.out} is kept."
            )
        return "No epoch was completed, so nothing was saved."

    def _summary(self, state: _RunState, n_params: int, timer: _Timer, finished: bool) -> dict[str, Any]:
        cfg = self.config
        history = state.history
        best = next((r for r in history if r["epoch"] == state.best_epoch), {})
        last = history[-1] if history else {}
        seconds = timer.seconds()
        return {
            "model": cfg.model,
            "run_id": self.run_id,
            "parameters": n_params,
            "data": str(cfg.data),
            "n_train": len(self.train_pairs),
            "n_val": len(self.val_pairs),
            "img_size": cfg.img_size,
            "epochs_completed": last.get("epoch", 0),
            "epochs": cfg.epochs,
            "finished": finished,
            "best_epoch": state.best_epoch,
            "best_val_dice": best.get("val_dice"),
            "best_val_iou": best.get("val_iou"),
            "last_val_dice": last.get("val_dice"),
            "train_seconds_this_session": round(seconds, 2),
            "train_images_per_s": round(timer.images / seconds, 2) if seconds > 0 else None,
            "device": str(self.device),
            "world_size": self.ctx.world_size,
            "checkpoint_best": str(self.run_folder.best),
            "checkpoint_last": str(self.run_folder.last),
        }


@dataclass
class _RunState:
    """Where the run stands: epochs done, the best validation Dice so far, the metrics rows."""

    start_epoch: int = 0
    best_score: float = -math.inf
    best_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def epochs_done(self) -> int:
        return self.history[-1]["epoch"] if self.history else self.start_epoch

    def record(self, row: dict[str, Any]) -> bool:
        """Append an epoch's row; True when its validation Dice is the best so far."""
        self.history.append(row)
        improved = row["val_dice"] > self.best_score
        if improved:
            self.best_score, self.best_epoch = row["val_dice"], row["epoch"]
        return improved


@dataclass
class _Timer:
    """Training time and images of this session (a resumed run counts from its restart)."""

    start: float = field(default_factory=time.perf_counter)
    images: int = 0

    def seconds(self) -> float:
        return time.perf_counter() - self.start


def _float_output(output: Any) -> Any:
    """Logits (and auxiliary logits) in float32 for the loss, whatever autocast produced."""
    if isinstance(output, SegOutput):
        return SegOutput(output.logits.float(), [a.float() for a in output.aux], dict(output.terms))
    return output.float()


def _foreground_scores(labels: torch.Tensor, masks: torch.Tensor, num_classes: int):
    """Per-case Dice and IoU; for several classes, the mean over the foreground classes."""
    if num_classes == 1:
        return dice(labels.bool(), masks.bool()), iou(labels.bool(), masks.bool())
    per_class = [(dice(labels == k, masks == k), iou(labels == k, masks == k)) for k in range(1, num_classes)]
    return (
        torch.stack([d for d, _ in per_class]).mean(0),
        torch.stack([j for _, j in per_class]).mean(0),
    )


def _build_optimizer(model: nn.Module, criterion: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The run's Adam(W) (:func:`specmamba.engine.optimizer.build_optimizer`, fused where PyTorch can)."""
    return build_optimizer(model, criterion, cfg.optimizer, cfg.lr, cfg.weight_decay)


def _weights_only(ckpt: dict[str, Any]) -> dict[str, Any]:
    """A best checkpoint: everything but the optimizer/scheduler/RNG states (smaller, for deployment)."""
    return {k: v for k, v in ckpt.items() if k not in ("optimizer", "scheduler", "rng")}


def _local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))
