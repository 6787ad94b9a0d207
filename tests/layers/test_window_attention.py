"""Window attention with relative position bias, checked against explicit per-window loops."""

from __future__ import annotations

import math

import pytest
import torch

from specmamba.layers.window_attention import (
    WindowAttention,
    relative_position_index,
    window_partition,
    window_reverse,
)


def test_window_partition_order_and_inverse():
    x = torch.randn(2, 8, 12, 3)
    win = window_partition(x, 4)
    assert win.shape == (2 * 2 * 3, 4, 4, 3)
    # Batch first, then row-major over the 2 x 3 window grid.
    for b in range(2):
        for gy in range(2):
            for gx in range(3):
                k = b * 6 + gy * 3 + gx
                assert torch.equal(win[k], x[b, 4 * gy : 4 * gy + 4, 4 * gx : 4 * gx + 4])
    assert torch.equal(window_reverse(win, 4, 8, 12), x)
    with pytest.raises(ValueError, match="not a multiple"):
        window_partition(torch.zeros(1, 6, 8, 1), 4)


@pytest.mark.parametrize("ws", [1, 2, 3, 7])
def test_relative_position_index_is_the_offset_table_row(ws):
    idx = relative_position_index(ws)
    n = ws * ws
    assert idx.shape == (n, n) and idx.dtype == torch.long
    side = 2 * ws - 1
    for i in range(n):
        for j in range(n):
            dy, dx = i // ws - j // ws, i % ws - j % ws
            assert idx[i, j] == (dy + ws - 1) * side + (dx + ws - 1)
    # Every offset of the (2w-1)^2 table occurs, the zero offset on the diagonal.
    assert set(idx.flatten().tolist()) == set(range(side * side))
    assert (idx.diagonal() == (side * side) // 2).all()


def _brute_force_attention(attn: WindowAttention, windows: torch.Tensor, mask: torch.Tensor | None):
    """Per window, per head, per query: explicit logits, bias looked up by offset, softmax, sum."""
    bw, n, c = windows.shape
    ws, h = attn.window_size, attn.num_heads
    d = c // h
    qkv = windows @ attn.qkv.weight.T + attn.qkv.bias  # (Bw, N, 3C)
    q, k, v = qkv[..., :c], qkv[..., c : 2 * c], qkv[..., 2 * c :]
    table = attn.relative_position_bias_table
    out = torch.zeros(bw, n, c)
    for b in range(bw):
        for head in range(h):
            sl = slice(head * d, (head + 1) * d)
            for i in range(n):
                logits = []
                for j in range(n):
                    dy, dx = i // ws - j // ws, i % ws - j % ws
                    bias = table[(dy + ws - 1) * (2 * ws - 1) + dx + ws - 1, head]
                    logit = (q[b, i, sl] * k[b, j, sl]).sum() / math.sqrt(d) + bias
                    if mask is not None:
                        logit = logit + mask[b % mask.shape[0], i, j]
                    logits.append(logit)
                weights = torch.softmax(torch.stack(logits), dim=0)
                out[b, i, sl] = (weights[:, None] * v[b, :, sl]).sum(0)
    return out @ attn.proj.weight.T + attn.proj.bias


@pytest.mark.parametrize("with_mask", [False, True])
def test_window_attention_equals_brute_force(with_mask):
    torch.manual_seed(0)
    attn = WindowAttention(dim=8, window_size=2, num_heads=2)
    with torch.no_grad():
        attn.relative_position_bias_table.normal_()  # large enough to matter
    n_windows, images = 3, 2
    x = torch.randn(images * n_windows, 4, 8, requires_grad=True)
    mask = None
    if with_mask:
        mask = torch.zeros(n_windows, 4, 4)
        mask[1, :2, 2:] = -100.0
        mask[1, 2:, :2] = -100.0
        mask[2, 0, 3] = -5.0  # any additive value, not only -100
    got = attn(x, mask)
    want = _brute_force_attention(attn, x, mask)
    assert torch.allclose(got, want, atol=1e-5)
    # Gradients agree too (with respect to the input and to the bias table).
    g = torch.randn_like(got)
    grads = torch.autograd.grad((got * g).sum(), [x, attn.relative_position_bias_table])
    grads_ref = torch.autograd.grad((want * g).sum(), [x, attn.relative_position_bias_table])
    for a, b in zip(grads, grads_ref):
        assert torch.allclose(a, b, atol=1e-5)


def test_relative_bias_changes_output_and_shape_checks():
    torch.manual_seed(1)
    attn = WindowAttention(dim=6, window_size=3, num_heads=3).eval()
    x = torch.randn(2, 9, 6)
    before = attn(x)
    assert attn.relative_position_bias().shape == (3, 9, 9)
    with torch.no_grad():
        attn.relative_position_bias_table[0] += 3.0  # one offset only: (dy, dx) = (-2, -2)
    assert not torch.allclose(attn(x), before)
    with pytest.raises(ValueError, match="9 tokens per window"):
        attn(torch.randn(2, 4, 6))
    with pytest.raises(ValueError, match="whole number of images"):
        attn(x, torch.zeros(3, 9, 9))
    with pytest.raises(ValueError, match="divisible"):
        WindowAttention(dim=7, window_size=3, num_heads=2)


def test_index_is_not_in_the_state_dict():
    attn = WindowAttention(dim=4, window_size=7, num_heads=2)
    assert set(attn.state_dict()) == {
        "relative_position_bias_table",
        "qkv.weight",
        "qkv.bias",
        "proj.weight",
        "proj.bias",
    }
    assert attn.relative_position_bias_table.shape == (169, 2)
