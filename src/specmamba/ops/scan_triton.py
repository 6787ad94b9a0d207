"""Fused Triton selective scan (Mamba-1 "S6"; Gu & Dao 2023, arXiv:2312.00752) for CUDA tensors.

The ``triton`` backend of :func:`specmamba.ops.selective_scan` and of the fused SS2D entry. Same math
as ``scan_ref.py`` (REFERENCE.md section 1), same memory rule as the CPU kernels: no (b, d, n, l)
tensor is ever written to memory.

Shape letters: b batch, d scan channels, du channels of u / of the output (d = k * du; k = 1 for a
plain scan, 4 for SS2D), l length, n state size, g groups of B/C, BD channels per program (BLOCK_D),
BL steps per tile (BLOCK_L).

Kernels:

* forward: one program per (batch, block of BD channels). It walks l in tiles of BL steps and, inside
  a tile, loops over the n state components: for component i the tile's states x[:, i, :] (BD, BL)
  come from one ``tl.associative_scan`` along time of the linear recurrence x_t = a_t x_{t-1} + b_t
  (combine (a1, b1), (a2, b2) -> (a1 a2, a2 b1 + b2)), continued from the tile-start state, and
  y += C_i x accumulates in registers. The state at every tile start is stored (b * d * n * l / BL
  values): it carries the scan from tile to tile and is what the backward recomputes from.
* backward: the same programs walk the tiles in reverse, again one state component at a time. Each
  recomputes x[:, i, :] from the saved tile-start state, runs the adjoint recurrence
  h_t = dy_t C_t + exp(delta_{t+1} A) h_{t+1} as a reverse associative scan carried across tiles, and
  accumulates du and ddelta over the components in registers (dA_t x_{t-1} is recovered as
  x_t - delta_t B_t u_t, so no shifted state is needed). With a gate z, a first pass over the
  components recomputes the output that dz needs.
* why this shape: Triton lays a (BD, BL) tile out with 4 consecutive steps per thread (vector loads)
  and 32 lanes along time, so most of the scan runs sequentially inside a thread and only the
  per-thread aggregates cross lanes. The earlier formulation, one (BD, n, BL) tile scanned at once,
  put a single step per lane: compiled for sm_90 (as ``bench kernels`` does) its forward needed 57
  instructions per state value and step, 16.5 of them shuffles, against 27 and 4 here (backward:
  129 / 37 against 68 / 16).
* carries between tiles: a tile's last (forward) or first (backward) column, reduced out of the tile,
  is stored, and a ``debug_barrier`` at each tile start makes it visible to the threads that load it
  (a tile's columns live in other threads than the reduced vector). The forward writes the next
  tile's slot of the saved states; the backward's adjoint carry has two slots by tile parity, so that
  no thread overwrites a value another may still be reading.
* determinism: every program writes only its own outputs. dB/dC are reduced over the BD channels of a
  program in registers, written to a per-block partial (b, d / BD, n, l) (this is the one buffer that
  is n / BD times the size of u), and summed over the blocks of a group in index order by torch;
  dA is accumulated over the tiles by its own program (read-modify-write of its own entries); the
  dA/dD/delta_bias partials per (batch, channel) are then summed over the batch in order. No atomics.
* fused directional scan (k > 1 walks of a :class:`~specmamba.ops.directions.DirectionSet`, e.g.
  SS2D's four): the program of a block of map channels loops over the directions. Direction k at step
  t reads u from x at the row-major position computed by index arithmetic (bit k of two integer masks:
  column-major or row-major, backwards or forwards), and adds its output into the merged (b, du, h*w)
  output at that same position; a ``debug_barrier`` between directions orders these read-modify-writes,
  which only this program touches, so the merge is deterministic and the direction copies are never
  stored.
  The backward gathers dout the same way and accumulates dx likewise.

Block sizes (:func:`launch_config`): BL = 128, 8 warps, BD = the largest power of two <= 16 dividing
the channels of a group; the state size does not change them. ``specmamba bench kernels`` compiles the
kernels for sm_90 without a GPU and reports registers, spills and the instruction mix of their loop
(at this writing, SS2D: 176 / 246 registers forward / backward, no spills, 26.8 / 67.6 instructions and
4.2 / 15.5 shuffles per state value and step); tests/ops fails on any spill. ``specmamba bench scan
--device cuda`` measures their speed.

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
from .directions import DirectionSet
from .scan_grads import assemble_scan_grads, ordered_sum

__all__ = ["directional_scan_triton", "scan_triton"]

_LOG2E = tl.constexpr(1.4426950408889634)  # exp(x) = exp2(x log2(e))
_BLOCK_L = 128  # steps per tile; the backward must use the forward's tiles (states are saved per tile)
_MAX_BLOCK_D = 16
_NUM_WARPS = 8


@triton.jit
def _combine(a1, b1, a2, b2):
    # (a1, b1) then (a2, b2): x -> a2 (a1 x + b1) + b2
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _softplus(x):
    return tl.maximum(x, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(x)))


@triton.jit
def _src_pos(t, k, L, HH, WW, TRANSPOSED, REVERSED, K: tl.constexpr):
    """Row-major map position visited by direction k at step t (identity for a plain scan).

    Bit k of ``TRANSPOSED`` / ``REVERSED`` says whether walk k is column-major / backwards.
    """
    if K == 1:
        return t
    tt = tl.where(((REVERSED >> k) & 1) == 1, L - 1 - t, t)
    col = (tt % HH) * WW + tt // HH  # column-major walk: step j*h + i visits (i, j)
    return tl.where(((TRANSPOSED >> k) & 1) == 1, col, tt)


@triton.jit
def _component(A_ptr, B_ptr, C_ptr, oi, mc, t, mt, n, N, L, row_bc):
    """State component n of a tile: A[:, n] (BD,) and B/C[n] (BL,) at the tile's steps, in float32.

    ``row_bc`` = batch * G + group: the B/C row of the program's channels.
    """
    A_n = tl.load(A_ptr + oi * N + n, mask=mc, other=0.0).to(tl.float32)
    bc = (row_bc * N + n) * L + t
    B_n = tl.load(B_ptr + bc, mask=mt, other=0.0).to(tl.float32)
    C_n = tl.load(C_ptr + bc, mask=mt, other=0.0).to(tl.float32)
    return A_n, B_n, C_n


@triton.jit
def _tile_states(dt, dtu, A_n, B_n, x0):
    """States (BD, BL) of one component over a tile, from the tile-start state x0 (BD,)."""
    a = tl.exp2(dt * (A_n * _LOG2E)[:, None])  # exp(dt A), one multiply less per value
    acum, xloc = tl.associative_scan((a, dtu * B_n[None, :]), axis=1, combine_fn=_combine)
    return acum * x0[:, None] + xloc


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
    TRANSPOSED,
    REVERSED,
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
    oc = c0 + tl.arange(0, BLOCK_D)  # (BD,) map / u channels
    mc = oc < DU
    ol = tl.arange(0, BLOCK_L)
    last_col = ol[None, :] == BLOCK_L - 1
    for k in range(K):
        oi = k * DU + oc  # (BD,) scan channels
        grp = (k * DU + c0) // DG  # the whole block lies in one group
        if HAS_D:
            Dv = tl.load(D_ptr + oi, mask=mc, other=0.0).to(tl.float32)
        if HAS_BIAS:
            bv = tl.load(bias_ptr + oi, mask=mc, other=0.0).to(tl.float32)
        for ci in range(0, NCHUNK):
            tl.debug_barrier()  # the states stored by the previous tile (other threads) are visible
            t = ci * BLOCK_L + ol  # (BL,)
            mt = t < L
            m2 = mc[:, None] & mt[None, :]
            pos = _src_pos(t, k, L, HH, WW, TRANSPOSED, REVERSED, K)
            u = tl.load(u_ptr + (pid_b * DU + oc[:, None]) * L + pos[None, :], mask=m2, other=0.0).to(
                tl.float32
            )
            row = (pid_b * d_total + oi[:, None]) * L
            dt = tl.load(delta_ptr + row + t[None, :], mask=m2, other=0.0).to(tl.float32)
            if HAS_BIAS:
                dt = dt + bv[:, None]
            if SOFTPLUS:
                dt = _softplus(dt)
            dt = tl.where(m2, dt, 0.0)  # padded steps: decay exp(0) = 1, no input: the state carries
            dtu = dt * u
            y = tl.zeros((BLOCK_D, BLOCK_L), dtype=tl.float32)
            for n in range(0, N):
                A_n, B_n, C_n = _component(A_ptr, B_ptr, C_ptr, oi, mc, t, mt, n, N, L, pid_b * G + grp)
                sp = states_ptr + ((pid_b * d_total + oi) * NCHUNK + ci) * N + n  # (BD,) tile-start
                x0 = tl.load(sp, mask=mc & (oc * 0 + ci > 0), other=0.0)  # state 0 is zero, never stored
                xs = _tile_states(dt, dtu, A_n, B_n, x0)  # (BD, BL)
                y += xs * C_n[None, :]
                # the state after the tile (its last column): the next tile's start state, or the
                # last state after the last tile
                x1 = tl.sum(tl.where(last_col, xs, 0.0), axis=1)
                more = oc * 0 + ci + 1 < NCHUNK  # as a tensor: the interpreter needs one
                tl.store(sp + N, x1, mask=mc & more)
                tl.store(last_ptr + (pid_b * d_total + oi) * N + n, x1, mask=mc & (more == 0))
            if HAS_D:
                y = y + u * Dv[:, None]
            if HAS_Z:
                zz = tl.load(z_ptr + row + t[None, :], mask=m2, other=0.0).to(tl.float32)
                y = y * zz * tl.sigmoid(zz)
            op = out_ptr + (pid_b * DU + oc[:, None]) * L + pos[None, :]
            if K == 1:
                tl.store(op, y, mask=m2)
            else:
                tl.store(op, tl.load(op, mask=m2, other=0.0) + y, mask=m2)
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
    hcarry_ptr,
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
    TRANSPOSED,
    REVERSED,
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
    ol = tl.arange(0, BLOCK_L)
    first_col = ol[None, :] == 0
    for k in range(K):
        oi = k * DU + oc
        grp = (k * DU + c0) // DG
        blk = (k * DU + c0) // BLOCK_D  # index of this block among all scan channels
        if HAS_D:
            Dv = tl.load(D_ptr + oi, mask=mc, other=0.0).to(tl.float32)
        if HAS_BIAS:
            bv = tl.load(bias_ptr + oi, mask=mc, other=0.0).to(tl.float32)
        gD = tl.zeros((BLOCK_D,), dtype=tl.float32)
        gbias = tl.zeros((BLOCK_D,), dtype=tl.float32)
        for cr in range(0, NCHUNK):
            tl.debug_barrier()  # the adjoint carries stored by the later tile are visible
            ci = NCHUNK - 1 - cr
            t = ci * BLOCK_L + ol
            mt = t < L
            m2 = mc[:, None] & mt[None, :]
            pos = _src_pos(t, k, L, HH, WW, TRANSPOSED, REVERSED, K)
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
            dtn = tl.where(mnext, dtn, 0.0)  # beyond the sequence: decay 1, the adjoint carries
            dtu = dt * u
            srow = (pid_b * d_total + oi) * NCHUNK + ci  # (BD,) saved tile-start states
            if HAS_Z:
                # dz needs the output: one recomputation pass over the states first
                y = tl.zeros((BLOCK_D, BLOCK_L), dtype=tl.float32)
                for n in range(0, N):
                    A_n, B_n, C_n = _component(A_ptr, B_ptr, C_ptr, oi, mc, t, mt, n, N, L, pid_b * G + grp)
                    x0 = tl.load(states_ptr + srow * N + n, mask=mc & (oc * 0 + ci > 0), other=0.0)
                    y += _tile_states(dt, dtu, A_n, B_n, x0) * C_n[None, :]
                if HAS_D:
                    y = y + u * Dv[:, None]
                zz = tl.load(z_ptr + row + t[None, :], mask=m2, other=0.0).to(tl.float32)
                sz = tl.sigmoid(zz)
                tl.store(dz_ptr + row + t[None, :], go * y * sz * (1.0 + zz * (1.0 - sz)), mask=m2)
                dy = go * zz * sz
            else:
                dy = go
            gdu = tl.zeros((BLOCK_D, BLOCK_L), dtype=tl.float32)
            gdt = tl.zeros((BLOCK_D, BLOCK_L), dtype=tl.float32)
            for n in range(0, N):
                A_n, B_n, C_n = _component(A_ptr, B_ptr, C_ptr, oi, mc, t, mt, n, N, L, pid_b * G + grp)
                # recompute the tile's states from the saved tile-start state
                x0 = tl.load(states_ptr + srow * N + n, mask=mc & (oc * 0 + ci > 0), other=0.0)
                xs = _tile_states(dt, dtu, A_n, B_n, x0)
                bx = dtu * B_n[None, :]
                # adjoint: h_t = a_{t+1} h_{t+1} + dy_t C_t, a reverse scan continued from the later tile
                # the adjoint carry is double-buffered by tile parity: tile ci reads slot (ci + 1) % 2,
                # written by the later tile (slot NCHUNK % 2 starts as the last state's gradient), and
                # writes slot ci % 2, so no thread overwrites what another may still be reading
                hrow = (pid_b * d_total + oi) * 2
                h = tl.load(hcarry_ptr + (hrow + (ci + 1) % 2) * N + n, mask=mc, other=0.0)
                hcum, hloc = tl.associative_scan(
                    (tl.exp2(dtn * (A_n * _LOG2E)[:, None]), dy * C_n[None, :]),
                    axis=1,
                    combine_fn=_combine,
                    reverse=True,
                )
                hs = hcum * h[:, None] + hloc  # (BD, BL)
                h1 = tl.sum(tl.where(first_col, hs, 0.0), axis=1)
                tl.store(hcarry_ptr + (hrow + ci % 2) * N + n, h1, mask=mc)
                hx = hs * (xs - bx)  # h_t * a_t * x_{t-1}
                hb = hs * B_n[None, :]
                gdt += hb * u + hx * A_n[:, None]
                gdu += hb * dt
                ap = dA_ptr + (pid_b * d_total + oi) * N + n
                tl.store(ap, tl.load(ap, mask=mc, other=0.0) + tl.sum(hx * dt, axis=1), mask=mc)
                pbc = ((pid_b * nblk + blk) * N + n) * L + t
                tl.store(dB_ptr + pbc, tl.sum(hs * dtu, axis=0), mask=mt)
                tl.store(dC_ptr + pbc, tl.sum(dy * xs, axis=0), mask=mt)
            if HAS_D:
                gdu = gdu + dy * Dv[:, None]
                gD += tl.sum(tl.where(m2, dy * u, 0.0), axis=1)
            if SOFTPLUS:
                gdt = gdt * tl.sigmoid(dr)
            gdt = tl.where(m2, gdt, 0.0)
            gbias += tl.sum(gdt, axis=1)
            tl.store(ddelta_ptr + row + t[None, :], gdt, mask=m2)
            dp = du_ptr + (pid_b * DU + oc[:, None]) * L + pos[None, :]
            if K == 1:
                tl.store(dp, gdu, mask=m2)
            else:
                tl.store(dp, tl.load(dp, mask=m2, other=0.0) + gdu, mask=m2)
        tl.store(dD_ptr + pid_b * d_total + oi, gD, mask=mc)
        tl.store(dbias_ptr + pid_b * d_total + oi, gbias, mask=mc)
        if K > 1:
            tl.debug_barrier()


def launch_config(dg: int) -> dict[str, int]:
    """Block sizes and warps for ``dg`` channels per B/C group (the state size does not matter: the
    kernels loop over it).

    BLOCK_D is the largest power of two <= 16 dividing dg (a program's channels must share one B/C
    group). Returns the kernels' keyword arguments ``BLOCK_D``, ``BLOCK_L`` and ``num_warps``.
    """
    bd = _MAX_BLOCK_D
    while dg % bd:
        bd //= 2
    return {"BLOCK_D": bd, "BLOCK_L": _BLOCK_L, "num_warps": _NUM_WARPS}


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


def _walk_args(walk: tuple[int, int, DirectionSet] | None) -> tuple[int, int, int, int]:
    """(h, w, TRANSPOSED, REVERSED) kernel arguments: bit k of the masks describes walk k."""
    if walk is None:
        return 1, 1, 0, 0
    h, w, directions = walk
    transposed = sum(1 << k for k, wk in enumerate(directions.walks) if wk.transpose)
    reversed_ = sum(1 << k for k, wk in enumerate(directions.walks) if wk.reverse)
    return h, w, transposed, reversed_


class _TritonScan(torch.autograd.Function):
    """Autograd wrapper; ``walk`` is None for a plain scan, (h, w, walk set) for the fused form."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, walk, delta_softplus):
        b, du, length = u.shape
        d, n = A.shape
        g = B.shape[1]
        K = d // du
        cfg = launch_config(d // g)
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
        # the state at every tile start (tile 0's, zero, is never written): the carry between tiles,
        # and what the backward recomputes the states from
        states = torch.empty(b, d, nchunk, n, device=dev, dtype=torch.float32)
        hh, ww, transposed, reversed_ = _walk_args(walk)
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
            transposed,
            reversed_,
            K=K,
            HAS_D=D is not None,
            HAS_Z=z is not None,
            HAS_BIAS=delta_bias is not None,
            SOFTPLUS=bool(delta_softplus),
            **cfg,
        )
        if save:
            ctx.save_for_backward(*cont, Dc, zc, bc, states)
            ctx.meta = (walk, bool(delta_softplus), D is not None, z is not None, delta_bias is not None)
            ctx.dtypes = tuple(
                t.dtype if t is not None else None for t in (u, delta, A, B, C, D, z, delta_bias)
            )
        ctx.set_materialize_grads(False)
        return out.to(u.dtype), last

    @staticmethod
    def backward(ctx, dout, dlast):
        u, delta, A, B, C, D, z, bias, states = ctx.saved_tensors
        walk, delta_softplus, has_d, has_z, has_bias = ctx.meta
        b, du, length = u.shape
        d, n = A.shape
        g = B.shape[1]
        K = d // du
        dg = d // g
        cfg = launch_config(dg)
        bd = cfg["BLOCK_D"]
        nchunk = states.shape[2]
        dev = u.device
        f32 = {"device": dev, "dtype": torch.float32}
        dout = dout.contiguous() if dout is not None else torch.zeros(b, du, length, **f32)
        # adjoint carry between tiles, two slots by tile parity; slot nchunk % 2 starts as d(last)
        hcarry = torch.empty(b, d, 2, n, **f32)
        hcarry[:, :, nchunk % 2] = dlast if dlast is not None else 0.0
        du_ = torch.zeros(b, du, length, **f32)
        ddelta = torch.empty(b, d, length, **f32)
        dA_p = torch.zeros(b, d, n, **f32)  # accumulated over the tiles
        dB_p = torch.empty(b, d // bd, n, length, **f32)
        dC_p = torch.empty(b, d // bd, n, length, **f32)
        dD_p = torch.empty(b, d, **f32)
        dbias_p = torch.empty(b, d, **f32)
        dz = torch.empty(b, d, length, **f32) if has_z else ddelta
        hh, ww, transposed, reversed_ = _walk_args(walk)
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
            hcarry,
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
            transposed,
            reversed_,
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


def directional_scan_triton(
    x: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool,
    directions: DirectionSet,
) -> torch.Tensor:
    """Fused cross-scan + scan + cross-merge along a walk set: x (b, du, h, w) -> y (b, du, h*w)."""
    b, du, h, w = x.shape
    y, _ = _TritonScan.apply(
        x.reshape(b, du, h * w), delta, A, B, C, D, None, delta_bias, (h, w, directions), delta_softplus
    )
    return y
