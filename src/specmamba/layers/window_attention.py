"""Window multi-head self-attention with a relative position bias (Swin Transformer).

Liu et al., "Swin Transformer: Hierarchical Vision Transformer using Shifted Windows", ICCV 2021,
section 3.2. A feature map is cut into non-overlapping w x w windows (:func:`window_partition`);
self-attention runs inside each window, with a learned bias per head for every relative offset
(dy, dx) in [-(w-1), w-1]^2 between a query and a key: a ``((2w-1)^2, heads)`` table indexed by
:func:`relative_position_index`. An optional additive mask per window (the shifted-window mask of
``swin_block.py``) is added to the logits before the softmax.

Tensor names follow the Swin / Swin-Unet code (``relative_position_bias_table``, ``qkv``, ``proj``)
so that checkpoints in those layouts load strictly. The index is a non-persistent buffer: it is a
function of the window size only, so it is rebuilt rather than stored (official checkpoints that
carry it drop it on conversion).

Shape letters: B batch, H/W map height/width, C channels, w window side, N = w*w tokens per window,
nW windows per image, h heads, d = C / h head width, Bw = B * nW windows in a batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["WindowAttention", "relative_position_index", "window_partition", "window_reverse"]


def window_partition(x: Tensor, window_size: int) -> Tensor:
    """Cut a channels-last map (B, H, W, C) into windows (B * nW, w, w, C).

    H and W must be multiples of ``window_size``. Windows are ordered batch first, then row-major
    over the window grid, so that ``(B * nW, ...)`` reshapes to ``(B, nW, ...)``.
    """
    b, h, w, c = x.shape
    ws = window_size
    if h % ws or w % ws:
        raise ValueError(f"map {h}x{w} is not a multiple of the window size {ws}")
    x = x.view(b, h // ws, ws, w // ws, ws, c)  # (B, H/w, w, W/w, w, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, ws, ws, c)  # (B * nW, w, w, C)


def window_reverse(windows: Tensor, window_size: int, height: int, width: int) -> Tensor:
    """Inverse of :func:`window_partition`: windows (B * nW, w, w, C) -> map (B, H, W, C)."""
    ws = window_size
    c = windows.shape[-1]
    x = windows.reshape(-1, height // ws, width // ws, ws, ws, c)  # (B, H/w, W/w, w, w, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, c)  # (B, H, W, C)


def relative_position_index(window_size: int) -> Tensor:
    """(N, N) int64: row of the bias table for query token i and key token j of a w x w window.

    Tokens are numbered row-major; the offset (dy, dx) = (y_i - y_j, x_i - x_j) maps to
    ``(dy + w - 1) * (2w - 1) + (dx + w - 1)``, as in the Swin Transformer code.
    """
    ws = window_size
    ys, xs = torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")
    coords = torch.stack([ys.flatten(), xs.flatten()])  # (2, N)
    rel = coords[:, :, None] - coords[:, None, :]  # (2, N, N): offsets query - key
    return (rel[0] + ws - 1) * (2 * ws - 1) + (rel[1] + ws - 1)  # (N, N)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with relative position bias and optional mask.

    Args:
        dim: channels C (a multiple of ``num_heads``).
        window_size: window side w.
        num_heads: heads h.
        qkv_bias: bias on the query/key/value projection (True in Swin).
        attn_drop: dropout on the attention weights (training only).
        proj_drop: dropout after the output projection.
    """

    def __init__(
        self,
        dim: int,
        window_size: int,
        num_heads: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim = dim
        self.window_size = window_size
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer(
            "relative_position_index", relative_position_index(window_size), persistent=False
        )
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_drop = float(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def relative_position_bias(self) -> Tensor:
        """The (h, N, N) bias added to the attention logits of every window."""
        n = self.window_size**2
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]  # (N*N, h)
        return bias.view(n, n, self.num_heads).permute(2, 0, 1)  # (h, N, N)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Windows of tokens (Bw, N, C) -> (Bw, N, C).

        ``mask``: None, or an additive float mask (nW, N, N) shared by the images of the batch
        (0 = attend, a large negative value = do not); Bw must then be a multiple of nW, windows
        ordered as :func:`window_partition` orders them.
        """
        bw, n, c = x.shape
        h = self.num_heads
        if n != self.window_size**2:
            raise ValueError(f"expected {self.window_size**2} tokens per window, got {n}")
        qkv = self.qkv(x).view(bw, n, 3, h, c // h).permute(2, 0, 3, 1, 4)  # (3, Bw, h, N, d)
        q, k, v = qkv.unbind(0)  # each (Bw, h, N, d)
        bias = self.relative_position_bias()  # (h, N, N)
        if mask is None:
            attn_bias = bias.unsqueeze(0)  # (1, h, N, N), broadcast over windows
        else:
            nw = mask.shape[0]
            if bw % nw:
                raise ValueError(f"{bw} windows are not a whole number of images of {nw} windows")
            # Fold the windows of an image into the head axis so one (1, nW*h, N, N) bias broadcasts
            # over the batch: (Bw, h, N, d) -> (B, nW*h, N, d).
            q, k, v = (t.reshape(bw // nw, nw * h, n, c // h) for t in (q, k, v))
            attn_bias = (bias.unsqueeze(0) + mask.unsqueeze(1)).reshape(1, nw * h, n, n)  # (1, nW*h, N, N)
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_bias.to(q.dtype),
            dropout_p=self.attn_drop if self.training else 0.0,
            scale=self.scale,
        )  # (Bw, h, N, d) or (B, nW*h, N, d)
        # The heads side by side along channels: a concatenation rather than transpose + reshape, the
        # same copy, which the ONNX exporter's decomposition (torch 2.13) turns into an invalid view when
        # the batch size is free.
        out = torch.cat(out.reshape(bw, h, n, c // h).unbind(1), dim=-1)  # h x (Bw, N, d) -> (Bw, N, C)
        return self.proj_drop(self.proj(out))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, window_size={self.window_size}, num_heads={self.num_heads}"
