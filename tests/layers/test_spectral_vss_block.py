"""SpectralVSSBlock: the seed's fusion s * VSS(x) + (1 - s) * gating(x), and its spatial-only form."""

from __future__ import annotations

import torch

from specmamba.layers.spectral_vss_block import ALPHA_INIT, SpectralVSSBlock


def _stack(block, x):
    for vss in block.blocks:
        x = vss(x)
    return x


def test_fusion_is_the_seeds_weighted_sum():
    torch.manual_seed(0)
    block = SpectralVSSBlock(8, depth=2, ref_size=8, d_state=4, scan_backend="ref", init="seed")
    x = torch.randn(2, 8, 8, 8)
    s = torch.sigmoid(torch.tensor(ALPHA_INIT))
    assert block.alpha.item() == 0.5 and abs(s.item() - 0.6225) < 1e-4  # s = 0.62 at the start
    expected = s * _stack(block, x) + (1 - s) * block.gating(x)
    torch.testing.assert_close(block(x), expected)


def test_identity_gating_starts_as_a_weighted_residual():
    torch.manual_seed(0)
    block = SpectralVSSBlock(8, depth=1, ref_size=4, d_state=4, scan_backend="ref")
    x = torch.randn(1, 6, 10, 8)  # another size than the reference
    s = torch.sigmoid(block.alpha)
    torch.testing.assert_close(block(x), s * _stack(block, x) + (1 - s) * x, rtol=1e-5, atol=1e-5)


def test_spectral_false_is_the_spatial_path_alone_with_the_same_weights():
    torch.manual_seed(0)
    full = SpectralVSSBlock(8, depth=2, ref_size=8, d_state=4, scan_backend="ref")
    spatial = SpectralVSSBlock(8, depth=2, ref_size=8, d_state=4, scan_backend="ref", spectral=False)
    missing, unexpected = spatial.load_state_dict(full.state_dict(), strict=False)
    assert not missing and sorted(unexpected) == ["alpha", "gating.weight_imag", "gating.weight_real"]
    x = torch.randn(2, 8, 8, 8)
    torch.testing.assert_close(spatial(x), _stack(full, x))
    assert not hasattr(spatial, "gating")


def test_alpha_is_learned():
    block = SpectralVSSBlock(8, depth=1, ref_size=8, d_state=4, scan_backend="ref", init="seed")
    block(torch.randn(1, 8, 8, 8)).sum().backward()
    assert block.alpha.grad is not None and block.alpha.grad != 0
