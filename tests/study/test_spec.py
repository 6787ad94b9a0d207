"""Study files: a bad entry is refused before anything is trained, with an error naming it."""

from __future__ import annotations

import pytest
import yaml

from specmamba.errors import ConfigError
from specmamba.study import load_study, run_study, shipped_studies

GOOD = {
    "data": {"synthetic": {"n": 20, "size": 64}},
    "seeds": [0, 1],
    "recipe": {"epochs": 1, "img_size": 64, "batch_size": 4, "device": "cpu", "workers": 0},
    "models": [{"model": "test_unet"}, {"model": "test_vmunet", "label": "vm"}],
}


def _write(tmp_path, **changes):
    values = {**GOOD, **changes}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return str(path)


def test_a_good_study_expands_into_model_x_seed_runs(tmp_path):
    spec = load_study(_write(tmp_path))
    assert [(r.entry.label, r.seed, r.folder) for r in spec.runs] == [
        ("test_unet", 0, "runs/test_unet/seed0"),
        ("test_unet", 1, "runs/test_unet/seed1"),
        ("vm", 0, "runs/vm/seed0"),
        ("vm", 1, "runs/vm/seed1"),
    ]
    assert spec.runs[0].config["epochs"] == 1 and spec.runs[1].config["seed"] == 1


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"modles": []}, "modles"),
        ({"models": [{"model": "test_unet"}, {"model": "no_such_net"}]}, "models[1].model"),
        ({"models": [{"model": "test_unet", "model_kwags": {}}]}, "models[0]: unknown key(s) model_kwags"),
        (
            {"models": [{"model": "test_unet", "model_kwargs": {"no_such_option": 1}}]},
            "models[0] (test_unet(no_such_option=1))",
        ),
        ({"models": [{"model": "test_unet", "recipe": {"epochz": 3}}]}, "models[0].recipe"),
        ({"models": [{"model": "test_unet", "recipe": {"lr": -1.0}}]}, "--lr must be > 0"),
        ({"recipe": {"seed": 3}}, "recipe: seed"),
        ({"recipe": {"epochs": 1, "preset": "no_such_preset"}}, "no_such_preset"),
        ({"data": "/no/such/folder"}, "data (/no/such/folder)"),
        ({"external": [{"name": "ext", "data": "/no/such/folder"}]}, "external[0].data"),
        ({"recipe": {**GOOD["recipe"], "img_size": 48}}, "models[1] (vm): img_size 48 cannot"),
        ({"seeds": [0, 0]}, "seeds lists a seed twice"),
        ({"seeds": []}, "seeds must be a non-empty list"),
        ({"audit": {"shift_imgs": 2}}, "audit: unknown key(s) shift_imgs"),
        ({"statistics": {"correction": "fdr"}}, "statistics.correction"),
        ({"models": [{"model": "test_unet"}, {"model": "test_unet"}]}, "the same label"),
    ],
)
def test_bad_entries_are_refused_naming_them(tmp_path, changes, named):
    with pytest.raises(ConfigError) as err:
        load_study(_write(tmp_path, **changes))
    assert named in str(err.value)


def test_a_bad_study_is_refused_before_any_training(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("specmamba.study.runner.train", lambda *a, **k: calls.append(a))
    bad = _write(
        tmp_path, models=[{"model": "test_unet"}, {"model": "test_vmunet", "model_kwargs": {"dims": "x"}}]
    )
    with pytest.raises(ConfigError, match=r"models\[1\]"):
        run_study(bad, tmp_path / "out", progress=False)
    assert calls == [] and not (tmp_path / "out").exists()


def test_another_study_cannot_continue_in_a_study_folder(tmp_path):
    from specmamba.study.runner import StudyFolder, _claim

    folder = StudyFolder(tmp_path / "out")
    _claim(folder, load_study(_write(tmp_path)))
    with pytest.raises(ConfigError, match="holds another study.*seeds"):
        _claim(folder, load_study(_write(tmp_path, seeds=[0])))


@pytest.mark.parametrize("name", shipped_studies())
def test_shipped_studies_name_registered_models(name, monkeypatch):
    """Every shipped study's models build; data folders that are absent here are not checked."""
    monkeypatch.setattr("specmamba.study.spec._data", lambda value, where: value)
    spec = load_study(name)
    assert spec.runs and len({m.label for m in spec.models}) == len(spec.models)


def test_shards_split_the_runs_and_leave_the_audit_to_the_final_call(tmp_path):
    from specmamba.study.runner import StudyFolder, parse_shard, plan

    spec = load_study(_write(tmp_path))
    folder = StudyFolder(tmp_path / "out")

    def trained(shard):
        steps = plan(spec, folder, "data", {}, shard, "cpu", False)
        return [s.what for s in steps if s.what.startswith("train ")], [s.what for s in steps]

    first, first_all = trained((1, 2))
    second, _ = trained((2, 2))
    whole, whole_all = trained(None)
    assert sorted(first + second) == sorted(whole) and not set(first) & set(second)
    assert not any(w.startswith("audit") for w in first_all)
    assert [w for w in whole_all if w.startswith("audit")] == ["audit", "audit (uncentred maps)"]
    assert parse_shard("2/3") == (2, 3)
    for bad in ("0/2", "3/2", "2", "a/b"):
        with pytest.raises(ConfigError, match="--shard"):
            parse_shard(bad)


def test_folds_train_every_model_and_seed_once_per_fold(tmp_path):
    spec = load_study(_write(tmp_path, seeds=[0], folds=2))
    assert [(r.entry.label, r.seed, r.fold, r.folder) for r in spec.runs] == [
        ("test_unet", 0, 0, "runs/test_unet/seed0-fold0"),
        ("test_unet", 0, 1, "runs/test_unet/seed0-fold1"),
        ("vm", 0, 0, "runs/vm/seed0-fold0"),
        ("vm", 0, 1, "runs/vm/seed0-fold1"),
    ]
    assert {(r.config["folds"], r.config["fold"]) for r in spec.runs} == {(2, 0), (2, 1)}
    assert spec.to_dict()["folds"] == 2 and "folds" not in load_study(_write(tmp_path)).to_dict()
    for bad, named in [(1, "folds must be a whole number k >= 2"), (30, "synthetic data has only 20")]:
        with pytest.raises(ConfigError, match=named):
            load_study(_write(tmp_path, folds=bad))
    with pytest.raises(ConfigError, match="recipe: fold"):
        load_study(_write(tmp_path, recipe={**GOOD["recipe"], "fold": 1}))
