"""The Triton kernels compile for an H100 (sm_90) without a GPU, and their registers do not spill.

The interpreter tests (test_scan_triton.py) check the kernels' arithmetic; they cannot see what only
the real compiler sees: type and layout errors of the GPU lowering, and register pressure. Here
``specmamba bench kernels`` compiles every kernel ahead of time with exactly the block sizes
:func:`launch_config` gives and reads Triton's own ``ptxas -v``; a spill to local memory would make
the scan several times slower on the device, so it fails the test. Skipped where Triton or its bundled
NVIDIA tool chain is missing. Also here: inputs too large for the kernels' int32 offsets are refused.
"""

from __future__ import annotations

import json

import pytest

from specmamba.errors import BackendUnavailableError, ConfigError

pytest.importorskip("triton")


@pytest.fixture(scope="module", params=["fp32", "bf16"])
def report(request, tmp_path_factory):
    from specmamba.bench.kernels import bench_kernels

    path = tmp_path_factory.mktemp("kernels") / "kernels.json"
    try:
        result = bench_kernels(ptr_dtype=request.param, json_path=path, verbose=False)
    except BackendUnavailableError as err:
        pytest.skip(str(err))
    assert json.loads(path.read_text()) == result
    return result


def test_every_kernel_compiles_for_sm90_without_spilling(report):
    rows = {(r["kernel"], r["form"]): r for r in report["rows"]}
    assert set(rows) == {(k, f) for k in ("forward", "backward") for f in ("plain", "ss2d")}
    for key, row in rows.items():
        assert row["spill_bytes"] == 0, f"{key} spills {row['spill_bytes']} B per thread: {row}"
        assert 0 < row["registers"] <= 255


def test_the_loop_counted_is_the_per_component_body(report):
    """Every component's state value costs one exp (MUFU) in the forward loop and two in the backward
    loop (the recomputed and the adjoint decay): the counted loop is the main body, not the dz pass."""
    for row in report["rows"]:
        assert row["mufu"] == pytest.approx(1.0 if row["kernel"] == "forward" else 2.0), row


def test_launch_config_keeps_a_program_in_one_group():
    from specmamba.ops.scan_triton import launch_config

    assert launch_config(192)["BLOCK_D"] == 16
    assert launch_config(12)["BLOCK_D"] == 4  # largest power of two dividing the group
    assert launch_config(7)["BLOCK_D"] == 1


def test_bad_pointer_dtype_is_refused():
    from specmamba.bench.kernels import bench_kernels

    with pytest.raises(ConfigError, match="ptr_dtype"):
        bench_kernels(ptr_dtype="int8", verbose=False)


def test_inputs_beyond_int32_offsets_are_refused_with_the_batch_that_fits():
    from specmamba.ops.scan_triton import check_offsets_fit_int32

    check_offsets_fit_int32(32, 768, 4096, 16, 16)  # VM-UNet stage 1 at 256 px, batch 32
    with pytest.raises(ConfigError, match=r"batch of at most 170\b"):
        check_offsets_fit_int32(256, 768, 4096 * 4, 16, 16)  # 512 px, batch 256: delta overflows
