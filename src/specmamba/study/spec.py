"""The study file: which models, seeds, data and recipe a study compares, checked before any training.

A study file is YAML (a path, or the name of one shipped in ``specmamba/configs/studies``)::

    name: mamba_families_isic          # optional; the file's stem by default
    description: free text             # optional, shown in the report
    data: ../shared/data/isic2017      # a data folder, or {synthetic: {n: 96, size: 64, seed: 0}}
    external:                          # optional test sets scored by every run (whole folder)
      - {name: kvasir, data: ../shared/data/kvasir-seg}
    seeds: [0, 1, 2]                   # training seeds: every model is trained once per seed
    folds: 5                           # optional k-fold cross-validation: once per seed and fold
    recipe:                            # training options shared by every model (``specmamba train``'s)
      preset: vmunet_isic              # optional shipped preset or YAML file underneath the recipe
      epochs: 30
      img_size: 256
    models:                            # rows of the leaderboard: a model and its options
      - model: spec_vmamba
      - model: spec_vmamba
        label: spec_vmamba (no FFT gating)
        model_kwargs: {spectral: false}
        recipe: {lr: 0.0005}           # per-model overrides of the recipe
    audit: {max_images: 200, shift_images: 16, n_boot: 1000, uncentred: true}
    statistics: {n_boot: 2000, seed: 0, correction: holm}
    speed: {cpu: true, gpu: true, repeats: 5}

Relative data paths are read from the current working directory, as ``specmamba train --data`` reads
them; the resolved study (absolute paths) is written as ``study.yaml`` in the study folder and a later
call with another study refuses that folder. The recipe may not set what the study sets per run
(``data``, ``out``, ``model``, ``model_kwargs``, ``seed``, ``folds``, ``fold``).

**Folds.** Without ``folds`` every run validates on the recipe's seeded ``val_fraction`` split. With
``folds: k`` each (model, seed) is trained k times, fold f validating on part f of the seeded order
(:func:`~specmamba.data.splits.seeded_split`), so that every case is scored once per seed by a model
that did not see it; the external sets are scored by every fold.

:func:`load_study` checks everything a run could later fail on, before anything is trained: unknown
keys (naming the entry, e.g. ``models[2].recipe``), unknown model names, model options the model does
not take (every model is built once on PyTorch's meta device, which allocates nothing), every run's
training configuration (:class:`~specmamba.engine.config.TrainConfig`'s own checks), duplicate labels,
and data folders that are missing or hold no pairs.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import yaml

from ..data import find_pairs, select_split
from ..engine.config import SEED_RANGE, TrainConfig, config_fields, load_preset, resolved_path
from ..errors import ConfigError, SpecMambaError
from ..models.interface import architecture_label, valid_input_size
from ..models.registry import create_model, list_models
from .stats import CORRECTIONS

__all__ = ["ExternalSet", "ModelEntry", "RunSpec", "StudySpec", "load_study", "shipped_studies"]

STUDY_KEYS = (
    "name",
    "description",
    "data",
    "external",
    "seeds",
    "folds",
    "recipe",
    "models",
    "audit",
    "statistics",
    "speed",
)
MODEL_KEYS = ("model", "label", "model_kwargs", "recipe")
#: Training options the study sets for every run itself.
PER_RUN_FIELDS = ("data", "out", "model", "model_kwargs", "seed", "folds", "fold")
SYNTHETIC_KEYS = {"n": 96, "size": 64, "seed": 0}
#: Audit options of a study (``AuditSettings`` names) with their defaults; ``enabled`` and
#: ``uncentred`` say whether the audit, and its second pass on raw (uncentred) maps, run at all.
AUDIT_DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "uncentred": True,
    "max_images": None,
    "shift_images": 16,
    "n_boot": 1000,
    "threshold": 0.5,
    "tolerance": 2.0,
}
STATISTICS_DEFAULTS: dict[str, Any] = {"n_boot": 2000, "seed": 0, "correction": "holm"}
SPEED_DEFAULTS: dict[str, Any] = {"cpu": True, "gpu": True, "repeats": 5}
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class ExternalSet:
    """A test set every run is also scored on: all of its cases (``split: all``)."""

    name: str
    data: str | dict[str, Any]


@dataclass(frozen=True)
class ModelEntry:
    """One row of the leaderboard: a registered model with its options and recipe overrides."""

    label: str
    slug: str
    model: str
    model_kwargs: dict[str, Any]
    recipe: dict[str, Any]
    architecture: str


@dataclass(frozen=True)
class RunSpec:
    """One (model, seed[, fold]) training run; ``folder`` is relative to the study folder."""

    entry: ModelEntry
    seed: int
    folder: str
    config: dict[str, Any]  # TrainConfig fields without data and out (the runner fills them)
    fold: int | None = None  # None: the study has no folds

    @property
    def name(self) -> str:
        """How progress and errors name the run: ``label seed k`` (``fold f`` appended with folds)."""
        return f"{self.entry.label} seed {self.seed}" + ("" if self.fold is None else f" fold {self.fold}")


@dataclass
class StudySpec:
    """A checked study file (:func:`load_study`)."""

    name: str
    description: str
    data: str | dict[str, Any]
    external: list[ExternalSet]
    seeds: list[int]
    recipe: dict[str, Any]
    models: list[ModelEntry]
    audit: dict[str, Any]
    statistics: dict[str, Any]
    speed: dict[str, Any]
    folds: int = 0  # 0: no cross-validation
    source: str = ""
    runs: list[RunSpec] = field(default_factory=list)

    @property
    def fold_ids(self) -> list[int | None]:
        """The folds every (model, seed) is trained on: [None] without folds."""
        return list(range(self.folds)) if self.folds else [None]

    def to_dict(self) -> dict[str, Any]:
        """The resolved study as plain YAML-able values (what ``study.yaml`` holds)."""
        return {
            "name": self.name,
            "description": self.description,
            "data": copy.deepcopy(self.data),
            "external": [{"name": e.name, "data": copy.deepcopy(e.data)} for e in self.external],
            "seeds": list(self.seeds),
            "recipe": copy.deepcopy(self.recipe),
            "models": [
                {"model": m.model, "label": m.label, "model_kwargs": m.model_kwargs, "recipe": m.recipe}
                for m in self.models
            ],
            "audit": dict(self.audit),
            "statistics": dict(self.statistics),
            "speed": dict(self.speed),
            **({"folds": self.folds} if self.folds else {}),  # study files without folds read as before
        }


def shipped_studies() -> list[str]:
    """Names of the study files shipped with the package (``specmamba/configs/studies/*.yaml``)."""
    folder = resources.files("specmamba.configs") / "studies"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read(path_or_name: str) -> tuple[dict[str, Any], str, str]:
    """(values, source shown in errors, default name) of a study file path or shipped name."""
    path = Path(path_or_name)
    if path.is_file():
        text, source, stem = path.read_text(encoding="utf-8"), f"--config {path}", path.stem
    else:
        shipped = resources.files("specmamba.configs") / "studies" / f"{path_or_name}.yaml"
        if not shipped.is_file():
            raise ConfigError(
                f"--config {path_or_name!r} is neither a study file nor a shipped study; shipped studies: "
                f"{', '.join(shipped_studies()) or 'none'}."
            )
        text, source, stem = shipped.read_text(encoding="utf-8"), f"--config {path_or_name}", path_or_name
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: not valid YAML ({err}).") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: a study file is a mapping of key: value at the top level.")
    return values, source, stem


def _mapping(value: Any, where: str, allowed: tuple[str, ...] | None = None) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a mapping of key: value; got {value!r}.")
    if allowed is not None:
        unknown = sorted(str(k) for k in value if k not in allowed)
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(allowed)}."
            )
    return dict(value)


def _options(value: Any, where: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """A section of options with defaults; unknown keys refused, types as the default's."""
    given = _mapping(value, where, tuple(defaults))
    out = dict(defaults)
    for key, v in given.items():
        default = defaults[key]
        kind = type(default) if default is not None else int
        ok = isinstance(v, kind) and not (isinstance(v, bool) and kind is not bool)
        if kind is float and isinstance(v, int) and not isinstance(v, bool):
            v, ok = float(v), True
        if not (ok or (default is None and v is None)):
            raise ConfigError(f"{where}.{key} must be {kind.__name__}; got {v!r}.")
        out[key] = v
    return out


def _data(value: Any, where: str) -> str | dict[str, Any]:
    """A data folder (resolved, checked to hold pairs) or a synthetic-data request (defaults filled)."""
    if isinstance(value, Mapping):
        spec = _mapping(value, where, ("synthetic",))
        options = _mapping(spec.get("synthetic"), f"{where}.synthetic", tuple(SYNTHETIC_KEYS))
        out = {**SYNTHETIC_KEYS, **options}
        for key, v in out.items():
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if key == "seed" else 1):
                raise ConfigError(f"{where}.synthetic.{key} must be a whole number; got {v!r}.")
        if out["size"] < 16:
            raise ConfigError(f"{where}.synthetic.size must be >= 16 pixels; got {out['size']}.")
        return {"synthetic": out}
    if not isinstance(value, str) or not value:
        raise ConfigError(
            f"{where} must be a data folder (text) or {{synthetic: {{n, size, seed}}}}; got {value!r}."
        )
    folder = resolved_path(value)
    try:
        pairs = find_pairs(folder)
    except SpecMambaError as err:
        raise ConfigError(f"{where} ({value}): {err}") from None
    if not pairs:
        raise ConfigError(f"{where} ({value}): the folder holds no image/mask pairs.")
    return folder


def _seeds(value: Any) -> list[int]:
    low, high = SEED_RANGE
    if not isinstance(value, list) or not value:
        raise ConfigError(f"seeds must be a non-empty list of whole numbers (e.g. [0, 1, 2]); got {value!r}.")
    for k, seed in enumerate(value):
        if isinstance(seed, bool) or not isinstance(seed, int) or not low <= seed <= high:
            raise ConfigError(f"seeds[{k}] must be a whole number in {low}..{high}; got {seed!r}.")
    if len(set(value)) != len(value):
        raise ConfigError(f"seeds lists a seed twice ({value}): each seed is one training run.")
    return list(value)


def _folds(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise ConfigError(
            f"folds must be a whole number k >= 2 (k-fold cross-validation), or left out; got {value!r}."
        )
    return value


def _check_folds_fit(data: str | dict[str, Any], folds: int) -> None:
    """Refuse folds a data folder cannot give (train/val lists fix its split; fewer cases than folds)."""
    if isinstance(data, dict):
        if data["synthetic"]["n"] < folds:
            raise ConfigError(f"folds {folds}: the synthetic data has only {data['synthetic']['n']} cases.")
        return
    try:
        select_split(find_pairs(data), "val", data, folds=folds, fold=0)
    except SpecMambaError as err:
        raise ConfigError(f"folds ({data}): {err}") from None


def _recipe(value: Any, where: str) -> dict[str, Any]:
    recipe = _mapping(value, where)
    unknown = sorted(str(k) for k in recipe if k not in config_fields() and k != "preset")
    if unknown:
        raise ConfigError(
            f"{where}: unknown training option(s) {', '.join(unknown)}; valid options: preset, "
            f"{', '.join(sorted(config_fields() - set(PER_RUN_FIELDS)))}."
        )
    taken = sorted(k for k in recipe if k in PER_RUN_FIELDS)
    if taken:
        raise ConfigError(
            f"{where}: {', '.join(taken)} are set by the study for every run (data and external at the top, "
            "model and model_kwargs per model, seed from seeds, folds at the top); remove them from the "
            "recipe."
        )
    return recipe


def _check_model(entry: ModelEntry, config: dict[str, Any], where: str) -> None:
    """Build the model once on the meta device: unknown options and an image size the model cannot
    take fail here, not after hours of training."""
    if entry.model not in list_models():
        raise ConfigError(
            f"{where}.model: unknown model {entry.model!r}; registered models: {', '.join(list_models())}."
        )
    try:
        with torch.device("meta"):
            model = create_model(
                entry.model,
                in_chans=config["in_chans"],
                num_classes=config["num_classes"],
                **entry.model_kwargs,
            )
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"{where} ({entry.label}): {entry.model} cannot be built with these options: {err}"
        ) from None
    valid = valid_input_size(model, config["img_size"])
    if valid != config["img_size"]:
        raise ConfigError(
            f"{where} ({entry.label}): img_size {config['img_size']} cannot be used with {entry.model}; the "
            f"nearest size it takes is {valid} (set img_size in the recipe: every model of a study uses one)."
        )


def _entries(value: Any) -> list[tuple[str, dict[str, Any]]]:
    if not isinstance(value, list) or not value:
        raise ConfigError("models must be a non-empty list of {model: NAME, ...} entries.")
    out = []
    for k, item in enumerate(value):
        where = f"models[{k}]"
        item = {"model": item} if isinstance(item, str) else _mapping(item, where, MODEL_KEYS)
        if not isinstance(item.get("model"), str):
            raise ConfigError(f"{where}: needs model: NAME (a registered model, see `specmamba models`).")
        out.append((where, item))
    return out


def _slug(label: str) -> str:
    return _SLUG.sub("_", label).strip("_.") or "model"


def load_study(path_or_name: str, data: str | None = None) -> StudySpec:
    """Read and check a study file (the module docstring says what is checked); ``data`` replaces the
    file's ``data``. Raises ConfigError naming the entry at fault; nothing is written."""
    values, source, stem = _read(path_or_name)
    unknown = sorted(str(k) for k in values if k not in STUDY_KEYS)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(STUDY_KEYS)}."
        )
    for required in ("data", "seeds", "models") if data is None else ("seeds", "models"):
        if required not in values:
            raise ConfigError(f"{source}: the study file needs {required}.")
    try:
        spec = _build(values, stem, data)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    spec.source = source
    return spec


def _build(values: dict[str, Any], stem: str, data_override: str | None) -> StudySpec:
    name = values.get("name", stem)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"name must be text; got {name!r}.")
    data = _data(data_override if data_override is not None else values["data"], "data")
    external = []
    for k, item in enumerate(values.get("external") or []):
        ext = _mapping(item, f"external[{k}]", ("name", "data"))
        ext_name = ext.get("name")
        if not isinstance(ext_name, str) or _slug(ext_name) != ext_name or ext_name in ("val", "train"):
            raise ConfigError(
                f"external[{k}].name must be a short name of letters, digits, '.', '_' or '-' (not val or "
                f"train); got {ext_name!r}."
            )
        if "data" not in ext:
            raise ConfigError(f"external[{k}] ({ext_name}) needs data: FOLDER.")
        external.append(ExternalSet(ext_name, _data(ext["data"], f"external[{k}].data")))
    if len({e.name for e in external}) != len(external):
        raise ConfigError("external: two test sets share a name.")
    seeds = _seeds(values["seeds"])
    folds = _folds(values.get("folds"))
    fold_ids: list[int | None] = list(range(folds)) if folds else [None]
    if folds:
        _check_folds_fit(data, folds)
    recipe = _recipe(values.get("recipe"), "recipe")
    base = load_preset(recipe["preset"]) if "preset" in recipe else {}

    models, runs = [], []
    for where, item in _entries(values["models"]):
        kwargs = _mapping(item.get("model_kwargs"), f"{where}.model_kwargs")
        overrides = _recipe(item.get("recipe"), f"{where}.recipe")
        if "preset" in overrides:
            raise ConfigError(f"{where}.recipe: a preset belongs to the shared recipe, not to one model.")
        label = item.get("label", architecture_label(item["model"], kwargs))
        if not isinstance(label, str) or not label:
            raise ConfigError(f"{where}.label must be text; got {label!r}.")
        entry = ModelEntry(
            label, _slug(label), item["model"], kwargs, overrides, architecture_label(item["model"], kwargs)
        )
        settings = {**base, **{k: v for k, v in recipe.items() if k != "preset"}, **overrides}
        settings.update(model=entry.model, model_kwargs=kwargs)
        for seed in seeds:
            for fold in fold_ids:
                split = {"folds": folds, "fold": fold} if fold is not None else {}
                config = TrainConfig(**settings, **split, seed=seed, data="study-data", out="study-run")
                try:
                    config.validate()
                except ConfigError as err:
                    raise ConfigError(f"{where} ({label}), seed {seed}: {err}") from None
                fields = {k: v for k, v in config.to_dict().items() if k not in ("data", "out")}
                run_dir = f"runs/{entry.slug}/seed{seed}" + ("" if fold is None else f"-fold{fold}")
                runs.append(RunSpec(entry, seed, run_dir, fields, fold))
        _check_model(entry, runs[-1].config, where)
        models.append(entry)
    for attr in ("label", "slug"):
        seen: dict[str, str] = {}
        for m in models:
            key = getattr(m, attr)
            if key in seen:
                raise ConfigError(
                    f"models: {m.label!r} and {seen[key]!r} have the same {attr} ({key}); give one a "
                    "distinct label: each model entry is one row and one folder."
                )
            seen[key] = m.label
    if {r.config["num_classes"] for r in runs} != {1}:
        raise ConfigError(
            "a study compares binary segmentation models (num_classes 1): the audit, BF1 and "
            "the paired tests are defined on one foreground."
        )
    splits = {(r.config["val_fraction"], r.config["split_seed"], r.config["img_size"]) for r in runs}
    if len(splits) > 1:
        raise ConfigError(
            "every model of a study must use the same val_fraction, split_seed and img_size (the same cases, "
            f"scored at the same size); the recipe overrides give {sorted(splits)}."
        )
    statistics = _options(values.get("statistics"), "statistics", STATISTICS_DEFAULTS)
    if statistics["correction"] not in CORRECTIONS:
        raise ConfigError(
            f"statistics.correction must be one of {', '.join(CORRECTIONS)}; got "
            f"{statistics['correction']!r}."
        )
    description = values.get("description", "")
    if not isinstance(description, str):
        raise ConfigError("description must be text.")
    return StudySpec(
        name=name,
        description=description,
        data=data,
        external=external,
        seeds=seeds,
        recipe=recipe,
        models=models,
        audit=_options(values.get("audit"), "audit", AUDIT_DEFAULTS),
        statistics=statistics,
        speed=_options(values.get("speed"), "speed", SPEED_DEFAULTS),
        folds=folds,
        runs=runs,
    )
