"""Fused Triton selective scan (Mamba-1 "S6"; Gu & Dao 2023, arXiv:2312.00752) for CUDA tensors.

The ``triton`` backend of :func:`specmamba.ops.selective_scan` and of the fused SS2D entry. Same math
as ``scan_ref.py`` (REFERENCE.md section 1), same memory rule as the CPU kernels: no (b, d, n, l)
tensor is ever written to memory.

Shape letters: b batch, d scan channels, du channels of u / of the output (d = k * du; k = 1 for a
plain scan, 4 for SS2D), l length, n state size (NP: n padded to a power of two), g groups of B/C,
BD channels per program (BLOCK_D), BL steps per tile (BLOCK_L).

Kernels:

* forward: one program per (batch, block of BD channels). It walks l in tiles of BL steps; a tile's
  state (BD, NP, BL) lives in registers and is computed with one ``tl.associative_scan`` of the
  linear recurrence x_t = a_t x_{t-1} + b_t (combine (a1, b1), (a2, b2) -> (a1 a2, a2 b1 + b2)),
  continued from the previous tile's last state. With ``save_states`` the state at every tile start
  is stored: b * d * n * l / BL values.
* backward: the same programs walk the tiles in reverse. Each tile recomputes its states from the
  saved tile-start state, then runs the adjoint recurrence h_t = dy_t C_t + exp(delta_{t+1} A) h_{t+1}
  as a reverse associative scan carried across tiles, and forms every gradient in registers
  (dA_t x_{t-1} is recovered as x_t - delta_t B_t u_t, so no shifted state is needed).
* determinism: every program writes only its own outputs. dB/dC are reduced over the BD channels of a
  program in registers, written to a per-block partial (b, d / BD, n, l) (this is the one buffer that
  is n / BD times the size of u), and summed over the blocks of a group in index order by torch;
  dA/dD/delta_bias partials per (batch, channel) are summed over the batch in order. No atomics.
* fused SS2D (k = 4): the program of a block of map channels loops over the four directions. Direction
  k at step t reads u from x at the row-major position computed by index arithmetic (row-major,
  column-major, both reversed), and adds its output into the merged (b, du, h*w) output at that same
  position; a ``debug_barrier`` between directions orders these read-modify-writes, which only this
  program touches, so the merge is deterministic and the four direction copies are never stored.
  The backward gathers dout the same way and accumulates dx likewise.

Block sizes (:func:`launch_config`): BL = 32, 8 warps, BD = the largest power of two dividing the
channels of a group with BD * NP <= 128 (at most 16), i.e. 16 state values per thread. They were chosen
from the kernels' sm_90 register use, compiled ahead of time without a GPU: at d_state 16 the previous
BD = 16 with 4 warps needed 255 registers and spilled (976-984 bytes per thread in the backward), while
BD = 8 with 8 warps needs 121 (forward) and 237 (backward) and spills nothing. tests/ops compiles
every kernel this way and checks for spills; ``specmamba bench scan --device cuda`` measures speed.

Testing without a GPU: ``triton.jit`` picks Triton's CPU interpreter at decoration time when the
environment variable ``TRITON_INTERPRET=1`` is set (triton 3.x), so this module must be imported for the
first time with that variable set, in a fresh process (tests/ops run it in a subprocess); the kernels
then run on CPU tensors, slowly. ``triton`` is imported only when this backend is used.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..errors import ConfigError
from .scan_grads import assemble_scan_grads, ordered_sum

__all__ = ["scan_triton", "ss2d_scan_triton"]

_BLOCK_L = 32  # steps per tile; the backward must use the forward's tiles (states are saved per tile)
_NUM_WARPS = 8
_STATES_PER_PROGRAM = 128  # BD * NP: with BL = 32 over 8 warps, 16 state values per thread


@triton.jit
def _combine(a1, b1, a2, b2):
    # (a1, b1) then (a2, b2): x -> a2 (a1 x + b1) + b2
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _softplus(x):
    return tl.maximum(x, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(x)))


@triton.jit
def _src_pos(t, k, L, HH, WW, K: tl.constexpr):
    """Row-major map position visited by direction k at step t (identity for a plain scan)."""
    if K == 1:
        return t
    tt = tl.where(k >= 2, L - 1 - t, t)  # directions 2, 3 walk their sequence backwards
    col = (tt % HH) * WW + tt // HH  # column-major walk: step j*h + i visits (i, j)
    return tl.where(k % 2 == 1, col, tt)


@triton.jit
def _fwd_kernel(
    u_ptr,
    delta_ptr,
    A_ptr,
    B_ptr,
    C_ptr,
    D_ptr,
    z_ptr,
    bias_ptr,
    out_ptr,
    last_ptr,
    states_ptr,
    DU,
    L,
    N,
    G,
    DG,
    NCHUNK,
    HH,
    WW,
    NP: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_L: tl.constexpr,
    K: tl.constexpr,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    SAVE: tl.constexpr,
):
    pid_b = tl.program_id(0)
    c0 = tl.program_id(1) * BLOCK_D
    d_total = K * DU
    oc = c0 + tl.arange(0, BLOCK_D)  # (BD,) map / u channels
    mc = oc < DU
    on = tl.arange(0, NP)
    mn = on < N
    ol = tl.arange(0, BLOCK_L)
    for k in range(K):
        oi = k * DU + oc  # (BD,) scan channels
        grp = (k * DU + c0) // DG  # the whole block lies in one group
        A = tl.load(A_ptr + oi[:, None] * N + on[None, :], mask=mc[:, None] & mn[None, :], other=0.0).to(
            tl.float32
        )
        if HAS_D:
            Dv = tl.load(D_ptr + oi, mask=mc, other=0.0).to(tl.float32)
        if HAS_BIAS:
            bv = tl.load(bias_ptr + oi, mask=mc, other=0.0).to(tl.float32)
        x = tl.zeros((BLOCK_D, NP), dtype=tl.float32)
        for ci in range(0, NCHUNK):
            t = ci * BLOCK_L + ol  # (BL,)
            mt = t < L
            m2 = mc[:, None] & mt[None, :]
            if SAVE:
                sp = states_ptr + ((pid_b * d_total + oi[:, None]) * NCHUNK + ci) * N + on[None, :]
                tl.store(sp, x, mask=mc[:, None] & mn[None, :])
            pos = _src_pos(t, k, L, HH, WW, K)
            u = tl.load(u_ptr + (pid_b * DU + oc[:, None]) * L + pos[None, :], mask=m2, other=0.0).to(
                tl.float32
            )
            dt = tl.load(delta_ptr + (pid_b * d_total + oi[:, None]) * L + t[None, :], mask=m2, other=0.0)
            dt = dt.to(tl.float32)
            if HAS_BIAS:
                dt = dt + bv[:, None]
            if SOFTPLUS:
                dt = _softplus(dt)
            dt = tl.where(m2, dt, 0.0)
            bc = ((pid_b * G + grp) * N + on[:, None]) * L + t[None, :]  # (NP, BL)
            mbc = mn[:, None] & mt[None, :]
            Bt = tl.load(B_ptr + bc, mask=mbc, other=0.0).to(tl.float32)
            Ct = tl.load(C_ptr + bc, mask=mbc, other=0.0).to(tl.float32)
            a = tl.exp(dt[:, None, :] * A[:, :, None])  # (BD, NP, BL); padded steps: exp(0) = 1
            bx = (dt * u)[:, None, :] * Bt[None, :, :]
            acum, xloc = tl.associative_scan((a, bx), axis=2, combine_fn=_combine)
            xs = acum * x[:, :, None] + xloc  # states of the tile
            y = tl.sum(xs * Ct[None, :, :], axis=1)  # (BD, BL)
            if HAS_D:
                y = y + u * Dv[:, None]
            if HAS_Z:
                zz = tl.load(z_ptr + (pid_b * d_total + oi[:, None]) * L + t[None, :], mask=m2, other=0.0)
                zz = zz.to(tl.float32)
                y = y * zz * tl.sigmoid(zz)
            op = out_ptr + (pid_b * DU + oc[:, None]) * L + pos[None, :]
            if K == 1:
                tl.store(op, y, mask=m2)
            else:
                tl.store(op, tl.load(op, mask=m2, other=0.0) + y, mask=m2)
            x = tl.sum(tl.where(ol[None, None, :] == BLOCK_L - 1, xs, 0.0), axis=2)  # padded steps carry x
        tl.store(
            last_ptr + (pid_b * d_total + oi[:, None]) * N + on[None, :], x, mask=mc[:, None] & mn[None, :]
        )
        if K > 1:
            tl.debug_barrier()  # the next direction reads what this one added


@triton.jit
def _bwd_kernel(
    u_ptr,
    delta_ptr,
    A_ptr,
    B_ptr,
    C_ptr,
    D_ptr,
    z_ptr,
    bias_ptr,
    dout_ptr,
    dlast_ptr,
    states_ptr,
    du_ptr,
    ddelta_ptr,
    dA_ptr,
    dB_ptr,
    dC_ptr,
    dD_ptr,
    dbias_ptr,
    dz_ptr,
    DU,
    L,
    N,
    G,
    DG,
    NCHUNK,
    HH,
    WW,
    NP: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_L: tl.constexpr,
    K: tl.constexpr,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
):
    pid_b = tl.program_id(0)
    c0 = tl.program_id(1) * BLOCK_D
    d_total = K * DU
    nblk = d_total // BLOCK_D
    oc = c0 + tl.arange(0, BLOCK_D)
    mc = oc < DU
    on = tl.arange(0, NP)
    mn = on < N
    mdn = mc[:, None] & mn[None, :]
    ol = tl.arange(0, BLOCK_L)
    for k in range(K):
        oi = k * DU + oc
        grp = (k * DU + c0) // DG
        blk = (k * DU + c0) // BLOCK_D  # index of this block among all scan channels
        A = tl.load(A_ptr + oi[:, None] * N + on[None, :], mask=mdn, other=0.0).to(tl.float32)
        if HAS_D:
            Dv = tl.load(D_ptr + oi, mask=mc, other=0.0).to(tl.float32)
        if HAS_BIAS:
            bv = tl.load(bias_ptr + oi, mask=mc, other=0.0).to(tl.float32)
        h = tl.load(dlast_ptr + (pid_b * d_total + oi[:, None]) * N + on[None, :], mask=mdn, other=0.0)
        h = h.to(tl.float32)  # adjoint of the state after the tile, carried backwards
        gA = tl.zeros((BLOCK_D, NP), dtype=tl.float32)
        gD = tl.zeros((BLOCK_D,), dtype=tl.float32)
        gbias = tl.zeros((BLOCK_D,), dtype=tl.float32)
        for cr in range(0, NCHUNK):
            ci = NCHUNK - 1 - cr
            t = ci * BLOCK_L + ol
            mt = t < L
            m2 = mc[:, None] & mt[None, :]
            x0 = tl.load(
                states_ptr + ((pid_b * d_total + oi[:, None]) * NCHUNK + ci) * N + on[None, :],
                mask=mdn,
                other=0.0,
            )
            pos = _src_pos(t, k, L, HH, WW, K)
            u = tl.load(u_ptr + (pid_b * DU + oc[:, None]) * L + pos[None, :], mask=m2, other=0.0).to(
                tl.float32
            )
            go = tl.load(dout_ptr + (pid_b * DU + oc[:, None]) * L + pos[None, :], mask=m2, other=0.0)
            go = go.to(tl.float32)
            row = (pid_b * d_total + oi[:, None]) * L
            dr = tl.load(delta_ptr + row + t[None, :], mask=m2, other=0.0).to(tl.float32)
            tn = t + 1  # decay of the next step, which scales h_{t+1} into h_t
            mnext = mc[:, None] & (tn < L)[None, :]
            drn = tl.load(delta_ptr + row + tn[None, :], mask=mnext, other=0.0).to(tl.float32)
            if HAS_BIAS:
                dr = dr + bv[:, None]
                drn = drn + bv[:, None]
            if SOFTPLUS:
                dt = _softplus(dr)
                dtn = _softplus(drn)
            else:
                dt = dr
                dtn = drn
            dt = tl.where(m2, dt, 0.0)
            bc = ((pid_b * G + grp) * N + on[:, None]) * L + t[None, :]
            mbc = mn[:, None] & mt[None, :]
            Bt = tl.load(B_ptr + bc, mask=mbc, other=0.0).to(tl.float32)
            Ct = tl.load(C_ptr + bc, mask=mbc, other=0.0).to(tl.float32)
            # recompute the tile's states from the saved tile-start state
            a = tl.exp(dt[:, None, :] * A[:, :, None])
            bx = (dt * u)[:, None, :] * Bt[None, :, :]
            acum, xloc = tl.associative_scan((a, bx), axis=2, combine_fn=_combine)
            xs = acum * x0[:, :, None] + xloc
            if HAS_Z:
                zz = tl.load(z_ptr + row + t[None, :], mask=m2, other=0.0).to(tl.float32)
                y = tl.sum(xs * Ct[None, :, :], axis=1)
                if HAS_D:
                    y = y + u * Dv[:, None]
                sz = tl.sigmoid(zz)
                tl.store(dz_ptr + row + t[None, :], go * y * sz * (1.0 + zz * (1.0 - sz)), mask=m2)
                dy = go * zz * sz
            else:
                dy = go
            # adjoint: h_t = a_{t+1} h_{t+1} + dy_t C_t, a reverse scan continued from the later tile
            an = tl.where(mnext[:, None, :], tl.exp(dtn[:, None, :] * A[:, :, None]), 1.0)
            v = dy[:, None, :] * Ct[None, :, :]
            hcum, hloc = tl.associative_scan((an, v), axis=2, combine_fn=_combine, reverse=True)
            hs = hcum * h[:, :, None] + hloc  # (BD, NP, BL)
            hx = hs * (xs - bx)  # h_t * a_t * x_{t-1}
            hb = hs * Bt[None, :, :]
            ddt = tl.sum(hb * u[:, None, :] + hx * A[:, :, None], axis=1)
            du = tl.sum(hb, axis=1) * dt
            if HAS_D:
                du = du + dy * Dv[:, None]
                gD += tl.sum(tl.where(m2, dy * u, 0.0), axis=1)
            gA += tl.sum(hx * dt[:, None, :], axis=2)
            pbc = ((pid_b * nblk + blk) * N + on[:, None]) * L + t[None, :]
            tl.store(dB_ptr + pbc, tl.sum(hs * (dt * u)[:, None, :], axis=0), mask=mbc)
            tl.store(dC_ptr + pbc, tl.sum(dy[:, None, :] * xs, axis=0), mask=mbc)
            if SOFTPLUS:
                ddt = ddt * tl.sigmoid(dr)
            ddt = tl.where(m2, ddt, 0.0)
            gbias += tl.sum(ddt, axis=1)
            tl.store(ddelta_ptr + row + t[None, :], ddt, mask=m2)
            dp = du_ptr + (pid_b * DU + oc[:, None]) * L + pos[None, :]
            if K == 1:
                tl.store(dp, du, mask=m2)
            else:
                tl.store(dp, tl.load(dp, mask=m2, other=0.0) + du, mask=m2)
            h = tl.sum(tl.where(ol[None, None, :] == 0, hs, 0.0), axis=2)
        tl.store(dA_ptr + (pid_b * d_total + oi[:, None]) * N + on[None, :], gA, mask=mdn)
        tl.store(dD_ptr + pid_b * d_total + oi, gD, mask=mc)
        tl.store(dbias_ptr + pid_b * d_total + oi, gbias, mask=mc)
        if K > 1:
            tl.debug_barrier()


def launch_config(dg: int, n: int) -> dict[str, int]:
    """Block sizes and warps for ``dg`` channels per B/C group and state size ``n``.

    BLOCK_D is the largest power of two <= min(16, 128 / NP) dividing dg (a program's channels must
    share one B/C group), so a tile holds at most 128 * BL state values. Returns the kernels'
    keyword arguments ``NP``, ``BLOCK_D``, ``BLOCK_L`` and ``num_warps``.
    """
    n_pad = triton.next_power_of_2(n)
    bd = max(1, min(16, _STATES_PER_PROGRAM // n_pad))
    while dg % bd:
        bd //= 2
    return {"NP": n_pad, "BLOCK_D": bd, "BLOCK_L": _BLOCK_L, "num_warps": _NUM_WARPS}


def check_offsets_fit_int32(b: int, d: int, length: int, n: int, block_d: int) -> None:
    """The kernels index with int32 offsets: refuse inputs whose largest buffer would overflow them.

    The largest buffers are delta / z (b, d, l), the saved tile states (b, d, l / BL, n) and the
    backward's dB/dC partials (b, d / BD, n, l). Raises ConfigError naming the largest batch that fits.
    """
    per_sample = max(d * length, d * triton.cdiv(length, _BLOCK_L) * n, (d // block_d) * n * length)
    if b * per_sample >= 2**31:
        raise ConfigError(
            f"backend 'triton': batch {b} with d={d}, l={length}, n={n} needs {b * per_sample:,} elements in "
            f"one buffer, beyond the kernels' int32 offsets; use a batch of at most "
            f"{(2**31 - 1) // per_sample} (or backend='mamba_ssm')."
        )


class _TritonScan(torch.autograd.Function):
    """Autograd wrapper; ``hw`` is None for a plain scan, (h, w) for the fused SS2D form."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, hw, delta_softplus):
        b, du, length = u.shape
        d, n = A.shape
        g = B.shape[1]
        K = d // du
        cfg = launch_config(d // g, n)
        check_offsets_fit_int32(b, d, length, n, cfg["BLOCK_D"])
        nchunk = triton.cdiv(length, _BLOCK_L)
        save = any(ctx.needs_input_grad)
        dev = u.device
        cont = [t.contiguous() for t in (u, delta, A, B, C)]
        Dc = D.contiguous() if D is not None else cont[0]  # dummies are never read
        zc = z.contiguous() if z is not None else cont[0]
        bc = delta_bias.contiguous() if delta_bias is not None else cont[0]
        out = torch.zeros(b, du, length, device=dev, dtype=torch.float32)
        last = torch.empty(b, d, n, device=dev, dtype=torch.float32)
        states = torch.empty(b, d, nchunk, n, device=dev, dtype=torch.float32) if save else last
        hh, ww = hw if hw is not None else (1, 1)
        grid = (b, triton.cdiv(du, cfg["BLOCK_D"]))
        _fwd_kernel[grid](
            *cont,
            Dc,
            zc,
            bc,
            out,
            last,
            states,
            du,
            length,
            n,
            g,
            d // g,
            nchunk,
            hh,
            ww,
            K=K,
            HAS_D=D is not None,
            HAS_Z=z is not None,
            HAS_BIAS=delta_bias is not None,
            SOFTPLUS=bool(delta_softplus),
            SAVE=save,
            **cfg,
        )
        if save:
            ctx.save_for_backward(*cont, Dc, zc, bc, states)
            ctx.meta = (hw, bool(delta_softplus), D is not None, z is not None, delta_bias is not None)
            ctx.dtypes = tuple(
                t.dtype if t is not None else None for t in (u, delta, A, B, C, D, z, delta_bias)
            )
        ctx.set_materialize_grads(False)
        return out.to(u.dtype), last

    @staticmethod
    def backward(ctx, dout, dlast):
        u, delta, A, B, C, D, z, bias, states = ctx.saved_tensors
        hw, delta_softplus, has_d, has_z, has_bias = ctx.meta
        b, du, length = u.shape
        d, n = A.shape
        g = B.shape[1]
        K = d // du
        dg = d // g
        cfg = launch_config(dg, n)
        bd = cfg["BLOCK_D"]
        nchunk = states.shape[2]
        dev = u.device
        f32 = {"device": dev, "dtype": torch.float32}
        dout = dout.contiguous() if dout is not None else torch.zeros(b, du, length, **f32)
        dlast = dlast.contiguous() if dlast is not None else torch.zeros(b, d, n, **f32)
        du_ = torch.zeros(b, du, length, **f32)
        ddelta = torch.empty(b, d, length, **f32)
        dA_p = torch.empty(b, d, n, **f32)
        dB_p = torch.empty(b, d // bd, n, length, **f32)
        dC_p = torch.empty(b, d // bd, n, length, **f32)
        dD_p = torch.empty(b, d, **f32)
        dbias_p = torch.empty(b, d, **f32)
        dz = torch.empty(b, d, length, **f32) if has_z else ddelta
        hh, ww = hw if hw is not None else (1, 1)
        grid = (b, triton.cdiv(du, bd))
        _bwd_kernel[grid](
            u,
            delta,
            A,
            B,
            C,
            D,
            z,
            bias,
            dout,
            dlast,
            states,
            du_,
            ddelta,
            dA_p,
            dB_p,
            dC_p,
            dD_p,
            dbias_p,
            dz,
            du,
            length,
            n,
            g,
            dg,
            nchunk,
            hh,
            ww,
            K=K,
            HAS_D=has_d,
            HAS_Z=has_z,
            HAS_BIAS=has_bias,
            SOFTPLUS=delta_softplus,
            **cfg,
        )
        per_group = dg // bd
        dB = ordered_sum(dB_p.view(b, g, per_group, n, length), 2)  # blocks of a group, in order
        dC = ordered_sum(dC_p.view(b, g, per_group, n, length), 2)
        grads = assemble_scan_grads(
            ctx.dtypes, du_, ddelta, dA_p, dB, dC, dD_p, dz, dbias_p, has_d, has_z, has_bias
        )
        return (*grads, None, None)


def scan_triton(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused Triton selective scan on validated inputs (B/C 4-D); returns ``(out, last_state)``.

    Computes in float32 whatever the input dtype (float64 inputs too); ``out`` is in u's dtype,
    ``last_state`` (b, d, n) in float32. Both are differentiable.
    """
    return _TritonScan.apply(u, delta, A, B, C, D, z, delta_bias, None, delta_softplus)


def ss2d_scan_triton(
    x: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool,
) -> torch.Tensor:
    """Fused cross-scan + scan + cross-merge: x (b, du, h, w) -> y (b, du, h*w), see the module docstring."""
    b, du, h, w = x.shape
    y, _ = _TritonScan.apply(
        x.reshape(b, du, h * w), delta, A, B, C, D, None, delta_bias, (h, w), delta_softplus
    )
    return y
