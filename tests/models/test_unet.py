"""The plain U-Net behind ``test_unet`` and ``unet_small``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from specmamba.errors import ConfigError
from specmamba.models import create_model
from specmamba.models.unet import UNet, UpBlock


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _double_conv_params(cin: int, cout: int) -> int:
    return cin * cout * 9 + 2 * cout + cout * cout * 9 + 2 * cout  # two conv3x3 (no bias) + two BN


def test_parameter_counts():
    # Hand count for base width w: encoder (in->w, w->2w, 2w->4w, 4w->8w), decoder
    # (8w+4w->4w, 4w+2w->2w, 2w+w->w), 1x1 head with bias.
    def expected(w: int, cin: int = 3, k: int = 1) -> int:
        enc = sum(
            _double_conv_params(a, b) for a, b in [(cin, w), (w, 2 * w), (2 * w, 4 * w), (4 * w, 8 * w)]
        )
        dec = sum(_double_conv_params(a, b) for a, b in [(12 * w, 4 * w), (6 * w, 2 * w), (3 * w, w)])
        return enc + dec + w * k + k

    assert _n_params(create_model("test_unet")) == expected(8) == 122_465
    small = create_model("unet_small")
    assert _n_params(small) == expected(16) == 488_001
    assert _n_params(small) < 1_000_000  # the CPU demo's budget
    assert _n_params(create_model("test_unet", in_chans=1, num_classes=3)) == expected(8, 1, 3)


def test_widths_and_names():
    model = create_model("test_unet", base_width=4)
    assert [d["num_chs"] for d in model.feature_info] == [4, 8, 16, 32]
    assert [d["reduction"] for d in model.feature_info] == [1, 2, 4, 8]
    assert model.input_multiple == 8
    assert create_model("unet_small").feature_info[0]["num_chs"] == 16
    with pytest.raises(ConfigError, match="base_width"):
        UNet(base_width=0)


def test_up_block_shapes():
    block = UpBlock(16, 8, 4)
    y = block(torch.randn(2, 16, 5, 6), torch.randn(2, 8, 10, 12))
    assert y.shape == (2, 4, 10, 12)
    assert UpBlock(16, 0, 4)(torch.randn(1, 16, 3, 3)).shape == (1, 4, 6, 6)


def test_learns_a_synthetic_lesion():
    """A few dozen Adam steps fit bright disks on noise (Dice > 0.8): the model can learn."""
    torch.manual_seed(0)
    n, size = 8, 32
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    centres = torch.randint(8, 24, (n, 2))
    radii = torch.randint(4, 8, (n,))
    masks = ((yy - centres[:, 0, None, None]) ** 2 + (xx - centres[:, 1, None, None]) ** 2) <= radii[
        :, None, None
    ] ** 2  # (n, H, W)
    images = masks[:, None].float().repeat(1, 3, 1, 1) + 0.3 * torch.randn(n, 3, size, size)
    target = masks[:, None].float()
    model = create_model("test_unet")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model(images), target)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        pred = (model(images) > 0).float()
    dice = 2 * (pred * target).sum() / (pred.sum() + target.sum())
    assert dice > 0.8
