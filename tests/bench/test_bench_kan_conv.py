"""The KAN convolution benchmark (``specmamba.bench.kan_conv``) at a tiny shape."""

from __future__ import annotations

import json

import pytest
import torch

from specmamba.bench.kan_conv import PairwiseKANConv, bench_kan_conv
from specmamba.errors import ConfigError
from specmamba.layers.kan_conv import KANConv2d

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_pairwise_loop_computes_the_same_function():
    torch.manual_seed(0)
    conv = KANConv2d(3, 2, kernel_size=3, padding=1)
    x = torch.randn(2, 3, 6, 5)
    torch.testing.assert_close(PairwiseKANConv(conv)(x), conv(x), rtol=1e-5, atol=1e-6)


def test_rows_json_and_table(tmp_path, capsys):
    out = tmp_path / "kan.json"
    result = bench_kan_conv(batch=1, channels=2, out_channels=2, size=8, repeats=1, json_path=out)
    assert [r["figure"] for r in result["rows"]] == ["forward", "forward + backward"]
    assert all(r["batched_ms"] > 0 and r["pairwise_loop_ms"] > 0 and r["speedup"] > 0 for r in result["rows"])
    assert result["meta"]["max_abs_difference"] < 1e-4
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert "pairwise loop ms" in capsys.readouterr().out


def test_bad_arguments():
    with pytest.raises(ConfigError, match="channels"):
        bench_kan_conv(channels=0, verbose=False)
