"""WTConv2d (``layers/wavelet_conv.py``) against an independent slicing-based Haar re-derivation.

The oracle writes the 2-D Haar transform with array slicing (the four polyphase components a, b, c, d
of each 2x2 block) instead of strided convolutions, and re-runs the WTConv2d recipe of REFERENCE.md
section 6 on the module's own weights.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from specmamba.errors import ConfigError, InputSizeError
from specmamba.layers.wavelet_conv import WTConv2d, haar_analysis, haar_filters, haar_synthesis


def _haar(x):
    """(B, C, h, w) even -> (B, C, 4, h/2, w/2) by slicing: LL, rows-difference, columns-difference, HH."""
    a, b, c, d = x[..., 0::2, 0::2], x[..., 0::2, 1::2], x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    return torch.stack([a + b + c + d, a + b - c - d, a - b + c - d, a - b - c + d], dim=2) / 2


def _inverse_haar(bands):
    ll, rows, cols, hh = bands.unbind(2)
    a, b = (ll + rows + cols + hh) / 2, (ll + rows - cols - hh) / 2
    c, d = (ll - rows + cols - hh) / 2, (ll - rows - cols + hh) / 2
    out = torch.zeros(*ll.shape[:-2], 2 * ll.shape[-2], 2 * ll.shape[-1], dtype=ll.dtype)
    out[..., 0::2, 0::2], out[..., 0::2, 1::2], out[..., 1::2, 0::2], out[..., 1::2, 1::2] = a, b, c, d
    return out


def _reference(m: WTConv2d, x):
    """The WTConv2d recipe, written with the slicing transform and the module's weights."""
    c = m.in_channels
    lows, highs, sizes, low = [], [], [], x
    for i in range(m.wt_levels):
        sizes.append(low.shape[-2:])
        low = F.pad(low, (0, low.shape[-1] % 2, 0, low.shape[-2] % 2))
        bands = _haar(low)  # (B, C, 4, h, w)
        low = bands[:, :, 0]
        b, _, _, h, w = bands.shape
        filtered = F.conv2d(
            bands.reshape(b, 4 * c, h, w), m.wavelet_convs[i].weight, padding="same", groups=4 * c
        )
        filtered = (m.wavelet_scale[i].weight * filtered).reshape(b, c, 4, h, w)
        lows.append(filtered[:, :, 0])
        highs.append(filtered[:, :, 1:])
    below = 0
    for i in reversed(range(m.wt_levels)):
        bands = torch.cat([(lows[i] + below).unsqueeze(2), highs[i]], dim=2)
        h, w = sizes[i]
        below = _inverse_haar(bands)[..., :h, :w]
    base = F.conv2d(x, m.base_conv.weight, m.base_conv.bias, padding="same", groups=c)
    return m.base_scale.weight * base + below


@pytest.mark.parametrize("size", [(8, 8), (6, 10), (2, 2)])
def test_haar_analysis_then_synthesis_is_the_identity(size):
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    filters = haar_filters(3, torch.float64)
    torch.testing.assert_close(haar_analysis(x, filters), _haar(x))
    torch.testing.assert_close(haar_synthesis(haar_analysis(x, filters), filters), x)


def test_haar_filters_are_the_published_kernels():
    filters = haar_filters(1)[:, 0]
    expected = 0.5 * torch.tensor(
        [[[1, 1], [1, 1]], [[1, 1], [-1, -1]], [[1, -1], [1, -1]], [[1, -1], [-1, 1]]], dtype=torch.float32
    )
    torch.testing.assert_close(filters, expected)


@pytest.mark.parametrize("levels, size", [(1, (16, 16)), (2, (13, 9)), (3, (21, 17)), (3, (16, 24))])
def test_equals_the_slicing_reference_on_random_weights(levels, size):
    torch.manual_seed(levels)
    m = WTConv2d(4, 4, kernel_size=3, wt_levels=levels).double()
    with torch.no_grad():
        for p in m.parameters():
            if p.requires_grad:
                p.normal_()
    x = torch.randn(2, 4, *size, dtype=torch.float64)
    torch.testing.assert_close(m(x), _reference(m, x))


def test_state_dict_is_the_originals():
    keys = {
        k: tuple(v.shape)
        for k, v in WTConv2d(8, 8, kernel_size=5, wt_levels=2, stride=2).state_dict().items()
    }
    assert keys == {
        "wt_filter": (32, 1, 2, 2),
        "iwt_filter": (32, 1, 2, 2),
        "base_conv.weight": (8, 1, 5, 5),
        "base_conv.bias": (8,),
        "base_scale.weight": (1, 8, 1, 1),
        "wavelet_convs.0.weight": (32, 1, 5, 5),
        "wavelet_convs.1.weight": (32, 1, 5, 5),
        "wavelet_scale.0.weight": (1, 32, 1, 1),
        "wavelet_scale.1.weight": (1, 32, 1, 1),
        "stride_filter": (8, 1, 1, 1),
    }
    m = WTConv2d(8, 8)
    assert torch.all(m.base_scale.weight == 1) and torch.all(m.wavelet_scale[0].weight == 0.1)
    assert not m.wt_filter.requires_grad and not m.iwt_filter.requires_grad
    m.load_state_dict(WTConv2d(8, 8).state_dict(), strict=True)


def test_stride_subsamples_the_stride_one_output():
    torch.manual_seed(0)
    m1 = WTConv2d(3, 3, stride=1)
    m2 = WTConv2d(3, 3, stride=2)
    m2.load_state_dict({**m1.state_dict(), "stride_filter": torch.ones(3, 1, 1, 1)})
    x = torch.randn(1, 3, 9, 12)
    torch.testing.assert_close(m2(x), m1(x)[..., ::2, ::2])


def test_gradients_reach_the_trainable_weights():
    m = WTConv2d(3, 3, wt_levels=2)
    m(torch.randn(1, 3, 8, 8)).square().sum().backward()
    trainable = [(n, p) for n, p in m.named_parameters() if p.requires_grad]
    assert len(trainable) == 7 and all(p.grad.abs().sum() > 0 for _, p in trainable)


def test_clear_errors():
    with pytest.raises(InputSizeError, match="level 3 would decompose a 1x1 band.*at most 2 level"):
        WTConv2d(3, 3, wt_levels=3)(torch.randn(1, 3, 4, 4))
    with pytest.raises(ConfigError, match="depthwise"):
        WTConv2d(3, 6)
    with pytest.raises(ConfigError, match="Haar"):
        WTConv2d(3, 3, wt_type="db2")
