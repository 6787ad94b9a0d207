"""U-Net with a ResNet-50 encoder (segmentation-models-pytorch ``Unet("resnet50")`` layout)."""

from __future__ import annotations

import pytest
import torch

from specmamba.engine.config import resolve_config
from specmamba.errors import CheckpointError, ConfigError
from specmamba.models import create_model, load_checkpoint
from specmamba.models.unet_resnet import TORCHVISION_RESNET_LAYOUT, UNetResNet


def _n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def torchvision_resnet_state_dict(
    layers=(3, 4, 6, 3), widths=(64, 128, 256, 512), in_chans=3, with_counters=True, seed=0
) -> dict[str, torch.Tensor]:
    """A state dict in torchvision's ResNet (bottleneck) layout, written from its published key names."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def bn(prefix: str, c: int) -> None:
        sd[f"{prefix}.weight"] = torch.rand(c, generator=g) + 0.5
        sd[f"{prefix}.bias"] = torch.randn(c, generator=g) * 0.1
        sd[f"{prefix}.running_mean"] = torch.randn(c, generator=g) * 0.1
        sd[f"{prefix}.running_var"] = torch.rand(c, generator=g) + 0.5
        if with_counters:
            sd[f"{prefix}.num_batches_tracked"] = torch.tensor(123)

    def conv(key: str, cout: int, cin: int, k: int) -> None:
        sd[key] = torch.randn(cout, cin, k, k, generator=g) * (2.0 / (cin * k * k)) ** 0.5

    conv("conv1.weight", widths[0], in_chans, 7)
    bn("bn1", widths[0])
    inplanes = widths[0]
    for li, (n_blocks, w) in enumerate(zip(layers, widths), start=1):
        for b in range(n_blocks):
            p = f"layer{li}.{b}"
            conv(f"{p}.conv1.weight", w, inplanes, 1)
            bn(f"{p}.bn1", w)
            conv(f"{p}.conv2.weight", w, w, 3)
            bn(f"{p}.bn2", w)
            conv(f"{p}.conv3.weight", 4 * w, w, 1)
            bn(f"{p}.bn3", 4 * w)
            if b == 0:
                conv(f"{p}.downsample.0.weight", 4 * w, inplanes, 1)
                bn(f"{p}.downsample.1", 4 * w)
            inplanes = 4 * w
    sd["fc.weight"] = torch.randn(1000, inplanes, generator=g) * 0.01
    sd["fc.bias"] = torch.zeros(1000)
    return sd


SMALL = {"layers": (1, 1, 1, 1), "widths": (8, 16, 32, 64)}  # the layout of test_unet_resnet


@pytest.fixture(scope="module")
def resnet50_unet():
    torch.manual_seed(0)
    return create_model("unet_resnet50")


def test_parameter_count_exact(resnet50_unet):
    # Encoder = torchvision resnet50 without fc; total rounds to the published 32.52M.
    assert _n_params(resnet50_unet.encoder) == 23_508_032
    assert _n_params(resnet50_unet.decoder) == 9_012_928
    assert _n_params(resnet50_unet.head) == 16 * 9 + 1
    total = _n_params(resnet50_unet)
    assert total == 32_521_105
    assert round(total / 1e6, 2) == 32.52


def test_layout_matches_segmentation_models_pytorch(resnet50_unet):
    m = resnet50_unet
    assert m.input_multiple == 32
    assert [(d["num_chs"], d["reduction"], d["module"]) for d in m.feature_info] == [
        (256, 4, "encoder.layer1"),
        (512, 8, "encoder.layer2"),
        (1024, 16, "encoder.layer3"),
        (2048, 32, "encoder.layer4"),
    ]
    # Stem: conv7x7 stride 2 without bias; ResNet v1.5: stride on the 3x3 conv of the bottleneck.
    assert m.encoder.conv1.kernel_size == (7, 7) and m.encoder.conv1.stride == (2, 2)
    assert m.encoder.conv1.bias is None and m.encoder.fc is None
    assert m.encoder.layer2[0].conv1.stride == (1, 1) and m.encoder.layer2[0].conv2.stride == (2, 2)
    # Decoder: (in + skip -> out), two conv3x3 without bias per block; skips layer3, layer2, layer1, stem.
    convs = [tuple(c.weight.shape) for c in m.decoder.modules() if isinstance(c, torch.nn.Conv2d)]
    assert convs == [
        (256, 2048 + 1024, 3, 3), (256, 256, 3, 3),
        (128, 256 + 512, 3, 3), (128, 128, 3, 3),
        (64, 128 + 256, 3, 3), (64, 64, 3, 3),
        (32, 64 + 64, 3, 3), (32, 32, 3, 3),
        (16, 32, 3, 3), (16, 16, 3, 3),
    ]  # fmt: skip
    assert all(c.bias is None for c in m.decoder.modules() if isinstance(c, torch.nn.Conv2d))
    assert m.head.kernel_size == (3, 3) and m.head.bias is not None


def test_forward_64(resnet50_unet):
    model = resnet50_unet.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert model(x).shape == (1, 1, 64, 64)
        feats = model.forward_intermediates(x)
    assert [tuple(f.shape[1:]) for f in feats] == [(256, 16, 16), (512, 8, 8), (1024, 4, 4), (2048, 2, 2)]


def test_size_error_message(resnet50_unet):
    from specmamba.errors import InputSizeError

    with pytest.raises(InputSizeError) as info:
        resnet50_unet(torch.zeros(1, 3, 250, 250))
    assert (
        "unet_resnet50 needs height and width that are multiples of 32; got 250x250: use 256x256 (or 224x224)"
        in str(info.value)
    )


def test_config_errors():
    with pytest.raises(ConfigError, match="block"):
        UNetResNet(block="wide")
    with pytest.raises(ConfigError, match="decoder_channels"):
        UNetResNet(decoder_channels=(16, 8))


def test_resnet50_encoder_weights_from_torchvision_layout(tmp_path):
    sd = torchvision_resnet_state_dict(with_counters=False)  # like torchvision's original resnet50 file
    path = tmp_path / "resnet50-0676ba61.pth"
    torch.save(sd, path)
    del sd
    model = create_model("unet_resnet50", encoder_weights=str(path))
    ref = torch.load(path, weights_only=True)
    enc = model.encoder.state_dict()
    for key in ("conv1.weight", "bn1.running_var", "layer1.0.downsample.0.weight", "layer4.2.conv3.weight"):
        assert torch.equal(enc[key], ref[key]), key
    assert "fc.weight" not in enc
    assert model.specmamba_kwargs == {}  # architecture kwargs only: the weights file is not recorded


def test_small_encoder_weights_with_counters_and_wrappers(tmp_path):
    sd = torchvision_resnet_state_dict(**SMALL)
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3}, path)
    model = create_model("test_unet_resnet", encoder_weights=path)
    assert torch.equal(model.encoder.layer3[0].conv2.weight, sd["layer3.0.conv2.weight"])
    assert int(model.encoder.bn1.num_batches_tracked) == 123


@pytest.mark.parametrize("in_chans", [1, 2, 4, 6])
def test_encoder_weights_adapt_first_conv(tmp_path, in_chans):
    sd = torchvision_resnet_state_dict(**SMALL)
    path = tmp_path / "small.pth"
    torch.save(sd, path)
    model = create_model("test_unet_resnet", in_chans=in_chans, encoder_weights=path)
    w3 = sd["conv1.weight"]  # (O, 3, 7, 7)
    w = model.encoder.conv1.weight.detach()
    assert w.shape == (w3.shape[0], in_chans, 7, 7)
    if in_chans == 1:
        assert torch.allclose(w[:, 0], w3.sum(dim=1))
    else:
        for c in range(in_chans):
            assert torch.allclose(w[:, c], w3[:, c % 3] * 3 / in_chans)
    # The rest of the encoder is loaded unchanged.
    assert torch.equal(model.encoder.layer1[0].conv1.weight, sd["layer1.0.conv1.weight"])
    # A grey image replicated on all channels gives the same stem response as the RGB weights.
    grey = torch.randn(1, 1, 32, 32)
    adapted = torch.nn.functional.conv2d(grey.expand(1, in_chans, 32, 32), w, stride=2, padding=3)
    original = torch.nn.functional.conv2d(grey.expand(1, 3, 32, 32), w3, stride=2, padding=3)
    if in_chans == 1 or in_chans % 3 == 0:  # exact when every RGB channel appears equally often
        assert torch.allclose(adapted, original, atol=1e-4)


def test_encoder_weights_errors(tmp_path):
    with pytest.raises(CheckpointError, match="missing.pth.*does not exist"):
        create_model("test_unet_resnet", encoder_weights=str(tmp_path / "missing.pth"))
    # A ResNet of another width does not fit: the message names the file and the first tensor.
    other = tmp_path / "other.pth"
    torch.save(torchvision_resnet_state_dict(layers=(1, 1, 1, 1), widths=(16, 16, 32, 64)), other)
    with pytest.raises(CheckpointError, match="other.pth: its tensors do not fit.*conv1.weight"):
        create_model("test_unet_resnet", encoder_weights=other)
    # A deeper ResNet has unexpected blocks.
    deeper = tmp_path / "deeper.pth"
    torch.save(torchvision_resnet_state_dict(layers=(2, 1, 1, 1), widths=(8, 16, 32, 64)), deeper)
    with pytest.raises(CheckpointError, match="unexpected .*layer1.1"):
        create_model("test_unet_resnet", encoder_weights=deeper)
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt.pth"):
        create_model("test_unet_resnet", encoder_weights=corrupt)
    # A basic-block ResNet (18/34) is named as such.
    basic = {k: v for k, v in torchvision_resnet_state_dict(**SMALL).items() if ".conv3." not in k}
    with pytest.raises(CheckpointError, match="basic-block ResNet"):
        create_model("test_unet_resnet", encoder_weights=basic)


def test_encoder_weights_report(tmp_path):
    sd = torchvision_resnet_state_dict(**SMALL, with_counters=False)
    path = tmp_path / "resnet.pth"
    torch.save(sd, path)
    model = create_model("test_unet_resnet", in_chans=1, encoder_weights=path)
    report = model.pretrained_report
    assert report.source == str(path) and "torchvision ResNet" in report.layout
    assert sorted(report.loaded) == sorted(k for k in sd if not k.startswith("fc."))
    assert report.skipped == {
        "fc.weight": "ImageNet classifier head (not part of the encoder)",
        "fc.bias": "ImageNet classifier head (not part of the encoder)",
    }
    assert report.missing == []  # the BatchNorm counters are filled in by BatchNorm itself
    assert report.notes == ["conv1.weight adapted from 3 to 1 input channel(s)."]
    assert "Loaded" in report.summary()
    assert create_model("test_unet_resnet").pretrained_report is None


def test_torchvision_checkpoint_through_checkpoint_path(tmp_path):
    sd = torchvision_resnet_state_dict(**SMALL)
    path = tmp_path / "resnet.pth"
    torch.save(sd, path)
    model = create_model("test_unet_resnet", checkpoint_path=path)  # encoder only: a partial load
    assert torch.equal(model.encoder.layer2[0].conv3.weight, sd["layer2.0.conv3.weight"])
    report = load_checkpoint(create_model("test_unet_resnet"), path)
    assert report.layout == TORCHVISION_RESNET_LAYOUT and set(report.skipped) == {"fc.weight", "fc.bias"}
    assert report.missing and all(k.startswith(("decoder.", "head.")) for k in report.missing)
    deeper = torchvision_resnet_state_dict(layers=(2, 1, 1, 1), widths=(8, 16, 32, 64))
    with pytest.raises(CheckpointError, match="unexpected .*layer1.1"):
        load_checkpoint(create_model("test_unet_resnet"), deeper)


def test_unet_resnet50_audit_preset():
    cfg = resolve_config("unet_resnet50_audit", data="d", out="o")
    # REFERENCE.md section 3: Adam 1e-4 (constant), 100 epochs, Dice loss, flips and rotation, 256x256,
    # split seed 42 with 20% held out.
    assert (cfg.model, cfg.img_size, cfg.epochs, cfg.loss) == ("unet_resnet50", 256, 100, "dice")
    assert (cfg.optimizer, cfg.lr, cfg.min_lr, cfg.warmup_epochs) == ("adam", 1e-4, 1e-4, 0.0)
    assert cfg.weight_decay == 0.0 and cfg.grad_clip is None
    assert cfg.hflip > 0 and cfg.vflip > 0 and cfg.rotate_degrees > 0
    assert (cfg.split_seed, cfg.val_fraction) == (42, 0.2)
