"""Shared set-up of the layer tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every layer test runs on one intra-op thread (see ``one_torch_thread``)."""
    yield
