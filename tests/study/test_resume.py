"""A study killed at three different points, then continued by the same call, writes the same
leaderboard as an uninterrupted study, byte for byte (CPU; speed timing off, it is a wall clock)."""

from __future__ import annotations

import pytest
import yaml

from specmamba.engine.trainer import Trainer
from specmamba.study import run_study
from specmamba.study import runner as study_runner

from . import TINY_RECIPE

STUDY = {
    "data": {"synthetic": {"n": 20, "size": 64, "seed": 3}},
    "external": [{"name": "ext", "data": {"synthetic": {"n": 6, "size": 64, "seed": 9}}}],
    "seeds": [0, 1],
    "recipe": TINY_RECIPE,
    "models": [{"model": "test_unet"}, {"model": "test_vmunet"}],
    "audit": {"shift_images": 2, "n_boot": 50},
    "statistics": {"n_boot": 100},
    "speed": {"cpu": False, "gpu": False},
}
OUTPUTS = ("leaderboard.csv", "leaderboard.md", "pairwise.csv", "families.csv", "correlations.csv")


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so nothing on the way catches it."""


def _kill_on_call(monkeypatch, owner, name, call):
    original = getattr(owner, name)
    count = {"n": 0}

    def wrapper(*args, **kwargs):
        count["n"] += 1
        if count["n"] == call:
            raise Killed(f"{name} call {call}")
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)


@pytest.fixture(scope="module")
def study_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("study") / "tiny.yaml"
    path.write_text(yaml.safe_dump(STUDY), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def uninterrupted(study_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "study"
    run_study(study_file, out, progress=False)
    return {name: (out / name).read_bytes() for name in OUTPUTS}


@pytest.mark.parametrize(
    ("owner", "name", "call", "what"),
    [
        (Trainer, "_report_epoch", 3, "in the second run's training, after its first epoch was saved"),
        (study_runner, "evaluate", 7, "scoring the third run"),
        (study_runner, "run_audit", 2, "in the uncentred audit, the centred one finished"),
    ],
)
def test_a_killed_study_continues_to_the_same_leaderboard(
    study_file, uninterrupted, tmp_path, monkeypatch, owner, name, call, what
):
    out = tmp_path / "study"
    with monkeypatch.context() as patch:
        _kill_on_call(patch, owner, name, call)
        with pytest.raises(Killed):
            run_study(study_file, out, progress=False)
    assert not (out / "leaderboard.csv").exists(), what
    trained = []
    original = study_runner.train
    monkeypatch.setattr(
        study_runner, "train", lambda config, **kw: trained.append(kw) or original(config, **kw)
    )
    run_study(study_file, out, progress=False)
    for filename, content in uninterrupted.items():
        assert (out / filename).read_bytes() == content, f"{filename} differs after a kill {what}"
    if name == "_report_epoch":  # the killed run resumes; the finished first run is not trained again
        assert trained[0] == {"resume": True} and len(trained) == 3
    else:
        assert trained == []


def test_a_finished_study_is_not_redone(study_file, uninterrupted, tmp_path, monkeypatch):
    out = tmp_path / "study"
    run_study(study_file, out, progress=False)
    for step in ("train", "evaluate", "run_audit"):
        monkeypatch.setattr(study_runner, step, lambda *a, s=step, **k: pytest.fail(f"{s} ran again"))
    run_study(study_file, out, progress=False)
    assert (out / "leaderboard.csv").read_bytes() == uninterrupted["leaderboard.csv"]
