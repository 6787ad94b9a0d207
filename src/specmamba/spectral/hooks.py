"""Capture of encoder stage maps by forward hooks at the points a model declares in ``feature_info``.

The spectral-audit study hooked different modules for different tables (REFERENCE.md section 3);
here every table reads the same declared points, one per encoder stage. A hooked module may emit
channels-first ``(B, C, h, w)``, channels-last ``(B, h, w, C)`` or sequence ``(B, L, C)`` maps (or a
tuple whose first element is the map); :func:`to_bchw` turns each into ``(B, C, h, w)`` using the
stage's declared channel count and reduction.

Shape letters: B batch, C channels, h/w stage map size, L = h * w tokens, H/W input size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from ..errors import ConfigError
from ..models.interface import validate_feature_info

__all__ = ["FeatureCapture", "stage_points", "to_bchw"]


def stage_points(model: nn.Module) -> list[dict[str, Any]]:
    """The model's ``feature_info`` entries, checked against the model interface
    (:func:`~specmamba.models.interface.validate_feature_info`) and each naming an existing module.

    Raises ConfigError for a model that declares no stages (the audit cannot measure it).
    """
    info = getattr(model, "feature_info", None)
    name = getattr(model, "specmamba_name", type(model).__name__)
    if not info:
        raise ConfigError(
            f"model {name} declares no encoder stages (an empty or missing `feature_info`), so the spectral "
            "audit has nothing to measure; give the model a feature_info list of "
            "{num_chs, reduction, module} dicts (see specmamba.models.interface)."
        )
    validate_feature_info(info, f"model {name}")
    points = []
    for i, entry in enumerate(info):
        try:
            module = entry["module"]
            model.get_submodule(module)
        except (KeyError, TypeError, AttributeError) as err:
            raise ConfigError(
                f"model {name}: feature_info[{i}] = {entry!r} does not name a submodule ({err}); each entry "
                "needs 'num_chs', 'reduction' and a dotted 'module' name usable with model.get_submodule."
            ) from None
        points.append(
            {"num_chs": int(entry["num_chs"]), "reduction": int(entry["reduction"]), "module": module}
        )
    return points


def to_bchw(t: Tensor, num_chs: int, expected_hw: tuple[int, int], where: str = "stage") -> Tensor:
    """A stage output as (B, C, h, w), whatever its layout.

    ``expected_hw`` is the map size the reduction implies; it decides between layouts when the
    channel count alone is ambiguous and gives the grid of a token sequence.
    """
    eh, ew = expected_hw
    if t.ndim == 4:
        nchw_ok = t.shape[1] == num_chs
        nhwc_ok = t.shape[3] == num_chs
        if nchw_ok and nhwc_ok:  # C == w: the declared map size decides
            nchw_ok = tuple(t.shape[2:]) == (eh, ew) or tuple(t.shape[1:3]) != (eh, ew)
        if nchw_ok:
            return t
        if nhwc_ok:
            return t.permute(0, 3, 1, 2)  # (B, h, w, C) -> (B, C, h, w)
    elif t.ndim == 3 and t.shape[2] == num_chs:
        length = t.shape[1]
        if eh * ew == length:
            h, w = eh, ew
        else:  # input padded or rounded differently: keep the input's aspect ratio
            h = max(1, round(math.sqrt(length * eh / max(ew, 1))))
            w = length // h
        if h * w == length:
            return t.transpose(1, 2).reshape(t.shape[0], num_chs, h, w)  # (B, L, C) -> (B, C, h, w)
    raise ConfigError(
        f"{where}: cannot read an output of shape {tuple(t.shape)} as a map of {num_chs} channels near "
        f"{eh}x{ew}; feature_info must name modules that output (B, C, h, w), (B, h, w, C) or (B, L, C)."
    )


class FeatureCapture:
    """Context manager recording the outputs of a model's declared stage modules during a forward.

    >>> with FeatureCapture(model) as capture:
    ...     logits = model(x)
    ... maps = capture.maps(x.shape[-2:])   # list of (B, C, h, w), one per stage

    Hooks are removed on exit, also after an error. Maps are detached (the audit never back-propagates).
    """

    def __init__(self, model: nn.Module, points: Sequence[dict[str, Any]] | None = None):
        self.model = model
        self.points = list(points) if points is not None else stage_points(model)
        self._outputs: dict[int, Tensor] = {}
        self._handles: list[Any] = []

    def __enter__(self) -> FeatureCapture:
        self._outputs.clear()
        for i, point in enumerate(self.points):
            module = self.model.get_submodule(point["module"])
            self._handles.append(module.register_forward_hook(self._recorder(i)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _recorder(self, index: int):
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if isinstance(output, (tuple, list)):
                output = output[0]
            self._outputs[index] = output.detach()

        return hook

    def maps(self, input_hw: Sequence[int]) -> list[Tensor]:
        """The captured stage maps as (B, C, h, w), in feature_info order."""
        height, width = int(input_hw[0]), int(input_hw[1])
        maps = []
        for i, point in enumerate(self.points):
            if i not in self._outputs:
                raise ConfigError(
                    f"stage {i + 1} ({point['module']}) produced no output during the forward pass; "
                    "feature_info must name modules that run in forward()."
                )
            r = point["reduction"]
            expected = (math.ceil(height / r), math.ceil(width / r))
            where = f"stage {i + 1} ({point['module']})"
            maps.append(to_bchw(self._outputs[i], point["num_chs"], expected, where))
        return maps
