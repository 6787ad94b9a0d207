"""SS2D, the 2-D selective-scan mixer of VMamba (Liu et al. 2024, arXiv:2401.10166) as used by VM-UNet.

VM-UNet (Ruan et al. 2024, arXiv:2402.02491) uses VMamba's first ("v0") SS2D; REFERENCE.md section 2
gives its facts. On a channels-last map x (B, H, W, C):

1. ``in_proj`` Linear C -> 2D (no bias), split into x and the gate z (D = expand * C);
2. x -> depthwise conv 3x3 with bias (``conv2d``) -> SiLU;
3. cross-scan x into K = 4 sequences (row-major, column-major, and both reversed), each with its own
   parameters: ``x_proj_weight`` (K, R + 2N, D) gives per step dt (R), B (N), C (N); ``dt_projs_weight``
   (K, D, R) lifts dt to D channels and ``dt_projs_bias`` (K, D) is the scan's delta bias (softplus);
   ``A_logs`` (K*D, N) with A = -exp(A_logs); ``Ds`` (K*D) the skip; B and C are grouped by direction;
4. selective scan of the four sequences, cross-merge (sum back in row-major order);
5. LayerNorm(D) (``out_norm``), times SiLU(z), ``out_proj`` Linear D -> C (no bias), dropout.

Steps 3-4 run through :func:`specmamba.ops.ss2d_selective_scan` with the layer's ``scan_backend``
(``auto`` | ``ref`` | ``cpu`` | ``triton`` | ``mamba_ssm``): the ``cpu`` and ``triton`` backends fuse
cross-scan, scan and cross-merge, so the four direction copies of x never exist.

x_proj acts on each position separately, so it commutes with the direction reordering: we project the
row-major map once (one GEMM over all K directions) and reorder the small (K, R + 2N) result into each
direction's step order, instead of projecting four reordered copies of x. The values are the official
ones (same products and sums, only the order of the copies differs).

Initialisation (the official one): ``in_proj``/``out_proj`` trunc-normal std 0.02 (the model-wide
init of VMamba's Linear layers); ``x_proj_weight`` nn.Linear's default U(-1/sqrt(D), 1/sqrt(D)) per
direction; ``dt_projs_weight`` U(-R^-0.5, R^-0.5); ``dt_projs_bias`` = softplus^-1(dt) with dt
log-uniform in [dt_min, dt_max] floored at 1e-4; ``A_logs`` row = log(1..N); ``Ds`` = 1; ``conv2d``
PyTorch's default. ``A_logs`` and ``Ds`` carry ``_no_weight_decay = True`` as in the official code.

Shape letters: B batch, H/W map size, L = H*W, C model width, D inner width (expand * C), K = 4 scan
directions, N state size (d_state), R dt rank (ceil(C / 16) by default).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops import SS2D as SS2D_DIRECTIONS
from ..ops import ss2d_selective_scan
from .precision import at_least_fp32
from .scan_backend import check_scan_backend

__all__ = ["SS2D", "init_dt_", "init_linear_"]

K_DIRECTIONS = SS2D_DIRECTIONS.k


@torch.no_grad()
def init_linear_(layer: nn.Linear, std: float = 0.02) -> None:
    """VMamba's Linear init: weight trunc-normal(0, std) truncated at +-2 (timm's default bounds), bias 0.

    The bounds are absolute, i.e. 100 std away for std 0.02, so the truncation never bites: a normal
    draw clamped to them has the same distribution and is several times cheaper than inverse-CDF
    sampling (this matters for 27-44M-parameter models built in tests).
    """
    layer.weight.normal_(0.0, std).clamp_(-2.0, 2.0)
    if layer.bias is not None:
        layer.bias.zero_()


@torch.no_grad()
def init_dt_(
    weight: Tensor, bias: Tensor, dt_scale: float, dt_min: float, dt_max: float, dt_init_floor: float
) -> None:
    """Mamba's dt projection init: ``weight`` (..., D, R) U(+-R^-0.5 dt_scale); ``bias`` (..., D) the
    inverse softplus of a dt drawn log-uniformly in [dt_min, dt_max] and floored at dt_init_floor."""
    std = weight.shape[-1] ** -0.5 * dt_scale
    weight.uniform_(-std, std)
    lo, hi = math.log(dt_min), math.log(dt_max)
    dt = torch.exp(torch.rand(bias.shape) * (hi - lo) + lo).clamp(min=dt_init_floor)
    bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse of softplus


class SS2D(nn.Module):
    """2-D selective scan mixer: (B, H, W, C) -> (B, H, W, C), channels last.

    Args:
        d_model: C, the model width.
        d_state: N, the SSM state size (16 in VM-UNet).
        d_conv: kernel size of the depthwise conv (3).
        expand: D = expand * C (2).
        dt_rank: R, or ``"auto"`` = ceil(C / 16).
        dt_min, dt_max, dt_init_floor, dt_scale: dt initialisation (see module docstring).
        conv_bias: bias of the depthwise conv (True). bias: bias of in_proj/out_proj (False).
        dropout: dropout on the output (0).
        scan_backend: selective-scan backend (see :func:`specmamba.ops.selective_scan`).
    """

    #: A scan module: ``layers.scan_backend.set_scan_backend`` switches its backend.
    uses_selective_scan = True

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 3,
        expand: float = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        dt_scale: float = 1.0,
        conv_bias: bool = True,
        bias: bool = False,
        dropout: float = 0.0,
        scan_backend: str = "auto",
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.d_state = d_state
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.scan_backend = check_scan_backend(scan_backend)
        self.dt_min, self.dt_max, self.dt_init_floor, self.dt_scale = dt_min, dt_max, dt_init_floor, dt_scale
        k, d, n, r = K_DIRECTIONS, self.d_inner, d_state, self.dt_rank

        self.in_proj = nn.Linear(d_model, 2 * d, bias=bias)
        self.conv2d = nn.Conv2d(d, d, d_conv, padding=(d_conv - 1) // 2, groups=d, bias=conv_bias)
        self.act = nn.SiLU()
        self.x_proj_weight = nn.Parameter(torch.empty(k, r + 2 * n, d))
        self.dt_projs_weight = nn.Parameter(torch.empty(k, d, r))
        self.dt_projs_bias = nn.Parameter(torch.empty(k, d))
        self.A_logs = nn.Parameter(torch.empty(k * d, n))
        self.Ds = nn.Parameter(torch.empty(k * d))
        self.A_logs._no_weight_decay = True
        self.Ds._no_weight_decay = True
        self.out_norm = nn.LayerNorm(d)
        self.out_proj = nn.Linear(d, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The official initialisation (module docstring); the conv keeps PyTorch's default."""
        d, n = self.d_inner, self.d_state
        init_linear_(self.in_proj)
        init_linear_(self.out_proj)
        self.conv2d.reset_parameters()
        self.out_norm.reset_parameters()
        # nn.Linear(D, R + 2N)'s default init per direction: kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(D)).
        bound = 1.0 / math.sqrt(d)
        self.x_proj_weight.uniform_(-bound, bound)
        init_dt_(
            self.dt_projs_weight,
            self.dt_projs_bias,
            self.dt_scale,
            self.dt_min,
            self.dt_max,
            self.dt_init_floor,
        )
        a = torch.arange(1, n + 1, dtype=torch.float32)
        self.A_logs.copy_(torch.log(a).expand(K_DIRECTIONS * d, n))
        self.Ds.fill_(1.0)

    def forward_core(self, x: Tensor) -> Tensor:
        """Cross-scan, selective scan and cross-merge of the conv output x (B, D, H, W) -> (B, D, L)."""
        b, d, h, w = x.shape
        k, n, r = K_DIRECTIONS, self.d_state, self.dt_rank
        length = h * w
        # x_proj on the row-major map for all directions in one GEMM, then into each direction's order.
        proj = self.x_proj_weight.reshape(k * (r + 2 * n), d)
        x_dbl = torch.matmul(proj, x.reshape(b, d, length))  # (K*(R+2N), D) @ (B, D, L) -> (B, K*(R+2N), L)
        x_dbl = SS2D_DIRECTIONS.to_step_order(x_dbl.view(b, k, r + 2 * n, length), h, w)  # (B, K, R+2N, L)
        dts, Bs, Cs = torch.split(x_dbl, [r, n, n], dim=2)  # (B, K, R, L), (B, K, N, L), (B, K, N, L)
        As = -torch.exp(at_least_fp32(self.A_logs))  # (K*D, N)
        return ss2d_selective_scan(
            x,
            dts,
            As,
            Bs,
            Cs,
            at_least_fp32(self.Ds),
            at_least_fp32(self.dt_projs_bias).reshape(-1),  # (K*D,)
            delta_softplus=True,
            backend=self.scan_backend,
            directions=SS2D_DIRECTIONS,
            dt_proj=self.dt_projs_weight,  # delta = dt_projs_weight @ dts, inside the CPU kernel at inference
        )

    def forward(self, x: Tensor) -> Tensor:
        """Channels-last map (B, H, W, C) -> (B, H, W, C)."""
        b, h, w, c = x.shape
        d = self.d_inner
        weight, bias = self.in_proj.weight, self.in_proj.bias  # (2D, C): rows [:D] -> x, [D:] -> z
        # in_proj's x half is computed straight into channels-first layout (the conv and the scan want
        # (B, D, H, W)): the GEMM reads the input transposed for free, which saves a (B, L, D) copy.
        xt = x.reshape(b, h * w, c).transpose(1, 2)  # (B, H, W, C) -> (B, C, L), a view
        xc = torch.matmul(weight[:d], xt)  # (D, C) @ (B, C, L) -> (B, D, L)
        if bias is not None:
            xc = xc + bias[:d, None]
        z = F.linear(x, weight[d:], None if bias is None else bias[d:])  # (B, H, W, D)
        xc = self.act(self.conv2d(xc.view(b, d, h, w)))  # (B, D, H, W)
        y = self.forward_core(xc)  # (B, D, L)
        y = y.transpose(1, 2).reshape(b, h, w, self.d_inner)  # (B, L, D) -> (B, H, W, D)
        y = self.out_norm(y) * F.silu(z)
        return self.dropout(self.out_proj(y))

    def scan_state_updates(self, x: Tensor) -> int:
        """State updates a forward of x (B, H, W, C) performs: B * K * D * H * W * N (for FLOP counts)."""
        b, h, w, _ = x.shape
        return b * K_DIRECTIONS * self.d_inner * h * w * self.d_state

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, d_inner={self.d_inner}, d_state={self.d_state}, "
            f"dt_rank={self.dt_rank}, "
            f"scan_backend={self.scan_backend!r}"
        )
