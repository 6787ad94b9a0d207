from __future__ import annotations

import json

import pytest
import torch
import yaml

import specmamba.engine.trainer as trainer_module
from specmamba.engine import resolve_config, resume_config, train
from specmamba.engine.run_folder import RunFolder
from specmamba.errors import CheckpointError, ConfigError
from specmamba.models import read_checkpoint


def _config(data, out, **kw):
    base = dict(
        data=str(data),
        out=str(out),
        model="test_unet",
        img_size=32,
        epochs=3,
        batch_size=4,
        workers=0,
        device="cpu",
        progress=False,
        seed=5,
    )
    base.update(kw)
    return resolve_config(None, **base)


def test_run_folder_contents(tiny_synth, tmp_path):
    summary = train(_config(tiny_synth, tmp_path / "run", epochs=2))
    run = RunFolder(tmp_path / "run")
    for path in (
        run.config,
        run.metrics,
        run.summary,
        run.best,
        run.last,
        run.release / "config.json",
        run.release / "model.safetensors",
    ):
        assert path.is_file(), path
    rows = run.read_metrics()
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(r["val_cases"] == summary["n_val"] for r in rows)
    assert summary["n_train"] + summary["n_val"] == 18 and summary["n_val"] == 4  # int(18 * 0.8) = 14
    assert json.loads(run.summary.read_text())["finished"] is True
    assert yaml.safe_load(run.config.read_text())["model"] == "test_unet"
    best = torch.load(run.best, map_location="cpu", weights_only=True)
    assert best["model_name"] == "test_unet" and "optimizer" not in best
    assert best["epoch"] == summary["best_epoch"]
    last = torch.load(run.last, map_location="cpu", weights_only=True)
    assert last["epoch"] == 2 and "optimizer" in last and len(last["history"]) == 2
    assert not [p for p in run.root.rglob("*.tmp")]


class _StopAfter(torch.optim.AdamW):
    """AdamW that raises KeyboardInterrupt at a chosen step, like Ctrl-C in the middle of an epoch."""

    stop_at = -1

    def step(self, closure=None):
        type(self).calls += 1
        if type(self).calls == type(self).stop_at:
            raise KeyboardInterrupt
        return super().step(closure)


def test_resume_after_stop_mid_epoch_equals_uninterrupted_run(tiny_synth, tmp_path, monkeypatch):
    full = train(_config(tiny_synth, tmp_path / "full"))

    steps_per_epoch = 14 // 4  # 14 training cases, batch 4, last partial batch dropped
    _StopAfter.calls, _StopAfter.stop_at = 0, steps_per_epoch + 2  # second step of epoch 2
    monkeypatch.setattr(
        trainer_module,
        "_build_optimizer",
        lambda model, criterion, cfg: _StopAfter(
            model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True
        ),  # fused, like the trainer's own (engine.optimizer)
    )
    with pytest.raises(KeyboardInterrupt):
        train(_config(tiny_synth, tmp_path / "cut"))
    assert read_checkpoint(tmp_path / "cut" / "checkpoint_last.pt")["epoch"] == 1
    assert [r["epoch"] for r in RunFolder(tmp_path / "cut").read_metrics()] == [1]

    _StopAfter.stop_at = -1
    resumed = train(resume_config(tmp_path / "cut"), resume=True)
    a = read_checkpoint(tmp_path / "full" / "checkpoint_last.pt")
    b = read_checkpoint(tmp_path / "cut" / "checkpoint_last.pt")
    assert a["epoch"] == b["epoch"] == 3
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    drop_time = [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in a["history"]]
    assert drop_time == [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in b["history"]]
    assert resumed["best_val_dice"] == full["best_val_dice"]


def test_resume_may_extend_epochs_but_not_change_the_model(tiny_synth, tmp_path):
    train(_config(tiny_synth, tmp_path / "run", epochs=1))
    assert resume_config(tmp_path / "run", epochs=2).epochs == 2
    with pytest.raises(ConfigError, match="--model cannot change"):
        resume_config(tmp_path / "run", model="unet_small")
    stored_kwargs = resume_config(tmp_path / "run").model_kwargs
    assert resume_config(tmp_path / "run", model_kwargs={}).model_kwargs == stored_kwargs  # merged
    with pytest.raises(ConfigError, match="--model-kwarg cannot change"):
        resume_config(tmp_path / "run", model_kwargs={"base_width": 4})
    summary = train(resume_config(tmp_path / "run", epochs=2), resume=True)
    assert summary["epochs_completed"] == 2


def test_multiclass_training_runs(tmp_path):
    import numpy as np
    from PIL import Image

    root = tmp_path / "mc"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):
        labels = np.zeros((32, 32), np.uint8)
        labels[4:14, 4:14] = 1
        labels[18:30, 16:30] = 2
        image = (rng.random((32, 32, 3)) * 40 + labels[..., None] * 90).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / f"c{i}.png")
        Image.fromarray(labels).save(root / "masks" / f"c{i}.png")
    summary = train(_config(root, tmp_path / "run", num_classes=3, epochs=1, loss="dice"))
    assert 0.0 <= summary["best_val_dice"] <= 1.0


def test_seg_output_and_learnable_criterion_train_log_save_and_resume_exactly(
    tiny_synth, tmp_path, monkeypatch
):
    """A model returning SegOutput with a learnable structured loss: terms logged, criterion state
    trained, saved and restored, and a resumed run equal to an uninterrupted one (criterion included)."""
    options = dict(
        model="test_fake_deep_supervision", loss="test_learned_aux_weights", loss_kwargs={"num_aux": 2}
    )
    full = train(_config(tiny_synth, tmp_path / "full", **options))
    rows = RunFolder(tmp_path / "full").read_metrics()
    term_columns = [
        "train_loss_main",
        "train_loss_aux0",
        "train_loss_aux1",
        "train_loss_weight_pull",
        "train_loss_head_l2",
    ]
    assert all(column in rows[0] for column in term_columns)
    for row in rows:  # the terms sum to the total
        assert row["train_loss"] == pytest.approx(sum(row[c] for c in term_columns), rel=1e-6)
    last = read_checkpoint(tmp_path / "full" / "checkpoint_last.pt")
    weights = last["criterion_state"]["loss.logits_w"]
    assert weights.abs().sum() > 0  # trained from its zero init
    assert (
        len(last["optimizer"]["param_groups"]) == 2
        and last["optimizer"]["param_groups"][1]["weight_decay"] == 0
    )
    assert "criterion_state" in read_checkpoint(tmp_path / "full" / "checkpoint_best.pt")

    steps_per_epoch = 14 // 4
    _StopAfter.calls, _StopAfter.stop_at = 0, steps_per_epoch + 2
    build = trainer_module._build_optimizer

    def stopping(model, criterion, cfg):
        groups = build(model, criterion, cfg).param_groups
        return _StopAfter([{k: v for k, v in g.items() if k != "lr"} for g in groups], lr=cfg.lr)

    monkeypatch.setattr(trainer_module, "_build_optimizer", stopping)
    with pytest.raises(KeyboardInterrupt):
        train(_config(tiny_synth, tmp_path / "cut", **options))
    _StopAfter.stop_at = -1
    resumed = train(resume_config(tmp_path / "cut"), resume=True)
    cut = read_checkpoint(tmp_path / "cut" / "checkpoint_last.pt")
    for key, value in last["criterion_state"].items():
        assert torch.equal(value, cut["criterion_state"][key]), key
    for key, value in last["state_dict"].items():
        assert torch.equal(value, cut["state_dict"][key]), key
    assert resumed["best_val_dice"] == full["best_val_dice"]
    with pytest.raises(ConfigError, match="--loss-kwarg cannot change"):
        resume_config(tmp_path / "cut", loss_kwargs={"num_aux": 3})
    assert resume_config(tmp_path / "cut", loss_kwargs={"num_aux": 2}).loss_kwargs == {"num_aux": 2}


def test_unknown_loss_option_is_refused_before_anything_is_written(tiny_synth, tmp_path):
    with pytest.raises(ConfigError, match="unknown option.*gamma.*accepts: smooth"):
        train(_config(tiny_synth, tmp_path / "run", loss="dice", loss_kwargs={"gamma": 2}))
    assert not (tmp_path / "run").exists()


def test_resume_refuses_an_optimizer_state_of_another_parameter_order(tiny_synth, tmp_path):
    train(_config(tiny_synth, tmp_path / "run", epochs=1))
    path = tmp_path / "run" / "checkpoint_last.pt"
    ckpt = read_checkpoint(path)
    state = ckpt["optimizer"]["state"]
    state[0], state[1] = state[1], state[0]  # as if two parameters had been registered the other way
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="another parameter order"):
        train(resume_config(tmp_path / "run", epochs=2), resume=True)


def test_max_train_cases_trains_on_the_first_cases_of_the_split_and_keeps_validation_whole(
    tiny_synth, tmp_path
):
    from specmamba.data.layouts import find_pairs
    from specmamba.data.splits import select_split
    from specmamba.engine.distributed import DistContext

    summary = train(_config(tiny_synth, tmp_path / "run", epochs=1, max_train_cases=5, export=False))
    assert summary["n_train"] == 5 and summary["n_val"] == 4  # the whole split: 14 / 4
    cfg = _config(tiny_synth, tmp_path / "other", max_train_cases=5)
    trainer = trainer_module.Trainer(cfg, torch.device("cpu"), DistContext(), resume=False, overwrite=False)
    trainer._prepare_data()
    split = select_split(find_pairs(str(tiny_synth)), "train", str(tiny_synth))
    assert [p.name for p in trainer.train_pairs] == [p.name for p in split[:5]]
    with pytest.raises(ConfigError, match="--max-train-cases"):
        _config(tiny_synth, tmp_path / "bad", max_train_cases=0)
