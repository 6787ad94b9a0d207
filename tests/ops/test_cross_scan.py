"""cross_scan / cross_merge (VM-UNet order, adjoint pair) and the fused SS2D entry vs the composition."""

from __future__ import annotations

import pytest
import torch

from specmamba.errors import ConfigError
from specmamba.ops import cross_merge, cross_scan, direction_index, selective_scan, ss2d_selective_scan


def test_cross_scan_order_on_a_labelled_map():
    x = torch.arange(6.0).view(1, 1, 2, 3)  # [[0, 1, 2], [3, 4, 5]]
    xs = cross_scan(x)[0, :, 0]
    assert xs.tolist() == [
        [0, 1, 2, 3, 4, 5],  # row-major
        [0, 3, 1, 4, 2, 5],  # column-major
        [5, 4, 3, 2, 1, 0],  # reversed row-major
        [5, 2, 4, 1, 3, 0],  # reversed column-major
    ]
    assert torch.equal(direction_index(2, 3).float(), xs)


@pytest.mark.parametrize(("h", "w"), [(3, 5), (5, 3), (1, 7), (4, 4)])
def test_cross_merge_is_the_adjoint_of_cross_scan(h, w):
    gen = torch.Generator().manual_seed(h * 10 + w)
    x = torch.randn(2, 3, h, w, generator=gen, dtype=torch.float64)
    ys = torch.randn(2, 4, 3, h * w, generator=gen, dtype=torch.float64)
    lhs = (cross_scan(x) * ys).sum()
    rhs = (x.reshape(2, 3, h * w) * cross_merge(ys, h, w)).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)
    # merging a cross-scanned map counts every pixel once per direction
    torch.testing.assert_close(cross_merge(cross_scan(x), h, w), 4 * x.reshape(2, 3, h * w))


def test_cross_pair_gradcheck():
    x = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    ys = torch.randn(1, 4, 2, 12, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(cross_scan, (x,))
    assert torch.autograd.gradcheck(lambda y: cross_merge(y, 3, 4), (ys,))


def test_cross_shapes_are_checked():
    with pytest.raises(ConfigError, match="cross_scan"):
        cross_scan(torch.zeros(2, 3, 4))
    with pytest.raises(ConfigError, match="cross_merge"):
        cross_merge(torch.zeros(1, 4, 2, 11), 3, 4)


@pytest.mark.parametrize(("b", "d", "h", "w", "n"), [(2, 4, 3, 5, 4), (1, 20, 6, 7, 8), (1, 2, 1, 1, 4)])
def test_fused_ss2d_cpu_equals_composition(b, d, h, w, n, directional_case, directional_run):
    pytest.importorskip("numba")
    inputs = directional_case(4, b, d, h, w, n)
    want = directional_run(inputs, "ref")  # torch cross_scan + ref scan + torch cross_merge
    got = directional_run(inputs, "cpu")  # fused numba kernels
    names = ["y", *inputs]
    for name, a, r in zip(names, got, want):
        torch.testing.assert_close(a, r, rtol=6e-4, atol=2e-3 * max(1.0, r.abs().max().item()), msg=name)


def test_fused_ss2d_accepts_three_dim_delta_and_checks_shapes(directional_case):
    inputs = directional_case(4, 1, 4, 3, 3, 4)
    b, k, d, length = inputs["delta"].shape
    y4 = ss2d_selective_scan(**inputs, backend="cpu")
    y3 = ss2d_selective_scan(**{**inputs, "delta": inputs["delta"].reshape(b, k * d, length)}, backend="cpu")
    assert torch.equal(y3, y4) and y4.shape == (1, 4, 9)
    with pytest.raises(ConfigError, match="delta"):
        ss2d_selective_scan(**{**inputs, "delta": inputs["delta"][..., :-1]}, backend="cpu")
    with pytest.raises(ConfigError, match="multiple of 4"):
        ss2d_selective_scan(**{**inputs, "B": inputs["B"][:, :2], "C": inputs["C"][:, :2]}, backend="cpu")
    with pytest.raises(ConfigError, match="x must be"):
        ss2d_selective_scan(**{**inputs, "x": inputs["x"][0]}, backend="cpu")


def test_fused_cpu_is_bitwise_the_composition_with_the_cpu_scan(directional_case, directional_run):
    """The fused CPU path only changes where the inputs are read from: same math, same merge order."""
    pytest.importorskip("numba")
    inputs = directional_case(4, 2, 20, 6, 5, 8, seed=3)
    fused = directional_run(inputs, "cpu")
    leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items()}
    b, d, h, w = inputs["x"].shape
    xs = cross_scan(leaves["x"]).reshape(b, 4 * d, h * w)
    rest = {k: v for k, v in leaves.items() if k not in ("x", "delta")}
    delta = leaves["delta"].reshape(b, 4 * d, h * w)
    ys = selective_scan(xs, delta, **rest, delta_softplus=True, backend="cpu")
    y = cross_merge(ys.view(b, 4, d, h * w), h, w)
    y.backward(torch.randn(y.shape, generator=torch.Generator().manual_seed(9)))
    for name, a, r in zip(["y", *inputs], fused, [y.detach()] + [leaves[k].grad for k in inputs]):
        assert torch.equal(a, r), name
