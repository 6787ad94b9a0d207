from __future__ import annotations

import pytest
import yaml

from specmamba.engine.config import TrainConfig, config_to_yaml, load_preset, preset_names, resolve_config
from specmamba.errors import ConfigError


def test_resolution_order_defaults_preset_flags(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("epochs: 7\nlr: 0.01\nmodel: test_unet\n")
    config = resolve_config(str(preset), data="d", out="o", lr=0.5, epochs=None)
    assert config.epochs == 7  # preset beats default, a None flag does not override it
    assert config.lr == 0.5  # a given flag beats the preset
    assert config.model == "test_unet"
    assert config.batch_size == TrainConfig().batch_size


def test_model_kwargs_flags_are_merged_into_the_presets(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("model: vmunet\nmodel_kwargs: {drop_path_rate: 0.2, d_state: 8}\n")
    config = resolve_config(str(preset), data="d", out="o", model_kwargs={"drop_path_rate": 0.1})
    assert config.model_kwargs == {"drop_path_rate": 0.1, "d_state": 8}


def test_shipped_demo_preset_is_found_by_name():
    assert "demo" in preset_names()
    assert load_preset("demo")["model"] == "unet_small"


def test_unknown_preset_and_unknown_keys_are_named(tmp_path):
    with pytest.raises(ConfigError, match="neither a YAML file nor a shipped preset.*demo"):
        load_preset("no_such_preset")
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochz: 3\n")
    with pytest.raises(ConfigError, match="unknown option.*epochz"):
        load_preset(str(bad))
    notmap = tmp_path / "list.yaml"
    notmap.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_preset(str(notmap))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("epochs", 0, "--epochs"),
        ("val_fraction", 1.0, "--val-fraction"),
        ("optimizer", "sgd", "--optimizer"),
        ("num_classes", 0, "--num-classes"),
        ("img_size", 4, "--img-size"),
        ("max_train_cases", 0, "--max-train-cases"),
        ("folds", 1, "--folds 1"),
        ("fold", 2, "--fold 2"),
    ],
)
def test_invalid_values_raise_with_the_flag_name(field, value, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config(None, data="d", out="o", **{field: value})


def test_missing_data_or_out_is_an_error():
    with pytest.raises(ConfigError, match="--data"):
        resolve_config(None, out="o")
    with pytest.raises(ConfigError, match="--out"):
        resolve_config(None, data="d")


def test_yaml_round_trip():
    config = resolve_config(None, data="d", out="o", grad_clip=None)
    assert TrainConfig(**yaml.safe_load(config_to_yaml(config))) == config
