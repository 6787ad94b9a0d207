"""KAN convolution benchmark: the batched form against the per-channel-pair loop of public KAN convs.

``specmamba bench kan`` / :func:`bench_kan_conv` time, in one run and on the same weights,
:class:`~specmamba.layers.kan_conv.KANConv2d` (one KANLinear over every unfolded C_in * k * k patch
vector) and the loop the public KAN convolutions (Convolutional-KANs) run: for every output channel o
and input channel i, a KAN over the k * k values of channel i's patch, summed over i. Both compute
the same function, sum over (i, patch position) of phi_{o, i, position}(value), so the loop is built
from the batched layer's own coefficients (:class:`PairwiseKANConv`, built once, outside the timing)
and its output is checked against the batched one before anything is timed. The figure is the
speed-up (loop time / batched time), forward and forward + backward. It grows with the number of
channel pairs the loop visits (C_in * C_out; 256 at the default 16 -> 16).

Shape letters: B batch, C channels, S map side, k kernel size.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from ..kan import KANLinear
from ..layers.kan_conv import KANConv2d
from .timing import format_table, publish, time_ms

__all__ = ["PairwiseKANConv", "bench_kan_conv"]


class PairwiseKANConv(torch.nn.Module):
    """A KANConv2d evaluated the public codes' way: one small KAN per (output, input) channel pair,
    each with its coefficients copied from the batched layer, applied in a Python double loop."""

    def __init__(self, conv: KANConv2d) -> None:
        super().__init__()
        k2, kan = conv.kernel_size**2, conv.kan
        self.kernel_size, self.padding, self.stride = conv.kernel_size, conv.padding, conv.stride
        self.out_channels, self.in_channels = conv.out_channels, conv.in_channels
        self.pairs = torch.nn.ModuleList()
        for o in range(conv.out_channels):
            for i in range(conv.in_channels):
                inputs = slice(i * k2, (i + 1) * k2)
                pair = KANLinear(k2, 1, grid_size=kan.grid_size, spline_order=kan.spline_order)
                with torch.no_grad():
                    pair.grid.copy_(kan.grid[inputs])
                    pair.base_weight.copy_(kan.base_weight[o : o + 1, inputs])
                    pair.spline_weight.copy_(kan.spline_weight[o : o + 1, inputs])
                    pair.spline_scaler.copy_(kan.spline_scaler[o : o + 1, inputs])
                self.pairs.append(pair)

    def forward(self, x: Tensor) -> Tensor:
        k = self.kernel_size
        b, c_in, h, _ = x.shape
        patches = F.unfold(x, k, padding=self.padding, stride=self.stride)  # (B, C_in * k * k, L)
        patches = patches.transpose(1, 2).reshape(b, -1, c_in, k * k)  # (B, L, C_in, k * k)
        outputs = []
        for o in range(self.out_channels):
            total = 0.0
            for i in range(c_in):
                total = total + self.pairs[o * c_in + i](patches[:, :, i])[..., 0]  # (B, L)
            outputs.append(total)
        h_out = (h + 2 * self.padding - k) // self.stride + 1
        return torch.stack(outputs, dim=1).reshape(b, self.out_channels, h_out, -1)


def bench_kan_conv(
    batch: int = 2,
    channels: int = 16,
    out_channels: int = 16,
    size: int = 32,
    kernel_size: int = 3,
    repeats: int = 3,
    json_path: str | os.PathLike[str] | None = None,
    verbose: bool = True,
) -> dict[str, Any]:
    """Time the batched KAN convolution against the per-pair loop; print the table, return the result."""
    for name, value in (
        ("batch", batch),
        ("channels", channels),
        ("out_channels", out_channels),
        ("size", size),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"bench kan: {name} must be a positive integer; got {value!r}.")
    torch.manual_seed(0)
    conv = KANConv2d(channels, out_channels, kernel_size, padding=kernel_size // 2)
    x = torch.randn(batch, channels, size, size, requires_grad=True)
    pairwise = PairwiseKANConv(conv)  # built once, outside the timing
    with torch.no_grad():
        difference = (conv(x) - pairwise(x)).abs().max().item()
    if difference > 1e-4:
        raise RuntimeError(f"bench kan: the two forms disagree by {difference}; nothing was timed.")

    def forward(fn: Callable[[Tensor], Tensor]) -> Callable[[], None]:
        def call() -> None:
            with torch.no_grad():
                fn(x)

        return call

    def training(fn: Callable[[Tensor], Tensor]) -> Callable[[], None]:
        def call() -> None:
            fn(x).square().sum().backward()

        return call

    rows = []
    for label, wrap in (("forward", forward), ("forward + backward", training)):
        batched = time_ms(wrap(conv), repeats=repeats, warmup=1).median_ms
        loop = time_ms(wrap(pairwise), repeats=repeats, warmup=1).median_ms
        rows.append(
            {"figure": label, "batched_ms": batched, "pairwise_loop_ms": loop, "speedup": loop / batched}
        )
    meta = {
        "shape": f"B {batch}, C {channels} -> {out_channels}, {size}x{size}, kernel {kernel_size}",
        "threads": torch.get_num_threads(),
        "max_abs_difference": difference,
        "torch": torch.__version__,
    }
    result = {"meta": meta, "rows": rows}
    publish(result, render, verbose, json_path)
    return result


def render(result: dict) -> str:
    meta = result["meta"]
    head = (
        f"KAN convolution: batched KANConv2d vs the per-channel-pair loop, {meta['shape']}, "
        f"{meta['threads']} threads (outputs agree to {meta['max_abs_difference']:.1e})"
    )
    table = [
        [r["figure"], r["batched_ms"], r["pairwise_loop_ms"], f"{r['speedup']:.1f}x"] for r in result["rows"]
    ]
    return head + "\n" + format_table(table, ["figure", "batched ms", "pairwise loop ms", "speed-up"])
