"""The WCVM block of VMAML-UNet: a VSS block fused with a wavelet convolution.

VMAML-UNet's paper names the block ("visual Mamba blocks fused with wavelet convolution") but publishes
no equations (REFERENCE.md section 6), so the design is specmamba's. On a channels-last map x
(B, H, W, C):

    y = LayerNorm(x),    x + DropPath( SS2D(y) + WTConv2d(y) ),

the global selective scan and the multi-scale local wavelet convolution read the same normalised input
and are summed inside one residual branch. Why this form: it is VM-UNet's VSS block (x + DropPath(
SS2D(LN(x))), so ``wavelet=False`` gives exactly that block and VM-UNet's weights load into it), with
WTConv2d used as WTConvNeXt uses it, as the depthwise spatial mixer of a residual block; the parallel
sum adds the wavelet path's receptive field (kernel k at 1, 2, ..., 2^(L-1) times the map's pixel
pitch) to the scan's without a second normalisation or residual. The WTConv2d is depthwise (C -> C,
kernel 5, two levels by default), so the block costs little more than a VSS block.

Maps too small for all the wavelet levels (the deepest stages of small inputs) use the levels they can
take (``WTConv2d(adapt_levels=True)``); a 1x1 map keeps only the base depthwise conv.

Module names: ``ln_1`` and ``self_attention`` as VM-UNet's VSS block, ``wavelet`` the WTConv2d.

Shape letters: B batch, H/W map size, C channels.
"""

from __future__ import annotations

from torch import Tensor

from .vss_block import VSSBlock
from .wavelet_conv import WTConv2d

__all__ = ["WCVMBlock"]


class WCVMBlock(VSSBlock):
    """(B, H, W, C) -> (B, H, W, C): x + DropPath(SS2D(LN(x)) + WTConv2d(LN(x))).

    Args:
        hidden_dim, drop_path, d_state, scan_backend: as :class:`~specmamba.layers.vss_block.VSSBlock`.
        wavelet: False drops the wavelet path (VM-UNet's VSS block).
        kernel_size, wt_levels: the WTConv2d's kernel and levels.
    """

    def __init__(
        self,
        hidden_dim: int,
        drop_path: float = 0.0,
        d_state: int = 16,
        scan_backend: str = "auto",
        wavelet: bool = True,
        kernel_size: int = 5,
        wt_levels: int = 2,
    ) -> None:
        super().__init__(hidden_dim, drop_path, d_state=d_state, scan_backend=scan_backend)
        self.wavelet = (
            WTConv2d(hidden_dim, hidden_dim, kernel_size, wt_levels=wt_levels, adapt_levels=True)
            if wavelet
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        y = self.ln_1(x)
        branch = self.self_attention(y)
        if self.wavelet is not None:
            wavelet = self.wavelet(y.permute(0, 3, 1, 2))  # (B, C, H, W) for the convolution
            branch = branch + wavelet.permute(0, 2, 3, 1)
        return x + self.drop_path(branch)
