"""Direction sets (specmamba.ops.directions): their index, scan/merge as an adjoint pair, the order of
per-position values, and the fused CPU kernels against the composition for every kind of set."""

from __future__ import annotations

import pytest
import torch

from specmamba.errors import ConfigError
from specmamba.ops import (
    BIDIRECTIONAL,
    SS2D,
    DirectionSet,
    Walk,
    cross_merge,
    cross_scan,
    ss2d_selective_scan,
)

_GRID = (3, 4)
_ZIGZAG = torch.tensor([[0, 1, 2, 3, 7, 6, 5, 4, 8, 9, 10, 11], [11, 10, 9, 8, 4, 5, 6, 7, 3, 2, 1, 0]])
SETS = {
    "ss2d": SS2D,
    "bidirectional": BIDIRECTIONAL,
    "columns_only": DirectionSet("columns", [Walk(transpose=True), Walk(transpose=True, reverse=True)]),
    "zigzag": DirectionSet.from_permutations("zigzag", torch.cat([_ZIGZAG, torch.randperm(12)[None]]), _GRID),
}


def test_the_published_orders():
    """SS2D visits row-major, column-major and both reversed (REFERENCE.md 2); Vim's pair a sequence
    forwards and backwards (REFERENCE.md 5)."""
    assert SS2D.index(2, 3).tolist() == [
        [0, 1, 2, 3, 4, 5],
        [0, 3, 1, 4, 2, 5],
        [5, 4, 3, 2, 1, 0],
        [5, 2, 4, 1, 3, 0],
    ]
    assert BIDIRECTIONAL.index(1, 4).tolist() == [[0, 1, 2, 3], [3, 2, 1, 0]]


@pytest.mark.parametrize("name", list(SETS))
def test_scan_follows_the_index_and_merge_is_its_adjoint(name):
    directions = SETS[name]
    h, w = (1, 12) if name == "bidirectional" else _GRID
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, h, w, generator=gen, dtype=torch.float64)
    ys = torch.randn(2, directions.k, 3, h * w, generator=gen, dtype=torch.float64)
    xs = cross_scan(x, directions)
    index = directions.index(h, w)
    assert torch.equal(xs, x.reshape(2, 3, h * w)[:, :, index].transpose(1, 2))
    lhs = (xs * ys).sum()
    rhs = (x.reshape(2, 3, h * w) * cross_merge(ys, h, w, directions)).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda t: cross_scan(t, directions), (x.requires_grad_(),))
    # per-position values (computed once on the row-major map) reordered into each direction's steps
    t = torch.randn(2, directions.k, 5, h * w, generator=gen, dtype=torch.float64)
    expected = torch.stack([t[:, k, :, index[k]] for k in range(directions.k)], dim=1)
    assert torch.equal(directions.to_step_order(t, h, w), expected)


@pytest.mark.parametrize("name", ["bidirectional", "columns_only", "zigzag"])
def test_fused_cpu_equals_the_composition_for_every_kind_of_set(name, directional_case, directional_run):
    pytest.importorskip("numba")
    directions = SETS[name]
    h, w = (1, 70) if name == "bidirectional" else _GRID  # 70 steps: more than one CPU chunk
    inputs = directional_case(directions.k, 2, 20, h, w, 4, seed=h + w)
    want, got = directional_run(inputs, "ref", directions), directional_run(inputs, "cpu", directions)
    for key, a, r in zip(["y", *inputs], got, want):
        # REFERENCE.md section 1 fp32 tolerances, relative to the largest value
        torch.testing.assert_close(a, r, rtol=6e-4, atol=2e-3 * max(1.0, r.abs().max().item()), msg=key)


def test_a_single_walk_runs_as_the_composition(directional_case):
    backwards = DirectionSet("backwards", [Walk(reverse=True)])
    inputs = directional_case(1, 1, 4, 2, 5, 4)
    y_cpu = ss2d_selective_scan(**inputs, backend="cpu", directions=backwards)
    torch.testing.assert_close(y_cpu, ss2d_selective_scan(**inputs, backend="ref", directions=backwards))


def test_bad_sets_are_refused():
    with pytest.raises(ConfigError, match="at least one direction"):
        DirectionSet("none", [])
    with pytest.raises(ConfigError, match="each row a permutation"):
        DirectionSet.from_permutations("bad", torch.tensor([[0, 0, 1, 2]]), (2, 2))
    with pytest.raises(ConfigError, match="defined on a 3x4 grid"):
        cross_scan(torch.zeros(1, 1, 4, 3), SETS["zigzag"])
    with pytest.raises(ConfigError, match=r"ys must be \(b, 2, d, h\*w\)"):
        cross_merge(torch.zeros(1, 4, 1, 6), 2, 3, BIDIRECTIONAL)
