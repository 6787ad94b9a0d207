"""Tests of the loss registry (specmamba.losses.registry)."""

from __future__ import annotations

import pytest
import torch

from specmamba.errors import ConfigError
from specmamba.losses import (
    LOSS_NAMES,
    BCEDiceLoss,
    BCELoss,
    DiceLoss,
    FocalLoss,
    build_loss,
    list_losses,
    loss_options,
    register_loss,
)

BUILT_IN = {"bce", "ce", "dice", "bce_dice", "focal", "frequency", "boundary", "spectral_dual"}


def test_names_and_classes() -> None:
    assert set(LOSS_NAMES) == BUILT_IN
    assert BUILT_IN | {"test_learned_aux_weights"} <= set(list_losses())  # registered by tests/fakes.py
    expected = {"bce": BCELoss, "ce": BCELoss, "dice": DiceLoss, "bce_dice": BCEDiceLoss, "focal": FocalLoss}
    for name, cls in expected.items():
        loss = build_loss(name, num_classes=2)
        assert type(loss) is cls and loss.num_classes == 2
    assert isinstance(build_loss("BCE-Dice", 1), BCEDiceLoss)


@pytest.mark.parametrize("name", ["bce", "ce", "dice", "bce_dice", "focal", "frequency", "boundary"])
@pytest.mark.parametrize("k", [1, 3])
def test_every_loss_runs_with_finite_gradient(name: str, k: int) -> None:
    logits = torch.randn(2, k, 8, 8, requires_grad=True)
    target = torch.randint(0, max(k, 2), (2, 8, 8))
    loss = build_loss(name, num_classes=k)(logits, target)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match=f"num_classes={k}"):
        build_loss(name, num_classes=k)(torch.randn(2, k + 1, 8, 8), target)


def test_kwargs_are_forwarded() -> None:
    loss = build_loss("bce_dice", 1, bce_weight=0.5, dice_weight=2.0, smooth=0.0)
    assert loss.bce_weight == 0.5 and loss.dice_weight == 2.0 and loss.dice.smooth == 0.0
    focal = build_loss("focal", 3, gamma=1.0, alpha=(1.0, 2.0, 3.0))
    assert focal.gamma == 1.0 and focal.alpha == (1.0, 2.0, 3.0)


def test_register_loss_refuses_a_taken_name() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        register_loss("dice")(BCELoss)
    with pytest.raises(ValueError, match="registered twice"):
        register_loss("brand_new", "ce")(BCELoss)  # an alias is taken too
    assert "brand_new" not in list_losses()


def test_loss_options_in_signature_order() -> None:
    assert loss_options("bce_dice") == [
        "bce_weight",
        "dice_weight",
        "smooth",
        "per_image",
        "include_background",
    ]
    assert loss_options("CE") == []


def test_errors_name_valid_options() -> None:
    with pytest.raises(ConfigError) as err:
        build_loss("lovasz", 1)
    for name in LOSS_NAMES:
        assert name in str(err.value)
    assert "lovasz" in str(err.value)
    with pytest.raises(ConfigError, match="Did you mean: focal"):
        build_loss("focall", 1)
    with pytest.raises(ConfigError, match=r"accepts: smooth, per_image, include_background"):
        build_loss("dice", 1, gamma=2.0)
    with pytest.raises(ConfigError, match="integer >= 1"):
        build_loss("dice", 0)
    with pytest.raises(ConfigError, match="integer >= 1"):
        build_loss("dice", True)
