"""Tests of specmamba.losses.focal.FocalLoss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from specmamba.errors import ConfigError
from specmamba.losses import FocalLoss


def _batch(k: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, k, 6, 6, generator=g) * 3
    target = torch.randint(0, max(k, 2), (2, 6, 6), generator=g)
    return logits, target


def test_hand_computed_pixels() -> None:
    # one pixel, logit 0, label 1: p_t = 0.5 -> alpha 0.25 * (0.5)^2 * ln 2
    logits = torch.zeros(1, 1, 1, 1)
    one = torch.ones(1, 1, 1, dtype=torch.long)
    assert FocalLoss()(logits, one).item() == pytest.approx(0.25 * 0.25 * math.log(2), rel=1e-6)
    # logit 2, label 0: p_t = sigmoid(-2), weight 1 - alpha = 0.75
    p_t = 1 / (1 + math.exp(2))
    expected = 0.75 * (1 - p_t) ** 2 * -math.log(p_t)
    assert FocalLoss()(logits + 2, one * 0).item() == pytest.approx(expected, rel=1e-6)
    # softmax: logits (0, ln 3) -> p(class 1) = 3/4, label 1, gamma 1, no alpha: (1/4) * ln(4/3)
    two = torch.tensor([0.0, math.log(3)]).view(1, 2, 1, 1)
    assert FocalLoss(gamma=1, alpha=None)(two, one).item() == pytest.approx(0.25 * math.log(4 / 3), rel=1e-6)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_gamma_zero_equals_cross_entropy(k: int) -> None:
    logits, target = _batch(k)
    got = FocalLoss(gamma=0, alpha=None)(logits, target)
    if k == 1:
        ref = F.binary_cross_entropy_with_logits(logits[:, 0], target.float())
    else:
        ref = F.cross_entropy(logits, target)
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-7)
    assert FocalLoss(gamma=2, alpha=None)(logits, target) < ref  # focusing only down-weights


@pytest.mark.parametrize("alpha", [None, 0.25, (0.3, 0.7)])
def test_binary_equals_two_class(alpha) -> None:
    logits, target = _batch(1, seed=1)
    two = torch.cat([torch.zeros_like(logits), logits], dim=1)
    loss = FocalLoss(gamma=2, alpha=alpha)
    torch.testing.assert_close(loss(logits, target), loss(two, target), rtol=1e-5, atol=1e-7)


def test_per_class_alpha() -> None:
    logits, target = _batch(3, seed=2)
    weights = (0.2, 1.0, 3.0)
    got = FocalLoss(gamma=0, alpha=weights)(logits, target)
    ref = (F.cross_entropy(logits, target, reduction="none") * torch.tensor(weights)[target]).mean()
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-7)
    with pytest.raises(ConfigError, match="K=3"):
        FocalLoss(alpha=(1.0, 1.0))(logits, target)
    with pytest.raises(ConfigError, match="3 values"):
        FocalLoss(alpha=(1.0, 1.0), num_classes=3)


def test_stable_for_extreme_logits() -> None:
    for gamma in (0.0, 0.5, 2.0):
        for k in (1, 3):
            logits, target = _batch(k, seed=3)
            logits = (logits.sign() * 200).requires_grad_()  # saturated, half of them wrong
            loss = FocalLoss(gamma=gamma)(logits, target)
            loss.backward()
            assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    # perfectly confident and right: loss ~ 0, gradient finite even for gamma < 1
    target = torch.ones(1, 4, 4, dtype=torch.long)
    logits = torch.full((1, 1, 4, 4), 200.0, requires_grad=True)
    loss = FocalLoss(gamma=0.5)(logits, target)
    loss.backward()
    assert loss.item() < 1e-30 and torch.isfinite(logits.grad).all()


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="gamma"):
        FocalLoss(gamma=-1)
    with pytest.raises(ConfigError, match="alpha"):
        FocalLoss(alpha=1.5)
    with pytest.raises(ConfigError, match="alpha"):
        FocalLoss(alpha=(1.0, -1.0))
