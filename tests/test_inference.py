from __future__ import annotations

import pytest
import torch

from specmamba.errors import ConfigError
from specmamba.inference import (
    autocast,
    logits_to_labels,
    logits_to_probs,
    probs_to_labels,
    resize_logits,
    resolve_device,
)


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="not a device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            resolve_device("cuda")


def test_autocast_on_cpu_is_fp32_unless_bf16_is_asked_for():
    cpu = torch.device("cpu")
    a, b = torch.randn(8, 8), torch.randn(8, 8)
    with autocast(cpu, enabled=True):  # ``enabled`` is the CUDA switch
        assert (a @ b).dtype == torch.float32
    with autocast(cpu, cpu_bf16=True):
        assert torch.is_autocast_enabled("cpu") and (a @ b).dtype == torch.bfloat16
    assert not torch.is_autocast_enabled("cpu")


@pytest.mark.parametrize("classes", [1, 3])
def test_labels_from_logits_equal_labels_from_probabilities(classes):
    logits = torch.randn(2, classes, 9, 7) * 3
    assert torch.equal(logits_to_labels(logits), probs_to_labels(logits_to_probs(logits)))


def test_resize_logits_keeps_or_changes_size():
    logits = torch.randn(1, 1, 8, 8)
    assert resize_logits(logits, (8, 8)) is logits
    assert resize_logits(logits, (13, 5)).shape == (1, 1, 13, 5)
