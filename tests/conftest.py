"""Fixtures shared across the test tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from specmamba.data import make_synthetic_dataset


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory) -> Path:
    """18 synthetic 32x32 lesion pairs (read-only for tests: copy before modifying)."""
    return make_synthetic_dataset(tmp_path_factory.mktemp("synth") / "data", n=18, size=32, seed=3)


@pytest.fixture()
def tiny_train_args(tiny_synth, tmp_path) -> list[str]:
    """CLI flags of a seconds-long training run of test_unet on ``tiny_synth``."""
    return [
        "train",
        "--data",
        str(tiny_synth),
        "--model",
        "test_unet",
        "--out",
        str(tmp_path / "run"),
        "--epochs",
        "2",
        "--img-size",
        "32",
        "--batch-size",
        "4",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--no-progress",
    ]
