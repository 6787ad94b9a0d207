"""KANLinear, the Kolmogorov-Arnold layer of efficient-KAN (REFERENCE.md section 6).

A neutral module (like ``fourier``): the KAN convolution of ``layers`` and the KAN-weighted deep
supervision of ``losses`` both build on it.

KANLinear(in, out) maps x (..., in) to

    y = base_weight @ silu(x) + (spline_weight * spline_scaler[..., None]) . B(x),

B(x) (..., in, G + k) the order-k B-spline bases of each input on its feature's knot vector ``grid``
(in, G + 2k + 1), built by the Cox-de Boor recursion: order 0 is the indicator of [t_j, t_{j+1}), order
p mixes two order p - 1 bases with the weights (x - t_j) / (t_{j+p} - t_j) and
(t_{j+p+1} - x) / (t_{j+p+1} - t_{j+1}). Outside the extended knot range every basis is 0. The
defaults are efficient-KAN's: G = 5 intervals on [-1, 1], order 3, so 12 knots from -2.2 to 2.2 and 8
bases per input, which sum to 1 on [-1, 1].

Parameter names, shapes and init are efficient-KAN's, so its state dicts load: ``base_weight``
(out, in) kaiming-uniform with a = sqrt(5) * scale_base; ``spline_weight`` (out, in, G + k), the
least-squares spline fit of small noise ((U(0, 1) - 1/2) * scale_noise / G) at the G + 1 grid points
(times scale_spline when there is no standalone scaler); ``spline_scaler`` (out, in) kaiming-uniform
with a = sqrt(5) * scale_spline; the buffer ``grid``. :meth:`KANLinear.regularization_loss` is
efficient-KAN's: l1 = mean |spline_weight| over the coefficients (out, in), act = sum l1,
p = l1 / act, loss = reg_act * act + reg_ent * (-sum p log p). :meth:`KANLinear.update_grid` refits
each feature's knots to the quantiles of a batch (mixed with a uniform grid by ``grid_eps``) and
refits the spline weights so the layer's output on that batch is kept. (efficient-KAN copies the refit
coefficients, which already include the standalone scaler, into ``spline_weight`` and keeps the
scaler, so its spline part comes out scaled twice; here the scaler is reset to 1 instead.)

Shape letters: G grid intervals, k spline order, N rows (any leading axes flattened).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import ConfigError

__all__ = ["KANLinear", "b_spline_bases"]


def b_spline_bases(x: Tensor, grid: Tensor, order: int) -> Tensor:
    """(N, F) inputs, (F, T) knots -> (N, F, T - 1 - order) B-spline bases of ``order`` (Cox-de Boor)."""
    x = x.unsqueeze(-1)  # (N, F, 1)
    bases = ((x >= grid[:, :-1]) & (x < grid[:, 1:])).to(x.dtype)  # (N, F, T - 1), order 0
    for p in range(1, order + 1):
        left = (x - grid[:, : -(p + 1)]) / (grid[:, p:-1] - grid[:, : -(p + 1)])
        right = (grid[:, p + 1 :] - x) / (grid[:, p + 1 :] - grid[:, 1:-p])
        bases = left * bases[..., :-1] + right * bases[..., 1:]  # (N, F, T - 1 - p)
    return bases


class KANLinear(nn.Module):
    """Kolmogorov-Arnold linear layer: (..., in_features) -> (..., out_features).

    Args (efficient-KAN's): grid_size G, spline_order k, scale_noise, scale_base, scale_spline,
    enable_standalone_scale_spline, base_activation (a module class), grid_eps (uniform share of
    an updated grid), grid_range (the initial grid's interval).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        grid_size: int = 5,
        spline_order: int = 3,
        scale_noise: float = 0.1,
        scale_base: float = 1.0,
        scale_spline: float = 1.0,
        enable_standalone_scale_spline: bool = True,
        base_activation: type[nn.Module] = nn.SiLU,
        grid_eps: float = 0.02,
        grid_range: Sequence[float] = (-1, 1),
    ) -> None:
        super().__init__()
        for name, value in (
            ("in_features", in_features),
            ("out_features", out_features),
            ("grid_size", grid_size),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"KANLinear {name} must be an integer >= 1; got {value!r}.")
        if isinstance(spline_order, bool) or not isinstance(spline_order, int) or spline_order < 0:
            raise ConfigError(f"KANLinear spline_order must be an integer >= 0; got {spline_order!r}.")
        low, high = (float(v) for v in grid_range)
        if not low < high:
            raise ConfigError(
                f"KANLinear grid_range must be (low, high) with low < high; got {grid_range!r}."
            )
        self.in_features, self.out_features = in_features, out_features
        self.grid_size, self.spline_order = grid_size, spline_order
        step = (high - low) / grid_size
        knots = torch.arange(-spline_order, grid_size + spline_order + 1) * step + low  # (G + 2k + 1,)
        self.register_buffer("grid", knots.expand(in_features, -1).contiguous())
        self.base_weight = nn.Parameter(torch.empty(out_features, in_features))
        self.spline_weight = nn.Parameter(torch.empty(out_features, in_features, grid_size + spline_order))
        self.enable_standalone_scale_spline = enable_standalone_scale_spline
        if enable_standalone_scale_spline:
            self.spline_scaler = nn.Parameter(torch.empty(out_features, in_features))
        self.scale_noise, self.scale_base, self.scale_spline = scale_noise, scale_base, scale_spline
        self.base_activation = base_activation()
        self.grid_eps = grid_eps
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        if self.spline_weight.is_meta:  # shapes only (torch.device("meta")): nothing to fit
            return
        nn.init.kaiming_uniform_(self.base_weight, a=math.sqrt(5) * self.scale_base)
        noise = (torch.rand(self.grid_size + 1, self.in_features, self.out_features) - 0.5) * (
            self.scale_noise / self.grid_size
        )  # (G + 1, in, out) values at the grid points
        points = self.grid.T[self.spline_order : -self.spline_order] if self.spline_order else self.grid.T
        scale = 1.0 if self.enable_standalone_scale_spline else self.scale_spline
        self.spline_weight.copy_(scale * self.curve2coeff(points, noise))
        if self.enable_standalone_scale_spline:
            nn.init.kaiming_uniform_(self.spline_scaler, a=math.sqrt(5) * self.scale_spline)

    def b_splines(self, x: Tensor) -> Tensor:
        """(N, in) -> (N, in, G + k) B-spline bases on each feature's grid."""
        return b_spline_bases(x, self.grid, self.spline_order)

    def curve2coeff(self, x: Tensor, y: Tensor) -> Tensor:
        """Least-squares spline coefficients (out, in, G + k) through points x (N, in), y (N, in, out)."""
        bases = self.b_splines(x).transpose(0, 1)  # (in, N, G + k)
        solution = torch.linalg.lstsq(bases, y.transpose(0, 1)).solution  # (in, G + k, out)
        return solution.permute(2, 0, 1).contiguous()  # (out, in, G + k)

    @property
    def scaled_spline_weight(self) -> Tensor:
        """(out, in, G + k) spline coefficients times the standalone scaler."""
        if self.enable_standalone_scale_spline:
            return self.spline_weight * self.spline_scaler.unsqueeze(-1)
        return self.spline_weight

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_features:
            raise ConfigError(
                f"KANLinear expects {self.in_features} input features; got shape {tuple(x.shape)}."
            )
        lead = x.shape[:-1]
        x = x.reshape(-1, self.in_features)  # (N, in)
        base = F.linear(self.base_activation(x), self.base_weight)  # (N, out)
        spline = F.linear(
            self.b_splines(x).reshape(x.shape[0], -1),  # (N, in * (G + k))
            self.scaled_spline_weight.reshape(self.out_features, -1),  # (out, in * (G + k))
        )
        return (base + spline).reshape(*lead, self.out_features)

    @torch.no_grad()
    def update_grid(self, x: Tensor, margin: float = 0.01) -> None:
        """Refit the knots to the quantiles of ``x`` (N, in) and the spline weights to keep the output."""
        n = x.shape[0]
        splines = self.b_splines(x).transpose(0, 1)  # (in, N, G + k)
        coefficients = self.scaled_spline_weight.permute(1, 2, 0)  # (in, G + k, out)
        outputs = torch.bmm(splines, coefficients).transpose(0, 1)  # (N, in, out) per-feature spline outputs
        ordered = torch.sort(x, dim=0).values  # (N, in)
        adaptive = ordered[torch.linspace(0, n - 1, self.grid_size + 1, dtype=torch.int64, device=x.device)]
        step = (ordered[-1] - ordered[0] + 2 * margin) / self.grid_size  # (in,)
        uniform = torch.arange(self.grid_size + 1, dtype=x.dtype, device=x.device)[:, None] * step + (
            ordered[0] - margin
        )  # (G + 1, in)
        knots = self.grid_eps * uniform + (1 - self.grid_eps) * adaptive
        k = torch.arange(1, self.spline_order + 1, dtype=x.dtype, device=x.device)[:, None]
        knots = torch.cat([knots[:1] - step * k.flip(0), knots, knots[-1:] + step * k])  # (G + 2k + 1, in)
        self.grid.copy_(knots.T)
        self.spline_weight.copy_(self.curve2coeff(x, outputs))
        if self.enable_standalone_scale_spline:  # the refit coefficients already carry the scaler
            self.spline_scaler.fill_(1.0)

    def regularization_loss(
        self, regularize_activation: float = 1.0, regularize_entropy: float = 1.0
    ) -> Tensor:
        """efficient-KAN's regulariser: reg_act * sum l1 + reg_ent * entropy of l1 / sum l1."""
        l1 = self.spline_weight.abs().mean(-1)  # (out, in)
        activation = l1.sum()
        p = l1 / activation
        entropy = -(p * p.log()).sum()
        return regularize_activation * activation + regularize_entropy * entropy

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, grid_size={self.grid_size}, "
            f"spline_order={self.spline_order}"
        )
