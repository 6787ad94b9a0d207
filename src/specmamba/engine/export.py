"""``specmamba export``: a trained checkpoint as one file that runs without specmamba.

Two formats, one graph:

* ``onnx``: ``model.onnx``, for onnxruntime (or any ONNX runtime), written by PyTorch's exporter
  (``torch.onnx.export(dynamo=True)``, which needs the ``onnx`` and ``onnxscript`` packages);
* ``torch-export``: ``model.pt2``, for plain PyTorch: ``torch.export.load(path).module()(x)``.

Both are made from one ``torch.export`` trace of the model in eval mode, on CPU, with every scan layer
switched to the ``chunked`` backend (:mod:`specmamba.ops.scan_chunked`): the numba and Triton kernels
cannot leave the package, the chunked scan is standard tensor operations. Its chunk length (``chunk``;
None: the power of two nearest sqrt(l) for each sequence) is fixed in the graph.

**The contract of the exported file** (also written to ``export.json`` beside it): input ``image``,
float32 (B, C, S, S) with S the checkpoint's training size, the pixels on the [0, 1] scale normalised
per channel, ``(x - mean) / std``, with the checkpoint's ``mean`` and ``std``; the batch size B is free.
Output ``logits``, float32 (B, K, S, S): sigmoid gives a binary model's (K = 1) foreground probability,
softmax over K a multi-class model's. Images of another size are resized to S x S first, as in
``specmamba predict``, and the logits back.

``verify=True`` runs the exported file (onnxruntime or ``torch.export.load``) beside the package's own
model (its configured scan backend: the numba kernel on CPU) on a few seeded inputs and records the
largest logit difference. The bar is relative, :data:`VERIFY_RTOL` of the largest logit magnitude (but
at least 1e-4 absolute): float32 backends of the package itself differ by that much on trained weights
(the demo's VM-UNet, logits up to 5.5: ``ref`` and the numba kernel by 1.1e-4, the exported files by
3e-5..7e-5), so an absolute 1e-4 would fail exports that are as exact as the package. ``specmamba
export --verify`` exits with 1 above the bar; the files are written either way, and ``export.json``
records the check. Nothing is written unless the whole export succeeds (a staged folder).

Shape letters: B batch, C input channels, K logit channels, S the training size.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import platform
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..atomic import staged_folder, write_json
from ..disk import check_output_folder
from ..errors import ConfigError, OutputError
from ..layers.scan_backend import scan_modules, set_scan_backend
from ..models.rebuild import load_training_checkpoint
from ..ops.scan_chunked import check_chunk_length
from ..ops.scan_chunked import chunk_length as scan_chunk_length

__all__ = ["FORMATS", "VERIFY_RTOL", "export_checkpoint", "load_exported"]

#: Format -> the file it writes.
FORMATS = {"onnx": "model.onnx", "torch-export": "model.pt2"}
METADATA = "export.json"
#: ``--verify`` accepts logit differences up to this fraction of the largest |logit| (at least 1e-4).
VERIFY_RTOL = 1e-4
_ONNX_PACKAGES = ("onnx", "onnxscript")
_INSTALL = 'pip install "specmamba[export]"  (onnx, onnxscript, onnxruntime)'


def _why_format_unavailable(fmt: str, run: bool = False) -> str | None:
    """None if ``fmt`` can be written (and, with ``run``, executed) here, else the reason and the fix."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}; got {fmt!r}.")
    if fmt == "torch-export":
        return None
    needed = _ONNX_PACKAGES + (("onnxruntime",) if run else ())
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        return f"--format onnx needs {', '.join(missing)}, which {verb} not installed: {_INSTALL}."
    return None


def _require_format(fmt: str, run: bool = False) -> None:
    reason = _why_format_unavailable(fmt, run)
    if reason is not None:
        raise ConfigError(reason)


def _example_input(ckpt: dict[str, Any], batch: int = 1, seed: int = 0) -> torch.Tensor:
    """A seeded (B, C, S, S) input in the normalised space (standard normal, like normalised images)."""
    cfg = ckpt["config"]
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, cfg["in_chans"], cfg["img_size"], cfg["img_size"], generator=generator)


def _metadata(
    ckpt: dict[str, Any], path: Path, fmt: str, chunk: int | None, has_scan: bool
) -> dict[str, Any]:
    cfg, k = ckpt["config"], int(ckpt["config"]["num_classes"])
    size = int(cfg["img_size"])
    scan = {"backend": "chunked", "chunk_length": "auto" if chunk is None else chunk}
    return {
        "format": fmt,
        "file": FORMATS[fmt],
        "checkpoint": str(path),
        "model_name": ckpt["model_name"],
        "epoch": ckpt.get("epoch"),
        "input": {
            "name": "image",
            "shape": ["B", int(cfg["in_chans"]), size, size],
            "dtype": "float32",
            "preprocess": "resize to S x S (bilinear), pixels / 255, then (x - mean) / std per channel",
            "mean": list(ckpt["normalization"]["mean"]),
            "std": list(ckpt["normalization"]["std"]),
        },
        "output": {
            "name": "logits",
            "shape": ["B", k, size, size],
            "dtype": "float32",
            "to_probabilities": "sigmoid" if k == 1 else "softmax over dim 1",
            "num_classes": k,
        },
        "scan": scan if has_scan else None,
        "exported_with": {"torch": torch.__version__, "python": platform.python_version()},
    }


def _trace(model: nn.Module, example: torch.Tensor, chunk: int | None) -> torch.export.ExportedProgram:
    """torch.export of ``model`` (eval, CPU, chunked scan) with a free batch dimension."""
    if scan_modules(model):
        set_scan_backend(model, "chunked")
    batch = torch.export.Dim("batch", min=1, max=1024)
    with torch.no_grad(), scan_chunk_length(chunk):
        return torch.export.export(model, (example,), dynamic_shapes={"image": {0: batch}})


class _Named(nn.Module):
    """The model with its input named ``image`` (the exported files' input name)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image)


def export_checkpoint(
    checkpoint: str | Path,
    out: str | Path,
    fmt: str = "onnx",
    chunk: int | None = None,
    verify: bool = False,
    n_verify: int = 3,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Export ``checkpoint`` (of ``specmamba train``) to ``out/model.onnx`` or ``out/model.pt2`` plus
    ``out/export.json``; returns the metadata (with ``verify``: its ``max_abs_diff`` etc.).

    ``chunk``: the chunked scan's chunk length (None: per sequence, the power of two nearest sqrt(l)).
    Raises ConfigError for a format that cannot be written here (naming the packages to install) or
    OutputError for an ``out`` that holds an export already (unless ``overwrite``) or cannot be written.
    """
    _require_format(fmt, run=verify)
    check_chunk_length(chunk)
    path, out_dir = Path(checkpoint), Path(out)
    existing = [name for name in (FORMATS[fmt], METADATA) if (out_dir / name).exists()]
    if existing and not overwrite:
        raise OutputError(
            f"--out {out_dir} already holds {', '.join(existing)}; pass --overwrite to replace them, or "
            "choose another folder."
        )
    ckpt, model = load_training_checkpoint(path)
    model.eval()
    params = sum(p.numel() for p in model.parameters())
    check_output_folder(out_dir, "--out", 8 * params + (1 << 24))  # weights twice over, plus the graph
    reference = None
    if verify:  # the package's own logits, before the scan layers are switched
        inputs = [_example_input(ckpt, seed=seed) for seed in range(n_verify)]
        with torch.no_grad():
            reference = [model(x) for x in inputs]
    program = _trace(_Named(model), _example_input(ckpt, batch=2), chunk)
    meta = _metadata(ckpt, path, fmt, chunk, bool(scan_modules(model)))
    with staged_folder(out_dir) as stage:
        target = stage / FORMATS[fmt]
        if fmt == "torch-export":
            torch.export.save(program, str(target))
        else:
            _write_onnx(program, target)
        if reference is not None:
            run = load_exported(target)
            diffs = [float((run(x) - want).abs().max()) for x, want in zip(inputs, reference)]
            tolerance = VERIFY_RTOL * max(1.0, max(float(want.abs().max()) for want in reference))
            meta["verify"] = {
                "n_inputs": n_verify,
                "max_abs_diff": max(diffs),
                "tolerance": tolerance,
                "passed": max(diffs) <= tolerance,
                "against": "the package's model with its own scan backend, on seeded standard-normal inputs",
            }
        write_json(stage / METADATA, meta)
    meta["out"] = str(out_dir)
    return meta


def _write_onnx(program: torch.export.ExportedProgram, target: Path) -> None:
    # The exporter reports its progress on stdout, logs that torchvision's ops are not registered
    # (nothing here uses them) and warns of its own deprecations; the command prints its own summary.
    # optimize=False: onnxscript's optimizer took 650 of the 770 s of vmunet's export at 256 px, and
    # onnxruntime optimises the graph itself when it loads it (1.3 s per image either way).
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                program,
                f=str(target),
                input_names=["image"],
                output_names=["logits"],
                external_data=False,
                optimize=False,
            )
    finally:
        registration.setLevel(level)


def load_exported(path: str | Path) -> Callable[[torch.Tensor], torch.Tensor]:
    """A callable (B, C, S, S) float32 tensor -> (B, K, S, S) logits that runs an exported file
    (``model.onnx`` with onnxruntime, ``model.pt2`` with ``torch.export.load``)."""
    path = Path(path)
    if path.suffix == ".onnx":
        _require_format("onnx", run=True)
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.log_severity_level = 3  # errors only: its graph optimiser reports every node it skips
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        def run_onnx(x: torch.Tensor) -> torch.Tensor:
            (logits,) = session.run(["logits"], {"image": np.ascontiguousarray(x.numpy(), dtype=np.float32)})
            return torch.from_numpy(logits)

        return run_onnx
    if path.suffix == ".pt2":
        module = torch.export.load(str(path)).module()

        def run_torch(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return module(x)

        return run_torch
    raise ConfigError(f"{path}: an exported model is a .onnx or .pt2 file of specmamba export.")
