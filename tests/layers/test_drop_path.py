from __future__ import annotations

import pytest
import torch

from specmamba.layers import DropPath, linear_drop_path_rates


def test_eval_mode_is_identity_and_training_keeps_the_expectation():
    torch.manual_seed(0)
    layer = DropPath(0.3)
    x = torch.ones(20000, 4)
    assert torch.equal(layer.eval()(x), x)
    y = layer.train()(x)
    rows = y[:, 0]
    assert torch.all((rows == 0) | torch.isclose(rows, torch.tensor(1 / 0.7)))
    assert (rows == 0).float().mean().item() == pytest.approx(0.3, abs=0.02)
    assert y.mean().item() == pytest.approx(1.0, abs=0.03)
    assert torch.all(y == y[:, :1])  # a whole sample is dropped or kept


def test_rates_rise_linearly_over_all_blocks():
    rates = linear_drop_path_rates(0.2, [2, 2, 9, 2])
    flat = [r for stage in rates for r in stage]
    assert [len(s) for s in rates] == [2, 2, 9, 2]
    assert flat[0] == 0.0 and flat[-1] == pytest.approx(0.2)
    assert all(b > a for a, b in zip(flat, flat[1:]))


def test_invalid_probability():
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        DropPath(1.0)
