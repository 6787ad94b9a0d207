"""The CPU selective-scan kernels as they were before issue 17, kept only so that ``specmamba bench scan``
can time them beside ``scan_cpu.py`` in the same run (row ``cpu_legacy``); to be deleted with issue 17's
closing note. Nothing else imports this module.

Fused CPU selective scan (Mamba-1 "S6"; Gu & Dao 2023, arXiv:2312.00752): numba kernels + autograd.

The ``cpu`` backend of :func:`specmamba.ops.selective_scan` and of the fused SS2D entry. The math is
REFERENCE.md section 1 (see ``scan_ref.py`` for the readable form); this file is about doing it fast
on a few CPU cores without ever holding a (b, d, n, l) tensor.

Shape letters: b batch, d scan channels, du channels of ``u`` and of the output (d = k * du, k = 1
for a plain scan, k = 4 directions for the fused SS2D entry), l sequence length, n state size,
g groups of B/C (channel i uses group i // (d / g)), S splits of a group in the backward,
T chunk length (``chunk_len(n)``), W = LANES channels processed together.

How it is fast:

* SIMD over channels, not over n. A work item owns W = 16 channels of one (batch, group); the state
  is a (n, W) tile and every inner loop runs over the W lanes with constant trip count, so LLVM emits
  plain vector code with no horizontal reduction (y = sum_n x C is a vertical accumulation over n).
  Tiles of u / delta / dout are transposed into (T, W) scratch once per chunk.
* exp/softplus/sigmoid are the vectorisable float32 versions below (numba has no SVML here, and a
  scalar ``expf`` per (t, n, channel) would dominate); float64 uses libm, for gradcheck.
* Forward: parallel over (batch x channel block); with ``save_states`` it stores the state at every
  chunk start: b * d * n * l / T values, at most b * d * l / 2 because T >= 2n, so memory grows as
  O(b d l) whatever n is. No (b, d, n, l) tensor exists anywhere.
* Backward: reverse-time scan. Per chunk (last to first) it recomputes the states of the chunk from
  the saved chunk-start state into a (T + 1, n, W) scratch (with the (T, n, W) decay factors, so the
  exp is not evaluated twice), then runs the adjoint recurrence h_t = dy_t C_t + exp(delta_{t+1} A)
  h_{t+1} backwards, accumulating every gradient on the fly.
* Determinism: dB/dC sum over the channels of a group. Each work item (batch, group, split) handles
  a fixed, contiguous set of channel blocks; its contributions are summed lane-wise over its blocks,
  then over the W lanes by a fixed pairwise tree, into its own (n, l) slice of a partial buffer; the
  S partials are added in index order afterwards. dA/dD/delta_bias are written per (batch, channel)
  and summed over the batch in order. The split count depends only on the shapes, never on the
  thread count, so results are bitwise reproducible across runs and thread counts. No atomics.
* Scheduling: work items are dealt round-robin to 4 x threads scratch slots, and slots to threads one
  at a time (numba's dynamic schedule), so a thread descheduled on a busy machine does not hold the
  whole call back; all scratch is allocated once per call with a leading slot dimension, which is
  also what lets numba mark the arrays ``noalias`` so that LLVM vectorises the lane loops (see the
  comment above the kernels). The backward walks time in reverse over many rows at once, more streams
  than the hardware prefetcher follows, so it prefetches the next chunk's rows explicitly.
* Memory of a forward+backward beyond inputs, outputs and gradients: saved states (<= b*d*l/2),
  dB/dC partials of b*g*S*n*l values with b*g*S <= max(8, b*g), and per-slot scratch of
  O(T*n*W) -- never O(b*d*n*l).
* Fused directional scan (k > 1, any :class:`~specmamba.ops.directions.DirectionSet`): work items
  are (batch, direction, channel block), like a plain scan of k * du channels. Direction k reads its
  input u and, in the backward, the merged output's gradient straight from the map along its walk:
  forwards or backwards along the row-major map, or along one transposed copy of it for column-major
  walks, so every read streams like a plain scan's (``walks[k] = (source, mode)``); a permutation set
  gathers through ``perm[k, t]``. Each direction's output is written in its own step order and
  merged by the direction set (the strided merge of the composition, in direction order), and the
  per-direction du likewise. An earlier layout, one work item per channel block for all k with the
  gathers and the merge done inside the kernel, took 1.3x the time of the plain kernel on the same
  work; this one is at parity with the composition and bitwise equal to it.

Numba is imported here, and this module is imported only when the ``cpu`` backend is first used.
Kernels are compiled on first use per dtype (float32, float64) and cached on disk (``cache=True``).
The vectorisable math lives in this file on purpose: numba's on-disk cache is keyed on the source file
of the kernel only, so helpers in another module could be silently served stale after an edit.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
import torch
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from .directions import DirectionSet, column_major
from .scan_grads import assemble_scan_grads, ordered_sum

__all__ = ["LANES", "chunk_len", "directional_scan_cpu", "scan_cpu"]

LANES = 16  # channels per SIMD tile (two AVX2 / one AVX-512 float32 vector)
# How the kernels read direction k's input (``walks[k] = (source, mode)``): along the source (the map,
# or for column-major walks its transposed copy) forwards or backwards, or through perm[k].
_FORWARD, _REVERSED, _GATHER = 0, 1, 2
_MIN_ITEMS = 8  # backward work items per call at least (shape-only: determinism across thread counts)


def chunk_len(n: int) -> int:
    """Steps between saved states (T): >= 2n, so saved states take <= b*d*l/2 values for any n."""
    return max(32, 2 * n)


# --------------------------------------------------------------------------------------------------
# Vectorisable float32 math (float64 falls back to libm).
#
# float32 exp is the Cephes scheme: x = k ln2 + r with a two-constant (Cody-Waite) ln2, a degree-7
# polynomial for e**r on |r| <= ln2/2 and 2**k assembled from exponent bits (as two factors, so the
# subnormal range and values up to FLT_MAX come out right); 0 / inf outside the range like libm.
# Measured <= 1.4 ulp. log1p(e) for e in [0, 1] (all softplus needs) is 2 atanh(e / (2 + e)), an odd
# series in s <= 1/3 to s**13: relative error < 3e-7 overall on softplus.
# --------------------------------------------------------------------------------------------------


@intrinsic
def _bits_to_f32(typingctx, bits):
    """Reinterpret the low 32 bits of an integer as a float32 (a free register bitcast)."""
    if not isinstance(bits, types.Integer):
        return None
    sig = types.float32(bits)

    def codegen(context, builder, signature, args):
        value = args[0]
        if bits.bitwidth != 32:
            value = builder.trunc(value, ir.IntType(32))
        return builder.bitcast(value, ir.FloatType())

    return sig, codegen


@intrinsic
def _f32_to_bits(typingctx, x):
    """Reinterpret a float32 as its int32 bit pattern."""
    if x != types.float32:
        return None
    sig = types.int32(x)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return sig, codegen


@intrinsic
def _prefetch(typingctx, arr, i, j, k):
    """Ask the CPU to start loading the cache line of arr[i, j, k] (a 3-D array) for reading.

    The backward walks time in reverse over dozens of rows at once, more streams than the hardware
    prefetcher follows; without this hint it stalls on memory latency for about a third of its time.
    """
    if not (isinstance(arr, types.Array) and arr.ndim == 3):
        return None
    sig = types.void(arr, i, j, k)

    def codegen(context, builder, signature, args):
        aty = signature.args[0]
        ary = context.make_array(aty)(context, builder, args[0])
        idx = [context.cast(builder, v, t, types.intp) for v, t in zip(args[1:], signature.args[1:])]
        ptr = cgutils.get_item_pointer(context, builder, aty, ary, idx, wraparound=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        # read access, high temporal locality, data cache
        builder.call(
            fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)]
        )
        return context.get_dummy_value()

    return sig, codegen


_F = np.float32
_LOG2E = _F(1.4426950408889634)
_LN2_HI, _LN2_LO = _F(0.693359375), _F(-2.12194440e-4)
_EXP_HI, _EXP_LO = _F(88.72283935546875), _F(-103.97208)  # log(FLT_MAX); below: rounds to 0
_P0, _P1, _P2 = _F(1.9875691500e-4), _F(1.3981999507e-3), _F(8.3334519073e-3)
_P3, _P4, _P5 = _F(4.1665795894e-2), _F(1.6666665459e-1), _F(5.0000001201e-1)
_ONE, _TWO, _ZERO, _INF = _F(1.0), _F(2.0), _F(0.0), _F(np.inf)
_L3, _L5, _L7, _L9, _L11, _L13 = (_F(1.0 / k) for k in (3, 5, 7, 9, 11, 13))
_ROUND = _F(12582912.0)  # 1.5 * 2**23: y + _ROUND holds round(y) in its low mantissa bits
_ROUND_BITS = 0x4B400000


@njit(error_model="numpy")
def _exp_f32(x):
    xc = min(max(x, _EXP_LO), _EXP_HI)
    kr = xc * _LOG2E + _ROUND
    k = kr - _ROUND  # k = round(x / ln 2), exactly, as a float
    r = xc - k * _LN2_HI
    r = r - k * _LN2_LO
    p = ((((_P0 * r + _P1) * r + _P2) * r + _P3) * r + _P4) * r + _P5
    p = p * (r * r) + r + _ONE
    ki = _f32_to_bits(kr) - _ROUND_BITS  # the same k as an int32
    kh = ki >> 1  # 2**k as two normal factors: right from the subnormal range up to FLT_MAX
    res = p * _bits_to_f32((kh + 127) << 23) * _bits_to_f32((ki - kh + 127) << 23)
    res = _INF if x > _EXP_HI else res
    return _ZERO if x < _EXP_LO else res


@njit(error_model="numpy")
def _log1p_unit_f32(e):
    s = e / (_TWO + e)
    s2 = s * s
    q = _L11 + s2 * _L13
    q = _L9 + s2 * q
    q = _L7 + s2 * q
    q = _L5 + s2 * q
    q = _L3 + s2 * q
    q = _ONE + s2 * q
    return _TWO * s * q


def fexp(x):
    """e**x; inside numba kernels a vectorisable float32 version (float64: libm)."""
    return math.exp(x)


def fsoftplus(x):
    """log(1 + e**x) as max(x, 0) + log1p(e**-|x|): no overflow, no threshold."""
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def fsigmoid(x):
    """1 / (1 + e**-x), the derivative of softplus."""
    return 1.0 / (1.0 + math.exp(-x))


def fsoftplus_sigmoid(x):
    """(softplus(x), sigmoid(x)) sharing one exp: e = e**-|x|, log1p(e) + max(x, 0), 1/(1+e) or e/(1+e)."""
    e = math.exp(-abs(x))
    r = 1.0 / (1.0 + e)
    return max(x, 0.0) + math.log1p(e), (r if x >= 0 else e * r)


@overload(fexp)
def _fexp_impl(x):
    if x == types.float32:
        return lambda x: _exp_f32(x)
    return lambda x: math.exp(x)


@overload(fsoftplus)
def _fsoftplus_impl(x):
    if x == types.float32:
        return lambda x: max(x, _ZERO) + _log1p_unit_f32(_exp_f32(-abs(x)))
    return lambda x: max(x, 0.0) + math.log1p(math.exp(-abs(x)))


@overload(fsigmoid)
def _fsigmoid_impl(x):
    if x == types.float32:
        return lambda x: _ONE / (_ONE + _exp_f32(-x))
    return lambda x: 1.0 / (1.0 + math.exp(-x))


@overload(fsoftplus_sigmoid)
def _fsoftplus_sigmoid_impl(x):
    if x == types.float32:

        def impl32(x):
            e = _exp_f32(-abs(x))
            r = _ONE / (_ONE + e)
            return max(x, _ZERO) + _log1p_unit_f32(e), (r if x >= _ZERO else e * r)

        return impl32

    def impl64(x):
        e = math.exp(-abs(x))
        r = 1.0 / (1.0 + e)
        return max(x, 0.0) + math.log1p(e), (r if x >= 0 else e * r)

    return impl64


# --------------------------------------------------------------------------------------------------
# Kernels. Optional D / z / delta_bias are zero arrays (or a dummy z with has_z = 0) so that one
# compiled signature per dtype serves every combination of options. opts = [delta_softplus, has_z,
# save_states, T].
#
# Scratch is allocated once per call with a leading thread dimension and indexed as [slot, ...] inside
# the parallel loop, never through views: numba then proves that no array in the parallel body
# aliases another and marks them all ``noalias``, which is what lets LLVM vectorise the lane loops
# (with a dozen separately allocated arrays it gives up on runtime alias checks and emits scalar
# code, about 6x slower). Every work item (re)initialises what it reads, so reuse across items is
# safe and results do not depend on which thread ran which item.
# --------------------------------------------------------------------------------------------------


@njit(inline="always")
def _load_walk(tile, slot, c, srcs, row, perm, k, mode, ch, t0, tl):
    """tile[slot, t, c] = the value direction k visits at its step t0 + t in channel ch of ``srcs[row]``
    (a map or its transposed copy): along the row forwards or backwards, or through perm[k]."""
    if mode == _GATHER:
        for t in range(tl):
            tile[slot, t, c] = srcs[row, ch, perm[k, t0 + t]]
    else:
        step = -1 if mode == _REVERSED else 1
        first = srcs.shape[2] - 1 - t0 if mode == _REVERSED else t0
        for t in range(tl):
            tile[slot, t, c] = srcs[row, ch, first + step * t]


@njit(inline="always")
def _prefetch_walk(srcs, row, perm, k, mode, ch, start, stop):
    """Ask for the cache lines that :func:`_load_walk` reads at steps start..stop."""
    if mode == _GATHER:
        for t in range(start, stop):
            _prefetch(srcs, row, ch, perm[k, t])
    else:
        last = srcs.shape[2] - 1
        for t in range(start, stop, 16):
            _prefetch(srcs, row, ch, last - t if mode == _REVERSED else t)


@njit(parallel=True, error_model="numpy", cache=True)
def _fwd_kernel(srcs, delta, A, B, C, D, z, bias, perm, walks, ublocks, opts, out, last, states):  # noqa: C901
    softplus_on = opts[0] != 0
    has_z = opts[1] != 0
    save = opts[2] != 0
    chunk = opts[3]
    bsz, d, L = delta.shape
    du = srcs.shape[1]
    n = A.shape[1]
    K = d // du
    dg = d // B.shape[1]
    nblk = ublocks.shape[0]
    nck = (L + chunk - 1) // chunk
    nth = opts[4]  # scratch slots
    dt = srcs.dtype
    xs = np.empty((nth, n + 1, LANES), dtype=dt)  # state tile (n, W)
    At = np.empty((nth, n + 1, LANES), dtype=dt)
    Dv = np.empty((nth, 2 * LANES), dtype=dt)
    bv = np.empty((nth, 2 * LANES), dtype=dt)
    uu = np.empty((nth, chunk + 1, LANES), dtype=dt)  # (T, W) tiles
    dl = np.empty((nth, chunk + 1, LANES), dtype=dt)
    yy = np.empty((nth, chunk + 1, LANES), dtype=dt)
    Bt = np.empty((nth, chunk + 1, n), dtype=dt)
    Ct = np.empty((nth, chunk + 1, n), dtype=dt)
    dlu = np.empty((nth, 2 * LANES), dtype=dt)
    yacc = np.empty((nth, 2 * LANES), dtype=dt)
    row = np.empty((nth, chunk + LANES), dtype=dt)
    for slot in prange(nth):
        for item in range(slot, bsz * K * nblk, nth):  # one (batch, direction, channel block) each
            b = item // (K * nblk)
            k = (item // nblk) % K
            j = item % nblk
            c0 = ublocks[j, 0]
            nc = ublocks[j, 1]
            i0 = k * du + c0  # first scan channel of this block in direction k
            grp = i0 // dg
            srow = walks[k, 0] * bsz + b  # the map, or its transposed copy, of batch element b
            mode = walks[k, 1]
            # Lanes >= nc hold zeros (A = 0, u = 0, delta = 0): their state stays exactly 0.
            for c in range(LANES):
                valid = c < nc
                for s in range(n):
                    At[slot, s, c] = A[i0 + c, s] if valid else 0
                    xs[slot, s, c] = 0
                Dv[slot, c] = D[i0 + c] if valid else 0
                bv[slot, c] = bias[i0 + c] if valid else 0
                if not valid:
                    for t in range(chunk):
                        uu[slot, t, c] = 0
                        dl[slot, t, c] = 0
            for ci in range(nck):
                t0 = ci * chunk
                tl = min(chunk, L - t0)
                if save:
                    for c in range(nc):
                        for s in range(n):
                            states[b, i0 + c, ci, s] = xs[slot, s, c]
                for c in range(nc):
                    _load_walk(uu, slot, c, srcs, srow, perm, k, mode, c0 + c, t0, tl)
                    if softplus_on:  # vectorised into a contiguous row, then transposed
                        for t in range(tl):
                            row[slot, t] = fsoftplus(delta[b, i0 + c, t0 + t] + bv[slot, c])
                        for t in range(tl):
                            dl[slot, t, c] = row[slot, t]
                    else:
                        for t in range(tl):
                            dl[slot, t, c] = delta[b, i0 + c, t0 + t] + bv[slot, c]
                    if ci + 1 < nck:  # fetch the next chunk while this one computes
                        for t in range(t0 + chunk, min(t0 + 2 * chunk, L), 16):
                            _prefetch(delta, b, i0 + c, t)
                            if has_z:
                                _prefetch(z, b, i0 + c, t)
                        stop = min(t0 + 2 * chunk, L)
                        _prefetch_walk(srcs, srow, perm, k, mode, c0 + c, t0 + chunk, stop)
                for s in range(n):
                    for t in range(tl):
                        Bt[slot, t, s] = B[b, grp, s, t0 + t]
                        Ct[slot, t, s] = C[b, grp, s, t0 + t]
                for t in range(tl):
                    for c in range(LANES):
                        dlu[slot, c] = dl[slot, t, c] * uu[slot, t, c]
                        yacc[slot, c] = 0
                    for s in range(n):
                        bs = Bt[slot, t, s]
                        cs = Ct[slot, t, s]
                        for c in range(LANES):
                            xv = fexp(dl[slot, t, c] * At[slot, s, c]) * xs[slot, s, c] + dlu[slot, c] * bs
                            xs[slot, s, c] = xv
                            yacc[slot, c] += xv * cs
                    for c in range(LANES):
                        yy[slot, t, c] = yacc[slot, c] + uu[slot, t, c] * Dv[slot, c]
                for c in range(nc):
                    if has_z:
                        for t in range(tl):
                            zv = z[b, i0 + c, t0 + t]
                            yy[slot, t, c] = yy[slot, t, c] * zv * fsigmoid(zv)
                    for t in range(tl):  # in the direction's own step order: merged by the caller
                        out[b, i0 + c, t0 + t] = yy[slot, t, c]
            for c in range(nc):
                for s in range(n):
                    last[b, i0 + c, s] = xs[slot, s, c]


@njit(parallel=True, error_model="numpy", cache=True)
def _bwd_kernel(  # noqa: C901
    srcs,
    delta,
    A,
    B,
    C,
    D,
    z,
    bias,
    perm,
    walks,
    sblocks,
    bitems,
    opts,
    states,
    dsrcs,
    dlast,
    du_s,
    ddelta,
    dA_p,
    dBp,
    dCp,
    dD_p,
    dbias_p,
    dz,
):
    softplus_on = opts[0] != 0
    has_z = opts[1] != 0
    chunk = opts[3]
    bsz, d, L = delta.shape
    du = srcs.shape[1]
    n = A.shape[1]
    nit = bitems.shape[0]
    nck = (L + chunk - 1) // chunk
    mb = 1  # most blocks in one item
    for it in range(nit):
        mb = max(mb, bitems[it, 2] - bitems[it, 1])
    nth = opts[4]  # scratch slots
    dt = srcs.dtype
    # Per-block state carried across chunks: adjoint h, decay of the step after the chunk, dA, dD, dbias.
    H = np.empty((nth, mb + 1, n, LANES), dtype=dt)
    AN = np.empty((nth, mb + 1, n, LANES), dtype=dt)
    GA = np.empty((nth, mb + 1, n, LANES), dtype=dt)
    GD = np.empty((nth, mb + 1, LANES), dtype=dt)
    GBIAS = np.empty((nth, mb + 1, LANES), dtype=dt)
    # Chunk scratch: X[t + 1] = state after step t (X[0] = chunk start), E[t] = exp(delta_t A).
    xs = np.empty((nth, n + 1, LANES), dtype=dt)
    X = np.empty((nth, chunk + 2, n, LANES), dtype=dt)
    E = np.empty((nth, chunk + 1, n, LANES), dtype=dt)
    GB = np.empty((nth, chunk + 1, n, LANES), dtype=dt)  # lane-wise dB / dC of the item's blocks
    GC = np.empty((nth, chunk + 1, n, LANES), dtype=dt)
    uu = np.empty((nth, chunk + 1, LANES), dtype=dt)
    dl = np.empty((nth, chunk + 1, LANES), dtype=dt)
    sg = np.empty((nth, chunk + 1, LANES), dtype=dt)
    go = np.empty((nth, chunk + 1, LANES), dtype=dt)
    zz = np.empty((nth, chunk + 1, LANES), dtype=dt)
    dyt = np.empty((nth, chunk + 1, LANES), dtype=dt)
    dlu = np.empty((nth, chunk + 1, LANES), dtype=dt)
    dud = np.empty((nth, chunk + 1, LANES), dtype=dt)
    dzt = np.empty((nth, chunk + 1, LANES), dtype=dt)
    ddt = np.empty((nth, chunk + 1, LANES), dtype=dt)
    dut = np.empty((nth, chunk + 1, LANES), dtype=dt)
    At = np.empty((nth, n + 1, LANES), dtype=dt)
    Dv = np.empty((nth, 2 * LANES), dtype=dt)
    bv = np.empty((nth, 2 * LANES), dtype=dt)
    Bt = np.empty((nth, chunk + 1, n), dtype=dt)
    Ct = np.empty((nth, chunk + 1, n), dtype=dt)
    yacc = np.empty((nth, 2 * LANES), dtype=dt)
    ddl = np.empty((nth, 2 * LANES), dtype=dt)
    dua = np.empty((nth, 2 * LANES), dtype=dt)
    red = np.empty((nth, 2 * LANES), dtype=dt)
    row = np.empty((nth, chunk + LANES), dtype=dt)
    row2 = np.empty((nth, chunk + LANES), dtype=dt)
    for slot in prange(nth):
        for item in range(slot, bsz * nit, nth):
            b = item // nit
            it = item - b * nit
            grp = bitems[it, 0]
            jb0 = bitems[it, 1]
            nbi = bitems[it, 2] - jb0
            split = bitems[it, 3]
            for jb in range(nbi):
                i0 = sblocks[jb0 + jb, 0]
                nc = sblocks[jb0 + jb, 1]
                for c in range(LANES):
                    valid = c < nc
                    for s in range(n):
                        H[slot, jb, s, c] = dlast[b, i0 + c, s] if valid else 0
                        AN[slot, jb, s, c] = 1  # dlast enters h_{l-1} undamped
                        GA[slot, jb, s, c] = 0
                    GD[slot, jb, c] = 0
                    GBIAS[slot, jb, c] = 0
            for ci in range(nck - 1, -1, -1):
                t0 = ci * chunk
                tl = min(chunk, L - t0)
                for t in range(tl):
                    for s in range(n):
                        for c in range(LANES):
                            GB[slot, t, s, c] = 0
                            GC[slot, t, s, c] = 0
                for s in range(n):
                    for t in range(tl):
                        Bt[slot, t, s] = B[b, grp, s, t0 + t]
                        Ct[slot, t, s] = C[b, grp, s, t0 + t]
                for jb in range(nbi):
                    i0 = sblocks[jb0 + jb, 0]
                    nc = sblocks[jb0 + jb, 1]
                    k = i0 // du
                    c0 = i0 - k * du
                    srow = walks[k, 0] * bsz + b  # the maps (u, dout), or their transposed copies
                    mode = walks[k, 1]
                    # Lanes >= nc must read as zero (an earlier block may have filled them).
                    for c in range(LANES):
                        valid = c < nc
                        for s in range(n):
                            At[slot, s, c] = A[i0 + c, s] if valid else 0
                            xs[slot, s, c] = states[b, i0 + c, ci, s] if valid else 0
                            X[slot, 0, s, c] = xs[slot, s, c]
                        Dv[slot, c] = D[i0 + c] if valid else 0
                        bv[slot, c] = bias[i0 + c] if valid else 0
                        if not valid:
                            for t in range(tl):
                                uu[slot, t, c] = 0
                                dl[slot, t, c] = 0
                                go[slot, t, c] = 0
                                zz[slot, t, c] = 0
                    for c in range(nc):  # u and dout of the map, read along the direction
                        _load_walk(uu, slot, c, srcs, srow, perm, k, mode, c0 + c, t0, tl)
                        _load_walk(go, slot, c, dsrcs, srow, perm, k, mode, c0 + c, t0, tl)
                        if softplus_on:  # vectorised into contiguous rows, then transposed
                            for t in range(tl):
                                sp, sgm = fsoftplus_sigmoid(delta[b, i0 + c, t0 + t] + bv[slot, c])
                                row[slot, t] = sp
                                row2[slot, t] = sgm
                            for t in range(tl):
                                dl[slot, t, c] = row[slot, t]
                                sg[slot, t, c] = row2[slot, t]
                        else:
                            for t in range(tl):
                                dl[slot, t, c] = delta[b, i0 + c, t0 + t] + bv[slot, c]
                        if has_z:
                            for t in range(tl):
                                zz[slot, t, c] = z[b, i0 + c, t0 + t]
                        if ci > 0:  # the previous chunk is next: fetch it while this one computes
                            for t in range(t0 - chunk, t0, 16):
                                _prefetch(delta, b, i0 + c, t)
                                if has_z:
                                    _prefetch(z, b, i0 + c, t)
                            _prefetch_walk(srcs, srow, perm, k, mode, c0 + c, t0 - chunk, t0)
                            _prefetch_walk(dsrcs, srow, perm, k, mode, c0 + c, t0 - chunk, t0)
                    # Recompute the chunk's states, the output gate and dy.
                    for t in range(tl):
                        for c in range(LANES):
                            dlu[slot, t, c] = dl[slot, t, c] * uu[slot, t, c]
                            yacc[slot, c] = 0
                        for s in range(n):
                            bs = Bt[slot, t, s]
                            cs = Ct[slot, t, s]
                            for c in range(LANES):
                                a = fexp(dl[slot, t, c] * At[slot, s, c])
                                xv = a * xs[slot, s, c] + dlu[slot, t, c] * bs
                                xs[slot, s, c] = xv
                                X[slot, t + 1, s, c] = xv
                                E[slot, t, s, c] = a
                                yacc[slot, c] += xv * cs
                        if has_z:
                            for c in range(LANES):
                                zv = zz[slot, t, c]
                                sz = fsigmoid(zv)
                                pre = yacc[slot, c] + Dv[slot, c] * uu[slot, t, c]
                                dzt[slot, t, c] = go[slot, t, c] * pre * sz * (_ONE + zv * (_ONE - sz))
                                dyt[slot, t, c] = go[slot, t, c] * zv * sz
                        else:
                            for c in range(LANES):
                                dyt[slot, t, c] = go[slot, t, c]
                        for c in range(LANES):
                            GD[slot, jb, c] += dyt[slot, t, c] * uu[slot, t, c]
                            dud[slot, t, c] = dyt[slot, t, c] * Dv[slot, c]
                    # Reverse-time adjoint scan over the chunk.
                    for t in range(tl - 1, -1, -1):
                        for c in range(LANES):
                            ddl[slot, c] = 0
                            dua[slot, c] = 0
                        for s in range(n):
                            bs = Bt[slot, t, s]
                            cs = Ct[slot, t, s]
                            for c in range(LANES):
                                hv = H[slot, jb, s, c] * AN[slot, jb, s, c] + dyt[slot, t, c] * cs
                                H[slot, jb, s, c] = hv
                                a = E[slot, t, s, c]
                                AN[slot, jb, s, c] = a
                                hx = hv * a * X[slot, t, s, c]  # h_t * dA_t * x_{t-1}
                                GA[slot, jb, s, c] += hx * dl[slot, t, c]
                                hb = hv * bs
                                ddl[slot, c] += hb * uu[slot, t, c] + hx * At[slot, s, c]
                                dua[slot, c] += hb
                                GB[slot, t, s, c] += hv * dlu[slot, t, c]
                                GC[slot, t, s, c] += dyt[slot, t, c] * X[slot, t + 1, s, c]
                        for c in range(LANES):
                            ddt[slot, t, c] = ddl[slot, c]
                            dut[slot, t, c] = dua[slot, c] * dl[slot, t, c] + dud[slot, t, c]
                    for c in range(nc):
                        if softplus_on:
                            for t in range(tl):
                                ddt[slot, t, c] *= sg[slot, t, c]
                        for t in range(tl):
                            ddelta[b, i0 + c, t0 + t] = ddt[slot, t, c]
                            GBIAS[slot, jb, c] += ddt[slot, t, c]
                            du_s[b, i0 + c, t0 + t] = dut[slot, t, c]
                        if has_z:
                            for t in range(tl):
                                dz[b, i0 + c, t0 + t] = dzt[slot, t, c]
                # Fixed pairwise tree over the W lanes, into this item's own slice of the partials.
                for t in range(tl):
                    for s in range(n):
                        for c in range(8):
                            red[slot, c] = GB[slot, t, s, c] + GB[slot, t, s, c + 8]
                        for c in range(4):
                            red[slot, c] += red[slot, c + 4]
                        dBp[b, grp, split, s, t0 + t] = (red[slot, 0] + red[slot, 2]) + (
                            red[slot, 1] + red[slot, 3]
                        )
                        for c in range(8):
                            red[slot, c] = GC[slot, t, s, c] + GC[slot, t, s, c + 8]
                        for c in range(4):
                            red[slot, c] += red[slot, c + 4]
                        dCp[b, grp, split, s, t0 + t] = (red[slot, 0] + red[slot, 2]) + (
                            red[slot, 1] + red[slot, 3]
                        )
            for jb in range(nbi):
                i0 = sblocks[jb0 + jb, 0]
                for c in range(sblocks[jb0 + jb, 1]):
                    for s in range(n):
                        dA_p[b, i0 + c, s] = GA[slot, jb, s, c]
                    dD_p[b, i0 + c] = GD[slot, jb, c]
                    dbias_p[b, i0 + c] = GBIAS[slot, jb, c]


# --------------------------------------------------------------------------------------------------
# Work plans (pure functions of the shapes, cached).
# --------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=128)
def _plan(batch: int, d: int, du: int, g: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Channel blocks and backward work items for one shape.

    Returns ``ublocks`` (forward: (start u-channel, width) blocks that never straddle a group in any
    direction), ``sblocks`` (backward: (start scan channel, width) blocks, grouped), ``bitems``
    (backward items: group, first block, end block, split index) and the split count S.
    """
    dg = d // g
    ublocks = [(s0 + w, min(LANES, dg - w)) for s0 in range(0, du, dg) for w in range(0, dg, LANES)]
    per_group = [(w, min(LANES, dg - w)) for w in range(0, dg, LANES)]
    nb = len(per_group)
    sblocks = [(grp * dg + w, width) for grp in range(g) for (w, width) in per_group]
    splits = max(1, min(nb, -(-_MIN_ITEMS // (batch * g))))
    bitems = [
        (grp, grp * nb + (s * nb) // splits, grp * nb + ((s + 1) * nb) // splits, s)
        for grp in range(g)
        for s in range(splits)
    ]
    as_arr = functools.partial(np.asarray, dtype=np.int64)
    return as_arr(ublocks), as_arr(sblocks), as_arr(bitems), splits


def _set_threads(items: int) -> int:
    """Set numba's thread count from torch's; return the number of scratch slots for ``items`` items."""
    # One knob (torch.set_num_threads) governs both runtimes.
    threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(threads)
    # Items are dealt round-robin to slots, and slots handed to threads one at a time (dynamic
    # schedule): on a shared machine a static split makes every call wait for the thread that was
    # descheduled longest. Which slot or thread runs an item never changes its result.
    return max(1, min(items, 4 * threads))


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


def _sources(t: torch.Tensor, walk: tuple[int, int, DirectionSet] | None):
    """(sources, perm or a dummy, walks (K, 2) int64) for the kernels to read ``t`` (b, du, l) along
    each direction.

    ``sources`` is (S * b, du, l): the map t (S = 1), followed by its transposed copy when a walk is
    column-major (S = 2); ``walks[k] = (source, mode)``. Walk sets read every direction contiguously
    (column-major walks from the one transposed copy, reversed walks backwards), which streams like a
    plain scan; permutation sets gather through perm. A plain scan is one forward walk.
    """
    dummy_perm = torch.zeros(1, 1, dtype=torch.int64)
    if walk is None:
        return t, dummy_perm, np.array([[0, _FORWARD]], dtype=np.int64)
    h, w, directions = walk
    if directions.walks is None:
        return t, directions.index(h, w), np.array([[0, _GATHER]] * directions.k, dtype=np.int64)
    modes = [(int(wk.transpose), _REVERSED if wk.reverse else _FORWARD) for wk in directions.walks]
    walks = np.array(modes, dtype=np.int64)
    if not walks[:, 0].any():
        return t, dummy_perm, walks
    return torch.cat([t, column_major(t, h, w)]), dummy_perm, walks


class _NumbaScan(torch.autograd.Function):
    """Autograd wrapper of the two kernels; ``walk`` is None for a plain scan, (h, w, direction set) for
    the fused directional scan."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, walk, delta_softplus):
        b, du, length = u.shape
        d, n = A.shape
        g = B.shape[1]
        K = d // du
        cdt = (
            torch.float64
            if torch.float64 in (u.dtype, delta.dtype, A.dtype, B.dtype, C.dtype)
            else (torch.float32)
        )
        cv = [t.detach().to(cdt).contiguous() for t in (u, delta, A, B, C)]
        Dc = D.detach().to(cdt).contiguous() if D is not None else torch.zeros(d, dtype=cdt)
        bc = delta_bias.detach().to(cdt).contiguous() if delta_bias is not None else torch.zeros(d, dtype=cdt)
        zc = z.detach().to(cdt).contiguous() if z is not None else torch.zeros(1, 1, 1, dtype=cdt)
        srcs, pm, walks = _sources(cv[0], walk)
        ctx.walk = walk
        T = chunk_len(n)
        nck = -(-length // T)
        save = any(ctx.needs_input_grad)
        ublocks, _, _, _ = _plan(b, d, du, g)
        out = torch.empty(b, d, length, dtype=cdt)  # per scan channel, in each direction's step order
        last = torch.empty(b, d, n, dtype=cdt)
        states = torch.empty(b, d, nck, n, dtype=cdt) if save else torch.empty(1, 1, 1, 1, dtype=cdt)
        slots = _set_threads(b * K * ublocks.shape[0])
        opts = np.array([int(delta_softplus), int(z is not None), int(save), T, slots], dtype=np.int64)
        with numba.parallel_chunksize(1):
            _fwd_kernel(
                _np(srcs),
                *map(_np, cv[1:]),
                _np(Dc),
                _np(zc),
                _np(bc),
                _np(pm),
                walks,
                ublocks,
                opts,
                _np(out),
                _np(last),
                _np(states),
            )
        if walk is not None:  # the directions' outputs back onto the map, summed in direction order
            h, w, directions = walk
            out = directions.merge_values(out.view(b, K, du, length), h, w)
        if save:
            ctx.save_for_backward(srcs, *cv[1:], Dc, zc, bc, pm, states)
            ctx.walks = walks
            ctx.flags = (delta_softplus, z is not None, D is not None, delta_bias is not None)
            ctx.dtypes = tuple(
                t.dtype if t is not None else None for t in (u, delta, A, B, C, D, z, delta_bias)
            )
        ctx.set_materialize_grads(False)
        return out.to(u.dtype), last

    @staticmethod
    def backward(ctx, dout, dlast):
        srcs, delta, A, B, C, D, z, bias, pm, states = ctx.saved_tensors
        delta_softplus, has_z, has_d, has_bias = ctx.flags
        b, d, length = delta.shape
        du = srcs.shape[1]
        n = A.shape[1]
        g = B.shape[1]
        cdt = srcs.dtype
        T = chunk_len(n)
        _, sblocks, bitems, splits = _plan(b, d, du, g)
        dout = dout.to(cdt).contiguous() if dout is not None else torch.zeros(b, du, length, dtype=cdt)
        dsrcs = _sources(dout, ctx.walk)[0]  # read along each direction like u (the merge's backward)
        dlast = dlast.to(cdt).contiguous() if dlast is not None else torch.zeros(b, d, n, dtype=cdt)
        du_s = torch.empty(b, d, length, dtype=cdt)  # per scan channel (== du when d == du)
        ddelta = torch.empty(b, d, length, dtype=cdt)
        dA_p = torch.empty(b, d, n, dtype=cdt)
        dBp = torch.empty(b, g, splits, n, length, dtype=cdt)
        dCp = torch.empty(b, g, splits, n, length, dtype=cdt)
        dD_p = torch.empty(b, d, dtype=cdt)
        dbias_p = torch.empty(b, d, dtype=cdt)
        dz = torch.empty(b, d, length, dtype=cdt) if has_z else torch.empty(1, 1, 1, dtype=cdt)
        slots = _set_threads(b * bitems.shape[0])
        opts = np.array([int(delta_softplus), int(has_z), 1, T, slots], dtype=np.int64)
        with numba.parallel_chunksize(1):
            _bwd_kernel(
                *map(_np, (srcs, delta, A, B, C, D, z, bias, pm)),
                ctx.walks,
                sblocks,
                bitems,
                opts,
                *map(_np, (states, dsrcs, dlast, du_s, ddelta, dA_p, dBp, dCp, dD_p, dbias_p, dz)),
            )
        if ctx.walk is not None:  # fused directional scan: merge the per-direction du back onto the map
            h, w, directions = ctx.walk
            du_s = directions.merge_values(du_s.view(b, d // du, du, length), h, w)
        dB = dBp[:, :, 0] if splits == 1 else ordered_sum(dBp, 2)
        dC = dCp[:, :, 0] if splits == 1 else ordered_sum(dCp, 2)
        grads = assemble_scan_grads(
            ctx.dtypes, du_s, ddelta, dA_p, dB, dC, dD_p, dz, dbias_p, has_d, has_z, has_bias
        )
        return (*grads, None, None)


def scan_cpu(
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
    """Fused CPU selective scan on validated inputs: u, delta, z (b, d, l), A (d, n), B/C (b, g, n, l).

    Inputs are the already checked, 4-D-B/C form that :func:`specmamba.ops.selective_scan` builds.
    Computes in float32 (float64 if any of u/delta/A/B/C is float64). Returns ``(out, last_state)``:
    out (b, d, l) in u's dtype, last_state (b, d, n) in the compute dtype; both differentiable.
    """
    return _NumbaScan.apply(u, delta, A, B, C, D, z, delta_bias, None, delta_softplus)


def directional_scan_cpu(
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
    """Fused cross-scan + scan + cross-merge on CPU: x (b, du, h, w) -> y (b, du, h*w).

    delta (b, K*du, l), A (K*du, n), B/C (b, g, n, l) with g a multiple of K = ``directions.k``; the
    scan input of direction k is read from x through the set's index, and the K outputs are summed in
    place, in direction order.
    """
    b, du, h, w = x.shape
    y, _ = _NumbaScan.apply(
        x.reshape(b, du, h * w), delta, A, B, C, D, None, delta_bias, (h, w, directions), delta_softplus
    )
    return y
