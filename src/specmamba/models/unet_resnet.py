"""U-Net with a ResNet encoder, as segmentation-models-pytorch's ``Unet("resnet50")``.

The CNN baseline of the spectral audit (REFERENCE.md sections 3 and 7). Encoder: ResNet-50 (He et
al., "Deep Residual Learning for Image Recognition", CVPR 2016; torchvision's v1.5 variant with the
stride on the 3x3 convolution) built with MONAI's ``monai.networks.nets.ResNet`` in 2D: conv7x7
stride 2 - BN - ReLU (the "stem", 64 channels at /2), max-pool, then four bottleneck stages
``layer1..layer4`` (256, 512, 1024, 2048 channels at /4, /8, /16, /32), no classifier. Decoder
(Ronneberger et al. 2015, as in segmentation-models-pytorch): five blocks with (256, 128, 64, 32, 16)
channels, each nearest upsample x2, concatenation of the encoder map of the same resolution
(layer3, layer2, layer1, stem; the last block has none) and two conv3x3-BN-ReLU; a conv3x3 head
(with bias) gives the logits. 32,521,105 parameters for 3 input channels and 1 class (32.52M).

MONAI's ResNet names its tensors as torchvision does (``conv1``, ``bn1``, ``layerN.i.convJ``,
``layerN.i.downsample.{0,1}``; only the parameter-free activation is ``act`` instead of ``relu``),
so a torchvision- or timm-layout ResNet-50 state dict (``resnet50-0676ba61.pth``...) loads into
``encoder`` directly once its ``fc.*`` tensors are dropped: ``encoder_weights=path`` (or
:func:`load_resnet_encoder_weights`) loads such a file into the encoder, and
``create_model("unet_resnet50", checkpoint_path=path)`` does the same through
:meth:`UNetResNet.convert_state_dict`; both report what loaded
(:class:`~specmamba.models.weights.LoadReport`) and refuse a ResNet of another depth, block type or
width. Pretrained ImageNet weights expect ImageNet-normalised inputs (``normalization: imagenet``).

Shape letters: B batch, C channels, H/W input height/width (multiples of 32).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from ..errors import CheckpointError, ConfigError
from .checkpoint_file import extract_state_dict, read_checkpoint, strip_prefixes
from .interface import SegmentationModel, make_feature_info
from .registry import register_model
from .unet import UpBlock, init_conv_bn
from .weights import ConvertedStateDict, LoadReport, adapt_input_conv, diff_state_dict

__all__ = [
    "TORCHVISION_RESNET_LAYOUT",
    "UNetResNet",
    "convert_torchvision_resnet",
    "load_resnet_encoder_weights",
    "test_unet_resnet",
    "unet_resnet50",
]

log = logging.getLogger(__name__)

_EXPANSION = {"basic": 1, "bottleneck": 4}


#: How reports name the layout of torchvision / timm ResNet classification checkpoints.
TORCHVISION_RESNET_LAYOUT = "torchvision ResNet ImageNet checkpoint: encoder only"


def convert_torchvision_resnet(
    state_dict: Mapping[str, Tensor], encoder_state: Mapping[str, Tensor], prefix: str = ""
) -> ConvertedStateDict:
    """A torchvision/timm-layout ResNet state dict -> the tensors of a MONAI ResNet encoder.

    ``encoder_state`` is the encoder's own ``state_dict()``; the result's names get ``prefix``
    (``"encoder."`` to load into a whole :class:`UNetResNet`, which makes the result partial). The
    classifier ``fc.*`` is skipped; ``conv1.weight`` is adapted to the encoder's input channels (sum
    for 1 channel, tile and rescale for more, see :func:`~specmamba.models.weights.adapt_input_conv`).
    Every encoder tensor must be present with its shape (BatchNorm ``num_batches_tracked`` counters
    may be absent): otherwise CheckpointError says what differs.
    """
    sd = dict(state_dict)
    skipped = {k: "ImageNet classifier head (not part of the encoder)" for k in sd if k.startswith("fc.")}
    sd = {k: v for k, v in sd.items() if k not in skipped}
    notes = []
    stem, want = sd.get("conv1.weight"), encoder_state["conv1.weight"]
    if stem is not None and stem.ndim == 4 and stem.shape[1] != want.shape[1]:
        sd["conv1.weight"] = adapt_input_conv(stem, want.shape[1])
        notes.append(f"conv1.weight adapted from {stem.shape[1]} to {want.shape[1]} input channel(s).")
    diff = diff_state_dict(encoder_state, sd)
    if not diff.ok:
        details = []
        if diff.mismatched:
            k, got, want_shape = diff.mismatched[0]
            details.append(
                f"{len(diff.mismatched)} tensor(s) of other shapes (first: {k} {got} vs {want_shape})"
            )
        if diff.missing:
            details.append(f"{len(diff.missing)} missing (first: {', '.join(diff.missing[:3])})")
        if diff.unexpected:
            details.append(f"{len(diff.unexpected)} unexpected (first: {', '.join(diff.unexpected[:3])})")
        hint = ""
        if "layer1.0.conv3.weight" in encoder_state and "layer1.0.conv3.weight" not in sd:
            hint = " It holds a basic-block ResNet (ResNet-18/34), not a bottleneck one."
        raise CheckpointError(
            f"its tensors do not fit this ResNet encoder: {'; '.join(details)}.{hint} Expected a "
            "torchvision-layout state dict of the same ResNet (for unet_resnet50: ResNet-50, e.g. "
            "resnet50-0676ba61.pth from torchvision, saved locally)."
        )
    return ConvertedStateDict(
        state_dict={prefix + k: v for k, v in sd.items()},
        layout=TORCHVISION_RESNET_LAYOUT,
        partial=bool(prefix),
        skipped=skipped,
        notes=notes,
    )


def load_resnet_encoder_weights(
    encoder: nn.Module, checkpoint: str | os.PathLike[str] | Mapping[str, Any]
) -> LoadReport:
    """Load a local torchvision/timm-layout ResNet checkpoint into a MONAI ResNet ``encoder``.

    ``checkpoint``: a path (``resnet50-0676ba61.pth``...: a raw state dict or one wrapped under
    ``state_dict`` / ``model``, DDP prefixes allowed) or an already loaded dict; converted with
    :func:`convert_torchvision_resnet`. A missing or unreadable file, or a ResNet of another depth,
    block type or width, raises CheckpointError naming the file. Returns (and logs) a
    :class:`~specmamba.models.weights.LoadReport`.
    """
    if isinstance(checkpoint, Mapping):
        source, obj = "(in-memory dict)", checkpoint
    else:
        source, obj = str(checkpoint), read_checkpoint(checkpoint)
    state_dict = strip_prefixes(extract_state_dict(obj, f"Encoder weights {source}"))
    encoder_state = encoder.state_dict()
    try:
        converted = convert_torchvision_resnet(state_dict, encoder_state)
    except CheckpointError as exc:
        raise CheckpointError(f"Encoder weights {source}: {exc}") from None
    encoder.load_state_dict(converted.state_dict, strict=True)
    report = LoadReport(
        source=source,
        layout=converted.layout,
        loaded=[k for k in encoder_state if k in converted.state_dict],
        skipped=converted.skipped,
        # BatchNorm fills in the num_batches_tracked counters that old torchvision files lack.
        missing=[
            k
            for k in encoder_state
            if k not in converted.state_dict and not k.endswith("num_batches_tracked")
        ],
        notes=converted.notes,
    )
    log.info("%s", report.summary())
    return report


class UNetResNet(SegmentationModel):
    """U-Net on a ResNet encoder; returns logits (B, num_classes, H, W), H and W multiples of 32.

    Args:
        in_chans: input channels (any positive int).
        num_classes: 1 for binary segmentation (one logit channel), K >= 2 for K classes.
        block: ``"bottleneck"`` (ResNet-50 and deeper) or ``"basic"`` (ResNet-18/34).
        layers: blocks per stage, (3, 4, 6, 3) for ResNet-50.
        widths: block widths per stage (stem width = widths[0]); (64, 128, 256, 512) for ResNet-50.
        decoder_channels: channels of the five decoder blocks.
        encoder_weights: local path of a torchvision-layout ResNet state dict to initialise the
            encoder (never downloaded); None = random initialisation. What loaded is kept in
            ``pretrained_report`` (a :class:`~specmamba.models.weights.LoadReport`).
        model_name: registry name used in error messages.
    """

    input_multiple = 32

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1,
        block: str = "bottleneck",
        layers: Sequence[int] = (3, 4, 6, 3),
        widths: Sequence[int] = (64, 128, 256, 512),
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
        encoder_weights: str | os.PathLike[str] | Mapping[str, Any] | None = None,
        model_name: str | None = None,
    ) -> None:
        super().__init__(in_chans, num_classes, model_name)
        label = self.model_name or type(self).__name__
        if block not in _EXPANSION:
            raise ConfigError(f"{label}: block must be 'basic' or 'bottleneck'; got {block!r}.")
        if len(layers) != 4 or len(widths) != 4 or len(decoder_channels) != 5:
            raise ConfigError(
                f"{label}: needs 4 encoder stages (layers, widths) and 5 decoder_channels; got "
                f"layers={tuple(layers)}, widths={tuple(widths)}, decoder_channels={tuple(decoder_channels)}."
            )
        from monai.networks.nets import ResNet  # MONAI is imported when a MONAI-backed model is built

        self.encoder = ResNet(
            block=block,
            layers=list(layers),
            block_inplanes=list(widths),
            spatial_dims=2,
            n_input_channels=in_chans,
            conv1_t_size=7,
            conv1_t_stride=2,
            no_max_pool=False,
            shortcut_type="B",
            feed_forward=False,  # no classifier
            bias_downsample=False,  # torchvision layout: projection shortcut conv without bias
        )
        exp = _EXPANSION[block]
        enc_chs = [widths[0]] + [w * exp for w in widths]  # stem, layer1..layer4
        skip_chs = enc_chs[-2::-1] + [0]  # layer3, layer2, layer1, stem, (none)
        in_chs = [enc_chs[-1]] + list(decoder_channels[:-1])
        self.decoder = nn.ModuleList(
            [UpBlock(i, s, o) for i, s, o in zip(in_chs, skip_chs, decoder_channels)]
        )
        self.head = nn.Conv2d(decoder_channels[-1], num_classes, kernel_size=3, padding=1)
        init_conv_bn(self.decoder)
        self.feature_info = make_feature_info(
            enc_chs[1:], [4, 8, 16, 32], [f"encoder.layer{i}" for i in range(1, 5)]
        )
        self.pretrained_report: LoadReport | None = None
        if encoder_weights is not None:
            self.pretrained_report = load_resnet_encoder_weights(self.encoder, encoder_weights)

    def convert_state_dict(self, state_dict: Mapping[str, Tensor]) -> dict[str, Tensor] | ConvertedStateDict:
        """Hook of :func:`specmamba.models.weights.load_checkpoint` for foreign layouts.

        A torchvision/timm ResNet classification state dict (``conv1.weight``, ``layer1.*``, ``fc.*``)
        becomes the encoder's tensors (partial load, see :func:`convert_torchvision_resnet`); anything
        else is returned unchanged and loaded strictly.
        """
        sd = dict(state_dict)
        if "conv1.weight" in sd and any(k.startswith("layer1.") for k in sd):
            encoder_state = {
                k[len("encoder.") :]: v for k, v in self.state_dict().items() if k.startswith("encoder.")
            }
            return convert_torchvision_resnet(sd, encoder_state, prefix="encoder.")
        return sd

    def _encode(self, x: Tensor) -> list[Tensor]:
        """[stem (/2), layer1 (/4), layer2 (/8), layer3 (/16), layer4 (/32)]."""
        e = self.encoder
        stem = e.act(e.bn1(e.conv1(x)))
        f1 = e.layer1(e.maxpool(stem))
        f2 = e.layer2(f1)
        f3 = e.layer3(f2)
        f4 = e.layer4(f3)
        return [stem, f1, f2, f3, f4]

    def forward_intermediates(self, x: Tensor) -> list[Tensor]:
        """The outputs of layer1..layer4, (B, C_i, H / r_i, W / r_i) with r = 4, 8, 16, 32."""
        self.check_input(x)
        return self._encode(x)[1:]

    def forward(self, x: Tensor) -> Tensor:
        """Image batch (B, in_chans, H, W), H and W multiples of 32 -> logits (B, num_classes, H, W)."""
        self.check_input(x)
        feats = self._encode(x)
        y = feats[-1]
        skips: list[Tensor | None] = [*feats[-2::-1], None]  # layer3, layer2, layer1, stem, none
        for block, skip in zip(self.decoder, skips):
            y = block(y, skip)
        return self.head(y)


@register_model
def unet_resnet50(in_chans: int = 3, num_classes: int = 1, **kwargs: Any) -> UNetResNet:
    """U-Net with a ResNet-50 encoder (segmentation-models-pytorch ``Unet("resnet50")``), 32.52M params.

    ``encoder_weights``: optional local path of a torchvision-layout ResNet-50 state dict.
    """
    return UNetResNet(in_chans=in_chans, num_classes=num_classes, model_name="unet_resnet50", **kwargs)


@register_model
def test_unet_resnet(in_chans: int = 3, num_classes: int = 1, **kwargs: Any) -> UNetResNet:
    """Tiny bottleneck ResNet U-Net (one block per stage, widths 8..64) for fast CPU tests."""
    kwargs.setdefault("layers", (1, 1, 1, 1))
    kwargs.setdefault("widths", (8, 16, 32, 64))
    kwargs.setdefault("decoder_channels", (64, 32, 16, 16, 8))
    return UNetResNet(in_chans=in_chans, num_classes=num_classes, model_name="test_unet_resnet", **kwargs)
