"""Fused CPU selective scan (Mamba-1 "S6"; Gu & Dao 2023, arXiv:2312.00752): numba kernels + autograd.

The ``cpu`` backend of :func:`specmamba.ops.selective_scan` and of the fused SS2D entry. The math is
REFERENCE.md section 1 (see ``scan_ref.py`` for the readable form); this file is about doing it fast
on a few CPU cores without ever holding a (b, d, n, l) tensor.

Shape letters: b batch, d scan channels, du channels of ``u`` and of the output (d = k * du, k = 1
for a plain scan, k = 4 directions for the fused SS2D entry), l sequence length, n state size,
g groups of B/C (channel i uses group i // (d / g)), S splits of a group in the backward,
T chunk length (``chunk_len(n)``), W channels processed together (FWD_LANES, LANES).

How it is fast (issue 17; figures in ``specmamba bench scan``. The kernels before it, deleted when
it closed, took 31.4 ms forward and 95.5 ms forward+backward at VM-UNet's stage 1 against these
kernels' 8.8 and 34.6 ms in the same run: two cores of a Xeon with AVX-512, 365 GFLOP/s fp32 GEMM):

* SIMD over channels, not over n. A work item owns W channels of one (batch, group) -- W = 64 in the
  forward (FWD_LANES), 16 in the backward (LANES). In the forward the state is a (n, W) tile whose
  rows are register vectors (``_Vec``, below), so there is no horizontal reduction (y = sum_n x C is a
  vertical accumulation over n, held in registers across the states); 64 lanes are four independent
  AVX-512 vectors per state row, enough to hide the FMA latency of the y accumulation and to amortise
  the B/C broadcasts. Written as loops over the lanes instead, LLVM vectorised them 256 bits wide on
  Intel AVX-512 hosts (its ``prefer-vector-width=256`` tuning): the explicit vectors made the forward
  1.2-1.3x faster there (stage 1 13.0 -> 10.3 ms, Xeon with AMX), and so do the delta tiles (low-rank
  product, softplus: ``_softplus_tile``) and the backward's per-lane tiles (``_delta_tiles``, four
  steps per vector). The backward's states work on blocks of BWD_STATES = 4 states x 16 lanes held in
  registers (``_Vec``).
* The decay is 2**(delta * A log2 e) with A log2 e precomputed per tile: a 2**f polynomial and an
  exponent-field add, 12 vector operations per state update (13 without AVX-512DQ) instead of libm's
  scalar ``expf``; the softplus / sigmoid of delta and z use a Cody-Waite e**x and a division-free
  log1p. Their accuracy is stated at each function and tested in ``tests/ops/test_scan_cpu_math.py``.
  float64 uses libm, for gradcheck. Only FMA contraction is enabled (``fastmath={"contract"}``), never
  reassociation.
* Layout: inputs and outputs are (channel, time) rows, the tiles (time, lane). The forward loads
  tiles of FWD_SPAN = 256 steps (long contiguous reads per row, which the hardware prefetcher
  follows; 32-step tiles cost 1.5x the forward time in stalls) and transposes 16 x 16 blocks in
  registers (``_transpose16``: 16 vector loads, 64 shuffles, 16 stores) instead of element by
  element, which cost as much as the state updates.
* bfloat16 storage (what CPU bf16 autocast hands the scan): where u, delta, B, C (and z) all arrive
  as bfloat16, the kernels read them, and the backward its dout, as bfloat16 bits (int16 arrays),
  widened inside the register transposes, and the backward writes ddelta / dz rounded to bfloat16
  (nearest even) on the way out. The arithmetic stays float32, bit for bit that of float32 copies of
  the inputs (widening is exact), but those copies, and the rounding of the gradients afterwards, are
  gone: they were 18% of a bf16 vmunet inference; without them bf16 inference ran 1.21x and training
  1.18x faster (interleaved A/B, two cores). Outputs stay float32 until the directions are merged.
* Forward: parallel over (batch x channel block); with ``save_states`` it stores the state at every
  chunk start ((b, chunk, n, d), channels contiguous): b * d * n * l / T values, at most b * d * l / 2
  because T >= 2n, so memory grows as O(b d l) whatever n is. No (b, d, n, l) tensor exists anywhere.
* Backward: reverse-time scan, chunk by chunk (last to first). A is diagonal, so the states of a
  channel are independent recurrences that meet only in sums over the states (y, ddelta, du): per
  chunk and block of 4 states the backward recomputes the chunk's states from the saved chunk-start
  state, keeping the decays E_t and E_t * x_{t-1} in a (T, 4, W) scratch (8 KB, in L1; the exp is
  evaluated once), then runs the adjoint recurrence h_t = dy_t C_t + E_{t+1} h_{t+1} backwards with h
  and dA's sum in registers, and adds the block's share of the state sums (the first state block
  stores them: no zeroing passes). Tiles come in and go out through the forward's register transposes;
  the next chunk's rows and saved states are prefetched; ddelta / du / dz rows are written with
  non-temporal stores where aligned (the kernel never reads them back, and fetching every line before
  writing it cost 6-7% of the backward); dB/dC partials are written (time, state), one contiguous
  store per step, their 16 lane sums per step taken in registers (``_lane_sums16_f32``).
* Determinism: dB/dC sum over the channels of a group. Each work item (batch, group, split) handles
  a fixed, contiguous set of channel blocks; its contributions are summed lane-wise over its blocks,
  then over the W lanes by a fixed pairwise tree, into its own (l, n) slice of a partial buffer; the
  S partials are added in index order afterwards. dA/dD/delta_bias are written per (batch, channel)
  and summed over the batch in order. The split count depends only on the shapes, never on the
  thread count, so results are bitwise reproducible across runs and thread counts. No atomics.
* ``noalias``: numba's parfor alias analysis counts any copied variable of a non-numeric type (a
  bool included) inside the parallel body as a possible array alias, and a single one drops the
  ``noalias`` marking of every array of the kernel; LLVM then vectorises only what runtime alias
  checks allow (the backward ran 2x slower). Hence flags kept as ints (``_tr16``), and ``_Vec`` a
  numba Number.
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
* The dt projection at inference (``directional_scan_cpu(..., dt_proj=W)``, forward only): SS2D's
  delta is W (K*du, R) @ dt with R = ceil(C / 16) small (6 at VM-UNet's stage 1), so instead of a
  (b, K*du, l) delta tensor made by a batched GEMM and then transposed into tiles, the kernel loads
  the (T, R) dt tile and forms each (T, W) delta tile with R FMAs per value, in r order (R FMAs
  against the ~18 vector operations of each of the n state updates that value feeds). Bitwise the
  GEMM's product where that sums in r order too (MKL did at the model's shapes, AVX-512 host);
  vmunet inference 1.10x, spec_vmamba 1.14x, vmaml_unet 1.15x (interleaved A/B, two cores).
  Training keeps the product taken first: the backward needs delta and returns its gradient.

Numba is imported here, and this module is imported only when the ``cpu`` backend is first used.
Kernels are compiled on first use per dtype (float32, float64, and float32 with bfloat16 storage) and
cached on disk (``cache=True``).
The vectorisable math lives in this file on purpose: numba's on-disk cache is keyed on the source file
of the kernel only, so helpers in another module could be silently served stale after an edit.
"""

from __future__ import annotations

import functools
import math
import platform

import numba
import numpy as np
import torch
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, models, overload, register_model

from .checks import scan_compute_dtype
from .directions import DirectionSet
from .scan_grads import assemble_scan_grads, ordered_sum

__all__ = ["LANES", "chunk_len", "directional_scan_cpu", "scan_cpu"]

LANES = 16  # channels per SIMD tile of the backward (two AVX2 / one AVX-512 float32 vector)
FWD_LANES = 64  # channels per tile of the forward
FWD_SPAN = 256  # steps per tile of the forward (whole chunks): long contiguous reads of every row
BWD_STATES = 4  # states per block of the backward: one block's chunk scratch stays in L1
# How the kernels read direction k's input (``walks[k] = (source, mode)``): along the source (the map,
# or for column-major walks its transposed copy) forwards or backwards, or through perm[k].
_FORWARD, _REVERSED, _GATHER = 0, 1, 2
_MIN_ITEMS = 8  # backward work items per call at least (shape-only: determinism across thread counts)
_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


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
def _prefetch(typingctx, arr, idx):
    """Ask the CPU to start loading the cache line of arr[idx] (a full index tuple) for reading.

    The backward walks time in reverse over dozens of rows at once, more streams than the hardware
    prefetcher follows; without this hint it stalls on memory latency for about a third of its time.
    """
    if not _is_index(arr, idx, (types.float32, types.float64, types.int16)):
        return None
    sig = types.void(arr, idx)

    def codegen(context, builder, signature, args):
        ptr = _vec_ptr(context, builder, signature, args, 1)
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


def _item_ptr(context, builder, aty, ity, arr, idx, width, row=None):
    """Pointer to ``width`` values of array ``arr`` (numba type aty) from index tuple ``idx`` (type ity)
    on, as a vector pointer; ``row`` (an intp LLVM value), if given, is added to the second-last index."""
    ary = context.make_array(aty)(context, builder, arr)
    pos = [
        context.cast(builder, builder.extract_value(idx, a), ity.types[a], types.intp)
        for a in range(aty.ndim)
    ]
    if row is not None:
        pos[-2] = builder.add(pos[-2], row)
    ptr = cgutils.get_item_pointer(context, builder, aty, ary, pos, wraparound=False)
    return builder.bitcast(ptr, ir.VectorType(context.get_value_type(aty.dtype), width).as_pointer())


@intrinsic
def _sfence(typingctx):
    """Order this thread's earlier non-temporal stores before its later stores (x86 ``sfence``): a work
    item's streamed outputs are then visible to whoever reads them after the parallel loop. A no-op
    elsewhere (other targets' non-temporal stores need no fence here)."""

    def codegen(context, builder, signature, args):
        if _X86:
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse.sfence"
            )
            builder.call(fn, [])
        return context.get_dummy_value()

    return types.void(), codegen


def _bf16_to_f32_ir(builder, bits, width):
    """float32 values of ``width`` bfloat16 bit patterns (an i16 vector): the bits are float32's top
    half, so widening is exact (zero-extend, shift left by 16, reinterpret)."""
    i32v = ir.VectorType(ir.IntType(32), width)
    wide = builder.shl(builder.zext(bits, i32v), ir.Constant(i32v, [16] * width))
    return builder.bitcast(wide, ir.VectorType(ir.FloatType(), width))


def _f32_to_bf16_ir(builder, values, width):
    """bfloat16 bit patterns (an i16 vector) of ``width`` float32 values, rounded to nearest even as
    torch's ``.to(torch.bfloat16)`` rounds; NaN as 0x7FC0 (torch's NaN bits vary with its code path)."""
    i32v = ir.VectorType(ir.IntType(32), width)

    def const(v):
        return ir.Constant(i32v, [v] * width)

    bits = builder.bitcast(values, i32v)
    odd = builder.and_(builder.lshr(bits, const(16)), const(1))
    rounded = builder.lshr(builder.add(bits, builder.add(odd, const(0x7FFF))), const(16))
    rounded = builder.select(builder.fcmp_unordered("uno", values, values), const(0x7FC0), rounded)
    return builder.trunc(rounded, ir.VectorType(ir.IntType(16), width))


# Arrays of int16 in the kernels hold bfloat16 bit patterns (numba has no bfloat16): inputs and
# outputs that are bfloat16 tensors are passed as their int16 views and widened to / rounded from
# float32 on the way into and out of the tiles, so no float32 copy of them is ever made.
_TILE_DTYPES = (types.float32, types.int16)


def _transposable(src_dtype, dst_dtype) -> bool:
    """Whether :func:`_transpose16` takes these element types: float32 tiles, one side of which may be
    bfloat16 bits."""
    return src_dtype in _TILE_DTYPES and dst_dtype in _TILE_DTYPES and types.float32 in (src_dtype, dst_dtype)


@intrinsic
def _transpose16(typingctx, src, sidx, dst, didx, dstep, stream):
    """dst rows didx[-2] + r * dstep, columns didx[-1] ... + 16 <- the transpose of the 16 x 16 block of
    src at rows sidx[-2] ... + 16, columns sidx[-1] ... + 16 (both arrays contiguous along their last
    axis), in registers: 16 vector loads, four rounds of two-source shuffles, 16 vector stores.
    float32 values; either side may instead be bfloat16 bits (int16, see ``_TILE_DTYPES``), widened
    exactly after the loads or rounded to nearest even before the stores.

    The scan kernels hold (time, channel) tiles while their inputs and outputs are (channel, time) rows;
    element-wise, these transposes cost the forward as much as its state updates.

    ``stream`` != 0: non-temporal stores, for output rows the kernel never reads back; the caller
    guarantees that the destination's first value is 64-byte aligned and l % 16 == 0 (so that every
    16-value piece of a row is aligned to its own size), and ends its writes with :func:`_sfence`. The
    backward's 16-row stores into (channel, time) rows 4 * l bytes apart otherwise fetch every line
    first (a 16 KB stride at l = 4096 also puts all 16 in one L1 set): 6-7% of its time.
    """
    ok = _is_index(src, sidx, _TILE_DTYPES) and _is_index(dst, didx, _TILE_DTYPES)
    if not (ok and _transposable(src.dtype, dst.dtype)):
        return None
    sig = types.void(src, sidx, dst, didx, dstep, stream)

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        src_ty, sidx_ty, dst_ty, didx_ty = signature.args[:4]
        src16, dst16 = src_ty.dtype == types.int16, dst_ty.dtype == types.int16

        def row_ptr(aty, ity, arr, idx, r, step):  # row r of the block, rows ``step`` apart
            return _item_ptr(
                context, builder, aty, ity, arr, idx, 16, builder.mul(step, ir.Constant(step.type, r))
            )

        one = ir.Constant(context.get_value_type(types.intp), 1)
        rows = [
            builder.load(row_ptr(src_ty, sidx_ty, args[0], args[1], r, one), align=src_ty.dtype.bitwidth // 8)
            for r in range(16)
        ]
        if src16:
            rows = [_bf16_to_f32_ir(builder, v, 16) for v in rows]
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
        if dst16:
            rows = [_f32_to_bf16_ir(builder, v, 16) for v in rows]
        size = dst_ty.dtype.bitwidth // 8
        step = context.cast(builder, args[4], signature.args[4], types.intp)
        ptrs = [row_ptr(dst_ty, didx_ty, args[2], args[3], r, step) for r in range(16)]
        streaming = builder.icmp_signed("!=", args[5], ir.Constant(args[5].type, 0))
        with builder.if_else(streaming) as (nontemporal, cached):
            with nontemporal:
                hint = builder.module.add_metadata([ir.Constant(i32, 1)])
                for r in range(16):
                    builder.store(rows[r], ptrs[r], align=16 * size).set_metadata("nontemporal", hint)
            with cached:
                for r in range(16):
                    builder.store(rows[r], ptrs[r], align=size)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _lane_sums16_f32(typingctx, src, sidx, dst, didx):
    """dst[didx ... + 16] <- for each of the 16 rows of the 16 x 16 float32 block at src[sidx] (rows along
    src's second-last axis, each contiguous along the last), the sum of its 16 values by the pairwise
    tree of :func:`_lane_tree` (halves of width 8, 4, 2, 1 added lane-wise), in registers.

    A transposing reduction: each round adds the two halves of every row and packs two rows' halves into
    one vector, so 16 rows take 8 + 4 + 2 + 1 vector additions and twice as many shuffles, against a full
    transpose (64 shuffles, 32 memory round trips) followed by the same additions.
    """
    ok = (
        _is_index(src, sidx)
        and _is_index(dst, didx)
        and src.dtype == types.float32
        and dst.dtype == types.float32
        and src.ndim >= 2
    )
    if not ok:
        return None
    sig = types.void(src, sidx, dst, didx)

    def codegen(context, builder, signature, args):
        i32x16 = ir.VectorType(ir.IntType(32), 16)
        src_ty, sidx_ty, dst_ty, didx_ty = signature.args
        intp = context.get_value_type(types.intp)
        vecs = [
            builder.load(
                _item_ptr(context, builder, src_ty, sidx_ty, *args[:2], 16, ir.Constant(intp, r)), align=4
            )
            for r in range(16)
        ]
        # vecs[j] holds runs of 2 * half lanes, each the partial sums of one row; a round adds the two
        # halves of every run of vecs[j] and of vecs[j + m] and interleaves the results run by run.
        half = 8
        while half >= 1:
            m = len(vecs) // 2
            lo = []
            for q in range(16):
                run = q // half  # output run: even from vecs[j], odd from vecs[j + m], in turn
                lo.append((run % 2) * 16 + (run // 2) * 2 * half + q % half)
            hi = [lane + half for lane in lo]
            vecs = [
                builder.fadd(
                    builder.shuffle_vector(vecs[j], vecs[j + m], ir.Constant(i32x16, lo)),
                    builder.shuffle_vector(vecs[j], vecs[j + m], ir.Constant(i32x16, hi)),
                )
                for j in range(m)
            ]
            half //= 2
        builder.store(vecs[0], _item_ptr(context, builder, dst_ty, didx_ty, *args[2:], 16), align=4)
        return context.get_dummy_value()

    return sig, codegen


_F = np.float32
_LOG2E_F64 = 1.4426950408889634  # log2(e); A * log2(e) is formed in float64 and rounded once
_LOG2E = _F(_LOG2E_F64)
_LN2_HI, _LN2_LO = _F(0.693359375), _F(-2.12194440e-4)  # ln 2 = hi + lo, hi exact in 9 bits
_ONE, _ZERO = _F(1.0), _F(0.0)
_ROUND = _F(12582912.0)  # 1.5 * 2**23: y + _ROUND holds round(y) in its low mantissa bits
# 2**f on |f| <= 1/2 as 1 + f q(f), q of degree 4 fitted for the least largest relative error (9.1e-8
# before rounding, <= 2.3 ulp in float32). The constant term is exactly 1 so that decays close to 1 keep
# their distance to 1 to 3e-7 relative: a polynomial with p(0) != 1 would bias every step of the scan by
# the same factor, which compounds over the sequence.
_Q1, _Q2, _Q3 = _F(0.6931469775994475), _F(0.2402224208499345), _F(0.05550733742934759)
_Q4, _Q5 = _F(0.009671512657180997), _F(0.001326472728292695)
# Exponent clamp so that 2**k * p is assembled from bits without wrapping: k = round(y) in [-126, 128]
# with p in [2**-1/2, 2**1/2] (ties round to even, so y = -125.5 gives k = -126 and p = 2**1/2). At the
# top, k = 128 comes with p <= 1: finite below 2**128, and y >= 128 clamps to exactly 128, f = 0, p = 1,
# whose bits plus 128 << 23 are those of +inf: the overflow needs no select of its own. Below the range
# y is replaced by -127 (not clamped to -125.5): f = 0, p = 1, and 1.0's bits plus -127 << 23 are those
# of +0.0, so the underflow needs no select of its own either (one vector operation fewer per update).
_EXP2_LO, _EXP2_HI, _EXP2_ZERO = _F(-125.5), _F(128.0), _F(-127.0)
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
    """2**y, <= 2.3 ulp; 0 below 2**-125.5 (absolute error < 2e-38), inf from 2**128 (the overflow)."""
    yc = _EXP2_ZERO if y < _EXP2_LO else y
    yc = _EXP2_HI if _EXP2_HI < yc else yc
    kr = yc + _ROUND
    f = yc - (kr - _ROUND)  # f = y - round(y), exactly, in [-1/2, 1/2]
    p = ((((_Q5 * f + _Q4) * f + _Q3) * f + _Q2) * f + _Q1) * f + _ONE
    # 2**k * p by adding k to p's exponent field: round(y)'s bits sit in kr's low mantissa bits, and
    # (bits(kr) - bits(_ROUND)) << 23 == bits(kr) << 23 (mod 2**32) because bits(_ROUND) << 23 == 0.
    return _bits_to_f32(_f32_to_bits(p) + (_f32_to_bits(kr) << 23))


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


# --------------------------------------------------------------------------------------------------
# Register values: a _Vec holds BWD_STATES x LANES values (in the backward value s * LANES + c is state
# s0 + s of lane c; in the forward, one state row of FWD_LANES lanes), an LLVM vector that numba keeps
# in registers and carries across loop iterations like any local. Written as array loops over (n, W)
# tiles, the backward loaded and stored every state at every step, with index arithmetic (negative-index
# wraparound, strides reloaded from spilled registers) around each access; with these it takes 2/3 of
# the time on one thread (stage 1). Indices passed to these intrinsics are never negative (no
# wraparound), and the values they touch are contiguous along the array's last axes.
# --------------------------------------------------------------------------------------------------

_VW = BWD_STATES * LANES
assert FWD_LANES == _VW, "the forward holds one state row of FWD_LANES lanes in a _Vec"


class _Vec(types.Number):
    """BWD_STATES x LANES values of one float dtype, in registers.

    A Number to numba's type system only so that its parfor alias analysis, which treats every
    non-numeric value computed from an array as a possible alias of it, leaves the kernel's arrays
    ``noalias``: as a plain Type, one such value dropped the marking of every array (2 of 161 kept),
    and the array loops around the register code lost their vectorisation (backward 6% slower).
    """

    def __init__(self, dtype):
        self.dtype = dtype
        super().__init__(name=f"Vec{_VW}({dtype})")


@register_model(_Vec)
class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, ir.VectorType(dmm.lookup(fe_type.dtype).get_value_type(), _VW))


def _is_index(arr, idx, dtypes=(types.float32, types.float64)) -> bool:
    """arr is an array of one of ``dtypes`` and idx a full tuple of integer indices into it."""
    return (
        isinstance(arr, types.Array)
        and arr.dtype in dtypes
        and isinstance(idx, types.BaseTuple)
        and len(idx) == arr.ndim
        and all(isinstance(e, types.Integer) for e in idx)
    )


def _vec_ptr(context, builder, signature, args, width):
    """Pointer to ``width`` values of array args[0] starting at index tuple args[1], as a vector pointer."""
    return _item_ptr(context, builder, signature.args[0], signature.args[1], args[0], args[1], width)


def _lanes(builder, v, mask):
    return builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(ir.IntType(32), len(mask)), mask))


@intrinsic
def _vload(typingctx, arr, idx):
    """The _VW values arr[idx], arr[idx + 1], ... (along the last axes)."""
    if not _is_index(arr, idx):
        return None

    def codegen(context, builder, signature, args):
        return builder.load(_vec_ptr(context, builder, signature, args, _VW), align=4)

    return _Vec(arr.dtype)(arr, idx), codegen


@intrinsic
def _vload_if(typingctx, arr, idx, keep):
    """:func:`_vload` where ``keep`` != 0, else zeros (the values read are then discarded, so that memory
    need not be initialised): the first block of a work item starts its sums without a zeroing pass."""
    if not (_is_index(arr, idx) and isinstance(keep, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        v = builder.load(_vec_ptr(context, builder, signature, args, _VW), align=4)
        on = builder.icmp_signed("!=", args[2], ir.Constant(args[2].type, 0))
        return builder.select(on, v, ir.Constant(v.type, None))

    return _Vec(arr.dtype)(arr, idx, keep), codegen


@intrinsic
def _vstore(typingctx, arr, idx, v):
    """arr[idx], arr[idx + 1], ... = the _VW values of v."""
    if not (_is_index(arr, idx) and isinstance(v, _Vec) and v.dtype == arr.dtype):
        return None

    def codegen(context, builder, signature, args):
        builder.store(args[2], _vec_ptr(context, builder, signature, args, _VW), align=4)
        return context.get_dummy_value()

    return types.void(arr, idx, v), codegen


def _placed_load(name: str, width: int, mask: list[int]):
    """An intrinsic ``(arr, idx) -> _Vec``: the ``width`` values at arr[idx], value ``mask[i]`` at i."""

    def typer(typingctx, arr, idx):
        if not _is_index(arr, idx):
            return None

        def codegen(context, builder, signature, args):
            row = builder.load(_vec_ptr(context, builder, signature, args, width), align=4)
            return _lanes(builder, row, mask)

        return _Vec(arr.dtype)(arr, idx), codegen

    typer.__name__ = typer.__qualname__ = name
    return intrinsic(typer)


#: The LANES values at arr[idx] (one per lane), the same for every state.
_vrep = _placed_load("_vrep", LANES, [c for _ in range(BWD_STATES) for c in range(LANES)])
#: The BWD_STATES values at arr[idx] (one per state), the same across the lanes.
_vspread = _placed_load("_vspread", BWD_STATES, [s for s in range(BWD_STATES) for _ in range(LANES)])
#: The value at arr[idx] in every position (the forward: one state's B or C across its FWD_LANES lanes).
_vbcast = _placed_load("_vbcast", 1, [0] * _VW)


@intrinsic
def _vfold_add_if(typingctx, arr, idx, v, keep):
    """arr[idx ... + LANES] = (its values where ``keep`` != 0, else +0) + the sum of v over its states,
    (v_0 + v_1) + (v_2 + v_3) per lane: the first state block starts the sums over the states without a
    zeroing pass (memory need not be initialised)."""
    ok = _is_index(arr, idx) and isinstance(v, _Vec) and v.dtype == arr.dtype and BWD_STATES == 4
    if not (ok and isinstance(keep, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        ptr = _vec_ptr(context, builder, signature, args, LANES)
        part = [_lanes(builder, args[2], list(range(s * LANES, (s + 1) * LANES))) for s in range(BWD_STATES)]
        total = builder.fadd(builder.fadd(part[0], part[1]), builder.fadd(part[2], part[3]))
        on = builder.icmp_signed("!=", args[3], ir.Constant(args[3].type, 0))
        old = builder.select(on, builder.load(ptr, align=4), ir.Constant(total.type, None))
        builder.store(builder.fadd(old, total), ptr, align=4)
        return context.get_dummy_value()

    return types.void(arr, idx, v, keep), codegen


def _vec_intrinsic_fn(builder, name, vty, nargs):
    kind = "f32" if isinstance(vty.element, ir.FloatType) else "f64"
    fnty = ir.FunctionType(vty, [vty] * nargs)
    return cgutils.get_or_insert_function(builder.module, fnty, f"llvm.{name}.v{_VW}{kind}")


def _ir_const(vty, x):
    return ir.Constant(vty, [float(x)] * _VW)


def _ir_fma(builder, a, b, c):
    return builder.call(_vec_intrinsic_fn(builder, "fma", a.type, 3), [a, b, c])


def _ir_times_2k(builder, p, kr):
    """p * 2**k with k = round(y) held in the low mantissa bits of kr = y + _ROUND: k added to p's
    exponent field (the scalar ``_exp2_f32``'s assembly, which says why the shift needs no offset)."""
    ity = ir.VectorType(ir.IntType(32), _VW)
    k = builder.shl(builder.bitcast(kr, ity), ir.Constant(ity, [23] * _VW))
    return builder.bitcast(builder.add(builder.bitcast(p, ity), k), p.type)


@intrinsic
def _vfma(typingctx, a, b, c):
    """a * b + c, rounded once."""
    if not (isinstance(a, _Vec) and a == b == c):
        return None

    def codegen(context, builder, signature, args):
        return builder.call(_vec_intrinsic_fn(builder, "fma", args[0].type, 3), list(args))

    return a(a, b, c), codegen


def _vec_binary(name: str, emit):
    """An intrinsic ``(a, b) -> _Vec``: ``emit(builder, a, b)`` on two _Vec of one dtype."""

    def typer(typingctx, a, b):
        if not (isinstance(a, _Vec) and a == b):
            return None

        def codegen(context, builder, signature, args):
            return emit(builder, args[0], args[1])

        return a(a, b), codegen

    typer.__name__ = typer.__qualname__ = name
    return intrinsic(typer)


#: a * b.
_vmul = _vec_binary("_vmul", lambda builder, a, b: builder.fmul(a, b))
#: a + b.
_vadd = _vec_binary("_vadd", lambda builder, a, b: builder.fadd(a, b))


def _host_has_vreduce() -> bool:
    """Whether numba compiles for this host and it has AVX-512DQ's VREDUCEPS (numba's on-disk cache is
    keyed on the CPU name and features, so a kernel compiled here is never served to another CPU)."""
    if not _X86 or numba.config.CPU_NAME or numba.config.CPU_FEATURES:
        return False
    from llvmlite import binding

    return bool(binding.get_host_cpu_features().get("avx512dq", False))


_HAS_VREDUCE = _host_has_vreduce()


def _x86_reduce_ps(builder, v):
    """v - round_to_nearest_even(v) per float32 value of a _VW vector: VREDUCEPS (imm 0), 16 at a time."""
    f16 = ir.VectorType(ir.FloatType(), 16)
    fnty = ir.FunctionType(f16, [f16, ir.IntType(32), f16, ir.IntType(16), ir.IntType(32)])
    fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.avx512.mask.reduce.ps.512")
    i32 = ir.IntType(32)
    parts = [
        builder.call(
            fn,
            [
                _lanes(builder, v, list(range(j, j + 16))),
                i32(0),
                ir.Constant(f16, None),
                ir.IntType(16)(-1),
                i32(4),
            ],
        )
        for j in range(0, _VW, 16)
    ]
    while len(parts) > 1:  # concatenate pairwise back to _VW values
        parts = [
            builder.shuffle_vector(
                a, b, ir.Constant(ir.VectorType(i32, 2 * a.type.count), list(range(2 * a.type.count)))
            )
            for a, b in zip(parts[::2], parts[1::2])
        ]
    return parts[0]


@intrinsic
def _vexp2(typingctx, y):
    """2**y per value: float32 the polynomial of :func:`_exp2_f32`, operation for operation (f = y -
    round(y) as one VREDUCEPS where available: the same value), so bitwise equal; float64 LLVM's exp2
    (libm)."""
    if not isinstance(y, _Vec):
        return None

    def codegen(context, builder, signature, args):
        v = args[0]
        vty = v.type
        if not isinstance(vty.element, ir.FloatType):
            return builder.call(_vec_intrinsic_fn(builder, "exp2", vty, 1), [v])

        def const(x):
            return _ir_const(vty, x)

        def fma(a, b, c):
            return _ir_fma(builder, a, b, c)

        hi = const(_EXP2_HI)
        yc = builder.select(builder.fcmp_ordered("<", v, const(_EXP2_LO)), const(_EXP2_ZERO), v)
        yc = builder.select(builder.fcmp_ordered("<", hi, yc), hi, yc)  # one vminps; a NaN stays NaN
        kr = builder.fadd(yc, const(_ROUND))
        if _HAS_VREDUCE:  # f = y - round(y) in one instruction (VREDUCEPS), the same value exactly
            f = _x86_reduce_ps(builder, yc)
        else:
            f = builder.fsub(yc, builder.fsub(kr, const(_ROUND)))
        p = fma(const(_Q5), f, const(_Q4))
        for q in (_Q3, _Q2, _Q1, _ONE):
            p = fma(p, f, const(q))
        return _ir_times_2k(builder, p, kr)

    return y(y), codegen


def _float32_vec(x) -> bool:
    return isinstance(x, _Vec) and x.dtype == types.float32


@intrinsic
def _vexp_negabs32(typingctx, x):
    """e**-|x| per float32 value: ``_exp_nonpos_f32(-abs(x))``'s operations one for one (the e of
    :func:`fsoftplus` and :func:`fsigmoid`); a NaN stays NaN, as numba's scalar ``max`` keeps it."""
    if not _float32_vec(x):
        return None

    def codegen(context, builder, signature, args):
        vty = args[0].type

        def const(c):
            return _ir_const(vty, c)

        def fma(a, b, c):
            return _ir_fma(builder, a, b, c)

        m = builder.fneg(builder.call(_vec_intrinsic_fn(builder, "fabs", vty, 1), args))  # -|x|
        lo = const(_EXP_LO)
        xc = builder.select(builder.fcmp_ordered("<", m, lo), lo, m)  # max(-|x|, lo): one vmaxps, NaN kept
        kr = fma(xc, const(_LOG2E), const(_ROUND))
        k = builder.fsub(kr, const(_ROUND))
        r = fma(builder.fneg(k), const(_LN2_HI), xc)
        r = fma(builder.fneg(k), const(_LN2_LO), r)
        p = fma(const(_E6), r, const(_E5))
        for c in (_E4, _E3, _E2, _E1, _ONE):
            p = fma(p, r, const(c))
        return builder.select(builder.fcmp_ordered("<", m, lo), const(0.0), _ir_times_2k(builder, p, kr))

    return x(x), codegen


@intrinsic
def _vsoftplus_e(typingctx, x, e):
    """softplus(x) from e = e**-|x| (:func:`_vexp_negabs32`): max(x, 0) + ``_log1p_unit_f32(e)``, as
    the scalar float32 code computes it, so bitwise :func:`fsoftplus`; a NaN stays NaN."""
    if not (_float32_vec(x) and x == e):
        return None

    def codegen(context, builder, signature, args):
        v, e = args
        vty = v.type

        def fma(a, b, c):
            return _ir_fma(builder, a, b, c)

        q = fma(e, _ir_const(vty, _G8), _ir_const(vty, _G7))
        for c in (_G6, _G5, _G4, _G3, _G2, _G1, _G0):
            q = fma(e, q, _ir_const(vty, c))
        zero = _ir_const(vty, 0.0)
        pos = builder.select(builder.fcmp_ordered("<", v, zero), zero, v)  # max(x, 0), NaN kept
        return fma(e, q, pos)  # the scalar code's e * q + max(x, 0), contracted

    return x(x, e), codegen


@intrinsic
def _vsigmoid_e(typingctx, x, e):
    """sigmoid(x) from e = e**-|x|: 1 / (1 + e), or e / (1 + e) for x < 0, as :func:`fsigmoid`."""
    if not (_float32_vec(x) and x == e):
        return None

    def codegen(context, builder, signature, args):
        v, e = args
        one = _ir_const(v.type, 1.0)
        r = builder.fdiv(one, builder.fadd(one, e))
        return builder.select(builder.fcmp_ordered(">=", v, _ir_const(v.type, 0.0)), r, builder.fmul(e, r))

    return x(x, e), codegen


@njit(inline="always", error_model="numpy", fastmath=_FAST)
def _softplus_tile_scalar(tile, slot, tl, bias):
    for t in range(tl):
        for c in range(tile.shape[2]):
            tile[slot, t, c] = fsoftplus(tile[slot, t, c] + bias[slot, c])


def _softplus_tile(tile, slot, tl, bias):
    """tile[slot, t] = softplus(tile[slot, t] + bias[slot]) for t < tl, over the forward's FWD_LANES
    lanes: register vectors for float32 (bitwise :func:`fsoftplus`), the scalar loop for float64."""
    _softplus_tile_scalar(tile, slot, tl, bias)


@overload(_softplus_tile, inline="always", jit_options=_JIT)
def _softplus_tile_impl(tile, slot, tl, bias):
    if tile.dtype == types.float32:

        def impl32(tile, slot, tl, bias):
            bv = _vload(bias, (slot, 0))
            for t in range(tl):
                raw = _vadd(_vload(tile, (slot, t, 0)), bv)
                _vstore(tile, (slot, t, 0), _vsoftplus_e(raw, _vexp_negabs32(raw)))

        return impl32

    return lambda tile, slot, tl, bias: _softplus_tile_scalar(tile, slot, tl, bias)


@njit(inline="always", error_model="numpy", fastmath=_FAST)
def _delta_tiles_scalar(dl, sg, dlu, uu, bv, slot, tl):
    for t in range(tl):
        for c in range(LANES):
            raw = dl[slot, t, c] + bv[slot, c]
            dl[slot, t, c] = fsoftplus(raw)
            sg[slot, t, c] = fsigmoid(raw)
            dlu[slot, t, c] = dl[slot, t, c] * uu[slot, t, c]


def _delta_tiles(dl, sg, dlu, uu, bv, slot, tl):
    """The backward's delta tiles (chunk rows x LANES): dl = softplus(dl + bias), sg = its derivative
    sigmoid(dl + bias), dlu = dl * u. float32: four steps per register vector (rows up to tl rounded up
    to 4 are computed; the tiles have the rows), bitwise the scalar functions; float64: the scalar loop."""
    _delta_tiles_scalar(dl, sg, dlu, uu, bv, slot, tl)


@overload(_delta_tiles, inline="always", jit_options=_JIT)
def _delta_tiles_impl(dl, sg, dlu, uu, bv, slot, tl):
    if dl.dtype == types.float32:

        def impl32(dl, sg, dlu, uu, bv, slot, tl):
            b4 = _vrep(bv, (slot, 0))  # the LANES biases, once per step of the vector
            for t in range(0, tl, _VW // LANES):
                raw = _vadd(_vload(dl, (slot, t, 0)), b4)
                e = _vexp_negabs32(raw)
                sp = _vsoftplus_e(raw, e)
                _vstore(dl, (slot, t, 0), sp)
                _vstore(sg, (slot, t, 0), _vsigmoid_e(raw, e))
                _vstore(dlu, (slot, t, 0), _vmul(sp, _vload(uu, (slot, t, 0))))

        return impl32

    return lambda dl, sg, dlu, uu, bv, slot, tl: _delta_tiles_scalar(dl, sg, dlu, uu, bv, slot, tl)


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


def _tr16(src, sidx, dst, didx, dstep, stream):
    """Transpose one 16 x 16 block in registers (see :func:`_transpose16`): 1, or 0 where it cannot
    (float64) and the caller copies element by element.

    An int, not a bool: numba's parfor alias analysis counts every non-numeric variable copied inside
    the parallel body as a possible array alias, and one such alias costs the whole kernel its
    ``noalias`` marking (the backward then ran 2x slower).
    """
    return 0


@overload(_tr16)
def _tr16_impl(src, sidx, dst, didx, dstep, stream):
    if _transposable(src.dtype, dst.dtype):

        def impl32(src, sidx, dst, didx, dstep, stream):
            _transpose16(src, sidx, dst, didx, dstep, stream)
            return 1

        return impl32
    return lambda src, sidx, dst, didx, dstep, stream: 0


def _widen(v):
    """A kernel input value as the tiles hold it: bfloat16 bits (int16) widened exactly to float32,
    floats as they are."""
    return v


@overload(_widen, jit_options=_JIT)
def _widen_impl(v):
    if v == types.int16:
        return lambda v: _bits_to_f32((np.int32(v) & 0xFFFF) << 16)
    return lambda v: v


def _put(dst, idx, v):
    """dst[idx] = v, rounded to bfloat16 bits where dst holds them (int16): as :func:`_f32_to_bf16_ir`."""
    dst[idx] = v


@overload(_put, jit_options=_JIT)
def _put_impl(dst, idx, v):
    if dst.dtype == types.int16:

        def impl16(dst, idx, v):
            bits = np.int64(_f32_to_bits(v)) & 0xFFFFFFFF
            dst[idx] = np.int16(0x7FC0) if v != v else np.int16((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16)

        return impl16

    def impl(dst, idx, v):
        dst[idx] = v

    return impl


def _sums16(src, sidx, dst, didx):
    """The 16 row sums of :func:`_lane_sums16_f32`: 1, or 0 where it cannot (float64) and the caller
    sums element by element (an int, not a bool: see :func:`_tr16`)."""
    return 0


@overload(_sums16)
def _sums16_impl(src, sidx, dst, didx):
    if src.dtype == types.float32 and dst.dtype == types.float32:

        def impl32(src, sidx, dst, didx):
            _lane_sums16_f32(src, sidx, dst, didx)
            return 1

        return impl32
    return lambda src, sidx, dst, didx: 0


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
                    done = _tr16(src, (i, j0 + rb, last - (t0 + tb + 15)), tile, (slot, tb + 15, rb), -1, 0)
                else:
                    done = _tr16(src, (i, j0 + rb, t0 + tb), tile, (slot, tb, rb), 1, 0)
            if not done:
                for r in range(rb, min(rb + 16, nrows)):
                    for t in range(tb, min(tb + 16, tl)):
                        tile[slot, t, r] = _widen(src[i, j0 + r, last - (t0 + t) if rev else t0 + t])


@njit(inline="always")
def _tile_to_rows(dst, i, j0, nrows, t0, tl, tile, slot, stream):
    """dst[i, j0 + r, t0 + t] = tile[slot, t, r] for r < nrows, t < tl: a (time, lane) tile back into
    (channel, time) rows; with non-temporal stores where ``stream`` (see :func:`_transpose16`)."""
    for rb in range(0, nrows, 16):
        for tb in range(0, tl, 16):
            done = 0
            if rb + 16 <= nrows and tb + 16 <= tl:
                done = _tr16(tile, (slot, tb, rb), dst, (i, j0 + rb, t0 + tb), 1, stream)
            if not done:
                for r in range(rb, min(rb + 16, nrows)):
                    for t in range(tb, min(tb + 16, tl)):
                        _put(dst, (i, j0 + r, t0 + t), tile[slot, t, r])


@njit(inline="always")
def _reverse_steps(tile, slot, tl):
    """tile[slot, :tl] in reverse step order, in place: a reversed walk's outputs go back to the map's
    order here, on an L1/L2-resident tile, instead of in a flip of the whole output afterwards."""
    for t in range(tl // 2):
        r = tl - 1 - t
        for c in range(tile.shape[2]):
            v = tile[slot, t, c]
            tile[slot, t, c] = tile[slot, r, c]
            tile[slot, r, c] = v


@njit(inline="always")
def _load_walk(tile, slot, c, srcs, row, perm, k, mode, ch, t0, tl):
    """tile[slot, t, c] = the value direction k visits at its step t0 + t in channel ch of ``srcs[row]``
    (a map or its transposed copy): along the row forwards or backwards, or through perm[k]."""
    if mode == _GATHER:
        for t in range(tl):
            tile[slot, t, c] = _widen(srcs[row, ch, perm[k, t0 + t]])
    else:
        step = -1 if mode == _REVERSED else 1
        first = srcs.shape[2] - 1 - t0 if mode == _REVERSED else t0
        for t in range(tl):
            tile[slot, t, c] = _widen(srcs[row, ch, first + step * t])


@njit(inline="always")
def _walk_to_tile(tile, slot, srcs, row, perm, k, mode, c0, nc, t0, tl):
    """tile[slot, t, c] = the value direction k visits at its step t0 + t in channel c0 + c of
    ``srcs[row]``, c < nc: register transposes along the row (forwards or backwards), element copies
    through perm[k] for a permutation set."""
    if mode == _GATHER:
        for c in range(nc):
            _load_walk(tile, slot, c, srcs, row, perm, k, mode, c0 + c, t0, tl)
    else:
        rev = 1 if mode == _REVERSED else 0  # an int, not a bool: see _tr16
        _rows_to_tile(tile, slot, srcs, row, c0, nc, t0, tl, rev)


@njit(inline="always")
def _tile_to_map(dst, i, j0, nrows, t0, tl, tile, slot, mode, stream):
    """:func:`_tile_to_rows` of a direction's steps t0 ... t0 + tl, those of a reversed walk stored in
    forward order (the tile reversed in place first), so that merging the directions needs no flip."""
    if mode == _REVERSED:
        _reverse_steps(tile, slot, tl)
        _tile_to_rows(dst, i, j0, nrows, dst.shape[2] - t0 - tl, tl, tile, slot, stream)
    else:
        _tile_to_rows(dst, i, j0, nrows, t0, tl, tile, slot, stream)


@njit(inline="always")
def _prefetch_walk(srcs, row, perm, k, mode, ch, start, stop):
    """Ask for the cache lines that :func:`_load_walk` reads at steps start..stop."""
    if mode == _GATHER:
        for t in range(start, stop):
            _prefetch(srcs, (row, ch, perm[k, t]))
    else:
        last = srcs.shape[2] - 1
        for t in range(start, stop, 16):
            _prefetch(srcs, (row, ch, last - t if mode == _REVERSED else t))


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


@njit(inline="always")
def _lane_trees(G, slot, t, n, red, out, b, grp, split, t0):
    """out[b, grp, split, t0 + t, s] = :func:`_lane_tree` of G[slot, t, s, :] for s < n. With 16 states
    (float32), the same sums for all 16 at once in registers (:func:`_lane_sums16_f32`, bitwise the
    scalar tree); ``out`` is (time, state), so the 16 sums of a step are one contiguous store."""
    done = 0
    if n == 16:
        done = _sums16(G, (slot, t, 0, 0), out, (b, grp, split, t0 + t, 0))
    if not done:
        for s in range(n):
            out[b, grp, split, t0 + t, s] = _lane_tree(G, slot, t, s, red)


@njit(parallel=True, error_model="numpy", fastmath=_FAST, cache=True)
def _fwd_kernel(srcs, delta, dtw, A, B, C, D, z, bias, perm, walks, ublocks, opts, out, last, states):  # noqa: C901
    softplus_on = opts[0] != 0
    has_z = opts[1] != 0
    save = opts[2] != 0
    chunk = opts[3]
    low_rank = opts[6] != 0  # delta holds (b*K, R, l) dt rows; the channels' delta is dtw @ them
    bsz, d, L = out.shape
    du = srcs.shape[1]
    n = A.shape[1]
    K = d // du
    ngrp = B.shape[0] // bsz
    dg = d // ngrp
    nblk = ublocks.shape[0]
    nth = opts[4]  # scratch slots
    span = opts[5]  # steps per tile, a multiple of chunk
    dt = A.dtype  # the compute dtype (inputs may be bfloat16 bits)
    W = FWD_LANES
    R = dtw.shape[1]
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
    Rt = np.empty((nth, span, R), dtype=dt)  # low-rank dt tile (T, R)
    Wt = np.empty((nth, R, W), dtype=dt)  # this block's dt projection, (R, W)
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
            if low_rank:  # (no ``valid and low_rank``: a bool copy in the body drops noalias, see above)
                for r in range(R):
                    Wt[slot, r, c] = dtw[i0 + c, r] if valid else 0
            if not valid:
                for t in range(span):
                    uu[slot, t, c] = 0
                    dl[slot, t, c] = 0
                    zz[slot, t, c] = 0
        for t0 in range(0, L, span):  # tiles of ``span`` steps: long contiguous reads of every row
            tl = min(span, L - t0)
            _walk_to_tile(uu, slot, srcs, srow, perm, k, mode, c0, nc, t0, tl)
            if low_rank:  # delta = dtw @ dt, R FMAs per value, in r order
                _rows_to_tile(Rt, slot, delta, b * K + k, 0, R, t0, tl, False)
                for t in range(tl):
                    acc = _vload_if(dl, (slot, t, 0), 0)  # zeros
                    for r in range(R):
                        acc = _vfma(_vbcast(Rt, (slot, t, r)), _vload(Wt, (slot, r, 0)), acc)
                    _vstore(dl, (slot, t, 0), acc)
            else:
                _rows_to_tile(dl, slot, delta, b, i0, nc, t0, tl, False)
            if has_z:
                _rows_to_tile(zz, slot, z, b, i0, nc, t0, tl, False)
            if softplus_on:  # over whole (T, W) tiles: vectorised
                _softplus_tile(dl, slot, tl, bv)
            else:
                for t in range(tl):
                    for c in range(W):
                        dl[slot, t, c] = dl[slot, t, c] + bv[slot, c]
            _rows_to_tile(Bt, slot, B, b * ngrp + grp, 0, n, t0, tl, False)
            _rows_to_tile(Ct, slot, C, b * ngrp + grp, 0, n, t0, tl, False)
            for t in range(tl):
                if save and (t0 + t) % chunk == 0:  # the state at every chunk start, for the backward
                    ci = (t0 + t) // chunk
                    for s in range(n):
                        for c in range(nc):
                            states[b, ci, s, i0 + c] = xs[slot, s, c]
                # One state row (W lanes) per register vector, the sum over the states in registers.
                dv = _vload(dl, (slot, t, 0))
                uv = _vload(uu, (slot, t, 0))
                dlu = _vmul(dv, uv)
                yv = _vload_if(yy, (slot, t, 0), 0)  # zeros
                for s in range(n):
                    a = _vexp2(_vmul(dv, _vload(A2, (slot, s, 0))))
                    xv = _vfma(dlu, _vbcast(Bt, (slot, t, s)), _vmul(a, _vload(xs, (slot, s, 0))))
                    _vstore(xs, (slot, s, 0), xv)
                    yv = _vfma(xv, _vbcast(Ct, (slot, t, s)), yv)
                _vstore(yy, (slot, t, 0), _vfma(uv, _vload(Dv, (slot, 0)), yv))
            if has_z:
                for t in range(tl):
                    for c in range(W):
                        zv = zz[slot, t, c]
                        yy[slot, t, c] = yy[slot, t, c] * zv * fsigmoid(zv)
            _tile_to_map(out, b, i0, nc, t0, tl, yy, slot, mode, 0)
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
    stream = opts[5]  # the output rows are 64-byte aligned: non-temporal stores (see _transpose16)
    bsz, d, L = delta.shape
    du = srcs.shape[1]
    n = A.shape[1]
    nit = bitems.shape[0]
    ngrp = B.shape[0] // bsz
    nck = (L + chunk - 1) // chunk
    mb = 1  # most blocks in one item
    for it in range(nit):
        mb = max(mb, bitems[it, 2] - bitems[it, 1])
    nth = opts[4]  # scratch slots
    dt = A.dtype  # the compute dtype (inputs may be bfloat16 bits)
    SB = BWD_STATES
    npad = -(-n // SB) * SB  # states padded to whole blocks: padded states have A = B = C = 0
    # Per-block state carried across chunks: adjoint h, decay of the step after the chunk, dA, dD, dbias.
    H = np.empty((nth, mb + 1, npad, LANES), dtype=dt)
    AN = np.empty((nth, mb + 1, npad, LANES), dtype=dt)
    GA = np.empty((nth, mb + 1, npad, LANES), dtype=dt)
    GD = np.empty((nth, mb + 1, LANES), dtype=dt)
    GBIAS = np.empty((nth, mb + 1, LANES), dtype=dt)
    # One state block's chunk scratch: E[t] = exp(delta_t A), AX[t] = E[t] * (state before step t).
    xs = np.empty((nth, SB, LANES), dtype=dt)
    E = np.empty((nth, chunk, SB, LANES), dtype=dt)
    AX = np.empty((nth, chunk, SB, LANES), dtype=dt)
    rows = chunk + _VW // LANES  # (T, LANES) tiles: the vector loops run to tl rounded up to whole vectors
    GB = np.empty((nth, chunk + 1, npad, LANES), dtype=dt)  # lane-wise dB / dC of the item's blocks
    GC = np.empty((nth, chunk + 1, npad, LANES), dtype=dt)
    uu = np.empty((nth, rows, LANES), dtype=dt)
    dl = np.empty((nth, rows, LANES), dtype=dt)
    sg = np.empty((nth, rows, LANES), dtype=dt)
    go = np.empty((nth, rows, LANES), dtype=dt)
    zz = np.empty((nth, rows, LANES), dtype=dt)
    sz = np.empty((nth, rows, LANES), dtype=dt)
    dyt = np.empty((nth, rows, LANES), dtype=dt)
    dlu = np.empty((nth, rows, LANES), dtype=dt)
    yacc = np.empty((nth, rows, LANES), dtype=dt)
    ddl = np.empty((nth, rows, LANES), dtype=dt)  # sum_s h x_{t-1} dA_t A (then the ddelta tile)
    dua = np.empty((nth, rows, LANES), dtype=dt)  # sum_s h B (then the du tile)
    dzt = np.empty((nth, rows, LANES), dtype=dt)
    At = np.empty((nth, mb + 1, npad, LANES), dtype=dt)  # A per block (0 in padding lanes and states)
    A2 = np.empty((nth, mb + 1, npad, LANES), dtype=dt)  # A * log2(e): the decay is 2**(delta * A2)
    Dv = np.empty((nth, 2 * LANES), dtype=dt)
    bv = np.empty((nth, 2 * LANES), dtype=dt)
    Bt = np.empty((nth, chunk + 1, npad), dtype=dt)
    Ct = np.empty((nth, chunk + 1, npad), dtype=dt)
    red = np.empty((nth, 2 * LANES), dtype=dt)
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
                for s in range(npad):  # zero in padding lanes and states
                    H[slot, jb, s, c] = 0
                    At[slot, jb, s, c] = 0
                    A2[slot, jb, s, c] = 0
                    AN[slot, jb, s, c] = 1  # dlast enters h_{l-1} undamped
                    GA[slot, jb, s, c] = 0
                if c < nc:
                    for s in range(n):
                        H[slot, jb, s, c] = dlast[b, i0 + c, s]
                        At[slot, jb, s, c] = A[i0 + c, s]
                        A2[slot, jb, s, c] = A[i0 + c, s] * _LOG2E_F64
                GD[slot, jb, c] = 0
                GBIAS[slot, jb, c] = 0
        for t in range(chunk + 1):  # padding states read as zero
            for s in range(n, npad):
                Bt[slot, t, s] = 0
                Ct[slot, t, s] = 0
        for ci in range(nck - 1, -1, -1):
            t0 = ci * chunk
            tl = min(chunk, L - t0)
            _rows_to_tile(Bt, slot, B, b * ngrp + grp, 0, n, t0, tl, 0)
            _rows_to_tile(Ct, slot, C, b * ngrp + grp, 0, n, t0, tl, 0)
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
                    Dv[slot, c] = D[i0 + c] if valid else 0
                    bv[slot, c] = bias[i0 + c] if valid else 0
                    if not valid:
                        for t in range(tl):
                            uu[slot, t, c] = 0
                            dl[slot, t, c] = 0
                            go[slot, t, c] = 0
                            dyt[slot, t, c] = 0
                            zz[slot, t, c] = 0
                _walk_to_tile(uu, slot, srcs, srow, perm, k, mode, c0, nc, t0, tl)
                # dy = dout * gate (it does not depend on the states); without a gate, dout straight in.
                if has_z:
                    _walk_to_tile(go, slot, dsrcs, srow, perm, k, mode, c0, nc, t0, tl)
                    _rows_to_tile(zz, slot, z, b, i0, nc, t0, tl, 0)
                    for t in range(tl):
                        for c in range(LANES):
                            zv = zz[slot, t, c]
                            sgz = fsigmoid(zv)
                            sz[slot, t, c] = sgz
                            dyt[slot, t, c] = go[slot, t, c] * zv * sgz
                else:
                    _walk_to_tile(dyt, slot, dsrcs, srow, perm, k, mode, c0, nc, t0, tl)
                _rows_to_tile(dl, slot, delta, b, i0, nc, t0, tl, 0)
                if softplus_on:
                    _delta_tiles(dl, sg, dlu, uu, bv, slot, tl)
                else:
                    for t in range(tl):
                        for c in range(LANES):
                            dl[slot, t, c] = dl[slot, t, c] + bv[slot, c]
                            dlu[slot, t, c] = dl[slot, t, c] * uu[slot, t, c]
                if ci > 0:  # the previous chunk is next: fetch it while this one computes
                    for c in range(nc):
                        for t in range(t0 - chunk, t0, 16):
                            _prefetch(delta, (b, i0 + c, t))
                            if has_z:
                                _prefetch(z, (b, i0 + c, t))
                        _prefetch_walk(srcs, srow, perm, k, mode, c0 + c, t0 - chunk, t0)
                        _prefetch_walk(dsrcs, srow, perm, k, mode, c0 + c, t0 - chunk, t0)
                    for s in range(n):  # and its saved states: one cache line per state
                        _prefetch(states, (b, ci - 1, s, i0))
                # Per state block: the recompute and the adjoint scan of the chunk; the first block
                # stores the sums over the states (yacc, ddl, dua) that the others add to.
                for s0 in range(0, npad, SB):
                    for s in range(SB):
                        for c in range(LANES):
                            xs[slot, s, c] = states[b, ci, s0 + s, i0 + c] if c < nc and s0 + s < n else 0
                    # The chunk's states, forwards: decays, decay x previous state, the dC terms (and
                    # the output before the gate, for dz).
                    x = _vload(xs, (slot, 0, 0))
                    a2 = _vload(A2, (slot, jb, s0, 0))
                    for t in range(tl):
                        a = _vexp2(_vmul(_vrep(dl, (slot, t, 0)), a2))
                        ax = _vmul(a, x)
                        x = _vfma(_vrep(dlu, (slot, t, 0)), _vspread(Bt, (slot, t, s0)), ax)
                        _vstore(E, (slot, t, 0, 0), a)
                        _vstore(AX, (slot, t, 0, 0), ax)
                        gc = _vload_if(GC, (slot, t, s0, 0), jb)  # 0 for the item's first block
                        _vstore(GC, (slot, t, s0, 0), _vfma(_vrep(dyt, (slot, t, 0)), x, gc))
                        if has_z:
                            _vfold_add_if(yacc, (slot, t, 0), _vmul(x, _vspread(Ct, (slot, t, s0))), s0)
                    # The adjoint h_t = dy_t C_t + exp(delta_{t+1} A) h_{t+1}, backwards; the decay
                    # of the step after the chunk's last is the next chunk's first, carried in AN.
                    h = _vload(H, (slot, jb, s0, 0))
                    ga = _vload(GA, (slot, jb, s0, 0))
                    at = _vload(At, (slot, jb, s0, 0))
                    e1 = _vload(AN, (slot, jb, s0, 0))
                    for tt in range(tl):
                        t = tl - 1 - tt
                        h = _vfma(h, e1, _vmul(_vrep(dyt, (slot, t, 0)), _vspread(Ct, (slot, t, s0))))
                        hx = _vmul(h, _vload(AX, (slot, t, 0, 0)))  # h_t * dA_t * x_{t-1}
                        ga = _vfma(hx, _vrep(dl, (slot, t, 0)), ga)
                        _vfold_add_if(ddl, (slot, t, 0), _vmul(hx, at), s0)
                        _vfold_add_if(dua, (slot, t, 0), _vmul(h, _vspread(Bt, (slot, t, s0))), s0)
                        gb = _vload_if(GB, (slot, t, s0, 0), jb)
                        _vstore(GB, (slot, t, s0, 0), _vfma(h, _vrep(dlu, (slot, t, 0)), gb))
                        e1 = _vload(E, (slot, t, 0, 0))
                    _vstore(H, (slot, jb, s0, 0), h)
                    _vstore(GA, (slot, jb, s0, 0), ga)
                    _vstore(AN, (slot, jb, s0, 0), e1)
                # ddelta and du, four steps per register vector (see _delta_tiles); then the sums
                # over the chunk's steps, per lane, in step order.
                d4 = _vrep(Dv, (slot, 0))
                for t in range(0, tl, _VW // LANES):
                    hb = _vload(dua, (slot, t, 0))
                    dd = _vfma(hb, _vload(uu, (slot, t, 0)), _vload(ddl, (slot, t, 0)))
                    if softplus_on:
                        dd = _vmul(dd, _vload(sg, (slot, t, 0)))
                    _vstore(ddl, (slot, t, 0), dd)
                    dy = _vload(dyt, (slot, t, 0))
                    _vstore(dua, (slot, t, 0), _vfma(hb, _vload(dl, (slot, t, 0)), _vmul(dy, d4)))
                for t in range(tl):
                    for c in range(LANES):
                        GBIAS[slot, jb, c] += ddl[slot, t, c]
                        GD[slot, jb, c] += dyt[slot, t, c] * uu[slot, t, c]
                    if has_z:
                        for c in range(LANES):
                            zv = zz[slot, t, c]
                            sgz = sz[slot, t, c]
                            pre = yacc[slot, t, c] + Dv[slot, c] * uu[slot, t, c]
                            dzt[slot, t, c] = go[slot, t, c] * pre * sgz * (_ONE + zv * (_ONE - sgz))
                _tile_to_rows(ddelta, b, i0, nc, t0, tl, ddl, slot, stream)
                _tile_to_map(du_s, b, i0, nc, t0, tl, dua, slot, mode, stream)  # per direction, like out
                if has_z:
                    _tile_to_rows(dz, b, i0, nc, t0, tl, dzt, slot, stream)
            # Fixed pairwise tree over the W lanes, into this item's own slice of the partials.
            for t in range(tl):
                _lane_trees(GB, slot, t, n, red, dBp, b, grp, split, t0)
                _lane_trees(GC, slot, t, n, red, dCp, b, grp, split, t0)
        for jb in range(nbi):
            i0 = sblocks[jb0 + jb, 0]
            for c in range(sblocks[jb0 + jb, 1]):
                for s in range(n):
                    dA_p[b, i0 + c, s] = GA[slot, jb, s, c]
                dD_p[b, i0 + c] = GD[slot, jb, c]
                dbias_p[b, i0 + c] = GBIAS[slot, jb, c]
        _sfence()


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
    """The array the kernels read or write: a bfloat16 tensor as its int16 bit patterns (``_TILE_DTYPES``)."""
    t = t.detach()
    return (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy()


def _storage_dtype(cdt: torch.dtype, *tensors: torch.Tensor | None) -> torch.dtype:
    """The dtype u, delta, B, C and z (and in the backward dout, ddelta, dz) are handed to the kernels in:
    bfloat16 where all of them are bfloat16 and the compute dtype is float32 (the tiles widen them on
    the fly, as bf16 autocast leaves them), else the compute dtype. All or none, so that the kernels are
    compiled for two signatures per compute dtype, not one per mix."""
    given = [t for t in tensors if t is not None]
    if cdt == torch.float32 and all(t.dtype == torch.bfloat16 for t in given):
        return torch.bfloat16
    return cdt


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
    b, du, length = t.shape
    srcs = t.new_empty(2 * b, du, length)  # written in place: no transposed temporary, no cat
    srcs[:b].copy_(t)
    srcs[b:].view(b, du, w, h).copy_(t.view(b, du, h, w).transpose(-1, -2))
    return srcs, dummy_perm, walks


def _forward(u, delta, A, B, C, D, z, delta_bias, walk, delta_softplus, save, dt_proj=None):
    """Run the forward kernel: ``(out, last, saved)``, out (b, du, l) merged where ``walk`` is given
    (else (b, d, l)), last (b, d, n), and ``saved`` = (the backward's tensors, walks), None unless
    ``save``.

    ``dt_proj`` (d, R): delta is then (b, K, R, l) low-rank dt and the kernel computes each tile's
    delta as dt_proj @ dt itself (forward only: the backward needs the full delta)."""
    b, du, length = u.shape
    d, n = A.shape
    g = B.shape[1]
    K = d // du
    cdt = scan_compute_dtype(u, delta, A, B, C)
    sdt = _storage_dtype(cdt, u, delta, B, C, z)
    srcs, pm, walks = _sources(u.detach().to(sdt).contiguous(), walk)
    cv = [t.detach().to(dt).contiguous() for t, dt in zip((delta, A, B, C), (sdt, cdt, sdt, sdt))]
    Dc = D.detach().to(cdt).contiguous() if D is not None else torch.zeros(d, dtype=cdt)
    bc = delta_bias.detach().to(cdt).contiguous() if delta_bias is not None else torch.zeros(d, dtype=cdt)
    zc = z.detach().to(sdt).contiguous() if z is not None else torch.zeros(1, 1, 1, dtype=sdt)
    low_rank = dt_proj is not None
    dtw = dt_proj.detach().to(cdt).contiguous() if low_rank else torch.zeros(1, 1, dtype=cdt)
    T = chunk_len(n)
    nck = -(-length // T)
    ublocks, _, _, _ = _plan(b, d, du, g)
    out = torch.empty(b, d, length, dtype=cdt)  # per scan channel, in each direction's step order
    last = torch.empty(b, d, n, dtype=cdt)
    states = torch.empty(b, nck, n, d, dtype=cdt) if save else torch.empty(1, 1, 1, 1, dtype=cdt)
    slots = _set_threads()
    span = T * max(1, FWD_SPAN // T)
    opts = np.array(
        [int(delta_softplus), int(z is not None), int(save), T, slots, span, int(low_rank)], dtype=np.int64
    )
    delta_rows = cv[0].view(b * K, -1, length) if low_rank else cv[0]  # low-rank dt: (batch x direction) rows
    with numba.parallel_chunksize(1):
        _fwd_kernel(
            _np(srcs),
            _np(delta_rows),
            _np(dtw),
            _np(cv[1]),
            _np(cv[2].view(b * g, n, length)),  # B, C as (batch x group) rows
            _np(cv[3].view(b * g, n, length)),
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
        out = directions.merge_values(out.view(b, K, du, length), h, w, stored_forward=True)
    saved = ((srcs, *cv, Dc, zc, bc, pm, states), walks) if save else None
    return out, last, saved


class _NumbaScan(torch.autograd.Function):
    """Autograd wrapper of the two kernels; ``walk`` is None for a plain scan, (h, w, direction set) for
    the fused directional scan."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, walk, delta_softplus):
        save = any(ctx.needs_input_grad)
        out, last, saved = _forward(u, delta, A, B, C, D, z, delta_bias, walk, delta_softplus, save)
        ctx.walk = walk
        if save:
            tensors, ctx.walks = saved
            ctx.save_for_backward(*tensors)
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
        cdt = A.dtype
        sdt = srcs.dtype  # bfloat16 where the forward's inputs were (then dout is too: out's dtype)
        T = chunk_len(n)
        _, sblocks, bitems, splits = _plan(b, d, du, g)
        dout = dout.to(sdt).contiguous() if dout is not None else torch.zeros(b, du, length, dtype=sdt)
        dsrcs = _sources(dout, ctx.walk)[0]  # read along each direction like u (the merge's backward)
        dlast = dlast.to(cdt).contiguous() if dlast is not None else torch.zeros(b, d, n, dtype=cdt)
        du_s = torch.empty(b, d, length, dtype=cdt)  # per scan channel, summed over directions below
        ddelta = torch.empty(b, d, length, dtype=sdt)  # rounded to bfloat16 in the kernel where delta is
        dA_p = torch.empty(b, d, n, dtype=cdt)
        dBp = torch.empty(b, g, splits, length, n, dtype=cdt)  # (time, state): see _lane_trees
        dCp = torch.empty(b, g, splits, length, n, dtype=cdt)
        dD_p = torch.empty(b, d, dtype=cdt)
        dbias_p = torch.empty(b, d, dtype=cdt)
        dz = torch.empty(b, d, length, dtype=sdt) if has_z else torch.empty(1, 1, 1, dtype=sdt)
        slots = _set_threads()
        aligned = length % 16 == 0 and all(t.data_ptr() % 64 == 0 for t in (du_s, ddelta, dz))
        opts = np.array([int(delta_softplus), int(has_z), 1, T, slots, int(aligned)], dtype=np.int64)
        with numba.parallel_chunksize(1):
            _bwd_kernel(
                *map(
                    _np, (srcs, delta, A, B.view(b * g, n, length), C.view(b * g, n, length), D, z, bias, pm)
                ),
                ctx.walks,
                sblocks,
                bitems,
                opts,
                *map(_np, (states, dsrcs, dlast, du_s, ddelta, dA_p, dBp, dCp, dD_p, dbias_p, dz)),
            )
        if ctx.walk is not None:  # fused directional scan: merge the per-direction du back onto the map
            h, w, directions = ctx.walk
            du_s = directions.merge_values(du_s.view(b, d // du, du, length), h, w, stored_forward=True)
        dB = (dBp[:, :, 0] if splits == 1 else ordered_sum(dBp, 2)).transpose(-1, -2).contiguous()
        dC = (dCp[:, :, 0] if splits == 1 else ordered_sum(dCp, 2)).transpose(-1, -2).contiguous()
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
    Computes in float32 (float64 if any of u/delta/A/B/C is float64); bfloat16 u, delta, B, C, z are
    read as they are (module docstring). Returns ``(out, last_state)``:
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
    dt_proj: torch.Tensor | None = None,
) -> torch.Tensor:
    """Fused cross-scan + scan + cross-merge on CPU: x (b, du, h, w) -> y (b, du, h*w).

    delta (b, K*du, l), A (K*du, n), B/C (b, g, n, l) with g a multiple of K = ``directions.k``; the
    scan input of direction k is read from x through the set's index, and the K outputs are summed in
    place, in direction order.

    ``dt_proj`` (K*du, R), forward only (no autograd): delta is then the (b, K, R, l) low-rank dt and
    the kernel forms each channel's delta as dt_proj @ dt per tile, so the (b, K*du, l) delta tensor
    and its GEMM never exist.
    """
    b, du, h, w = x.shape
    u, walk = x.reshape(b, du, h * w), (h, w, directions)
    if dt_proj is not None:
        out, _, _ = _forward(u, delta, A, B, C, D, None, delta_bias, walk, delta_softplus, False, dt_proj)
        return out.to(x.dtype)
    y, _ = _NumbaScan.apply(u, delta, A, B, C, D, None, delta_bias, walk, delta_softplus)
    return y
