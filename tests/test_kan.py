"""KANLinear (``kan.py``) and KANConv2d (``layers/kan_conv.py``): B-spline bases against an explicit
Cox-de Boor evaluation, efficient-KAN's init and regulariser, update_grid, and the convolution against
a per-patch loop."""

from __future__ import annotations

import math

import pytest
import torch

from specmamba.kan import KANLinear, b_spline_bases
from specmamba.layers.kan_conv import KANConv2d


def _cox_de_boor(x: float, knots: list[float], j: int, p: int) -> float:
    """B_{j,p}(x) by the textbook recursion (0/0 taken as 0), one scalar at a time."""
    if p == 0:
        return 1.0 if knots[j] <= x < knots[j + 1] else 0.0
    left = right = 0.0
    if knots[j + p] != knots[j]:
        left = (x - knots[j]) / (knots[j + p] - knots[j]) * _cox_de_boor(x, knots, j, p - 1)
    if knots[j + p + 1] != knots[j + 1]:
        right = (
            (knots[j + p + 1] - x) / (knots[j + p + 1] - knots[j + 1]) * _cox_de_boor(x, knots, j + 1, p - 1)
        )
    return left + right


def test_default_grid_is_efficient_kans():
    layer = KANLinear(3, 2)
    expected = torch.tensor([(j - 3) * 0.4 - 1 for j in range(12)])
    torch.testing.assert_close(layer.grid, expected.expand(3, -1))
    assert {k: tuple(v.shape) for k, v in layer.state_dict().items()} == {
        "grid": (3, 12),
        "base_weight": (2, 3),
        "spline_weight": (2, 3, 8),
        "spline_scaler": (2, 3),
    }


@pytest.mark.parametrize("order", [0, 1, 2, 3])
def test_bases_equal_an_explicit_cox_de_boor_evaluation(order):
    layer = KANLinear(2, 1, grid_size=4, spline_order=order)
    x = torch.tensor([[-2.0, -0.95], [-0.3, 0.0], [0.41, 0.999], [1.3, 3.0]], dtype=torch.float64)
    grid = layer.grid.double()
    bases = b_spline_bases(x, grid, order)
    for n in range(x.shape[0]):
        for f in range(2):
            knots = grid[f].tolist()
            explicit = [_cox_de_boor(x[n, f].item(), knots, j, order) for j in range(len(knots) - 1 - order)]
            torch.testing.assert_close(bases[n, f], torch.tensor(explicit, dtype=torch.float64))


def test_bases_sum_to_one_inside_the_grid_and_vanish_outside():
    layer = KANLinear(1, 1)
    inside = torch.linspace(-1, 1 - 1e-6, 101)[:, None]
    torch.testing.assert_close(layer.b_splines(inside).sum(-1), torch.ones(101, 1))
    outside = torch.tensor([[-2.5], [2.5]])
    assert torch.all(layer.b_splines(outside) == 0)


def test_init_is_efficient_kans():
    torch.manual_seed(0)
    layer = KANLinear(64, 32)
    bound = 1 / math.sqrt(64)  # kaiming-uniform with a = sqrt(5): U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert layer.base_weight.abs().max() <= bound and layer.base_weight.abs().max() > 0.9 * bound
    assert layer.spline_scaler.abs().max() <= bound
    # the spline is a least-squares fit of noise of amplitude scale_noise / G / 2 = 0.01 at the grid points
    points = layer.grid.T[3:-3]  # (G + 1, in)
    values = torch.einsum("nig,oig->nio", layer.b_splines(points), layer.spline_weight)
    assert values.abs().max() <= 0.0101


def test_regularization_loss_follows_the_formula():
    torch.manual_seed(0)
    layer = KANLinear(5, 4)
    l1 = layer.spline_weight.abs().mean(-1)
    p = l1 / l1.sum()
    expected = 2.0 * l1.sum() + 0.5 * -(p * p.log()).sum()
    torch.testing.assert_close(layer.regularization_loss(2.0, 0.5), expected)


def test_forward_is_the_base_plus_the_spline_branch_and_trains():
    torch.manual_seed(0)
    layer = KANLinear(3, 2)
    x = torch.rand(7, 3) * 2 - 1
    spline = torch.einsum(
        "nig,oig->no", layer.b_splines(x), layer.spline_weight * layer.spline_scaler[..., None]
    )
    torch.testing.assert_close(layer(x), torch.nn.functional.silu(x) @ layer.base_weight.T + spline)
    layer(x).sum().backward()
    assert all(p.grad.abs().sum() > 0 for p in layer.parameters())


def test_update_grid_fits_the_data_and_keeps_the_output():
    torch.manual_seed(0)
    layer = KANLinear(3, 2)
    x = torch.randn(400, 3) * 0.5
    before = layer(x)
    layer.update_grid(x)
    interior = layer.grid[:, 3:-3]
    assert torch.allclose(interior[:, 0], x.min(0).values, atol=0.05)
    assert torch.allclose(interior[:, -1], x.max(0).values, atol=0.05)
    # a least-squares refit on the new knots: close, not exact
    after = layer(x)
    assert (after - before).abs().mean() < 1e-3 and (after - before).abs().max() < 1e-2


@pytest.mark.parametrize("stride, padding", [(1, 1), (2, 0), (1, 0)])
def test_the_kan_convolution_equals_a_per_patch_loop(stride, padding):
    torch.manual_seed(0)
    conv = KANConv2d(2, 3, kernel_size=3, stride=stride, padding=padding)
    x = torch.randn(2, 2, 7, 6)
    out = conv(x)
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    for b in range(2):
        for i in range(out.shape[2]):
            for j in range(out.shape[3]):
                patch = padded[b, :, i * stride : i * stride + 3, j * stride : j * stride + 3].reshape(-1)
                torch.testing.assert_close(out[b, :, i, j], conv.kan(patch[None])[0])
