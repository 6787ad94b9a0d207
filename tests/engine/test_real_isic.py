"""A short run on 32 real ISIC 2017 pairs: the training loss must fall (skipped without ../shared/data)."""

from __future__ import annotations

import pytest

from specmamba.engine import resolve_config, train
from specmamba.engine.run_folder import RunFolder


@pytest.mark.slow
def test_training_loss_falls_on_32_real_pairs(tmp_path, isic_subset):
    subset = isic_subset(tmp_path / "isic32", 32)
    config = resolve_config(
        None,
        data=str(subset),
        out=str(tmp_path / "run"),
        model="unet_small",
        img_size=64,
        epochs=6,
        batch_size=8,
        lr=3e-3,
        workers=0,
        device="cpu",
        progress=False,
    )
    summary = train(config)
    assert summary["n_train"] == 25 and summary["n_val"] == 7
    losses = [row["train_loss"] for row in RunFolder(tmp_path / "run").read_metrics()]
    assert losses[-1] < 0.8 * losses[0], losses
