"""Fixtures shared across the test tree."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from specmamba.data import make_synthetic_dataset


@pytest.fixture()
def one_torch_thread():
    """Run a test on one intra-op thread, then restore the setting.

    For tests on tiny tensors: a second thread gains nothing, and on busy shared cores the OpenMP
    barriers between threads make every small op wait for a time slice (up to 100x slower).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory) -> Path:
    """18 synthetic 32x32 lesion pairs (read-only for tests: copy before modifying)."""
    return make_synthetic_dataset(tmp_path_factory.mktemp("synth") / "data", n=18, size=32, seed=3)


def train_argv(data, out, *extra: str, epochs: int = 1, batch_size: int = 4) -> list[str]:
    """`specmamba train` arguments of a seconds-long CPU run of test_unet at 32x32."""
    return [
        "train",
        "--data",
        str(data),
        "--model",
        "test_unet",
        "--out",
        str(out),
        "--epochs",
        str(epochs),
        "--img-size",
        "32",
        "--batch-size",
        str(batch_size),
        "--workers",
        "0",
        "--device",
        "cpu",
        "--no-progress",
        *extra,
    ]


@pytest.fixture(scope="session")
def tiny_train_argv():
    """The ``train_argv`` builder (test folders are not packages, so it travels as a fixture)."""
    return train_argv
