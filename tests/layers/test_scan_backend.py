"""Switching the scan backend of any model that contains selective-scan layers."""

from __future__ import annotations

import pytest
from torch import nn

from specmamba.errors import ConfigError
from specmamba.layers import SS2D
from specmamba.layers.scan_backend import check_scan_backend, scan_backend_of, scan_modules, set_scan_backend


def test_any_module_tree_with_scan_layers_switches():
    net = nn.Sequential(
        nn.Linear(4, 4), nn.ModuleList([SS2D(8, d_state=2), nn.Sequential(SS2D(8, d_state=2))])
    )
    assert len(scan_modules(net)) == 2 and scan_backend_of(net) == "auto"
    assert set_scan_backend(net, "ref") is net
    assert all(m.scan_backend == "ref" for m in scan_modules(net))


def test_errors():
    with pytest.raises(ConfigError, match="no selective-scan layer"):
        set_scan_backend(nn.Linear(2, 2), "cpu")
    with pytest.raises(ConfigError, match="scan_backend must be one of"):
        check_scan_backend("cuda")
