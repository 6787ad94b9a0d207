from __future__ import annotations

import warnings

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
    why_cpu_bf16_is_slow,
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the slow-CPU warning: its own test
        with autocast(cpu, cpu_bf16=True):
            assert torch.is_autocast_enabled("cpu") and (a @ b).dtype == torch.bfloat16
    assert not torch.is_autocast_enabled("cpu")


@pytest.mark.parametrize("reason", [None, "this CPU has no oneDNN bf16 kernels"])
def test_cpu_bf16_warns_only_where_the_cpu_lacks_bf16_kernels(monkeypatch, reason):
    monkeypatch.setattr("specmamba.inference.why_cpu_bf16_is_slow", lambda: reason)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with autocast(torch.device("cpu"), cpu_bf16=True):
            pass
        with autocast(torch.device("cpu")):  # bf16 not asked for: never a warning
            pass
    assert [str(w.message) for w in caught] == (
        [f"CPU bf16 autocast (--cpu-bf16) asked for, but {reason}"] if reason else []
    )


def test_the_bf16_check_names_the_cpu_and_the_fix_or_finds_nothing_wrong():
    reason = why_cpu_bf16_is_slow()
    native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert (reason is None) == native
    if reason:
        assert torch.backends.cpu.get_cpu_capability() in reason and "leave CPU bf16 off" in reason


@pytest.mark.parametrize("classes", [1, 3])
def test_labels_from_logits_equal_labels_from_probabilities(classes):
    logits = torch.randn(2, classes, 9, 7) * 3
    assert torch.equal(logits_to_labels(logits), probs_to_labels(logits_to_probs(logits)))


def test_resize_logits_keeps_or_changes_size():
    logits = torch.randn(1, 1, 8, 8)
    assert resize_logits(logits, (8, 8)) is logits
    assert resize_logits(logits, (13, 5)).shape == (1, 1, 13, 5)
