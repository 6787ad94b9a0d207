"""The training criterion's rule (specmamba.losses.criterion), re-derived term by term."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from specmamba.errors import ConfigError
from specmamba.losses import build_criterion, build_loss, criterion_options
from specmamba.models import SegOutput


def _batch(k: int = 1, size: int = 16):
    torch.manual_seed(0)
    logits = torch.randn(2, k, size, size, requires_grad=True)
    target = torch.randint(0, max(k, 2), (2, size, size))
    return logits, target


def test_plain_logits_give_the_loss_itself():
    logits, target = _batch()
    total, terms = build_criterion("bce_dice", 1)(logits, target)
    assert list(terms) == ["main"]
    assert torch.equal(total, build_loss("bce_dice", 1)(logits, target))  # bitwise: runs are unchanged


def test_aux_outputs_are_upsampled_scored_and_weighted():
    logits, target = _batch(k=3)
    aux_half = torch.randn(2, 3, 8, 8, requires_grad=True)
    aux_full = torch.randn(2, 3, 16, 16)
    reg = torch.tensor(0.25, requires_grad=True)
    out = SegOutput(logits, aux=[aux_half, aux_full], terms={"reg": reg})
    total, terms = build_criterion("dice", 3, aux_weight=0.3)(out, target)
    dice = build_loss("dice", 3)
    up = F.interpolate(aux_half, size=(16, 16), mode="bilinear", align_corners=False)
    expected = {
        "main": dice(logits, target),
        "aux0": 0.3 * dice(up, target),
        "aux1": 0.3 * dice(aux_full, target),
        "reg": reg,
    }
    assert list(terms) == list(expected)
    for name, value in expected.items():
        torch.testing.assert_close(terms[name], value.reshape(()))
    torch.testing.assert_close(total, sum(expected.values()))
    total.backward()
    assert aux_half.grad.abs().sum() > 0 and reg.grad == 1.0


def test_default_aux_weight_and_options():
    logits, target = _batch()
    out = SegOutput(logits, aux=[logits.detach()])
    _, terms = build_criterion("bce", 1)(out, target)
    torch.testing.assert_close(terms["aux0"], 0.4 * terms["main"].detach())
    assert criterion_options("focal") == [
        "gamma",
        "alpha",
        "aux_weight",
        "aux_budget",
        "aux_temperature",
        "aux_regularization",
    ]


def test_structured_loss_scores_the_whole_output_and_has_state():
    logits, target = _batch()
    criterion = build_criterion("test_learned_aux_weights", 1, num_aux=2)
    assert criterion.structured and [n for n, _ in criterion.named_parameters()] == ["loss.logits_w"]
    out = SegOutput(
        logits, aux=[torch.randn(2, 1, 8, 8), torch.randn(2, 1, 4, 4)], terms={"l2": torch.tensor(0.1)}
    )
    total, terms = criterion(out, target)
    assert list(terms) == ["main", "aux0", "aux1", "weight_pull", "l2"]
    total.backward()
    assert criterion.loss.logits_w.grad is not None and criterion.loss.logits_w.grad.abs().sum() > 0
    assert set(criterion.state_dict()) == {"loss.logits_w", "loss.calls"}


def test_bad_options_and_outputs_are_refused():
    logits, target = _batch()
    with pytest.raises(ConfigError, match="accepts: bce_weight, .*aux_weight"):
        build_criterion("bce_dice", 1, aux=0.1)
    with pytest.raises(ConfigError, match="aux_weight and an aux weighting apply to pixel losses"):
        build_criterion("test_learned_aux_weights", 1, aux_weight=0.1)
    with pytest.raises(ConfigError, match="aux_weight is -1"):
        build_criterion("bce", 1, aux_weight=-1)
    criterion = build_criterion("bce", 1)
    with pytest.raises(ConfigError, match="has the name of a term"):
        criterion(SegOutput(logits, terms={"main": torch.tensor(1.0)}), target)
    with pytest.raises(ConfigError, match="scalar tensors"):
        criterion(SegOutput(logits, terms={"reg": torch.ones(3)}), target)
    with pytest.raises(ConfigError, match="returned a tuple"):
        criterion((logits,), target)
