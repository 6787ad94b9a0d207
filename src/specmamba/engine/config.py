"""Training configuration: one dataclass for code, YAML presets for runs, CLI flags on top.

Resolution order (later wins): dataclass defaults -> YAML preset (``--config``: a path, or the name of
a preset shipped in ``specmamba/configs``) -> command-line flags that were actually given. The resolved
config is written as ``config.yaml`` next to the run's outputs and stored inside every checkpoint.

Every value is checked by one validator, whatever it came from (preset, flag, ``--model-kwarg``, a
Python caller): :func:`check_types` against the field's declared type, then
:meth:`TrainConfig.validate` against its range, before anything is written. Two YAML habits are
accepted: ``lr: 1e-3`` (YAML 1.1 reads an exponent without a dot as text) is the number it means, and
a whole float (``epochs: 2.0``) is the whole number. The ``data`` and ``out`` paths are stored
resolved (absolute), so a run resumes from any working directory.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..data.splits import check_folds
from ..errors import ConfigError

OPTIMIZERS = ("adamw", "adam")
#: Dict options merged key by key (a flag or a preset replaces one key, not the whole dict), with the
#: command-line flag that sets one key.
MERGED_OPTIONS = {"model_kwargs": "--model-kwarg", "loss_kwargs": "--loss-kwarg"}
NORMALIZATIONS = ("dataset", "imagenet")
#: Seeds seed numpy, Python and torch generators alike: the range all of them take.
SEED_RANGE = (0, 2**32 - 1)
#: The ``source`` of :func:`check_types` for flags: its errors name the flag, not the field.
COMMAND_LINE = "the command line"
#: Fields whose values are paths, stored resolved.
PATH_FIELDS = ("data", "out")
_FLOAT_TEXT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


@dataclass
class TrainConfig:
    """Everything a training run needs; every field is a plain YAML-able value."""

    data: str = ""
    out: str = ""
    model: str = "unet_resnet50"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    in_chans: int = 3
    num_classes: int = 1
    img_size: int = 256
    epochs: int = 50
    batch_size: int = 8
    lr: float = 1e-3
    min_lr: float = 1e-5
    weight_decay: float = 1e-2
    optimizer: str = "adamw"
    warmup_epochs: float = 1.0
    loss: str = "bce_dice"
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    grad_clip: float | None = 1.0
    amp: bool = True  # bf16 autocast, CUDA only
    val_fraction: float = 0.2
    split_seed: int = 42
    # k-fold cross-validation of the seeded split: folds k >= 2 validates on part `fold` of the shuffled
    # cases cut into k (val_fraction unused); 0 keeps the val_fraction split.
    folds: int = 0
    fold: int = 0
    # Train on the first N cases of the training split only (the seeded split's shuffled order, so a
    # seeded random subset); validation keeps its whole split. For learning curves and CPU-sized studies.
    max_train_cases: int | None = None
    seed: int = 0
    deterministic: bool = False
    normalization: str = "dataset"
    hflip: float = 0.5
    vflip: float = 0.5
    rotate_degrees: float = 30.0
    workers: int = 2
    device: str = "auto"
    allow_unpaired: bool = False
    progress: bool = True
    export: bool = True  # write model/config.json + model/model.safetensors at the end

    def validate(self) -> None:
        """Check every field's type (:func:`check_types`, converting as it says) and range; resolve the
        paths. Raises ConfigError naming the flag and what would be valid."""
        for name, value in check_types(self.to_dict(), "the training configuration").items():
            setattr(self, name, value)
        low, high = SEED_RANGE
        checks = [
            (self.epochs >= 1, "--epochs must be >= 1"),
            (self.batch_size >= 1, "--batch-size must be >= 1"),
            (self.img_size >= 8, "--img-size must be >= 8 pixels"),
            (self.lr > 0, "--lr must be > 0"),
            (0 <= self.min_lr <= self.lr, "--min-lr must lie between 0 and --lr (the schedule ends there)"),
            (self.weight_decay >= 0, "--weight-decay must be >= 0"),
            (self.in_chans >= 1, "--in-chans must be >= 1"),
            (1 <= self.num_classes <= 256, "--num-classes must be 1 (binary, one logit channel) .. 256"),
            (0.0 < self.val_fraction < 1.0, "--val-fraction must lie strictly between 0 and 1"),
            (low <= self.split_seed <= high, f"--split-seed must lie in {low}..{high}"),
            (low <= self.seed <= high, f"--seed must lie in {low}..{high}"),
            (self.workers >= 0, "--workers must be >= 0"),
            (
                self.max_train_cases is None or self.max_train_cases >= 1,
                "--max-train-cases must be >= 1 (or left out: the whole training split)",
            ),
            (self.optimizer in OPTIMIZERS, f"--optimizer must be one of {', '.join(OPTIMIZERS)}"),
            (
                self.normalization in NORMALIZATIONS,
                f"--normalization must be one of {', '.join(NORMALIZATIONS)}",
            ),
            (self.grad_clip is None or self.grad_clip > 0, "grad_clip must be > 0 or null"),
            (self.warmup_epochs >= 0, "--warmup-epochs must be >= 0"),
            (0 <= self.hflip <= 1 and 0 <= self.vflip <= 1, "hflip and vflip are probabilities in 0..1"),
            (0 <= self.rotate_degrees <= 180, "rotate_degrees must lie in 0..180"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"Invalid training configuration: {message}.")
        check_folds(self.folds, self.fold)
        taken = sorted(set(self.model_kwargs) & config_fields())
        if taken:
            flags = ", ".join(f"--{k.replace('_', '-')}" for k in taken)
            raise ConfigError(
                f"model option(s) {', '.join(taken)} are training options: set them with {flags} (or as "
                f"{', '.join(taken)} at the top level of a preset), not with --model-kwarg / model_kwargs."
            )
        if not self.data:
            raise ConfigError("No training data given: pass --data DIR (a folder of image/mask pairs).")
        if not self.out:
            raise ConfigError("No output folder given: pass --out RUN_DIR.")
        self.data, self.out = resolved_path(self.data), resolved_path(self.out)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def config_fields() -> set[str]:
    return {f.name for f in dataclasses.fields(TrainConfig)}


def resolved_path(path: str | Path) -> str:
    """``path`` absolute, ``~`` expanded and symlinks resolved: how runs store their paths."""
    return str(Path(path).expanduser().resolve())


def check_types(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    """``values`` (field -> value) checked against TrainConfig's field types; returns them converted.

    Whole numbers: int, or a float without a fraction; never a boolean. Numbers: int or float, or text
    that is a decimal number (``1e-3``), finite. Text: str (paths also as Path). Flags: true/false.
    Mappings: a mapping with option-name keys. ``None`` only where the field allows it. ``source``
    names where the values came from (``--config FILE``) in the error.
    """
    hints = typing.get_type_hints(TrainConfig)
    out = {}
    for name, value in values.items():
        hint = hints.get(name)
        if hint is None:
            continue
        ok, converted, expected = _convert(value, hint)
        if not ok:
            named = f"--{name.replace('_', '-')}" if source == COMMAND_LINE else name
            raise ConfigError(
                f"{source}: {named} must be {expected}; got {value!r} ({type(value).__name__})."
            )
        out[name] = converted
    return out


def _convert(value: Any, hint: Any) -> tuple[bool, Any, str]:
    """(valid, converted value, what was expected) of one value against one field type."""
    args = typing.get_args(hint)
    if type(None) in args:  # float | None
        if value is None:
            return True, None, ""
        ok, converted, expected = _convert(value, next(a for a in args if a is not type(None)))
        return ok, converted, f"{expected} or null"
    origin = typing.get_origin(hint) or hint
    if origin is bool:
        return isinstance(value, bool), value, "true or false"
    if origin is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return isinstance(value, int) and not isinstance(value, bool), value, "a whole number"
    if origin is float:
        if isinstance(value, str) and _FLOAT_TEXT.match(value.strip()):
            value = float(value)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return ok, float(value) if ok else value, "a finite number"
    if origin is str:
        if isinstance(value, Path):
            value = str(value)
        return isinstance(value, str), value, "text"
    if origin is dict:
        ok = isinstance(value, Mapping) and all(isinstance(k, str) and k.isidentifier() for k in value)
        return ok, dict(value) if ok else value, "a mapping of option: value (option names as keys)"
    return True, value, ""


def preset_names() -> list[str]:
    """Names of the YAML presets shipped with the package (``specmamba/configs/*.yaml``)."""
    return sorted(
        p.name[: -len(".yaml")]
        for p in resources.files("specmamba.configs").iterdir()
        if p.name.endswith(".yaml")
    )


def load_preset(path_or_name: str) -> dict[str, Any]:
    """Read a YAML preset: a file path, or the name of a preset shipped with the package."""
    path = Path(path_or_name)
    if path.is_file():
        text = path.read_text(encoding="utf-8")
    else:
        shipped = resources.files("specmamba.configs") / f"{path_or_name}.yaml"
        if not shipped.is_file():
            raise ConfigError(
                f"--config {path_or_name!r} is neither a YAML file nor a shipped preset; "
                f"shipped presets: {', '.join(preset_names()) or 'none'}."
            )
        text = shipped.read_text(encoding="utf-8")
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"--config {path_or_name}: not valid YAML ({err}).") from None
    if not isinstance(values, dict):
        raise ConfigError(f"--config {path_or_name}: expected a mapping of option: value at the top level.")
    unknown = sorted(set(values) - config_fields())
    if unknown:
        raise ConfigError(
            f"--config {path_or_name}: unknown option(s) {', '.join(unknown)}; "
            f"valid options: {', '.join(sorted(config_fields()))}."
        )
    return check_types(values, f"--config {path_or_name}")


def resolve_config(preset: str | None = None, **overrides: Any) -> TrainConfig:
    """Defaults, then the preset, then the overrides that are not None; validated.

    Dict options (:data:`MERGED_OPTIONS`) are merged into the preset's key by key.
    """
    values: dict[str, Any] = {}
    if preset:
        values.update(load_preset(preset))
    unknown = sorted(set(overrides) - config_fields())
    if unknown:
        raise ConfigError(f"Unknown training option(s): {', '.join(unknown)}.")
    given = check_types({k: v for k, v in overrides.items() if v is not None}, COMMAND_LINE)
    values.update(merge_overrides(values, given))
    config = TrainConfig(**values)
    config.validate()
    return config


def merge_overrides(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """The overrides that are not None, the dict options among them merged into ``base``'s."""
    given = {k: v for k, v in overrides.items() if v is not None}
    for key in MERGED_OPTIONS:
        if key in given:
            given[key] = {**(base.get(key) or {}), **given[key]}
    return given


def config_to_yaml(config: TrainConfig | dict[str, Any]) -> str:
    values = config.to_dict() if isinstance(config, TrainConfig) else config
    return yaml.safe_dump(values, sort_keys=False)
