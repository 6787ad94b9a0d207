from __future__ import annotations

import pytest
import torch

from specmamba.engine.schedule import warmup_cosine


def _lrs(total, warmup, base=1.0, min_lr=0.01):
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=base)
    sched = warmup_cosine(opt, total_steps=total, warmup_steps=warmup, base_lr=base, min_lr=min_lr)
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_warmup_rises_then_cosine_falls_to_min():
    lrs = _lrs(total=100, warmup=10)
    assert lrs[0] == pytest.approx(1 / 11)
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11]))
    assert lrs[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[-1] == pytest.approx(0.01, abs=2e-3)
    assert min(lrs) >= 0.01 - 1e-12


def test_no_warmup_starts_at_base():
    assert _lrs(total=5, warmup=0)[0] == pytest.approx(1.0)
