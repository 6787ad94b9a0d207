"""Fused CPU selective scan (Mamba-1 "S6"; Gu & Dao 2023, arXiv:2312.00752): numba kernels + autograd.

The ``cpu`` backend of :func:`specmamba.ops.selective_scan` and of the fused SS2D entry. The math is
REFERENCE.md section 1 (see ``scan_ref.py`` for the readable form); this file is about doing it fast
on a few CPU cores without ever holding a (b, d, n, l) tensor.

Shape letters: b batch, d scan channels, du channels of ``u`` and of the output (d = k * du, k = 1
for a plain scan, k = 4 directions for the fused SS2D entry), l sequence length, n state size,
g groups of B/C (channel i uses group i // (d / g)), S splits of a group in the backward,
T chunk length (``chunk_len(n)``), W channels processed together (FWD_LANES, LANES).

How it is fast (issue 17; figures in ``specmamba bench scan``, which times the kernels before it,
``scan_cpu_legacy.py``, in the same run):

* SIMD over channels, not over n. A work item owns W channels of one (batch, group) -- W = 64 in the
  forward (FWD_LANES), 16 in the backward (LANES) -- and the state is a (n, W) tile; every inner loop
  runs over the W lanes with constant trip count, so LLVM emits plain AVX-512 code with no horizontal
  reduction (y = sum_n x C is a vertical accumulation over n). 64 lanes are four independent vectors
  per state row, enough to hide the FMA latency of the y accumulation and to amortise the B/C loads.
* The decay is 2**(delta * A log2 e) with A log2 e precomputed per tile: a 2**f polynomial and an
  exponent-field add, 16 vector operations per state update instead of libm's scalar ``expf``; the
  softplus / sigmoid of delta and z use a Cody-Waite e**x and a division-free log1p. Their accuracy
  is stated at each function and tested in ``tests/ops/test_scan_cpu_math.py``. float64 uses libm,
  for gradcheck. Only FMA contraction is enabled (``fastmath={"contract"}``), never reassociation.
* Layout: inputs and outputs are (channel, time) rows, the tiles (time, lane). The forward loads
  tiles of FWD_SPAN = 256 steps (long contiguous reads per row, which the hardware prefetcher
  follows; 32-step tiles cost 1.5x the forward time in stalls) and transposes 16 x 16 blocks in
  registers (``_transpose16_f32``: 16 vector loads, 64 shuffles, 16 stores) instead of element by
  element, which cost as much as the state updates.
* Forward: parallel over (batch x channel block); with ``save_states`` it stores the state at every
  chunk start: b * d * n * l / T values, at most b * d * l / 2 because T >= 2n, so memory grows as
  O(b d l) whatever n is. No (b, d, n, l) tensor exists anywhere.
* Backward: reverse-time scan. Per chunk (last to first) it recomputes the states of the chunk from
  the saved chunk-start state into a (T + 1, n, W) scratch (with the (T, n, W) decay factors, so the
  exp is not evaluated twice), then runs the adjoint recurrence h_t = dy_t C_t + exp(delta_{t+1} A)
  h_{t+1} backwards, accumulating every gradient on the fly. It reads the decay of step t + 1 from
  that scratch rather than keeping a copy per state, and writes its output tiles with the forward's
  register transposes (its input tiles are copied element-wise: register loads measured no faster
  there).
* Determinism: dB/dC sum over the channels of a group. Each work item (batch, group, split) handles
  a fixed, contiguous set of channel blocks; its contributions are summed lane-wise over its blocks,
  then over the W lanes by a fixed pairwise tree, into its own (n, l) slice of a partial buffer; the
  S partials are added in index order afterwards. dA/dD/delta_bias are written per (batch, channel)
  and summed over the batch in order. The split count depends only on the shapes, never on the
  thread count, so results are bitwise reproducible across runs and thread counts. No atomics.
* ``noalias``: numba's parfor alias analysis counts any copied variable of a non-numeric type (a
  bool included) inside the parallel body as a possible array alias, and a single one drops the
  ``noalias`` marking of every array of the kernel; LLVM then vectorises only what runtime alias
  checks allow (the backward ran 2x slower). Hence flags kept as ints (``_tr16``).
* Scheduling: the parallel loop runs over work items and each thread works in its own scratch slot
  (``numba.get_thread_id()``), so items spread evenly over the threads whatever their count (an
  earlier deal of items to 4 x threads slots gave one thread 8 of stage 1's 12 items and the other 4:
  1.5x instead of 2x on two cores). All scratch is allocated once per call with a leading slot
  dimension, which is also what lets numba mark the arrays ``noalias`` so that LLVM vectorises the
  lane loops (see the comment above the kernels). The backward walks time in reverse over many rows
  at once, more streams than the hardware prefetcher follows, so it prefetches the next chunk's rows
  explicitly.
* Memory of a forward+backward beyond inputs, outputs and gradients: saved states (<= b*d*l/2),
  dB/dC partials of b*g*S*n*l values with b*g*S <= max(8, b*g), and per-thread scratch of
  O(T*n*W + FWD_SPAN*W) -- never O(b*d*n*l).
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

LANES = 16  # channels per SIMD tile of the backward (two AVX2 / one AVX-512 float32 vector)
FWD_LANES = 64  # channels per tile of the forward
FWD_SPAN = 256  # steps per tile of the forward (whole chunks): long contiguous reads of every row
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
# Two exponentials, both y = k + f with k = round(y) and 2**k added to the exponent field of a
# polynomial (one normal factor, so results below the normal range come out as 0):
# * the decay 2**y, y = delta * A log2(e) (any sign: A > 0 or delta < 0 are allowed), <= 2.3 ulp;
# * e**x for x <= 0 (softplus and sigmoid need no other), reduced by a two-constant (Cody-Waite) ln 2
#   so that large |x| lose nothing, ~1 ulp.
# log1p(e) for e in [0, 1] is a polynomial (no division). Overall: softplus and sigmoid < 4e-7
# relative everywhere (tests/ops/test_scan_cpu_math.py).
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


@intrinsic
def _transpose16_f32(typingctx, src, sidx, dst, didx, dstep):
    """dst rows didx[-2] + r * dstep, columns didx[-1] ... + 16 <- the transpose of the 16 x 16 float32
    block of src at rows sidx[-2] ... + 16, columns sidx[-1] ... + 16 (both arrays contiguous along their
    last axis), in registers: 16 vector loads, four rounds of two-source shuffles, 16 vector stores.

    The scan kernels hold (time, channel) tiles while their inputs and outputs are (channel, time) rows;
    element-wise, these transposes cost the forward as much as its state updates.
    """
    ok = (
        isinstance(src, types.Array)
        and isinstance(dst, types.Array)
        and src.dtype == types.float32
        and dst.dtype == types.float32
        and all(
            isinstance(ix, types.BaseTuple)
            and len(ix) == a.ndim
            and all(isinstance(e, types.Integer) for e in ix)
            for ix, a in ((sidx, src), (didx, dst))
        )
    )
    if not ok:
        return None
    sig = types.void(src, sidx, dst, didx, dstep)

    def codegen(context, builder, signature, args):
        f32x16 = ir.VectorType(ir.FloatType(), 16)
        i32 = ir.IntType(32)

        def row_ptr(aty, arr_val, idx_ty, idx_val, row, step):
            ary = context.make_array(aty)(context, builder, arr_val)
            idx = [
                context.cast(builder, builder.extract_value(idx_val, a), idx_ty.types[a], types.intp)
                for a in range(aty.ndim)
            ]
            off = builder.mul(step, ir.Constant(step.type, row))
            idx[-2] = builder.add(idx[-2], off)
            ptr = cgutils.get_item_pointer(context, builder, aty, ary, idx, wraparound=False)
            return builder.bitcast(ptr, f32x16.as_pointer())

        one = ir.Constant(context.get_value_type(types.intp), 1)
        rows = [
            builder.load(row_ptr(signature.args[0], args[0], signature.args[1], args[1], r, one), align=4)
            for r in range(16)
        ]
        for b in (8, 4, 2, 1):  # swap the off-diagonal b x b blocks of every 2b x 2b block
            lo = ir.Constant(
                ir.VectorType(i32, 16), [lane if not lane & b else 16 + lane - b for lane in range(16)]
            )
            hi = ir.Constant(
                ir.VectorType(i32, 16), [lane + b if not lane & b else 16 + lane for lane in range(16)]
            )
            new = list(rows)
            for r in range(16):
                if not r & b:
                    new[r] = builder.shuffle_vector(rows[r], rows[r + b], lo)
                    new[r + b] = builder.shuffle_vector(rows[r], rows[r + b], hi)
            rows = new
        step = context.cast(builder, args[4], signature.args[4], types.intp)
        for r in range(16):
            builder.store(
                rows[r], row_ptr(signature.args[2], args[2], signature.args[3], args[3], r, step), align=4
            )
        return context.get_dummy_value()

    return sig, codegen


_F = np.float32
_LOG2E_F64 = 1.4426950408889634  # log2(e); A * log2(e) is formed in float64 and rounded once
_LOG2E = _F(_LOG2E_F64)
_LN2_HI, _LN2_LO = _F(0.693359375), _F(-2.12194440e-4)  # ln 2 = hi + lo, hi exact in 9 bits
_ONE, _ZERO, _INF = _F(1.0), _F(0.0), _F(np.inf)
_ROUND = _F(12582912.0)  # 1.5 * 2**23: y + _ROUND holds round(y) in its low mantissa bits
# 2**f on |f| <= 1/2 as 1 + f q(f), q of degree 4 fitted for the least largest relative error (9.1e-8
# before rounding, <= 2.3 ulp in float32). The constant term is exactly 1 so that decays close to 1 keep
# their distance to 1 to 3e-7 relative: a polynomial with p(0) != 1 would bias every step of the scan by
# the same factor, which compounds over the sequence.
_Q1, _Q2, _Q3 = _F(0.6931469775994475), _F(0.2402224208499345), _F(0.05550733742934759)
_Q4, _Q5 = _F(0.009671512657180997), _F(0.001326472728292695)
# Exponent clamp so that 2**k * p stays a normal float32 assembled from bits: k = round(y) in [-126, 127]
# with p in [2**-1/2, 2**1/2] (ties round to even, so y = -125.5 gives k = -126 and p = 2**1/2).
_EXP2_LO, _EXP2_HI = _F(-125.5), _F(127.0)
# e**r on |r| <= ln(2)/2 as 1 + r q(r), q of degree 5 (2.0e-9 before rounding).
_E1, _E2, _E3 = _F(1.0000000321650357), _F(0.49999994209022797), _F(0.16666431262654557)
_E4, _E5, _E6 = _F(0.04166800204090031), _F(0.008374155309803831), _F(0.0013843653235169058)
_EXP_LO = _F(-87.0)  # e**x for x <= 0 is assembled as a normal float down to here, 0 below
# log(1 + e) on [0, 1] as e q(e), q of degree 8 (3.0e-8 before rounding): no division.
_G0, _G1, _G2, _G3, _G4, _G5, _G6, _G7, _G8 = (
    _F(c)
    for c in (
        0.9999999698762044,
        -0.49999493123935423,
        0.33319096571193757,
        -0.24842980703644826,
        0.19106001659407856,
        -0.13663236039786855,
        0.0782258458172759,
        -0.029505177671811954,
        0.005232679783582358,
    )
)
# fastmath flags of every kernel and helper: only contraction (a * b + c -> one FMA), which keeps IEEE
# semantics otherwise (no reassociation, so the summation orders below stay fixed).
_FAST = {"contract"}


@njit(error_model="numpy", fastmath=_FAST)
def _exp2_f32(y):
    """2**y, <= 2.3 ulp; 0 below 2**-125.5 (absolute error < 2e-38), inf above 2**127."""
    yc = min(max(y, _EXP2_LO), _EXP2_HI)
    kr = yc + _ROUND
    f = yc - (kr - _ROUND)  # f = y - round(y), exactly, in [-1/2, 1/2]
    p = ((((_Q5 * f + _Q4) * f + _Q3) * f + _Q2) * f + _Q1) * f + _ONE
    # 2**k * p by adding k to p's exponent field: round(y)'s bits sit in kr's low mantissa bits, and
    # (bits(kr) - bits(_ROUND)) << 23 == bits(kr) << 23 (mod 2**32) because bits(_ROUND) << 23 == 0.
    res = _bits_to_f32(_f32_to_bits(p) + (_f32_to_bits(kr) << 23))
    res = _INF if y > _EXP2_HI else res
    return _ZERO if y < _EXP2_LO else res


@njit(error_model="numpy", fastmath=_FAST)
def _exp_nonpos_f32(x):
    """e**x for x <= 0 (Cody-Waite reduction, so exact to ~1 ulp at any x); 0 below e**-87 (< 1.7e-38)."""
    xc = max(x, _EXP_LO)
    kr = xc * _LOG2E + _ROUND
    k = kr - _ROUND  # round(x / ln 2) as a float
    r = xc - k * _LN2_HI
    r = r - k * _LN2_LO
    p = (((((_E6 * r + _E5) * r + _E4) * r + _E3) * r + _E2) * r + _E1) * r + _ONE
    res = _bits_to_f32(_f32_to_bits(p) + (_f32_to_bits(kr) << 23))
    return _ZERO if x < _EXP_LO else res


@njit(error_model="numpy", fastmath=_FAST)
def _log1p_unit_f32(e):
    """log(1 + e) for e in [0, 1]."""
    q = _G7 + e * _G8
    q = _G6 + e * q
    q = _G5 + e * q
    q = _G4 + e * q
    q = _G3 + e * q
    q = _G2 + e * q
    q = _G1 + e * q
    q = _G0 + e * q
    return e * q


def fexp2(y):
    """2**y; inside numba kernels a vectorisable float32 version (float64: libm)."""
    return math.exp2(y)


def fsoftplus(x):
    """log(1 + e**x) as max(x, 0) + log1p(e**-|x|): no overflow, no threshold."""
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def fsigmoid(x):
    """1 / (1 + e**-x) from e = e**-|x| (never overflows): 1 / (1 + e), or e / (1 + e) for x < 0."""
    e = math.exp(-abs(x))
    return 1.0 / (1.0 + e) if x >= 0 else e / (1.0 + e)


def fsoftplus_sigmoid(x):
    """(softplus(x), sigmoid(x)) sharing one exp: e = e**-|x|, log1p(e) + max(x, 0), 1/(1+e) or e/(1+e)."""
    e = math.exp(-abs(x))
    r = 1.0 / (1.0 + e)
    return max(x, 0.0) + math.log1p(e), (r if x >= 0 else e * r)


_JIT = {"fastmath": _FAST}


@overload(fexp2, jit_options=_JIT)
def _fexp2_impl(y):
    if y == types.float32:
        return lambda y: _exp2_f32(y)
    return lambda y: math.exp2(y)


@overload(fsoftplus, jit_options=_JIT)
def _fsoftplus_impl(x):
    if x == types.float32:
        return lambda x: max(x, _ZERO) + _log1p_unit_f32(_exp_nonpos_f32(-abs(x)))
    return lambda x: max(x, 0.0) + math.log1p(math.exp(-abs(x)))


@overload(fsigmoid, jit_options=_JIT)
def _fsigmoid_impl(x):
    if x == types.float32:

        def impl32(x):
            e = _exp_nonpos_f32(-abs(x))
            r = _ONE / (_ONE + e)
            return r if x >= _ZERO else e * r

        return impl32

    def impl64(x):
        e = math.exp(-abs(x))
        r = 1.0 / (1.0 + e)
        return r if x >= 0 else e * r

    return impl64


@overload(fsoftplus_sigmoid, jit_options=_JIT)
def _fsoftplus_sigmoid_impl(x):
    if x == types.float32:

        def impl32(x):
            e = _exp_nonpos_f32(-abs(x))
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
# save_states, T, scratch slots (+ the forward's tile span)].
#
# Scratch is allocated once per call with a leading dimension of one slot per thread, indexed as
# [numba.get_thread_id(), ...] inside the parallel loop over work items, never through views: numba
# then proves that no array in the parallel body aliases another and marks them all ``noalias``,
# which is what lets LLVM vectorise the lane loops
# (with a dozen separately allocated arrays it gives up on runtime alias checks and emits scalar
# code, about 6x slower). Every work item (re)initialises what it reads, so reuse across items is
# safe and results do not depend on which thread ran which item.
# --------------------------------------------------------------------------------------------------


def _tr16(src, sidx, dst, didx, dstep):
    """Transpose one 16 x 16 block in registers (see :func:`_transpose16_f32`): 1, or 0 where it cannot
    (float64) and the caller copies element by element.

    An int, not a bool: numba's parfor alias analysis counts every non-numeric variable copied inside
    the parallel body as a possible array alias, and one such alias costs the whole kernel its
    ``noalias`` marking (the backward then ran 2x slower).
    """
    return 0


@overload(_tr16)
def _tr16_impl(src, sidx, dst, didx, dstep):
    if src.dtype == types.float32 and dst.dtype == types.float32:

        def impl32(src, sidx, dst, didx, dstep):
            _transpose16_f32(src, sidx, dst, didx, dstep)
            return 1

        return impl32
    return lambda src, sidx, dst, didx, dstep: 0


@njit(inline="always")
def _rows_to_tile(tile, slot, src, i, j0, nrows, t0, tl, rev):
    """tile[slot, t, r] = src[i, j0 + r, p] for r < nrows, t < tl, with p = t0 + t, or the same step
    counted from the end of the row (``rev``): (channel, time) rows into a (time, lane) tile."""
    last = src.shape[2] - 1
    for rb in range(0, nrows, 16):
        for tb in range(0, tl, 16):
            done = 0
            if rb + 16 <= nrows and tb + 16 <= tl:
                if rev:
                    done = _tr16(src, (i, j0 + rb, last - (t0 + tb + 15)), tile, (slot, tb + 15, rb), -1)
                else:
                    done = _tr16(src, (i, j0 + rb, t0 + tb), tile, (slot, tb, rb), 1)
            if not done:
                for r in range(rb, min(rb + 16, nrows)):
                    for t in range(tb, min(tb + 16, tl)):
                        tile[slot, t, r] = src[i, j0 + r, last - (t0 + t) if rev else t0 + t]


@njit(inline="always")
def _tile_to_rows(dst, i, j0, nrows, t0, tl, tile, slot):
    """dst[i, j0 + r, t0 + t] = tile[slot, t, r] for r < nrows, t < tl: a (time, lane) tile back into
    (channel, time) rows."""
    for rb in range(0, nrows, 16):
        for tb in range(0, tl, 16):
            done = 0
            if rb + 16 <= nrows and tb + 16 <= tl:
                done = _tr16(tile, (slot, tb, rb), dst, (i, j0 + rb, t0 + tb), 1)
            if not done:
                for r in range(rb, min(rb + 16, nrows)):
                    for t in range(tb, min(tb + 16, tl)):
                        dst[i, j0 + r, t0 + t] = tile[slot, t, r]


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


@njit(inline="always")
def _lane_tree(G, slot, t, s, red):
    """Sum of G[slot, t, s, :] over the LANES lanes by a fixed pairwise tree (halves added lane-wise
    down to four partial sums, then (0 + 2) + (1 + 3)): the same order whatever thread runs it."""
    half = LANES // 2
    for c in range(half):
        red[slot, c] = G[slot, t, s, c] + G[slot, t, s, c + half]
    w = half // 2
    while w >= 4:
        for c in range(w):
            red[slot, c] += red[slot, c + w]
        w //= 2
    return (red[slot, 0] + red[slot, 2]) + (red[slot, 1] + red[slot, 3])


@njit(parallel=True, error_model="numpy", fastmath=_FAST, cache=True)
def _fwd_kernel(srcs, delta, A, B, C, D, z, bias, perm, walks, ublocks, opts, out, last, states):  # noqa: C901
    softplus_on = opts[0] != 0
    has_z = opts[1] != 0
    save = opts[2] != 0
    chunk = opts[3]
    bsz, d, L = delta.shape
    du = srcs.shape[1]
    n = A.shape[1]
    K = d // du
    ngrp = B.shape[0] // bsz
    dg = d // ngrp
    nblk = ublocks.shape[0]
    nth = opts[4]  # scratch slots
    span = opts[5]  # steps per tile, a multiple of chunk
    dt = srcs.dtype
    W = FWD_LANES
    xs = np.empty((nth, n, W), dtype=dt)  # state tile (n, W)
    A2 = np.empty((nth, n, W), dtype=dt)  # A * log2(e): the decay is 2**(delta * A2)
    Dv = np.empty((nth, W), dtype=dt)
    bv = np.empty((nth, W), dtype=dt)
    uu = np.empty((nth, span, W), dtype=dt)  # (T, W) tiles
    dl = np.empty((nth, span, W), dtype=dt)
    yy = np.empty((nth, span, W), dtype=dt)
    zz = np.empty((nth, span, W), dtype=dt)
    Bt = np.empty((nth, span, n), dtype=dt)
    Ct = np.empty((nth, span, n), dtype=dt)
    dlu = np.empty((nth, W), dtype=dt)
    yacc = np.empty((nth, W), dtype=dt)
    for item in prange(bsz * K * nblk):  # one (batch, direction, channel block) each
        slot = numba.get_thread_id()  # this thread's scratch
        b = item // (K * nblk)
        k = (item // nblk) % K
        j = item % nblk
        c0 = ublocks[j, 0]
        nc = ublocks[j, 1]
        i0 = k * du + c0  # first scan channel of this block in direction k
        grp = i0 // dg
        srow = walks[k, 0] * bsz + b  # the map, or its transposed copy, of batch element b
        mode = walks[k, 1]
        # Lanes >= nc hold A = 0, u = 0, raw delta = 0: their state stays exactly 0.
        for c in range(W):
            valid = c < nc
            for s in range(n):
                A2[slot, s, c] = A[i0 + c, s] * _LOG2E_F64 if valid else 0
                xs[slot, s, c] = 0
            Dv[slot, c] = D[i0 + c] if valid else 0
            bv[slot, c] = bias[i0 + c] if valid else 0
            if not valid:
                for t in range(span):
                    uu[slot, t, c] = 0
                    dl[slot, t, c] = 0
                    zz[slot, t, c] = 0
        for t0 in range(0, L, span):  # tiles of ``span`` steps: long contiguous reads of every row
            tl = min(span, L - t0)
            if mode == _GATHER:
                for c in range(nc):
                    _load_walk(uu, slot, c, srcs, srow, perm, k, mode, c0 + c, t0, tl)
            else:
                _rows_to_tile(uu, slot, srcs, srow, c0, nc, t0, tl, mode == _REVERSED)
            _rows_to_tile(dl, slot, delta, b, i0, nc, t0, tl, False)
            if has_z:
                _rows_to_tile(zz, slot, z, b, i0, nc, t0, tl, False)
            if softplus_on:  # over whole (T, W) tiles: vectorised
                for t in range(tl):
                    for c in range(W):
                        dl[slot, t, c] = fsoftplus(dl[slot, t, c] + bv[slot, c])
            else:
                for t in range(tl):
                    for c in range(W):
                        dl[slot, t, c] = dl[slot, t, c] + bv[slot, c]
            _rows_to_tile(Bt, slot, B, b * ngrp + grp, 0, n, t0, tl, False)
            _rows_to_tile(Ct, slot, C, b * ngrp + grp, 0, n, t0, tl, False)
            for t in range(tl):
                if save and (t0 + t) % chunk == 0:  # the state at every chunk start, for the backward
                    ci = (t0 + t) // chunk
                    for c in range(nc):
                        for s in range(n):
                            states[b, i0 + c, ci, s] = xs[slot, s, c]
                for c in range(W):
                    dlu[slot, c] = dl[slot, t, c] * uu[slot, t, c]
                    yacc[slot, c] = 0
                for s in range(n):
                    bs = Bt[slot, t, s]
                    cs = Ct[slot, t, s]
                    for c in range(W):
                        xv = fexp2(dl[slot, t, c] * A2[slot, s, c]) * xs[slot, s, c] + dlu[slot, c] * bs
                        xs[slot, s, c] = xv
                        yacc[slot, c] += xv * cs
                for c in range(W):
                    yy[slot, t, c] = yacc[slot, c] + uu[slot, t, c] * Dv[slot, c]
            if has_z:
                for t in range(tl):
                    for c in range(W):
                        zv = zz[slot, t, c]
                        yy[slot, t, c] = yy[slot, t, c] * zv * fsigmoid(zv)
            _tile_to_rows(out, b, i0, nc, t0, tl, yy, slot)  # each direction's own step order
        for c in range(nc):
            for s in range(n):
                last[b, i0 + c, s] = xs[slot, s, c]


@njit(parallel=True, error_model="numpy", fastmath=_FAST, cache=True)
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
    A2 = np.empty((nth, n + 1, LANES), dtype=dt)  # A * log2(e): the decay is 2**(delta * A2)
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
    for item in prange(bsz * nit):
        slot = numba.get_thread_id()  # this thread's scratch
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
                        A2[slot, s, c] = A[i0 + c, s] * _LOG2E_F64 if valid else 0
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
                            a = fexp2(dl[slot, t, c] * A2[slot, s, c])
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
                # Reverse-time adjoint scan over the chunk. The decay of the step after t is E[t + 1];
                # after the chunk's last step it is the next chunk's first, carried in AN.
                for s in range(n):
                    for c in range(LANES):
                        E[slot, tl, s, c] = AN[slot, jb, s, c]
                for t in range(tl - 1, -1, -1):
                    for c in range(LANES):
                        ddl[slot, c] = 0
                        dua[slot, c] = 0
                    for s in range(n):
                        bs = Bt[slot, t, s]
                        cs = Ct[slot, t, s]
                        for c in range(LANES):
                            hv = H[slot, jb, s, c] * E[slot, t + 1, s, c] + dyt[slot, t, c] * cs
                            H[slot, jb, s, c] = hv
                            a = E[slot, t, s, c]
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
                for s in range(n):
                    for c in range(LANES):
                        AN[slot, jb, s, c] = E[slot, 0, s, c]
                if softplus_on:
                    for t in range(tl):
                        for c in range(LANES):
                            ddt[slot, t, c] *= sg[slot, t, c]
                for t in range(tl):
                    for c in range(LANES):
                        GBIAS[slot, jb, c] += ddt[slot, t, c]
                _tile_to_rows(ddelta, b, i0, nc, t0, tl, ddt, slot)
                _tile_to_rows(du_s, b, i0, nc, t0, tl, dut, slot)
                if has_z:
                    _tile_to_rows(dz, b, i0, nc, t0, tl, dzt, slot)
            # Fixed pairwise tree over the W lanes, into this item's own slice of the partials.
            for t in range(tl):
                for s in range(n):
                    dBp[b, grp, split, s, t0 + t] = _lane_tree(GB, slot, t, s, red)
                    dCp[b, grp, split, s, t0 + t] = _lane_tree(GC, slot, t, s, red)
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
    ublocks = [(s0 + w, min(FWD_LANES, dg - w)) for s0 in range(0, du, dg) for w in range(0, dg, FWD_LANES)]
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


def _set_threads() -> int:
    """Set numba's thread count from torch's (one knob, torch.set_num_threads, governs both runtimes);
    return the number of scratch slots: one per thread of numba's pool, indexed by its thread id."""
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
    return numba.config.NUMBA_NUM_THREADS


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
        slots = _set_threads()
        span = T * max(1, FWD_SPAN // T)
        opts = np.array([int(delta_softplus), int(z is not None), int(save), T, slots, span], dtype=np.int64)
        with numba.parallel_chunksize(1):
            _fwd_kernel(
                _np(srcs),
                _np(cv[1]),
                _np(cv[2]),
                _np(cv[3].view(b * g, n, length)),  # B, C as (batch x group) rows
                _np(cv[4].view(b * g, n, length)),
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
        slots = _set_threads()
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
