"""A study with k folds: every case is validated once per seed by the fold that held it out, each fold
audits its own part, and the external set is scored by every fold (its cases' means over the folds)."""

from __future__ import annotations

import csv
import math

import pytest
import yaml

from specmamba.study import run_study

from . import TINY_RECIPE

STUDY = {
    "data": {"synthetic": {"n": 18, "size": 64, "seed": 4}},
    "external": [{"name": "ext", "data": {"synthetic": {"n": 5, "size": 64, "seed": 8}}}],
    "seeds": [0],
    "folds": 3,
    "recipe": {**TINY_RECIPE, "epochs": 1},
    "models": [{"model": "test_unet"}, {"model": "test_vmunet"}],
    "audit": {"shift_images": 0, "n_boot": 20},
    "statistics": {"n_boot": 50},
    "speed": {"cpu": False, "gpu": False},
}


def _rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("folds")
    (root / "folds.yaml").write_text(yaml.safe_dump(STUDY), encoding="utf-8")
    run_study(str(root / "folds.yaml"), root / "out", progress=False)
    return root / "out"


def test_every_case_is_validated_once_by_the_fold_that_held_it_out(study):
    held = [
        {row["case"] for row in _rows(study / f"runs/test_unet/seed0-fold{f}/eval_val/per_case.csv")}
        for f in range(3)
    ]
    assert [len(h) for h in held] == [6, 6, 6] and len(set().union(*held)) == 18
    board = {row["label"]: row for row in _rows(study / "leaderboard.csv")}
    assert {row["val_n_cases"] for row in board.values()} == {"18"}
    assert {row["n_seeds"] for row in board.values()} == {"1"}
    dice = [
        float(row["dice"])
        for f in range(3)
        for row in _rows(study / f"runs/test_unet/seed0-fold{f}/eval_val/per_case.csv")
    ]
    assert float(board["test_unet"]["val_dice_mean"]) == pytest.approx(sum(dice) / len(dice), abs=1e-12)


def test_the_external_set_scores_are_each_cases_mean_over_the_folds(study):
    per_fold = [
        {
            r["case"]: float(r["dice"])
            for r in _rows(study / f"runs/test_vmunet/seed0-fold{f}/eval_ext/per_case.csv")
        }
        for f in range(3)
    ]
    cases = sorted(per_fold[0])
    expected = sum(sum(fold[c] for fold in per_fold) / 3 for c in cases) / len(cases)
    board = {row["label"]: row for row in _rows(study / "leaderboard.csv")}
    assert board["test_vmunet"]["ext_n_cases"] == "5"
    assert float(board["test_vmunet"]["ext_dice_mean"]) == pytest.approx(expected, abs=1e-12)


def test_each_fold_audits_its_own_part_and_the_family_table_joins_them(study):
    images = [{r["image"] for r in _rows(study / f"audit/fold{f}/per_image.csv")} for f in range(3)]
    assert all(images) and not (images[0] & images[1] or images[0] & images[2] or images[1] & images[2])
    assert (study / "audit_uncentred/fold2/summary.json").is_file()
    families = [r for r in _rows(study / "families.csv") if r["stage"] == "mean"]
    assert {r["n_images"] for r in families} == {str(sum(map(len, images)))}
    assert {r["n_checkpoints"] for r in families} == {"1"}
    correlations = {r["scope"]: r for r in _rows(study / "correlations.csv")}
    assert math.isfinite(float(correlations["pooled"]["r_centred"]))
