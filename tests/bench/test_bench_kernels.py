"""``specmamba bench kernels`` from the command line (the kernels' properties are tested in tests/ops)."""

from __future__ import annotations

import json

import pytest

from specmamba.cli.main import main

pytest.importorskip("triton")


def test_cli_prints_the_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "kernels.json"
    status = main(["bench", "kernels", "--sm", "90", "--json", str(out)])
    printed = capsys.readouterr()
    if status == 2 and "bench kernels" in printed.err:  # no NVIDIA tool chain in this triton
        pytest.skip(printed.err.strip())
    assert status == 0
    assert "sm_90" in printed.out and "SHFL/value" in printed.out
    rows = json.loads(out.read_text())["rows"]
    assert [(r["kernel"], r["form"]) for r in rows] == [
        ("forward", "plain"),
        ("backward", "plain"),
        ("forward", "ss2d"),
        ("backward", "ss2d"),
    ]
