"""The stage-map adapters of specmamba.models.hook_points, against hand-built sequences."""

from __future__ import annotations

import pytest
import torch

from specmamba.errors import ConfigError
from specmamba.models.hook_points import ChannelsFirst, TokenMap, patch_tokens


def _sequence_with_middle_token(b=2, h=3, w=4, c=5):
    """(B, M + 1, C) tokens whose patch token (i, j) holds value 100 i + j in channel 0 and the class token
    -1 everywhere, inserted at index M // 2 as Vim does."""
    grid = torch.zeros(b, c, h, w)
    grid[:, 0] = 100 * torch.arange(h)[:, None] + torch.arange(w)[None, :]
    grid[:, 1:] = torch.randn(b, c - 1, h, w)
    tokens = grid.flatten(2).transpose(1, 2)  # (B, M, C), row-major
    m = h * w // 2
    cls = torch.full((b, 1, c), -1.0)
    return grid, torch.cat([tokens[:, :m], cls, tokens[:, m:]], dim=1), m


def test_token_map_drops_a_middle_class_token_and_restores_the_grid():
    grid, tokens, m = _sequence_with_middle_token()
    assert torch.equal(TokenMap([m])(tokens, (3, 4)), grid)
    assert torch.equal(TokenMap()(tokens, (3, 4), extra_positions=[m - 13]), grid)  # negative, per call


def test_patch_tokens_keeps_order_with_several_extra_tokens():
    tokens = torch.arange(10.0).view(1, 10, 1)
    assert patch_tokens(tokens, [7, 0, -1])[0, :, 0].tolist() == [1, 2, 3, 4, 5, 6, 8]
    assert patch_tokens(tokens, []) is tokens


@pytest.mark.parametrize("positions", [[10], [2, 2], [-11]])
def test_bad_positions_are_named(positions):
    with pytest.raises(ConfigError, match="distinct positions of a sequence of 10"):
        patch_tokens(torch.zeros(1, 10, 2), positions)


def test_token_count_must_fill_the_grid():
    with pytest.raises(ConfigError, match="9 patch tokens .* do not fill a 3x4 grid"):
        TokenMap([0])(torch.zeros(1, 10, 2), (3, 4))


def test_channels_first_is_a_view():
    x = torch.randn(2, 3, 4, 5)
    y = ChannelsFirst()(x)
    assert y.shape == (2, 5, 3, 4) and y.data_ptr() == x.data_ptr()
