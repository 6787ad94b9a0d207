"""VSS block (``specmamba.layers.vss_block``): x + DropPath(SS2D(LayerNorm(x)))."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from specmamba.layers import SS2D, DropPath, VSSBlock


def test_structure_and_names():
    block = VSSBlock(16, drop_path=0.1, d_state=4, scan_backend="ref")
    assert isinstance(block.self_attention, SS2D) and block.self_attention.scan_backend == "ref"
    assert isinstance(block.drop_path, DropPath) and block.drop_path.p == pytest.approx(0.1)
    assert {k.split(".")[0] for k in block.state_dict()} == {"ln_1", "self_attention"}  # no MLP branch
    assert block.self_attention.d_state == 4 and block.ln_1.normalized_shape == (16,)


def test_forward_is_pre_norm_residual():
    torch.manual_seed(0)
    block = VSSBlock(16, d_state=4).eval()
    with torch.no_grad():
        block.ln_1.weight.uniform_(0.5, 1.5)
        block.ln_1.bias.normal_()
    x = torch.randn(2, 4, 6, 16)
    with torch.no_grad():
        branch = block.self_attention(F.layer_norm(x, (16,), block.ln_1.weight, block.ln_1.bias))
        torch.testing.assert_close(block(x), x + branch)
        assert branch.abs().max() > 0


def test_drop_path_drops_whole_samples_in_training_only():
    torch.manual_seed(0)
    block = VSSBlock(16, drop_path=0.5, d_state=4)
    x = torch.randn(32, 2, 2, 16)
    with torch.no_grad():
        branch = block.self_attention(block.ln_1(x))
        y = block.train()(x)
        kept = [torch.allclose(y[i], x[i] + branch[i] / 0.5, atol=1e-6) for i in range(32)]
        dropped = [torch.equal(y[i], x[i]) for i in range(32)]
        # Each sample: the whole branch kept (rescaled) or dropped.
        assert all(k != d for k, d in zip(kept, dropped))
        assert 0 < sum(dropped) < 32
        torch.testing.assert_close(block.eval()(x), x + branch)
