"""Training configuration: one dataclass for code, YAML presets for runs, CLI flags on top.

Resolution order (later wins): dataclass defaults -> YAML preset (``--config``: a path, or the name of
a preset shipped in ``specmamba/configs``) -> command-line flags that were actually given. The resolved
config is written as ``config.yaml`` next to the run's outputs and stored inside every checkpoint.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError

OPTIMIZERS = ("adamw", "adam")
#: Dict options merged key by key (a flag or a preset replaces one key, not the whole dict), with the
#: command-line flag that sets one key.
MERGED_OPTIONS = {"model_kwargs": "--model-kwarg", "loss_kwargs": "--loss-kwarg"}
NORMALIZATIONS = ("dataset", "imagenet")


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
        """Raise ConfigError for values outside what a run can use."""
        checks = [
            (self.epochs >= 1, "--epochs must be >= 1"),
            (self.batch_size >= 1, "--batch-size must be >= 1"),
            (self.img_size >= 8, "--img-size must be >= 8 pixels"),
            (self.lr > 0, "--lr must be > 0"),
            (self.in_chans >= 1, "--in-chans must be >= 1"),
            (self.num_classes >= 1, "--num-classes must be >= 1 (1 = binary with one logit channel)"),
            (0.0 < self.val_fraction < 1.0, "--val-fraction must lie strictly between 0 and 1"),
            (self.workers >= 0, "--workers must be >= 0"),
            (self.optimizer in OPTIMIZERS, f"--optimizer must be one of {', '.join(OPTIMIZERS)}"),
            (
                self.normalization in NORMALIZATIONS,
                f"normalization must be one of {', '.join(NORMALIZATIONS)}",
            ),
            (self.grad_clip is None or self.grad_clip > 0, "grad_clip must be > 0 or null"),
            (self.warmup_epochs >= 0, "warmup_epochs must be >= 0"),
            (isinstance(self.model_kwargs, dict), "model_kwargs must be a mapping of option: value"),
            (isinstance(self.loss_kwargs, dict), "loss_kwargs must be a mapping of option: value"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"Invalid training configuration: {message}.")
        if not self.data:
            raise ConfigError("No training data given: pass --data DIR (a folder of image/mask pairs).")
        if not self.out:
            raise ConfigError("No output folder given: pass --out RUN_DIR.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def config_fields() -> set[str]:
    return {f.name for f in dataclasses.fields(TrainConfig)}


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
    return values


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
    values.update(merge_overrides(values, overrides))
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
