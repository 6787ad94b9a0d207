"""Vim's bidirectional Mamba mixer ("bimamba v2"; Zhu et al. 2024, "Vision Mamba").

REFERENCE.md section 5. On a token sequence h (B, L, C), with E = expand * C inner channels:

1. ``in_proj`` Linear C -> 2E (no bias) gives x (first E channels) and the gate z (last E);
2. per direction k (forward; backward on x and z flipped along the sequence, parameters with suffix
   ``_b``): causal depthwise Conv1d (kernel 4: the first L outputs of a padding-3 conv), SiLU;
   ``x_proj`` Linear E -> R + 2N gives dt, B, C; ``dt_proj`` Linear R -> E lifts dt (its bias is the
   scan's delta bias, softplus); A = -exp(``A_log``); skip ``D``; the scan output gated by SiLU(z);
3. out = ``out_proj``((y_fwd + flip(y_bwd)) / 2), one Linear E -> C (no bias) shared by both.

Both directions go through **one** :func:`specmamba.ops.selective_scan` call, as 2E channels with two
groups of B/C (one per direction), so the fused CPU and Triton kernels run them together; the
direction bookkeeping (flip in, flip back and sum) is :data:`specmamba.ops.BIDIRECTIONAL`'s scan and
merge over the sequence as a (B, E, 1, L) map. The depthwise convs, x_projs and dt_projs of the two
directions likewise run as one grouped conv and two batched matmuls. Unlike the upstream code, whose
non-CUDA path silently drops the backward direction, every backend computes both.

Parameter names are the official ones (``in_proj``, ``conv1d``, ``x_proj``, ``dt_proj``, ``A_log``,
``D``, their ``_b`` twins with ``A_b_log`` / ``D_b``, ``out_proj``), so Vim checkpoints load as they are.

Initialisation: ``in_proj``, ``x_proj(_b)`` and the convs PyTorch's defaults; ``dt_proj`` *and*
``dt_proj_b`` weight U(+-R^-0.5 dt_scale), bias softplus^-1 of a log-uniform dt in [dt_min, dt_max]
floored at dt_init_floor (upstream gives ``dt_proj_b`` PyTorch's default weight and a zero bias, an
inconsistency between the directions that specmamba does not copy); ``A_log`` rows log(1..N), ``D`` 1
(no weight decay on either); ``out_proj`` kaiming-uniform(a = sqrt 5) / sqrt(n_layers), the GPT-2
rescaling of residual branches that Vim uses.

Shape letters: B batch, L sequence length, C model width, E inner width, K = 2 directions, N state
size, R dt rank (ceil(C / 16) by default).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops import BIDIRECTIONAL, selective_scan
from .precision import at_least_fp32
from .scan_backend import check_scan_backend
from .ss2d import init_dt_

__all__ = ["BiMambaMixer"]


class BiMambaMixer(nn.Module):
    """Bidirectional Mamba mixer: (B, L, C) -> (B, L, C).

    Args:
        d_model: C. d_state: N (16). d_conv: causal conv kernel (4). expand: E = expand * C (2).
        dt_rank: R or ``"auto"`` = ceil(C / 16). dt_min, dt_max, dt_init_floor, dt_scale: dt init.
        n_layers: depth of the network, for the out_proj rescaling (1 = none).
        conv_bias: bias of the convs (True). bias: bias of in_proj / out_proj (False).
        scan_backend: selective-scan backend (see :func:`specmamba.ops.selective_scan`).
    """

    #: A scan module: ``layers.scan_backend.set_scan_backend`` switches its backend.
    uses_selective_scan = True

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: float = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        dt_scale: float = 1.0,
        n_layers: int = 1,
        conv_bias: bool = True,
        bias: bool = False,
        scan_backend: str = "auto",
    ) -> None:
        super().__init__()
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.dt_min, self.dt_max, self.dt_init_floor, self.dt_scale = dt_min, dt_max, dt_init_floor, dt_scale
        self.n_layers = n_layers
        self.scan_backend = check_scan_backend(scan_backend)
        e, n, r = self.d_inner, d_state, self.dt_rank

        self.in_proj = nn.Linear(d_model, 2 * e, bias=bias)
        for suffix in ("", "_b"):
            setattr(
                self, f"conv1d{suffix}", nn.Conv1d(e, e, d_conv, padding=d_conv - 1, groups=e, bias=conv_bias)
            )
            setattr(self, f"x_proj{suffix}", nn.Linear(e, r + 2 * n, bias=False))
            setattr(self, f"dt_proj{suffix}", nn.Linear(r, e, bias=True))
        self.A_log = nn.Parameter(torch.empty(e, n))
        self.A_b_log = nn.Parameter(torch.empty(e, n))
        self.D = nn.Parameter(torch.empty(e))
        self.D_b = nn.Parameter(torch.empty(e))
        for p in (self.A_log, self.A_b_log, self.D, self.D_b):
            p._no_weight_decay = True
        self.out_proj = nn.Linear(e, d_model, bias=bias)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The initialisation of the module docstring (both directions alike)."""
        e, n = self.d_inner, self.d_state
        for layer in (self.in_proj, self.conv1d, self.conv1d_b, self.x_proj, self.x_proj_b):
            layer.reset_parameters()
        if self.in_proj.bias is not None:
            self.in_proj.bias.zero_()
        for dt_proj in (self.dt_proj, self.dt_proj_b):
            init_dt_(
                dt_proj.weight, dt_proj.bias, self.dt_scale, self.dt_min, self.dt_max, self.dt_init_floor
            )
        a_log = torch.log(torch.arange(1, n + 1, dtype=torch.float32)).expand(e, n)
        self.A_log.copy_(a_log)
        self.A_b_log.copy_(a_log)
        self.D.fill_(1.0)
        self.D_b.fill_(1.0)
        nn.init.kaiming_uniform_(self.out_proj.weight, a=math.sqrt(5))
        self.out_proj.weight /= math.sqrt(self.n_layers)
        if self.out_proj.bias is not None:
            self.out_proj.bias.zero_()

    def forward_core(self, x: Tensor, z: Tensor) -> Tensor:
        """Both directions of step 2 and the merge of step 3 before out_proj: x, z (B, E, L) -> (B, E, L)."""
        b, e, length = x.shape
        k, n, r = BIDIRECTIONAL.k, self.d_state, self.dt_rank
        xs = BIDIRECTIONAL.scan(x.reshape(b, e, 1, length))  # (B, E, 1, L) -> (B, K, E, L), backward flipped
        zs = BIDIRECTIONAL.scan(z.reshape(b, e, 1, length))  # (B, K, E, L)
        conv_w = torch.cat([self.conv1d.weight, self.conv1d_b.weight])  # (K*E, 1, d_conv)
        conv_b = None if self.conv1d.bias is None else torch.cat([self.conv1d.bias, self.conv1d_b.bias])
        u = F.conv1d(xs.reshape(b, k * e, length), conv_w, conv_b, padding=self.d_conv - 1, groups=k * e)
        u = F.silu(u[..., :length])  # causal: the first L outputs, (B, K*E, L)
        proj = torch.stack([self.x_proj.weight, self.x_proj_b.weight])  # (K, R+2N, E)
        x_dbl = torch.matmul(proj, u.view(b, k, e, length))  # (K, R+2N, E) @ (B, K, E, L) -> (B, K, R+2N, L)
        dts, Bs, Cs = torch.split(x_dbl, [r, n, n], dim=2)  # (B, K, R, L), (B, K, N, L), (B, K, N, L)
        dt_w = torch.stack([self.dt_proj.weight, self.dt_proj_b.weight])  # (K, E, R)
        delta = torch.matmul(dt_w, dts)  # (K, E, R) @ (B, K, R, L) -> (B, K, E, L)
        A = -torch.exp(at_least_fp32(torch.cat([self.A_log, self.A_b_log])))  # (K*E, N)
        y = selective_scan(
            u,
            delta.reshape(b, k * e, length),
            A,
            Bs,
            Cs,
            at_least_fp32(torch.cat([self.D, self.D_b])),
            z=zs.reshape(b, k * e, length),
            delta_bias=at_least_fp32(torch.cat([self.dt_proj.bias, self.dt_proj_b.bias])),
            delta_softplus=True,
            backend=self.scan_backend,
        )  # (B, K*E, L), each direction in its own step order
        merged = BIDIRECTIONAL.merge(y.view(b, k, e, length), 1, length)  # (B, E, L) = y_fwd + flip(y_bwd)
        return merged * 0.5

    def forward(self, h: Tensor) -> Tensor:
        """Token sequence (B, L, C) -> (B, L, C)."""
        e = self.d_inner
        xz = self.in_proj(h).transpose(1, 2)  # (B, L, 2E) -> (B, 2E, L)
        y = self.forward_core(xz[:, :e], xz[:, e:])  # (B, E, L)
        return self.out_proj(y.transpose(1, 2))  # (B, L, E) -> (B, L, C)

    def scan_state_updates(self, h: Tensor) -> int:
        """State updates a forward of h (B, L, C) performs: B * 2 * E * L * N (for FLOP counts)."""
        b, length, _ = h.shape
        return b * BIDIRECTIONAL.k * self.d_inner * length * self.d_state

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, d_inner={self.d_inner}, d_state={self.d_state}, "
            f"dt_rank={self.dt_rank}, scan_backend={self.scan_backend!r}"
        )
