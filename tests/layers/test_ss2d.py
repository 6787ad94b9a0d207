"""SS2D (``specmamba.layers.ss2d``): official parameter layout, initialisation, and the math.

The math is checked against an independent re-derivation written here from REFERENCE.md section 2:
explicit position lists for the four scan directions, a step-by-step selective scan, and an explicit
scatter-add for the cross-merge, all from the layer's raw parameters.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from specmamba.errors import BackendUnavailableError, ConfigError
from specmamba.layers import SS2D
from specmamba.ops import SS2D as SS2D_DIRECTIONS
from triton_interpreter import assert_triton_matches_ref, needs_triton

KEYS_FILE = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference" / "vmunet_official_keys.json"


def _orders(h: int, w: int) -> list[list[tuple[int, int]]]:
    """Positions visited at each step: row-major, column-major, and both reversed."""
    row = [(i, j) for i in range(h) for j in range(w)]
    col = [(i, j) for j in range(w) for i in range(h)]
    return [row, col, row[::-1], col[::-1]]


def _naive_scan(u, delta, A, B, C, D, bias):
    """S6 step by step; u/delta (b, k*d, l), B/C (b, k, n, l), one group per direction."""
    b, kd, length = u.shape
    k = B.shape[1]
    Bx = B.repeat_interleave(kd // k, dim=1)  # (b, k*d, n, l): channel i uses group i // d
    Cx = C.repeat_interleave(kd // k, dim=1)
    dt = F.softplus(delta + bias[:, None])
    state = u.new_zeros(b, kd, A.shape[1])
    ys = []
    for t in range(length):
        state = torch.exp(dt[:, :, t, None] * A) * state + (dt[:, :, t] * u[:, :, t])[..., None] * Bx[..., t]
        ys.append((state * Cx[..., t]).sum(-1))
    return torch.stack(ys, dim=-1) + u * D[:, None]


def _official_ss2d(m: SS2D, x: torch.Tensor) -> torch.Tensor:
    """SS2D from its raw parameters, the long way round."""
    b, h, w, _ = x.shape
    d, n, r, k = m.d_inner, m.d_state, m.dt_rank, 4
    xz = F.linear(x, m.in_proj.weight)
    u, z = xz[..., :d], xz[..., d:]
    u = F.silu(F.conv2d(u.permute(0, 3, 1, 2), m.conv2d.weight, m.conv2d.bias, padding=1, groups=d))
    orders = _orders(h, w)
    seqs = torch.stack(
        [torch.stack([u[:, :, i, j] for (i, j) in order], dim=-1) for order in orders], dim=1
    )  # (b, k, d, l)
    x_dbl = torch.einsum("bkdl,kcd->bkcl", seqs, m.x_proj_weight)
    dts, Bs, Cs = x_dbl.split([r, n, n], dim=2)
    dts = torch.einsum("bkrl,kdr->bkdl", dts, m.dt_projs_weight)
    ys = _naive_scan(
        seqs.reshape(b, k * d, h * w),
        dts.reshape(b, k * d, h * w),
        -torch.exp(m.A_logs),
        Bs,
        Cs,
        m.Ds,
        m.dt_projs_bias.reshape(-1),
    ).view(b, k, d, h * w)
    merged = u.new_zeros(b, d, h, w)
    for kk, order in enumerate(orders):
        for t, (i, j) in enumerate(order):
            merged[:, :, i, j] += ys[:, kk, :, t]
    y = F.layer_norm(merged.permute(0, 2, 3, 1), (d,), m.out_norm.weight, m.out_norm.bias) * F.silu(z)
    return F.linear(y, m.out_proj.weight)


def _tiny(backend: str = "ref", dtype=torch.float64, seed: int = 0, **kw) -> SS2D:
    torch.manual_seed(seed)
    m = SS2D(16, d_state=4, scan_backend=backend, **kw).to(dtype)
    with torch.no_grad():  # move the raw parameters off their structured init so that every term matters
        for p in (m.x_proj_weight, m.dt_projs_weight, m.dt_projs_bias, m.A_logs, m.Ds):
            p.add_(0.1 * torch.randn_like(p))
        m.out_norm.weight.add_(0.1 * torch.randn_like(m.out_norm.weight))
    return m


# --------------------------------------------------------------------------------------------------
# layout and initialisation


def test_parameter_layout_matches_official_block():
    keys = json.loads(KEYS_FILE.read_text())["keys"] if KEYS_FILE.is_file() else None
    if keys is None:
        pytest.skip("reference key file not available")
    prefix = "vmunet.layers.0.blocks.0.self_attention."
    official = {k[len(prefix) :]: tuple(v) for k, v in keys.items() if k.startswith(prefix)}
    ours = {k: tuple(v.shape) for k, v in SS2D(96).state_dict().items()}
    assert ours == official
    assert official["x_proj_weight"] == (4, 6 + 2 * 16, 192) and official["A_logs"] == (768, 16)


def test_initialisation():
    torch.manual_seed(0)
    m = SS2D(96)
    d, n, r = 192, 16, 6
    assert m.d_inner == d and m.dt_rank == r and m.in_proj.bias is None and m.out_proj.bias is None
    assert torch.allclose(m.A_logs, torch.log(torch.arange(1, n + 1.0)).expand(4 * d, n))
    assert torch.equal(m.Ds, torch.ones(4 * d))
    assert m.A_logs._no_weight_decay and m.Ds._no_weight_decay
    dt = F.softplus(m.dt_projs_bias).flatten()
    assert dt.min() >= 1e-4 * 0.999 and dt.max() <= 0.1 * 1.001
    log_dt = dt.log()  # log-uniform in [log 1e-3, log 1e-1]: mean at log 1e-2, sd (log 100) / sqrt 12
    assert abs(log_dt.mean().item() - math.log(1e-2)) < 0.15
    assert abs(log_dt.std().item() - math.log(100) / math.sqrt(12)) < 0.15
    bound = r**-0.5
    assert m.dt_projs_weight.abs().max() <= bound and m.dt_projs_weight.abs().max() > 0.95 * bound
    xb = 1 / math.sqrt(d)
    assert m.x_proj_weight.abs().max() <= xb and m.x_proj_weight.abs().max() > 0.95 * xb
    for lin in (m.in_proj, m.out_proj):
        assert abs(lin.weight.std().item() - 0.02) < 0.002 and abs(lin.weight.mean().item()) < 0.002
    assert m.conv2d.bias is not None and m.conv2d.groups == d and m.conv2d.kernel_size == (3, 3)


def test_to_step_order_of_the_ss2d_directions():
    h, w = 3, 4
    t = torch.arange(2 * 4 * 1 * h * w, dtype=torch.float32).view(2, 4, 1, h * w)
    out = SS2D_DIRECTIONS.to_step_order(t, h, w)
    for k, order in enumerate(_orders(h, w)):
        expected = torch.stack([t[:, k, :, i * w + j] for (i, j) in order], dim=-1)
        assert torch.equal(out[:, k], expected)


# --------------------------------------------------------------------------------------------------
# math


@pytest.mark.parametrize("backend", ["ref", "cpu"])
@pytest.mark.parametrize("hw", [(3, 5), (4, 4)])
def test_matches_independent_derivation(backend, hw):
    m = _tiny(backend)
    x = torch.randn(2, *hw, 16, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(m(x), _official_ss2d(m, x), rtol=1e-9, atol=1e-11)


def test_float32_matches_derivation():
    m = _tiny("cpu", torch.float32)
    x = torch.randn(1, 4, 6, 16)
    with torch.no_grad():
        torch.testing.assert_close(m(x), _official_ss2d(m, x), rtol=1e-4, atol=1e-5)


def test_ref_and_cpu_backends_agree_on_outputs_and_gradients():
    ref = _tiny("ref", torch.float32)
    cpu = _tiny("cpu", torch.float32)
    cpu.load_state_dict(ref.state_dict())
    x = torch.randn(2, 4, 6, 16)
    xr, xc = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    yr, yc = ref(xr), cpu(xc)
    torch.testing.assert_close(yc, yr, rtol=6e-4, atol=2e-5)
    g = torch.randn_like(yr)
    yr.backward(g)
    yc.backward(g)
    torch.testing.assert_close(xc.grad, xr.grad, rtol=1e-3, atol=1e-5)
    for (name, pr), pc in zip(ref.named_parameters(), cpu.parameters()):
        assert pr.grad is not None and pc.grad is not None, name
        torch.testing.assert_close(pc.grad, pr.grad, rtol=2e-3, atol=1e-5, msg=name)


def test_every_parameter_gets_a_gradient():
    m = _tiny("cpu", torch.float32)
    m(torch.randn(2, 4, 4, 16)).square().sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# --------------------------------------------------------------------------------------------------
# backend selection


def test_bad_backend_names_the_choices():
    choices = "auto, ref, chunked, cpu, triton, mamba_ssm"
    with pytest.raises(ConfigError, match=f"scan_backend must be one of {choices}"):
        SS2D(16, scan_backend="cuda")


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"), reason="triton interpreter on")
def test_unavailable_backend_raises_at_call():
    m = SS2D(16, d_state=4, scan_backend="triton")
    with pytest.raises(BackendUnavailableError):
        m(torch.randn(1, 2, 2, 16))


@needs_triton
def test_triton_backend_through_the_interpreter():
    """The GPU path of the layer (fused Triton SS2D entry), run by Triton's CPU interpreter."""
    assert_triton_matches_ref("specmamba.layers", "SS2D", "16, d_state=4", (2, 4, 6, 16))
