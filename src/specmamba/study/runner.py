"""``specmamba study``: train, score and audit every (model, seed[, fold]) run of a study file; resumable.

Study folder (``--out DIR``)::

    study.yaml                      the resolved study (written first; another study refuses DIR)
    data/<name>/                    synthetic data, where the study asks for it
    runs/<label>/seed<k>/           one training run folder per (model, seed) (``specmamba train``'s;
                                    ``seed<k>-fold<f>/`` per fold in a study with folds)
        eval_val/                   its validation split, scored (``specmamba evaluate``'s files)
        eval_<external>/            each external test set, all cases
    speed/<label>.json              parameters, GFLOPs, CPU s/image, GPU ms/image of each model
    audit/, audit_uncentred/        the spectral audit of every checkpoint (centred; raw maps); with
                                    folds one audit per fold (``audit/fold<f>/``, its validation part)
    leaderboard.csv/.md, pairwise.csv, families.csv, report.html   (:mod:`specmamba.study.tables`)

**Resuming.** Every step's output appears atomically and is the step's "done" mark: a finished run
has ``summary.json`` with ``finished: true``, a scored set its ``summary.json``, a model's speed its
JSON, an audit its ``summary.json``. The same command after a kill skips what is done; a training run
that was stopped mid-way continues from its ``checkpoint_last.pt`` (the trainer's resume, which
reaches the weights of an uninterrupted run), and a run killed before its first epoch starts again.
The tables are rebuilt from those files at the end of every call, so a resumed study writes the same
leaderboard as an uninterrupted one, byte for byte on CPU (speed figures are measured once per
model and then read back, so they too are the ones first written).

**Sharing the work.** Runs are independent folders. ``--shard K/N`` does only the runs (and speed
measurements) whose position in the study's run list is K-1 modulo N, and writes no tables; start N
processes with K = 1..N on machines that see the same DIR (one GPU each: ``CUDA_VISIBLE_DEVICES=K-1
specmamba study ... --shard K/N``), then run the command once more without ``--shard``: it finds
every run done, audits and writes the tables. Each run folder is locked while it trains, so an
overlap between processes fails loudly instead of corrupting a run. The study command trains one
process per run; it does not launch ``torchrun`` (DDP) itself.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm.auto import tqdm

from ..atomic import atomic_write_text, write_json
from ..data import make_synthetic_dataset
from ..disk import check_output_folder
from ..engine.config import TrainConfig
from ..engine.evaluator import evaluate
from ..engine.trainer import resume_config, train
from ..errors import ConfigError
from ..inference import resolve_device
from ..models.registry import create_model
from ..spectral.audit import AuditSettings, run_audit
from .spec import RunSpec, StudySpec, load_study

__all__ = ["Step", "StudyFolder", "measure_speed", "plan", "run_study"]

#: Room asked for before anything is written: study.yaml, tables, report (runs ask for their own).
_STUDY_BYTES = 64 << 20
SYNTHETIC_DONE = "SYNTHETIC_COMPLETE"


class StudyFolder:
    """Paths of one study folder (the module docstring)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    study_file = property(lambda self: self.root / "study.yaml")
    speed = property(lambda self: self.root / "speed")

    def run(self, run: RunSpec) -> Path:
        return self.root / run.folder

    def evaluation(self, run: RunSpec, name: str) -> Path:
        """Scores of ``run`` on the validation split (``val``) or an external set (its name)."""
        return self.run(run) / f"eval_{name}"

    def speed_file(self, slug: str) -> Path:
        return self.speed / f"{slug}.json"

    def audit(self, centred: bool, fold: int | None = None) -> Path:
        base = self.root / ("audit" if centred else "audit_uncentred")
        return base if fold is None else base / f"fold{fold}"


def _finished(run_dir: Path) -> bool:
    summary = run_dir / "summary.json"
    return summary.is_file() and bool(json.loads(summary.read_text(encoding="utf-8")).get("finished"))


def _claim(folder: StudyFolder, spec: StudySpec) -> None:
    """Write study.yaml, or check that the one in the folder is this study's."""
    text = yaml.safe_dump(spec.to_dict(), sort_keys=False)
    if folder.study_file.is_file():
        stored = yaml.safe_load(folder.study_file.read_text(encoding="utf-8"))
        if stored != yaml.safe_load(text):
            keys = sorted(
                k for k in set(stored) | set(spec.to_dict()) if stored.get(k) != spec.to_dict().get(k)
            )
            raise ConfigError(
                f"--out {folder.root} holds another study ({folder.study_file} differs in: "
                f"{', '.join(keys)}). "
                "A study folder continues one study: give the same study file, or another --out."
            )
        return
    if folder.root.exists() and not folder.root.is_dir():
        raise ConfigError(f"--out {folder.root} is a file; give a folder for the study.")
    if folder.root.is_dir() and any(folder.root.iterdir()):
        raise ConfigError(
            f"--out {folder.root} is not empty and holds no study.yaml: choose a new folder for the study."
        )
    check_output_folder(folder.root, "--out", _STUDY_BYTES)
    folder.root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder.study_file, text)


def _materialise(data: str | dict[str, Any], folder: Path) -> str:
    """A data folder: the given one, or the synthetic set written (once) into ``folder``."""
    if isinstance(data, str):
        return data
    if not (folder / SYNTHETIC_DONE).is_file():
        options = data["synthetic"]
        make_synthetic_dataset(
            folder, n=options["n"], size=options["size"], seed=options["seed"], overwrite=True
        )
        atomic_write_text(folder / SYNTHETIC_DONE, json.dumps(options) + "\n")
    return str(folder.resolve())


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"K/N"`` -> (K, N) with 1 <= K <= N; None for None."""
    if text is None:
        return None
    k, sep, n = text.partition("/")
    if not (sep and k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
        raise ConfigError(f"--shard {text!r}: expected K/N with 1 <= K <= N (e.g. 2/4).")
    return int(k), int(n)


class _Progress:
    """One bar over the whole study, in work units (a training epoch, a scored set, an audit...)."""

    def __init__(self, total: int, done: int, show: bool) -> None:
        self.bar = tqdm(total=total, initial=done, desc="study", unit="step", disable=not show, position=0)

    def advance(self, units: int, what: str) -> None:
        self.bar.set_postfix_str(what, refresh=False)
        self.bar.update(units)

    def close(self) -> None:
        self.bar.close()


def _train(run: RunSpec, run_dir: Path, data: str, device: str, progress: bool) -> None:
    if (run_dir / "checkpoint_last.pt").is_file():
        train(resume_config(run_dir, device=device, progress=progress), resume=True)
        return
    config = TrainConfig(
        **{**run.config, "device": device, "progress": progress}, data=data, out=str(run_dir)
    )
    train(config, overwrite=True)  # a run killed before its first checkpoint starts again


def measure_speed(run: RunSpec, spec: StudySpec) -> dict[str, Any]:
    """Parameters, GFLOPs at the study's size, and inference time per image (batch 1, fp32, fresh
    weights: the time does not depend on them) on the CPU and, where present and asked for, the GPU."""
    from ..bench.peak import model_flops  # bench sits on top of models, like the study
    from ..bench.timing import time_ms

    cfg = run.config
    model = create_model(
        cfg["model"], in_chans=cfg["in_chans"], num_classes=cfg["num_classes"], **cfg["model_kwargs"]
    )
    model.eval()
    x = torch.randn(1, cfg["in_chans"], cfg["img_size"], cfg["img_size"])
    out: dict[str, Any] = {
        "label": run.entry.label,
        "parameters": sum(p.numel() for p in model.parameters()),
        "gflops": round(model_flops(model, x) / 1e9, 4),
        "img_size": cfg["img_size"],
        "cpu_s_per_image": None,
        "gpu_ms_per_image": None,
        "cpu_threads": torch.get_num_threads(),
    }
    repeats = spec.speed["repeats"]
    with torch.no_grad():
        if spec.speed["cpu"]:
            out["cpu_s_per_image"] = round(time_ms(lambda: model(x), "cpu", repeats).median_ms / 1e3, 4)
        if spec.speed["gpu"] and torch.cuda.is_available():
            gpu, xg = model.to("cuda"), x.to("cuda")
            out["gpu_ms_per_image"] = round(time_ms(lambda: gpu(xg), "cuda", repeats, warmup=3).median_ms, 3)
            out["gpu"] = torch.cuda.get_device_name()
    return out


def _audit(
    folder: StudyFolder,
    spec: StudySpec,
    data: str,
    device: str,
    progress: bool,
    centred: bool,
    fold: int | None,
) -> None:
    """Audit the checkpoints of one fold (all of them without folds): they share a validation split."""
    runs = [r for r in spec.runs if r.fold == fold]
    options = spec.audit
    settings = AuditSettings(
        threshold=options["threshold"],
        tolerance=options["tolerance"],
        shift_images=options["shift_images"] if centred else 0,  # the shift test does not depend on centring
        max_images=options["max_images"],
        n_boot=options["n_boot"],
        seed=spec.statistics["seed"],
        center=centred,
    )
    run_audit(
        [folder.run(r) / "checkpoint_best.pt" for r in runs],
        data,
        folder.audit(centred, fold),
        split="val",
        device=device,
        settings=settings,
        progress=progress,
        overwrite=True,
        command=f"specmamba study ({spec.name})",
        architectures=[r.entry.label for r in runs],
    )


@dataclass
class Step:
    """One unit of a study's work: ``units`` of the progress bar, done when ``is_done()`` says so."""

    units: int
    what: str
    is_done: Callable[[], bool]
    do: Callable[[], Any]


def plan(
    spec: StudySpec,
    folder: StudyFolder,
    data: str,
    externals: dict[str, str],
    shard: tuple[int, int] | None,
    device: str,
    progress: bool,
) -> list[Step]:
    """Every step of the study (of one shard: runs and speed measurements at positions K-1 mod N), in
    the order they run: each run's training and scoring, each model's speed, then the audits."""

    def in_shard(i: int) -> bool:
        return shard is None or i % shard[1] == shard[0] - 1

    steps = []
    sets = [("val", data, "val"), *((name, path, "all") for name, path in externals.items())]
    for i, run in enumerate(spec.runs):
        if not in_shard(i):
            continue
        run_dir, name = folder.run(run), run.name
        steps.append(
            Step(
                run.config["epochs"],
                f"train {name}",
                lambda d=run_dir: _finished(d),
                lambda r=run, d=run_dir: _train(r, d, data, device, progress),
            )
        )
        for set_name, set_data, split in sets:
            target = folder.evaluation(run, set_name)
            steps.append(
                Step(
                    1,
                    f"score {name} on {set_name}",
                    lambda t=target: (t / "summary.json").is_file(),
                    lambda d=run_dir, t=target, p=set_data, s=split: evaluate(
                        d / "checkpoint_best.pt", p, split=s, out=t, device=device, progress=progress
                    ),
                )
            )
    first_runs: dict[str, int] = {}
    for i, run in enumerate(spec.runs):
        first_runs.setdefault(run.entry.slug, i)
    for slug, i in first_runs.items():
        if in_shard(i):
            target, run = folder.speed_file(slug), spec.runs[i]
            steps.append(
                Step(
                    1,
                    f"speed of {run.entry.label}",
                    target.is_file,
                    lambda r=run, t=target: write_json(t, measure_speed(r, spec)),
                )
            )
    if shard is None and spec.audit["enabled"]:
        for centred in (True, False) if spec.audit["uncentred"] else (True,):
            for fold in spec.fold_ids:
                target = folder.audit(centred, fold) / "summary.json"
                what = ("audit" if centred else "audit (uncentred maps)") + (
                    "" if fold is None else f" fold {fold}"
                )
                steps.append(
                    Step(
                        sum(r.fold == fold for r in spec.runs),
                        what,
                        target.is_file,
                        lambda c=centred, f=fold: _audit(folder, spec, data, device, progress, c, f),
                    )
                )
    return steps


def run_study(
    study: str | StudySpec,
    out: str | Path,
    data: str | None = None,
    device: str = "auto",
    shard: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run (or continue) the study ``study`` (a study file, a shipped name or a loaded StudySpec) in
    ``out``; returns what the tables say (also in ``out``). See the module docstring."""
    from .tables import write_tables

    start = time.perf_counter()
    spec = study if isinstance(study, StudySpec) else load_study(study, data=data)
    part = parse_shard(shard)
    device = str(resolve_device(device))
    folder = StudyFolder(out)
    _claim(folder, spec)
    data_dir = _materialise(spec.data, folder.root / "data" / "main")
    externals = {e.name: _materialise(e.data, folder.root / "data" / e.name) for e in spec.external}

    steps = plan(spec, folder, data_dir, externals, part, device, progress)
    done = [step.is_done() for step in steps]
    bar = _Progress(sum(s.units for s in steps), sum(s.units for s, d in zip(steps, done) if d), progress)
    try:
        for step, finished in zip(steps, done):
            if not finished:
                step.do()
                bar.advance(step.units, step.what)
    finally:
        bar.close()
    if part is not None:
        runs = sum(step.what.startswith("train ") for step in steps)
        return {
            "out": str(folder.root),
            "shard": shard,
            "runs": runs,
            "seconds": round(time.perf_counter() - start, 1),
        }
    result = write_tables(folder, spec)
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result
