"""SpectralDualLoss: the seed's weighted sum of Dice, focal, frequency and boundary terms, by name."""

from __future__ import annotations

import pytest
import torch

from specmamba.errors import ConfigError
from specmamba.losses import (
    BoundaryAwareLoss,
    DiceLoss,
    FocalLoss,
    FrequencyLoss,
    build_criterion,
    build_loss,
)


@pytest.mark.parametrize("k", [1, 3])
def test_terms_are_the_weighted_components(k):
    torch.manual_seed(0)
    logits, target = torch.randn(2, k, 16, 16), torch.randint(0, max(k, 2), (2, 16, 16))
    terms = build_loss("spectral_dual", k, boundary_weight=0.05)(logits, target)
    assert list(terms) == ["dice", "focal", "frequency", "boundary"]
    torch.testing.assert_close(terms["dice"], DiceLoss()(logits, target))
    torch.testing.assert_close(terms["focal"], FocalLoss(alpha=None)(logits, target))
    torch.testing.assert_close(terms["frequency"], 0.1 * FrequencyLoss()(logits, target))
    torch.testing.assert_close(terms["boundary"], 0.05 * BoundaryAwareLoss()(logits, target))


def test_the_boundary_term_is_off_by_default_and_terms_are_logged_by_the_criterion():
    logits = torch.randn(2, 1, 16, 16, requires_grad=True)
    target = torch.randint(0, 2, (2, 16, 16))
    result = build_criterion("spectral_dual", 1)(logits, target)
    assert list(result.terms) == ["dice", "focal", "frequency"]
    torch.testing.assert_close(result.total, sum(result.terms.values()))
    result.total.backward()
    assert logits.grad.abs().sum() > 0


def test_aux_outputs_are_scored_by_the_sum_of_the_terms():
    from specmamba.output import SegOutput

    torch.manual_seed(0)
    main, aux = torch.randn(1, 1, 16, 16), torch.randn(1, 1, 8, 8)
    target = torch.randint(0, 2, (1, 16, 16))
    loss = build_loss("spectral_dual", 1)
    result = build_criterion("spectral_dual", 1, aux_weight=0.5)(SegOutput(main, [aux]), target)
    upsampled = torch.nn.functional.interpolate(aux, size=(16, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(result.terms["aux0"], 0.5 * sum(loss(upsampled, target).values()))


@pytest.mark.parametrize(
    "kwargs", [{"dice_weight": -1.0}, {"dice_weight": 0, "focal_weight": 0, "frequency_weight": 0}]
)
def test_bad_weights(kwargs):
    with pytest.raises(ConfigError, match="SpectralDualLoss"):
        build_loss("spectral_dual", 1, **kwargs)
