"""Tests of specmamba.losses.bce: BCELoss and the VM-UNet BCEDiceLoss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from specmamba.errors import ConfigError
from specmamba.losses import BCEDiceLoss, BCELoss, DiceLoss


def _batch(k: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, k, 8, 8, generator=g) * 2
    target = torch.randint(0, max(k, 2), (2, 8, 8), generator=g)
    return logits, target


def test_bce_matches_torch() -> None:
    logits, target = _batch(1)
    ref = F.binary_cross_entropy_with_logits(logits[:, 0], target.float())
    torch.testing.assert_close(BCELoss()(logits, target), ref)
    logits3, target3 = _batch(3)
    torch.testing.assert_close(BCELoss()(logits3, target3), F.cross_entropy(logits3, target3))
    # binary with logit x is two-class softmax with logits (0, x)
    two = torch.cat([torch.zeros_like(logits), logits], dim=1)
    torch.testing.assert_close(BCELoss()(two, target), ref, rtol=1e-6, atol=1e-6)


def test_perfect_prediction_small() -> None:
    _, target = _batch(1)
    logits = (target.float() * 2 - 1)[:, None] * 20
    assert BCELoss()(logits, target).item() < 1e-8
    assert BCEDiceLoss()(logits, target).item() < 1e-6
    assert BCELoss()(-logits, target).item() > 10


def test_bce_dice_is_vmunet_recipe() -> None:
    logits, target = _batch(1, seed=5)
    # VM-UNet BceDiceLoss, written out: BCE on sigmoid probabilities + (1 - mean per-image soft
    # Dice with smooth 1), weights 1 and 1
    p = torch.sigmoid(logits[:, 0]).flatten(1)  # (B, H*W)
    t = target.float().flatten(1)  # (B, H*W)
    bce = F.binary_cross_entropy(p, t)
    dice = ((2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)).mean()
    torch.testing.assert_close(BCEDiceLoss()(logits, target), bce + 1 - dice, rtol=1e-5, atol=1e-6)
    weighted = BCEDiceLoss(bce_weight=0.3, dice_weight=2.0)(logits, target)
    ref = 0.3 * BCELoss()(logits, target) + 2.0 * DiceLoss()(logits, target)
    torch.testing.assert_close(weighted, ref)


@pytest.mark.parametrize("k", [1, 3])
def test_gradient_finite(k: int) -> None:
    logits, target = _batch(k, seed=6)
    logits = (logits * 500).requires_grad_()
    loss = BCEDiceLoss()(logits, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    half = BCEDiceLoss()(logits.detach().half(), target)
    assert half.dtype == torch.float32 and torch.isfinite(half)


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="dice_weight"):
        BCEDiceLoss(dice_weight=-1)
    logits, target = _batch(1)
    with pytest.raises(ConfigError, match=r"only 0\.\.1"):
        BCELoss()(logits, target * 2)
    with pytest.raises(ConfigError, match="num_classes=3"):
        BCEDiceLoss(num_classes=3)(logits, target)
