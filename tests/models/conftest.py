"""Shared set-up of the model tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Run each model test on one intra-op thread, then restore the setting.

    The tensors here are tiny: a second thread gains nothing, and on busy shared cores the OpenMP
    barriers between threads make every convolution wait for a time slice (100x slower).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
