"""Shared inference helpers: device choice, autocast, logits -> label maps, resizing back.

A neutral module (like ``errors``): the engine (training, evaluation, prediction) and the spectral
audit both use it, so neither imports the other. The models return logits; these helpers are the
single place where logits become probabilities or labels (num_classes == 1: sigmoid, threshold 0.5;
num_classes >= 2: softmax / argmax).
"""

from __future__ import annotations

import contextlib
import functools
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from .errors import ConfigError


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """'auto' -> CUDA when available else CPU; 'cuda' / 'cuda:N' / 'cpu' checked for availability."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r} is not a device; use auto, cpu, cuda or cuda:N.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"--device {name} asked for CUDA, but no CUDA device is available; use --device cpu."
        )
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {name}: only cpu and cuda devices are supported.")
    return device


def check_loader_options(batch_size: int, workers: int) -> None:
    """Raise ConfigError unless ``batch_size`` >= 1 and ``workers`` >= 0 (whole numbers)."""
    for flag, value, minimum in (("--batch-size", batch_size, 1), ("--workers", workers, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"{flag} must be a whole number >= {minimum}; got {value!r}.")


def autocast(
    device: torch.device, enabled: bool = True, cpu_bf16: bool = False
) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when ``enabled``; on CPU only when asked (``cpu_bf16``), fp32 otherwise.

    CPU bf16 is opt-in: the GEMMs and convolutions run in bf16 (on CPUs with AVX512-BF16 about 2.2x
    the fp32 GEMM rate; vmunet inference 0.22 -> 0.18 s per 256x256 image on two cores) while the
    scans, norms and FFTs stay float32 (``layers/precision.py``). The logits move by about 1e-2 of
    their range (vmunet, random weights: 99.6% of pixels keep their label), so published metrics
    should be measured without it. On a CPU without oneDNN's bf16 kernels it still runs, but warns
    with the reason (:func:`why_cpu_bf16_is_slow`): there it is an order of magnitude slower.
    """
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if cpu_bf16 and device.type == "cpu":
        reason = why_cpu_bf16_is_slow()
        if reason:
            warnings.warn(f"CPU bf16 autocast (--cpu-bf16) asked for, but {reason}", stacklevel=2)
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@functools.cache
def why_cpu_bf16_is_slow() -> str | None:
    """None where oneDNN has bf16 GEMM and convolution kernels for this CPU, else the reason and the fix.

    oneDNN's bf16 kernels need AVX-512 (avx512_core; native dot products with AVX512-BF16 or AMX).
    Without them, bf16 matmuls and convolutions fall back to slow generic kernels: on an AVX2 AMD EPYC
    (2 cores) vmunet inference took 4.7 s per 256x256 image in bf16 against 0.35 s in fp32.
    """
    try:
        native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    except (AttributeError, RuntimeError):  # a build without the query: assume the slow path
        native = False
    if native:
        return None
    return (
        f"this CPU has no oneDNN bf16 kernels (PyTorch reports {torch.backends.cpu.get_cpu_capability()}, "
        "AVX-512 is needed), so bf16 GEMMs and convolutions run several times slower than float32; "
        "leave CPU bf16 off on this machine."
    )


def logits_to_probs(logits: torch.Tensor) -> torch.Tensor:
    """(B, K, H, W) logits -> probabilities: sigmoid for K == 1, softmax over K otherwise."""
    logits = logits.float()
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


def probs_to_labels(probs: torch.Tensor) -> torch.Tensor:
    """(B, K, H, W) probabilities -> (B, H, W) int64 label map (threshold 0.5 for K == 1, else argmax)."""
    if probs.shape[1] == 1:
        return (probs[:, 0] >= 0.5).long()
    return probs.argmax(dim=1)


def logits_to_labels(logits: torch.Tensor) -> torch.Tensor:
    """(B, K, H, W) logits -> (B, H, W) label map; sigmoid >= 0.5 is logit >= 0."""
    if logits.shape[1] == 1:
        return (logits[:, 0] >= 0).long()
    return logits.argmax(dim=1)


def resize_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (B, K, h, w) logits to ``size`` = (H, W) (identity when already that size)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)


def case_labels(logits: torch.Tensor, index: int, size: tuple[int, int]) -> np.ndarray:
    """(H, W) int64 label map of case ``index`` of a (B, K, h, w) logit batch, resized to ``size`` first.

    Labels are taken after resizing the logits (not the labels), so a case is scored and saved at its
    own original resolution.
    """
    return logits_to_labels(resize_logits(logits[index : index + 1], tuple(size)))[0].cpu().numpy()
