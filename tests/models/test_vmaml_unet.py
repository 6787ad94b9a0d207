"""VMAML-UNet (``models/vmaml_unet.py``): its switches, its deep supervision, and the exact ablation."""

from __future__ import annotations

import itertools

import pytest
import torch

from specmamba import create_model
from specmamba.engine.run_folder import RunFolder
from specmamba.layers.wcaa_skip import WCAASkip
from specmamba.layers.wcvm_block import WCVMBlock
from specmamba.losses import build_criterion
from specmamba.output import SegOutput

SWITCHES = list(itertools.product([True, False], [True, False], ["kan", "fixed", "none"]))


@pytest.mark.parametrize("wavelet, wcaa, deep_supervision", SWITCHES)
def test_every_switch_combination_builds_and_trains_one_step(wavelet, wcaa, deep_supervision):
    torch.manual_seed(0)
    model = create_model("test_vmaml_unet", wavelet=wavelet, wcaa=wcaa, deep_supervision=deep_supervision)
    criterion = build_criterion("bce_dice", 1, aux_weighting=model.aux_weighting)
    optimizer = torch.optim.AdamW([*model.parameters(), *criterion.parameters()], lr=1e-3)
    x, target = torch.randn(2, 3, 64, 64), torch.randint(0, 2, (2, 64, 64))
    output = model.train()(x)
    assert isinstance(output, SegOutput) == (deep_supervision != "none")
    result = criterion(output, target)
    result.total.backward()
    optimizer.step()
    assert torch.isfinite(result.total)
    assert any(isinstance(m, WCVMBlock) and m.wavelet is not None for m in model.modules()) == wavelet
    assert any(isinstance(m, WCAASkip) for m in model.modules()) == wcaa
    with torch.no_grad():
        assert model.eval()(x).shape == (2, 1, 64, 64)  # eval: the main logits only


def test_deep_supervision_heads_sit_on_the_last_three_decoder_stages():
    model = create_model("test_vmaml_unet", num_classes=3).train()
    output = model(torch.randn(1, 3, 64, 64))
    assert [tuple(a.shape) for a in output.aux] == [
        (1, 3, 16, 16),
        (1, 3, 8, 8),
        (1, 3, 4, 4),
    ]  # finest first
    assert set(output.terms) == {"kan_heads_regularization"} and output.terms["kan_heads_regularization"] > 0
    assert (
        create_model("test_vmaml_unet", kan_regularization=0.0).train()(torch.randn(1, 3, 64, 64)).terms == {}
    )


def test_all_switches_off_is_vmunet_exactly():
    torch.manual_seed(0)
    ablation = create_model("vmaml_unet", wavelet=False, wcaa=False, deep_supervision="none")
    torch.manual_seed(0)
    vmunet = create_model("vmunet")
    a, b = ablation.state_dict(), vmunet.state_dict()
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_deep_supervision_is_named():
    with pytest.raises(Exception, match="deep_supervision 'learned'"):
        create_model("test_vmaml_unet", deep_supervision="learned")


def test_weights_are_logged_every_epoch_and_restored_exactly_on_resume(tiny_synth, tmp_path, tiny_train_argv):
    from specmamba.cli.main import main
    from specmamba.engine import trainer

    argv = ("--model", "test_vmaml_unet", "--img-size", "64")
    full, split = tmp_path / "full", tmp_path / "split"
    assert main(tiny_train_argv(tiny_synth, full, *argv, epochs=2)) == 0
    real_epoch = trainer.Trainer._epoch

    def stop_before_the_second(self, *args, **kwargs):
        if args[-2] == 1:  # the epoch index
            raise KeyboardInterrupt
        return real_epoch(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer.Trainer, "_epoch", stop_before_the_second)
        assert main(tiny_train_argv(tiny_synth, split, *argv, epochs=2)) == 130
    assert main(tiny_train_argv(tiny_synth, split, *argv, "--resume", epochs=2)) == 0
    rows, resumed = RunFolder(full).read_metrics(), RunFolder(split).read_metrics()
    columns = {"train_aux_weight0", "train_aux_weight1", "train_aux_weight2"}
    assert columns <= set(rows[0]) and len(rows) == 2
    for row in rows:
        assert abs(sum(row[c] for c in columns) - 1.0) < 1e-6  # normalised
    assert rows[0]["train_aux_weight0"] != rows[1]["train_aux_weight0"]  # learned: they move
    # The resumed run continues from the restored weights and criterion state: the same trajectory (to
    # float32 reduction order: a few 1e-7 apart in the weights after two epochs on two threads).
    for a, b in zip(rows, resumed):
        for key in columns | {"train_loss", "val_dice"}:
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), key
    state = torch.load(full / "checkpoint_last.pt", weights_only=True)["criterion_state"]
    state_resumed = torch.load(split / "checkpoint_last.pt", weights_only=True)["criterion_state"]
    kan = {f"aux_weighting.kan.{k}" for k in ("base_weight", "spline_weight", "spline_scaler", "grid")}
    assert set(state) == kan
    for key in state:
        torch.testing.assert_close(state[key], state_resumed[key], rtol=0, atol=1e-6)
