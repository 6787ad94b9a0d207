"""Tiny fake models and losses that exercise the seams of the model and training contracts.

Registered (by importing this module, which ``conftest.py`` does) as ``test_fake_deep_supervision``
(a U-Net-like net that returns a SegOutput with two auxiliary heads and a regulariser in train mode),
``test_fake_tokens`` (a plain, non-hierarchical backbone with a class token in the middle of its
sequence and a position embedding learned for one input size) and the structured loss
``test_learned_aux_weights`` (learnable weights of the auxiliary outputs), so that the registry
battery, the trainer and the checkpoint tests cover them like any architecture.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from specmamba.losses import build_loss, register_loss
from specmamba.models import SegOutput, register_model
from specmamba.models.hook_points import TokenMap
from specmamba.models.interface import SegmentationModel, make_feature_info


class FakeDeepSupervisionNet(SegmentationModel):
    """Three conv stages (reductions 1, 2, 4); train mode adds logits at 1/2 and 1/4 and an L2 term."""

    input_multiple = 4

    def __init__(
        self, in_chans: int = 3, num_classes: int = 1, width: int = 4, model_name: str | None = None
    ):
        super().__init__(in_chans, num_classes, model_name)
        self.stem = nn.Conv2d(in_chans, width, 3, padding=1)
        self.down1 = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.down2 = nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1)
        self.aux1 = nn.Conv2d(2 * width, num_classes, 1)
        self.aux2 = nn.Conv2d(4 * width, num_classes, 1)
        self.head = nn.Conv2d(7 * width, num_classes, 1)
        self.feature_info = make_feature_info(
            [width, 2 * width, 4 * width], [1, 2, 4], ["stem", "down1", "down2"]
        )

    def forward_intermediates(self, x: Tensor) -> list[Tensor]:
        self.check_input(x)
        s0 = self.stem(x)
        s1 = self.down1(F.relu(s0))
        return [s0, s1, self.down2(F.relu(s1))]

    def forward(self, x: Tensor) -> Tensor | SegOutput:
        s0, s1, s2 = self.forward_intermediates(x)
        size = x.shape[-2:]
        up = [F.interpolate(s, size=size, mode="bilinear", align_corners=False) for s in (s1, s2)]
        logits = self.head(torch.cat([s0, *up], dim=1))
        if not self.training:
            return logits
        l2 = 1e-3 * self.head.weight.square().sum()
        return SegOutput(logits, aux=[self.aux1(s1), self.aux2(s2)], terms={"head_l2": l2})


class FakeTokenBackbone(SegmentationModel):
    """Plain backbone: 4x4 patches, class token at the middle index M // 2, two token-mixing stages at
    reduction 4, a position embedding for one input size (no interpolation)."""

    fixed_input_size = 32
    pos_embed_size = 32

    def __init__(self, in_chans: int = 3, num_classes: int = 1, dim: int = 8, model_name: str | None = None):
        super().__init__(in_chans, num_classes, model_name)
        self.patch = nn.Conv2d(in_chans, dim, 4, stride=4)
        grid = self.fixed_input_size // 4
        self.num_patches = grid * grid
        self.cls_index = self.num_patches // 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(0.02 * torch.randn(1, self.num_patches + 1, dim))
        self.mixers = nn.ModuleList([nn.Linear(dim, dim) for _ in range(2)])
        self.maps = nn.ModuleList([TokenMap([self.cls_index]) for _ in range(2)])
        self.head = nn.Conv2d(dim, num_classes, 1)
        self.feature_info = make_feature_info([dim, dim], [4, 4], ["maps.0", "maps.1"])

    def forward_intermediates(self, x: Tensor) -> list[Tensor]:
        self.check_input(x)
        patches = self.patch(x)  # (B, D, h, w)
        b, d, h, w = patches.shape
        tokens = patches.flatten(2).transpose(1, 2)  # (B, M, D)
        m = self.cls_index
        tokens = (
            torch.cat([tokens[:, :m], self.cls_token.expand(b, -1, -1), tokens[:, m:]], dim=1)
            + self.pos_embed
        )
        maps = []
        for mixer, to_map in zip(self.mixers, self.maps):
            tokens = tokens + torch.tanh(mixer(tokens + tokens.mean(1, keepdim=True)))  # global mixing
            maps.append(to_map(tokens, (h, w)))
        return maps

    def forward(self, x: Tensor) -> Tensor:
        last = self.forward_intermediates(x)[-1]
        return F.interpolate(self.head(last), size=x.shape[-2:], mode="bilinear", align_corners=False)


@register_model
def test_fake_deep_supervision(
    in_chans: int = 3, num_classes: int = 1, **kwargs: Any
) -> FakeDeepSupervisionNet:
    """Fake: SegOutput with auxiliary logits and a model loss term in train mode."""
    return FakeDeepSupervisionNet(in_chans, num_classes, model_name="test_fake_deep_supervision", **kwargs)


@register_model
def test_fake_tokens(in_chans: int = 3, num_classes: int = 1, **kwargs: Any) -> FakeTokenBackbone:
    """Fake: non-hierarchical token backbone, class token mid-sequence, fixed 32x32 input."""
    return FakeTokenBackbone(in_chans, num_classes, model_name="test_fake_tokens", **kwargs)


@register_loss("test_learned_aux_weights")
class LearnedAuxWeights(nn.Module):
    """Structured loss: main + sum_i softmax(w)_i * base(aux_i), w learnable (init 0), plus a pull of
    w towards 0 so that the weights do not run away."""

    takes_seg_output = True

    def __init__(self, num_classes: int, num_aux: int = 2, base: str = "bce_dice") -> None:
        super().__init__()
        self.base = build_loss(base, num_classes)
        self.logits_w = nn.Parameter(torch.zeros(num_aux))
        self.register_buffer("calls", torch.zeros((), dtype=torch.int64))

    def forward(self, output: SegOutput, target: Tensor) -> dict[str, Tensor]:
        self.calls += 1
        terms = {"main": self.base(output.logits, target)}
        weights = torch.softmax(self.logits_w, 0)
        size = target.shape[-2:]
        for i, aux in enumerate(output.aux):
            aux = F.interpolate(aux, size=size, mode="bilinear", align_corners=False)
            terms[f"aux{i}"] = weights[i] * self.base(aux, target)
        terms["weight_pull"] = 0.01 * self.logits_w.square().sum()
        return terms
