"""Reading the tensors of a PyTorch checkpoint that also pickles Python objects, without running them.

Training scripts often save more than tensors: Vim's and Vim-F's released checkpoints hold the
weights under ``'model'`` beside the optimizer state and an ``argparse.Namespace`` (REFERENCE.md
section 5), so ``torch.load(weights_only=True)`` refuses them, and ``weights_only=False`` would run
whatever the file's pickle asks for. :func:`load_tensors_only` reads such a file instead:

* it opens PyTorch's zip format itself (``<archive>/data.pkl`` and one ``<archive>/data/<key>`` record
  per storage) and unpickles ``data.pkl`` with an unpickler whose ``find_class`` (the only way a pickle
  reaches a callable) resolves an **allow-list**: the tensor and parameter rebuild functions, storage
  types, ``OrderedDict``, ``torch.Size`` / ``torch.device`` / dtypes and plain builtin containers;
* every other global (``argparse.Namespace``, ``os.system``, a class of the training code) resolves to
  an inert :class:`UnloadedObject` subclass that only records its name and arguments: building,
  calling or setting the state of one runs no code of the file, so a malicious ``__reduce__`` does
  nothing, and the tensors around it load;
* storages are read from their records as bytes (little-endian files only, as PyTorch writes them).

The legacy (pre-1.6, non-zip) format is refused with the command that converts it.

:func:`unloaded_names` lists what was left unbuilt, for reports.
"""

from __future__ import annotations

import collections
import os
import pickle
import zipfile
from typing import Any

import torch

from ..errors import CheckpointError

__all__ = ["UnloadedObject", "load_tensors_only", "unloaded_names"]

_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    **{("builtins", t.__name__): t for t in (set, frozenset, tuple, list, dict, slice, complex, range)},
}

# The storage types a pickle names (``torch.FloatStorage`` ...), resolved to their dtypes.
_STORAGE_DTYPES: dict[str, torch.dtype] = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "ComplexFloatStorage": torch.complex64,
    "ComplexDoubleStorage": torch.complex128,
    "UntypedStorage": torch.uint8,
}


class UnloadedObject:
    """Stands for a pickled object that was not built: ``qualname``, and the arguments and state the
    pickle gave it (which may themselves hold tensors)."""

    qualname = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> UnloadedObject:
        self = object.__new__(cls)
        self.args, self.kwargs, self.state = args, kwargs, None
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # pickle's REDUCE calls the class
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> UnloadedObject:  # an unloaded function, "called"
        return _unloaded_class(self.qualname)(*args, **kwargs)

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<not loaded: {self.qualname}>"


def _unloaded_class(qualname: str) -> type[UnloadedObject]:
    return type("Unloaded", (UnloadedObject,), {"qualname": qualname})


class _TensorsOnlyUnpickler(pickle.Unpickler):
    def __init__(self, data: Any, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(data)
        self._archive, self._prefix = archive, prefix
        self._storages: dict[str, torch.storage.TypedStorage] = {}

    def find_class(self, module: str, name: str) -> Any:
        module = "builtins" if module == "__builtin__" else module  # protocol 2 (torch's) names it so
        allowed = _ALLOWED.get((module, name))
        if allowed is not None:
            return allowed
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        return _unloaded_class(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> torch.storage.TypedStorage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        _, storage_type, key, _location, _numel = pid
        dtype = storage_type  # find_class resolved the storage type to its dtype
        if not isinstance(dtype, torch.dtype):
            raise pickle.UnpicklingError(f"storage {key!r} has no known storage type ({storage_type!r})")
        if key not in self._storages:
            raw = bytearray(self._archive.read(f"{self._prefix}/data/{key}"))
            untyped = (
                torch.UntypedStorage.from_buffer(raw, dtype=torch.uint8) if raw else torch.UntypedStorage(0)
            )
            self._storages[key] = torch.storage.TypedStorage(
                wrap_storage=untyped, dtype=dtype, _internal=True
            )
        return self._storages[key]


def load_tensors_only(path: str | os.PathLike[str]) -> Any:
    """The object pickled in the checkpoint ``path``, with its tensors on the CPU and every object outside
    the allow-list left as an :class:`UnloadedObject` (see the module docstring). Raises CheckpointError
    for a file that is not a readable little-endian PyTorch zip checkpoint."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(
            f"Checkpoint {path} is not in PyTorch's zip format, so its tensors cannot be read without "
            "running its pickle. If it is a legacy (PyTorch < 1.6) file you trust, convert it once: "
            "torch.save(torch.load(path, weights_only=False), new_path)."
        ) from exc
    with archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise CheckpointError(f"Checkpoint {path} has no single <archive>/data.pkl record ({pickles}).")
        prefix = pickles[0].split("/")[0]
        if f"{prefix}/byteorder" in archive.namelist() and archive.read(f"{prefix}/byteorder") != b"little":
            raise CheckpointError(
                f"Checkpoint {path} was written on a big-endian machine, which is not supported."
            )
        with archive.open(pickles[0]) as data:
            try:
                return _TensorsOnlyUnpickler(data, archive, prefix).load()
            except (pickle.UnpicklingError, KeyError, EOFError, RuntimeError, ValueError, TypeError) as exc:
                raise CheckpointError(
                    f"Checkpoint {path} cannot be read: its pickle is damaged or uses something other than "
                    f"tensors and plain containers to build them ({type(exc).__name__}: {exc})."
                ) from exc


def unloaded_names(obj: Any) -> list[str]:
    """Sorted names of the objects left unbuilt anywhere inside ``obj`` (dicts, lists, tuples, sets)."""
    found: set[str] = set()
    stack, seen = [obj], set()
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, UnloadedObject):
            found.add(item.qualname)
            stack += [*item.args, *item.kwargs.values(), item.state]
        elif isinstance(item, dict):
            stack += list(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack += list(item)
    return sorted(found)
