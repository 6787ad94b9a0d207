"""Reading a checkpoint's tensors without running its pickle (``specmamba.models.safe_pickle``)."""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import pytest
import torch

from specmamba.errors import CheckpointError
from specmamba.models.safe_pickle import UnloadedObject, load_tensors_only, unloaded_names


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))  # what an attacker's file would call instead


def test_tensors_dtypes_views_and_containers_come_back(tmp_path):
    base = torch.arange(12.0)
    tensors = {
        "f32": torch.randn(3, 4),
        "bf16": torch.randn(5).to(torch.bfloat16),
        "i64": torch.arange(7),
        "bool": torch.tensor([True, False]),
        "view": base[2:8].view(2, 3),
        "same_storage": base,
        "param": torch.nn.Parameter(torch.ones(2)),
    }
    path = tmp_path / "ck.pth"
    torch.save({"model": collections.OrderedDict(tensors), "meta": {"epoch": 3, "sizes": (1, 2)}}, path)
    obj = load_tensors_only(path)
    for key, value in tensors.items():
        got = obj["model"][key]
        assert got.dtype == value.dtype and torch.equal(got.detach(), value.detach()), key
    assert obj["model"]["view"].storage_offset() == 2
    shared = obj["model"]["same_storage"].untyped_storage().data_ptr()
    assert obj["model"]["view"].untyped_storage().data_ptr() == shared  # one storage, as saved
    assert isinstance(obj["model"], collections.OrderedDict) and obj["meta"] == {"epoch": 3, "sizes": (1, 2)}
    assert unloaded_names(obj) == []


def test_other_objects_are_left_unbuilt_and_their_code_never_runs(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "ck.pth"
    torch.save({"w": torch.ones(2), "args": argparse.Namespace(lr=1e-3), "evil": _Payload(marker)}, path)
    obj = load_tensors_only(path)
    assert not marker.exists()
    assert torch.equal(obj["w"], torch.ones(2))
    assert isinstance(obj["args"], UnloadedObject) and isinstance(obj["evil"], UnloadedObject)
    # Path.touch pickles as getattr(PosixPath, "touch"): getattr itself is not on the allow-list
    assert unloaded_names(obj) == ["argparse.Namespace", "builtins.getattr", "pathlib.PosixPath"]


def test_builtin_containers_of_protocol_2_pickles_are_built(tmp_path):
    path = tmp_path / "ck.pth"
    torch.save({"tags": {"a", "b"}, "frozen": frozenset({1})}, path)  # torch pickles with protocol 2
    obj = load_tensors_only(path)
    assert obj == {"tags": {"a", "b"}, "frozen": frozenset({1})}


def test_files_that_are_not_zip_checkpoints_are_refused(tmp_path):
    legacy = tmp_path / "legacy.pth"
    torch.save({"w": torch.ones(1)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="not in PyTorch's zip format"):
        load_tensors_only(legacy)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="legacy.pth|garbage.pth"):
        load_tensors_only(garbage)
