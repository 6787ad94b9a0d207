"""Tests of specmamba.losses.dice.DiceLoss."""

from __future__ import annotations

import pytest
import torch

from specmamba.errors import ConfigError
from specmamba.losses import DiceLoss


def _binary_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 1, 8, 8, generator=g)
    target = (torch.rand(3, 8, 8, generator=g) > 0.6).long()
    target[0] = 0  # one image without foreground
    return logits, target


def test_hand_computed_value() -> None:
    # logits 0 -> p = 0.5 everywhere; image 0 has 4 of 16 foreground pixels, image 1 none.
    # image 0: (2 * 0.5 * 4 + 1) / (0.5 * 16 + 4 + 1) = 5 / 13; image 1: (0 + 1) / (8 + 0 + 1) = 1 / 9
    logits = torch.zeros(2, 1, 4, 4)
    target = torch.zeros(2, 4, 4, dtype=torch.long)
    target[0, :2, :2] = 1
    loss = DiceLoss()(logits, target)
    assert loss.item() == pytest.approx(1 - (5 / 13 + 1 / 9) / 2, rel=1e-6)
    # pooled over the batch: (2 * 0.5 * 4 + 1) / (0.5 * 32 + 4 + 1) = 5 / 21
    assert DiceLoss(per_image=False)(logits, target).item() == pytest.approx(1 - 5 / 21, rel=1e-6)
    # with background: image 0 bg (2 * 0.5 * 12 + 1) / (8 + 12 + 1) = 13 / 21, image 1 bg 17 / 25
    with_bg = DiceLoss(include_background=True)(logits, target).item()
    assert with_bg == pytest.approx(1 - (5 / 13 + 1 / 9 + 13 / 21 + 17 / 25) / 4, rel=1e-6)


def test_perfect_prediction_is_near_zero() -> None:
    _, target = _binary_batch()
    logits = (target.float() * 2 - 1)[:, None] * 30  # (B, 1, H, W) confident and right
    assert DiceLoss()(logits, target).item() < 1e-6
    target3 = torch.randint(0, 3, (2, 8, 8), generator=torch.Generator().manual_seed(1))
    logits3 = torch.nn.functional.one_hot(target3, 3).permute(0, 3, 1, 2).float() * 30
    assert DiceLoss()(logits3, target3).item() < 1e-6
    assert DiceLoss(include_background=True)(logits3, target3).item() < 1e-6
    wrong = DiceLoss()(-logits, target).item()
    assert wrong > 0.5


@pytest.mark.parametrize("per_image", [True, False])
@pytest.mark.parametrize("include_background", [True, False])
def test_binary_equals_two_class(per_image: bool, include_background: bool) -> None:
    logits, target = _binary_batch(2)
    loss = DiceLoss(per_image=per_image, include_background=include_background)
    two = torch.cat([torch.zeros_like(logits), logits], dim=1)  # softmax(0, x)[1] == sigmoid(x)
    torch.testing.assert_close(loss(logits, target), loss(two, target), rtol=1e-6, atol=1e-6)


def test_gradient_finite_and_descends() -> None:
    logits, target = _binary_batch(3)
    logits = (logits * 1e3).requires_grad_()  # saturated sigmoids
    DiceLoss()(logits, target).backward()
    assert torch.isfinite(logits.grad).all()
    x = torch.zeros(1, 3, 6, 6, requires_grad=True)
    t = torch.randint(0, 3, (1, 6, 6), generator=torch.Generator().manual_seed(4))
    loss = DiceLoss()(x, t)
    loss.backward()
    with torch.no_grad():
        assert DiceLoss()(x - 10 * x.grad, t) < loss  # the gradient points downhill
    half = DiceLoss()(torch.zeros(1, 1, 4, 4, dtype=torch.bfloat16), torch.zeros(1, 4, 4, dtype=torch.long))
    assert half.dtype == torch.float32 and torch.isfinite(half)


def test_input_errors() -> None:
    logits, target = _binary_batch()
    with pytest.raises(ConfigError, match="integer"):
        DiceLoss()(logits, target.float())
    with pytest.raises(ConfigError, match="no channel dim"):
        DiceLoss()(logits, target[:, None])
    with pytest.raises(ConfigError, match=r"only 0\.\.1"):
        DiceLoss()(logits, target + 1)
    with pytest.raises(ConfigError, match="num_classes=2"):
        DiceLoss(num_classes=2)(logits, target)
    with pytest.raises(ConfigError, match="B, K, H, W"):
        DiceLoss()(logits[:, 0], target)
    with pytest.raises(ConfigError, match="smooth"):
        DiceLoss(smooth=-1)
