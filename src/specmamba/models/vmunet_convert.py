"""Checkpoint conversion for VM-UNet: the official VM-UNet layout and VMamba-v0 classification weights.

Two foreign layouts load into :class:`~specmamba.models.vmunet.VMUNet` (REFERENCE.md section 2):

* **Official VM-UNet** (Ruan et al. 2024, arXiv:2402.02491; its training script saves the wrapper's
  state dict, ``vmunet.<name>``; layout in ``reference/vmunet_official_keys.json``). specmamba uses
  the official module names, so only the ``vmunet.`` prefix is removed, and the result loads strictly.
  A VM-UNet of other depths gets an error that names both sets of depths.
* **VMamba-v0 classification** checkpoints (Liu et al. 2024, arXiv:2401.10166; e.g.
  ``vmamba_small_e238_ema.pth``, state dict under ``'model'``: ``patch_embed.*``, ``layers.*``,
  ``norm.*``, ``head.*``), the pretrained weights of the official recipe. As the official loader does,
  the tensors whose names exist in the model fill the encoder, and encoder stage j's blocks are also
  copied into decoder stage S-1-j (S = 4 stages) where the names exist and the shapes match (a
  decoder stage of fewer blocks takes the first ones). The classifier (``norm``, ``head``) and the
  blocks the model has no room for are skipped, with the reason, in the
  :class:`~specmamba.models.weights.LoadReport`. Unlike the official loader, a first conv of another
  input-channel count is adapted (:func:`~specmamba.models.weights.adapt_input_conv`) rather than
  rejected. Later VMamba versions (v2/v3: ``.op.`` mixers, sequential patch embed) are another
  layout and get an error saying so.

Shape letters: none (this file moves named tensors).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

from ..errors import CheckpointError
from .mirrored_decoder import STAGE_BLOCK, block_depths, encoder_and_mirrored_decoder
from .weights import ConvertedStateDict

__all__ = [
    "OFFICIAL_PREFIX",
    "block_depths",
    "convert_vmamba_v0",
    "convert_vmunet_state_dict",
    "detect_layout",
    "to_official_state_dict",
]

#: The official wrapper ``VMUNet`` keeps the network as ``self.vmunet``.
OFFICIAL_PREFIX = "vmunet."

_CLASSIFIER = ("head.", "norm.")


def to_official_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """specmamba VM-UNet state dict -> the official layout (``vmunet.`` prefix added to every name)."""
    return {OFFICIAL_PREFIX + k: v for k, v in state_dict.items()}


def _strip_official_prefix(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    if state_dict and all(k.startswith(OFFICIAL_PREFIX) for k in state_dict):
        return {k[len(OFFICIAL_PREFIX) :]: v for k, v in state_dict.items()}
    return dict(state_dict)


def detect_layout(keys: Sequence[str] | Mapping[str, Tensor]) -> str:
    """``"vmunet"`` (VM-UNet, official or specmamba names), ``"vmamba_v0"``, ``"vmamba_v2"`` or ``"unknown"``.

    Keys are taken after the ``vmunet.`` prefix is removed.
    """
    names = list(keys)
    if any(k.startswith(("layers_up.", "final_up.")) for k in names):
        return "vmunet"
    if any(k.startswith("patch_embed.") for k in names) and any(k.startswith("layers.") for k in names):
        if any(".op." in k for k in names) or any(k.startswith("patch_embed.0.") for k in names):
            return "vmamba_v2"
        if any(".self_attention." in k for k in names):
            return "vmamba_v0"
    return "unknown"


def convert_vmunet_state_dict(
    state_dict: Mapping[str, Tensor], model_state: Mapping[str, Tensor]
) -> dict[str, Tensor] | ConvertedStateDict:
    """Convert a foreign state dict for a VM-UNet whose own state dict is ``model_state``.

    Returns a plain dict for VM-UNet layouts (official or specmamba names, to be loaded strictly) and
    a partial :class:`ConvertedStateDict` for VMamba-v0 classification checkpoints. Raises
    CheckpointError for a VM-UNet of other depths and for VMamba v2/v3 checkpoints. Anything else is
    returned unchanged (the strict load then reports what does not match).
    """
    sd = _strip_official_prefix(state_dict)
    layout = detect_layout(sd)
    if layout == "vmunet":
        _check_depths(sd, model_state)
        return sd
    if layout == "vmamba_v0":
        return convert_vmamba_v0(sd, model_state)
    if layout == "vmamba_v2":
        raise CheckpointError(
            "it looks like a VMamba v2/v3 checkpoint (mixer tensors under '.op.' or a sequential patch "
            "embed), whose SS2D is not the VMamba-v0 one VM-UNet uses. Use a VMamba-v0 checkpoint "
            "(e.g. vmamba_small_e238_ema.pth, tensors named layers.*.blocks.*.self_attention.*)."
        )
    return sd


def _check_depths(sd: Mapping[str, Tensor], model_state: Mapping[str, Tensor]) -> None:
    got = (block_depths(sd, "layers"), block_depths(sd, "layers_up"))
    want = (block_depths(model_state, "layers"), block_depths(model_state, "layers_up"))
    if got != want:
        raise CheckpointError(
            f"it holds a VM-UNet with encoder depths {got[0]} and decoder depths {got[1]}, but the model has "
            f"{want[0]} / {want[1]}. Build the model with those depths, e.g. create_model('vmunet', "
            f"depths={got[0]}, depths_decoder={got[1]}) (vmunet: [2, 2, 2, 2] / [2, 2, 2, 1]; vmunet_deep: "
            "[2, 2, 9, 2] / [2, 9, 2, 2])."
        )


def convert_vmamba_v0(
    state_dict: Mapping[str, Tensor], model_state: Mapping[str, Tensor]
) -> ConvertedStateDict:
    """VMamba-v0 classification state dict -> the VM-UNet encoder plus the mirrored decoder blocks.

    Encoder tensors are taken by name (a shape mismatch is kept, so that the load raises an error
    naming it: another VMamba width or state size is another architecture); ``patch_embed.proj.weight``
    is adapted to the model's input channels. Decoder stage S-1-j receives encoder stage j's blocks
    where the names exist and the shapes match. The result is marked partial: the decoder's patch
    expanding, final expanding and classifier conv have no pretrained values.
    """
    out, used, notes = encoder_and_mirrored_decoder(state_dict, model_state)
    skipped = {}
    for key in state_dict:
        if key in used:
            continue
        if key.startswith(_CLASSIFIER):
            skipped[key] = "classifier of the classification network (not part of VM-UNet)"
        elif STAGE_BLOCK.match(key) or key.startswith("layers."):
            skipped[key] = "the model has fewer blocks/stages here than the checkpoint"
        else:
            skipped[key] = "no tensor of this name in VM-UNet"
    return ConvertedStateDict(
        state_dict=out,
        layout="VMamba-v0 classification checkpoint: encoder, decoder mirrored from it",
        partial=True,
        skipped=skipped,
        notes=notes,
    )
