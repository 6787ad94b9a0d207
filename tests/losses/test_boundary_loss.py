"""BoundaryAwareLoss: the band rule against a brute-force search, and the weighted cross-entropy."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from specmamba.errors import ConfigError
from specmamba.losses import BoundaryAwareLoss
from specmamba.losses.boundary import boundary_band


def _brute_force_band(labels: torch.Tensor, width: int) -> torch.Tensor:
    """A pixel is in the band when a pixel of another label lies within Chebyshev distance ``width``."""
    h, w = labels.shape
    band = torch.zeros(h, w, dtype=torch.bool)
    for y, x in itertools.product(range(h), range(w)):
        window = labels[max(0, y - width) : y + width + 1, max(0, x - width) : x + width + 1]
        band[y, x] = bool((window != labels[y, x]).any())
    return band


@pytest.mark.parametrize("width", [1, 2, 3])
def test_band_matches_the_rule(width):
    torch.manual_seed(width)
    labels = torch.zeros(1, 17, 13, dtype=torch.long)
    labels[0, 3:11, 2:9] = 1
    labels[0, 6:9, 4:7] = 2
    labels[0, 14:, 10:] = 1  # touches the border
    band = boundary_band(labels, 3, width)
    assert torch.equal(band[0], _brute_force_band(labels[0], width))


def test_the_weight_exceeds_one_only_within_the_band():
    labels = torch.zeros(1, 16, 16, dtype=torch.long)
    labels[0, 4:12, 4:12] = 1
    loss = BoundaryAwareLoss(band_width=2, band_weight=1.5)
    weight = loss.weight_map(labels, 2)
    band = _brute_force_band(labels[0], 2)
    assert torch.all(weight[0][band] == 2.5) and torch.all(weight[0][~band] == 1.0)


@pytest.mark.parametrize("k", [1, 3])
def test_loss_is_the_weighted_cross_entropy(k):
    torch.manual_seed(0)
    logits = torch.randn(2, k, 12, 12, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, max(k, 2), (2, 12, 12))
    loss = BoundaryAwareLoss(band_width=1, band_weight=1.0)
    if k == 1:
        ce = F.binary_cross_entropy_with_logits(logits[:, 0], target.double(), reduction="none")
    else:
        ce = F.cross_entropy(logits, target, reduction="none")
    band = torch.stack([_brute_force_band(t, 1) for t in target])
    expected = ((1 + band.double()) * ce).mean()
    value = loss(logits, target)
    torch.testing.assert_close(value, expected)
    value.backward()
    assert logits.grad.abs().sum() > 0


def test_band_weight_zero_is_plain_cross_entropy():
    logits, target = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))
    torch.testing.assert_close(
        BoundaryAwareLoss(band_weight=0.0)(logits, target), F.cross_entropy(logits, target)
    )


@pytest.mark.parametrize("kwargs", [{"band_width": 0}, {"band_width": 1.5}, {"band_weight": -1.0}])
def test_bad_options(kwargs):
    with pytest.raises(ConfigError, match="BoundaryAwareLoss"):
        BoundaryAwareLoss(**kwargs)
