"""The trainer's optimizer: fused where PyTorch can, the same update rule as the per-parameter loop."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from specmamba.engine import optimizer as optimizer_module
from specmamba.engine.optimizer import build_optimizer


class _Criterion(nn.Module):
    """A loss with one trainable weight (like KAN-weighted deep supervision)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(3))
        self.frozen = nn.Parameter(torch.ones(2), requires_grad=False)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 4))


def _train(opt_model: nn.Module, optimizer: torch.optim.Optimizer, steps: int = 5) -> None:
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(6, 8, generator=gen)
        optimizer.zero_grad(set_to_none=True)
        opt_model(x).square().mean().backward()
        optimizer.step()


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_fused_step_equals_the_loop_to_float32_rounding(name):
    fused_model, loop_model = _net(), _net()
    fused = build_optimizer(fused_model, None, name, lr=1e-2, weight_decay=0.05)
    loop = build_optimizer(loop_model, None, name, lr=1e-2, weight_decay=0.05, fused=False)
    assert fused.param_groups[0]["fused"] is True and not loop.param_groups[0]["fused"]
    assert type(fused) is (torch.optim.Adam if name == "adam" else torch.optim.AdamW)
    _train(fused_model, fused)
    _train(loop_model, loop)
    for a, b, start in zip(fused_model.parameters(), loop_model.parameters(), _net().parameters()):
        assert (a - start).abs().max() > 1e-3  # both trained (5 steps of about lr = 1e-2 each)
        # the same rule rounded in another order: float32 rounding of each update, a few ulps
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_criterion_parameters_form_a_second_group_without_weight_decay():
    model, criterion = _net(), _Criterion()
    opt = build_optimizer(model, criterion, "adamw", lr=1e-3, weight_decay=0.1)
    assert len(opt.param_groups) == 2
    assert opt.param_groups[0]["weight_decay"] == 0.1 and opt.param_groups[1]["weight_decay"] == 0.0
    assert opt.param_groups[1]["params"] == [criterion.weight]  # the frozen one is left out
    assert len(build_optimizer(model, nn.MSELoss(), "adamw", 1e-3, 0.1).param_groups) == 1


def test_unknown_optimizer_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="'sgd'.*adamw"):
        build_optimizer(_net(), None, "sgd", 1e-3, 0.0)


def test_falls_back_to_the_default_where_pytorch_refuses_fused(monkeypatch):
    class _NoFused(torch.optim.AdamW):
        """An AdamW like PyTorch < 2.4's on CPU tensors: fused=True is refused."""

        def __init__(self, params, fused=None, **kwargs):
            if fused:
                raise RuntimeError(
                    "`fused=True` requires all the params to be floating point Tensors of supported devices"
                )
            super().__init__(params, **kwargs)

    monkeypatch.setattr(optimizer_module.torch.optim, "AdamW", _NoFused)
    opt = build_optimizer(_net(), None, "adamw", 1e-3, 0.0)
    assert isinstance(opt, _NoFused) and not opt.param_groups[0]["fused"]
