"""Swin blocks with (shifted) windows: masks and whole blocks against a per-pixel brute force.

The brute force never rolls or partitions: for every pixel it lists the pixels it may attend to
straight from the definition (same window of the shifted grid, and contiguous in the image, i.e. not
wrapped round by the cyclic shift), then computes the attention explicitly.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from specmamba.layers.swin_block import SwinBlock, SwinBlocks, shifted_window_mask
from specmamba.layers.window_attention import window_partition


def _partners(y: int, x: int, h: int, w: int, ws: int, s: int) -> list[tuple[int, int]]:
    """Pixels that pixel (y, x) attends to with a window grid shifted by s (0: regular windows)."""
    ry, rx = (y - s) % h, (x - s) % w  # position after rolling the map by (-s, -s)
    out = []
    for ky in range(h):
        for kx in range(w):
            qy, qx = (ky - s) % h, (kx - s) % w
            same_window = ry // ws == qy // ws and rx // ws == qx // ws
            contiguous = (ky - y == qy - ry) and (kx - x == qx - rx)  # no wrap between them
            if same_window and contiguous:
                out.append((ky, kx))
    return out


def test_shifted_window_mask_matches_definition():
    h, w, ws, s = 8, 12, 4, 2
    mask = shifted_window_mask(h, w, ws, s)
    assert mask.shape == ((h // ws) * (w // ws), ws * ws, ws * ws)
    assert set(mask.unique().tolist()) == {0.0, -100.0}
    # Rolled coordinates of every token of every window, in window_partition order.
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    rolled = torch.stack([ys, xs], dim=-1)[None].float()  # (1, H, W, 2): rolled (y, x)
    tokens = window_partition(rolled, ws).view(-1, ws * ws, 2).long()  # (nW, N, 2)
    for win in range(mask.shape[0]):
        for i in range(ws * ws):
            ry, rx = tokens[win, i].tolist()
            y, x = (ry + s) % h, (rx + s) % w  # original position of this token
            allowed = {((py - s) % h, (px - s) % w) for py, px in _partners(y, x, h, w, ws, s)}
            for j in range(ws * ws):
                key = tuple(tokens[win, j].tolist())
                assert (mask[win, i, j] == 0) == (key in allowed), (win, i, j)
    # Interior windows are not split; the bottom-right one is split into 2 x 2 sub-windows.
    assert (mask[0] == 0).all()
    assert (mask[-1] == 0).sum() == 4 * (ws * ws // 4) ** 2
    with pytest.raises(ValueError):
        shifted_window_mask(8, 8, 4, 0)


def _brute_force_block(block: SwinBlock, x: torch.Tensor, shift: int) -> torch.Tensor:
    b, h, w, c = x.shape
    attn, ws = block.attn, block.window_size
    heads = attn.num_heads
    d = c // heads
    y = F.layer_norm(x, (c,), block.norm1.weight, block.norm1.bias)
    qkv = y @ attn.qkv.weight.T + attn.qkv.bias
    q, k, v = qkv[..., :c], qkv[..., c : 2 * c], qkv[..., 2 * c :]
    out = torch.zeros(b, h, w, c)
    table = attn.relative_position_bias_table
    for py in range(h):
        for px in range(w):
            keys = _partners(py, px, h, w, ws, shift)
            ky = torch.tensor([p[0] for p in keys])
            kx = torch.tensor([p[1] for p in keys])
            # Offsets inside the (shifted) window equal the offsets in the image for partners.
            rows = (py - ky + ws - 1) * (2 * ws - 1) + (px - kx + ws - 1)
            for head in range(heads):
                sl = slice(head * d, (head + 1) * d)
                logits = (k[:, ky, kx, sl] * q[:, py, px, None, sl]).sum(-1) / math.sqrt(d)
                weights = torch.softmax(logits + table[rows, head], dim=-1)  # (B, keys)
                out[:, py, px, sl] = (weights[..., None] * v[:, ky, kx, sl]).sum(1)
    x = x + out @ attn.proj.weight.T + attn.proj.bias
    return x + block.mlp(F.layer_norm(x, (c,), block.norm2.weight, block.norm2.bias))


@pytest.mark.parametrize("shift", [0, 2])
def test_block_equals_brute_force(shift):
    torch.manual_seed(0)
    block = SwinBlock(dim=8, num_heads=2, window_size=4, shift_size=shift).eval()
    with torch.no_grad():
        block.attn.relative_position_bias_table.normal_()
    x = torch.randn(2, 8, 12, 8)
    got = block(x)
    want = _brute_force_block(block, x, shift)
    assert torch.allclose(got, want, atol=1e-5)


def test_shifted_block_differs_from_regular_and_uses_the_mask():
    torch.manual_seed(1)
    regular = SwinBlock(dim=8, num_heads=2, window_size=4, shift_size=0).eval()
    shifted = SwinBlock(dim=8, num_heads=2, window_size=4, shift_size=2).eval()
    shifted.load_state_dict(regular.state_dict())
    x = torch.randn(1, 8, 8, 8)
    assert not torch.allclose(regular(x), shifted(x))
    # Without the mask the wrapped-round pixels would mix: the result would differ.
    unmasked = shifted(x, mask=torch.zeros(4, 16, 16))
    assert not torch.allclose(unmasked, shifted(x))
    assert torch.allclose(shifted(x, mask=shifted_window_mask(8, 8, 4, 2)), shifted(x))


def test_map_of_one_window_is_not_shifted():
    torch.manual_seed(2)
    regular = SwinBlock(dim=8, num_heads=2, window_size=4, shift_size=0).eval()
    shifted = SwinBlock(dim=8, num_heads=2, window_size=4, shift_size=2).eval()
    shifted.load_state_dict(regular.state_dict())
    assert shifted.effective_shift(4, 4) == 0 and shifted.effective_shift(4, 8) == 0
    assert shifted.effective_shift(8, 8) == 2
    x = torch.randn(2, 4, 8, 8)  # 4 x 8 map: shorter side = one window, as Swin-T's last stage
    assert torch.equal(shifted(x), regular(x))


def test_regular_block_commutes_with_window_aligned_rolls():
    torch.manual_seed(3)
    block = SwinBlock(dim=8, num_heads=2, window_size=4, shift_size=0).eval()
    x = torch.randn(1, 8, 12, 8)
    rolled = torch.roll(x, shifts=(4, -4), dims=(1, 2))
    assert torch.allclose(block(rolled), torch.roll(block(x), shifts=(4, -4), dims=(1, 2)), atol=1e-6)


def test_blocks_alternate_shifts_and_equal_running_each_block():
    torch.manual_seed(4)
    blocks = SwinBlocks(dim=8, depth=3, num_heads=2, window_size=4, drop_path=[0.0, 0.05, 0.1]).eval()
    assert [b.shift_size for b in blocks] == [0, 2, 0]
    assert [b.drop_path.p for b in blocks] == [0.0, 0.05, 0.1]
    x = torch.randn(2, 8, 8, 8)
    y = x
    for b in blocks:
        y = b(y)
    assert torch.allclose(blocks(x), y, atol=1e-6)
    assert list(dict(blocks.named_children())) == ["0", "1", "2"]
    with pytest.raises(ValueError, match="drop-path rates"):
        SwinBlocks(dim=8, depth=2, num_heads=2, window_size=4, drop_path=[0.1])


def test_block_gradients_and_drop_path_in_training():
    torch.manual_seed(5)
    block = SwinBlock(dim=8, num_heads=2, window_size=4, shift_size=2, drop_path=0.5).train()
    x = torch.randn(16, 8, 8, 8, requires_grad=True)
    y = block(x)
    y.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in block.parameters())
    # Some samples lose both branches (output == input), others not.
    same = [torch.equal(y[i], x[i]) for i in range(16)]
    assert any(same) and not all(same)
    block.eval()
    with torch.no_grad():
        assert not any(torch.equal(block(x)[i], x[i]) for i in range(16))
