"""Vim's bidirectional Mamba mixer (``specmamba.layers.bimamba``): the official parameter layout, the
math against an independent step-by-step derivation (``tests/vim_oracle.py``, from REFERENCE.md
section 5), the backward branch's presence, and agreement of the scan backends."""

from __future__ import annotations

import pytest
import torch

import vim_oracle
from specmamba.layers.bimamba import BiMambaMixer
from triton_interpreter import assert_triton_matches_ref, needs_triton

#: The official parameter names of one mixer (REFERENCE.md section 5's key list).
OFFICIAL = {
    "in_proj.weight",
    "conv1d.weight",
    "conv1d.bias",
    "x_proj.weight",
    "dt_proj.weight",
    "dt_proj.bias",
    "A_log",
    "D",
    "conv1d_b.weight",
    "conv1d_b.bias",
    "x_proj_b.weight",
    "dt_proj_b.weight",
    "dt_proj_b.bias",
    "A_b_log",
    "D_b",
    "out_proj.weight",
}


def _perturbed(backend: str = "ref", dtype=torch.float64, dim: int = 16) -> BiMambaMixer:
    """A mixer with its parameters moved off their init (at init D = 1 and both directions share A, which
    would hide a mix-up of the directions)."""
    torch.manual_seed(0)
    m = BiMambaMixer(dim, d_state=4, scan_backend=backend).to(dtype)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return m


def test_official_names_shapes_and_count():
    m = BiMambaMixer(192, n_layers=24)
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert set(shapes) == OFFICIAL
    e, r, n = 384, 12, 16
    assert shapes["in_proj.weight"] == (2 * e, 192) and shapes["conv1d_b.weight"] == (e, 1, 4)
    assert shapes["x_proj_b.weight"] == (r + 2 * n, e) and shapes["dt_proj_b.weight"] == (e, r)
    assert shapes["A_b_log"] == (e, n) and shapes["out_proj.weight"] == (192, e)
    # 282,048 per Vim-Ti block with its RMSNorm (192): 24 of them are 6,769,152 of Vim-Ti's 7,148,008.
    assert sum(p.numel() for p in m.parameters()) + 192 == 282_048


def test_init_is_the_same_for_both_directions():
    m = BiMambaMixer(64, n_layers=4)
    a = torch.log(torch.arange(1, 17, dtype=torch.float32)).expand(128, 16)
    assert torch.equal(m.A_log, a) and torch.equal(m.A_b_log, a)
    assert torch.equal(m.D, torch.ones(128)) and torch.equal(m.D_b, torch.ones(128))
    for dt_proj in (m.dt_proj, m.dt_proj_b):
        bound = 4**-0.5  # R = ceil(64 / 16) = 4
        assert dt_proj.weight.abs().max() <= bound
        dt = torch.nn.functional.softplus(dt_proj.bias)
        assert dt.min() >= 1e-3 * (1 - 1e-5) and dt.max() <= 0.1 * (1 + 1e-5)  # log-uniform in [1e-3, 1e-1]
    # out_proj: kaiming-uniform(a = sqrt 5) = U(+-1/sqrt(fan_in)), divided by sqrt(n_layers) = 2
    assert m.out_proj.weight.abs().max() <= 128**-0.5 / 2


@pytest.mark.parametrize("length", [1, 3, 9])
def test_matches_the_step_by_step_equations_in_float64(length):
    m = _perturbed()
    h = torch.randn(2, length, 16, dtype=torch.float64)
    sd = {k: v.detach() for k, v in m.state_dict().items()}
    with torch.no_grad():
        torch.testing.assert_close(m(h), vim_oracle.mixer(h, sd, ""), rtol=1e-10, atol=1e-12)


def test_the_backward_branch_is_live():
    """Upstream's CPU path ignores every _b weight; here changing them changes the output, and a token
    sees the tokens after it (the backward scan), not only those before."""
    m = _perturbed("cpu", torch.float32)
    h = torch.randn(1, 8, 16)
    with torch.no_grad():
        before = m(h)
        m.x_proj_b.weight.zero_()
        m.conv1d_b.weight.zero_()
        assert (m(h) - before).abs().max() > 1e-3
    m = _perturbed("cpu", torch.float32)
    h = torch.randn(1, 8, 16, requires_grad=True)
    m(h)[0, 0].sum().backward()  # the first token's output
    assert h.grad[0, 1:].abs().sum() > 0  # depends on later tokens


@pytest.mark.parametrize("backend", ["cpu"])
def test_backends_agree_with_ref_on_outputs_and_gradients(backend):
    ref = _perturbed("ref", torch.float32)
    other = _perturbed(backend, torch.float32)
    h = torch.randn(2, 12, 16)
    hr, ho = h.clone().requires_grad_(True), h.clone().requires_grad_(True)
    yr, yo = ref(hr), other(ho)
    torch.testing.assert_close(yo, yr, rtol=6e-4, atol=2e-5)  # the scan's fp32 tolerance (REFERENCE 1)
    g = torch.randn_like(yr)
    yr.backward(g)
    yo.backward(g)
    torch.testing.assert_close(ho.grad, hr.grad, rtol=1e-3, atol=1e-5)
    for (name, pr), po in zip(ref.named_parameters(), other.parameters()):
        torch.testing.assert_close(po.grad, pr.grad, rtol=2e-3, atol=1e-5, msg=name)


def test_every_parameter_gets_a_gradient():
    m = _perturbed("cpu", torch.float32)
    m(torch.randn(2, 6, 16)).square().sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@needs_triton
def test_triton_backend_through_the_interpreter():
    assert_triton_matches_ref("specmamba.layers.bimamba", "BiMambaMixer", "16, d_state=4", (2, 10, 16))
