"""Auxiliary weights of deep supervision (``losses/aux_weighting.py``): fixed halving and KAN-learned."""

from __future__ import annotations

import pytest
import torch

from specmamba.errors import ConfigError
from specmamba.losses import build_criterion
from specmamba.losses.aux_weighting import FixedAuxWeights, KANAuxWeights, build_aux_weighting
from specmamba.output import SegOutput


def _output(scales=(4, 8, 16), size=32):
    torch.manual_seed(0)
    main = torch.randn(2, 1, size, size, requires_grad=True)
    aux = [torch.randn(2, 1, size // s, size // s, requires_grad=True) for s in scales]
    return SegOutput(main, aux), torch.randint(0, 2, (2, size, size))


def test_fixed_is_nnunet_halving_normalised():
    weights, terms = FixedAuxWeights()(torch.rand(3), torch.tensor(1.0), torch.tensor([4.0, 8.0, 16.0]))
    torch.testing.assert_close(weights, torch.tensor([4.0, 2.0, 1.0]) / 7)
    assert terms == {}


def test_kan_weights_are_normalised_and_learned():
    weighting = KANAuxWeights(budget=1.0)
    losses = torch.tensor([0.3, 0.5, 0.9])
    weights, terms = weighting(losses, torch.tensor(0.4), torch.tensor([4.0, 8.0, 16.0]))
    torch.testing.assert_close(weights.sum(), torch.tensor(1.0))
    assert set(terms) == {"aux_entropy", "aux_kan_regularization"}
    (weights @ losses + sum(terms.values())).backward()
    grads = [p.grad for p in weighting.kan.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_the_criterion_uses_and_logs_the_weighting():
    output, target = _output()
    criterion = build_criterion("bce_dice", 1, aux_weighting="kan")
    result = criterion(output, target)
    assert {"main", "aux0", "aux1", "aux2", "aux_entropy", "aux_kan_regularization"} == set(result.terms)
    torch.testing.assert_close(result.total, sum(result.terms.values()))
    logged = criterion.diagnostics()
    assert list(logged) == ["aux_weight0", "aux_weight1", "aux_weight2"]
    assert abs(sum(logged.values()) - 1.0) < 1e-6
    result.total.backward()
    assert all(p.grad is not None for p in criterion.parameters())
    fixed = build_criterion("bce_dice", 1, aux_weighting="fixed")
    fixed(output, target)
    assert [round(w, 6) for w in fixed.diagnostics().values()] == [
        round(4 / 7, 6),
        round(2 / 7, 6),
        round(1 / 7, 6),
    ]
    assert not list(fixed.parameters())


def test_options_and_errors():
    criterion = build_criterion("dice", 1, aux_weighting="kan", aux_budget=0.5, aux_temperature=0.0)
    output, target = _output()
    result = criterion(output, target)
    assert "aux_entropy" not in result.terms and abs(sum(criterion.diagnostics().values()) - 0.5) < 1e-6
    with pytest.raises(ConfigError, match="asks for none"):
        build_criterion("dice", 1, aux_budget=0.5)
    with pytest.raises(ConfigError, match="leave aux_weight out"):
        build_criterion("dice", 1, aux_weighting="kan", aux_weight=0.4)
    with pytest.raises(ConfigError, match="choose one of"):
        build_aux_weighting("learned")
    with pytest.raises(ConfigError, match="budget only"):
        build_aux_weighting("fixed", temperature=0.1)
