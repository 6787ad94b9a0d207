"""Boundary F1 (BF1) with a pixel tolerance, as defined for the spectral audit of VM-UNet.

Definition (REFERENCE.md section 3; the BF score of Csurka et al., "What is a good evaluation
measure for semantic segmentation?", BMVC 2013, with a Euclidean tolerance):

- boundary(mask) = mask XOR binary_erosion(mask, 1 iteration), with scipy.ndimage's default
  structuring element for 2-D, the 3x3 cross (4-connectivity), and ``border_value=0`` so that
  foreground pixels on the image border count as boundary;
- precision P = share of predicted boundary pixels whose Euclidean distance to the nearest true
  boundary pixel is <= tolerance (scipy.ndimage.distance_transform_edt of the complement of the
  true boundary); recall R = the same with prediction and target swapped;
- BF1 = 2 P R / (P + R), and 0 when P + R == 0.

Empty rule: both boundaries empty (both masks empty) -> P = R = BF1 = 1.0; exactly one empty ->
P = R = BF1 = 0.0. A non-empty mask always has a non-empty boundary.

Input contract: binary masks (bool or 0/1), numpy or torch (moved to host: scipy does the work),
same shape (H, W) or (B, H, W). Output: a Python float for (H, W), a numpy float64 array (B,) for
(B, H, W), whatever the input library.

Shape letters: B batch (cases), H height, W width.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from ..errors import ConfigError
from ._masks import MaskLike, as_numpy_batch

#: scipy's default 2-D structuring element (generate_binary_structure(2, 1)): the 3x3 cross.
CROSS_3X3 = ndimage.generate_binary_structure(2, 1)


def mask_boundary(mask: np.ndarray) -> np.ndarray:
    """Inner boundary of a bool (H, W) mask: ``mask XOR binary_erosion(mask)`` with the 3x3 cross.

    Pixels outside the image count as background (``border_value=0``), so foreground touching the
    image border is boundary there. Returns a bool (H, W) array.
    """
    mask = np.asarray(mask, dtype=bool)
    return mask ^ ndimage.binary_erosion(mask, structure=CROSS_3X3, iterations=1, border_value=0)


def _check_tolerance(tolerance: float) -> float:
    try:
        tol = float(tolerance)
    except (TypeError, ValueError):
        tol = float("nan")
    if not np.isfinite(tol) or tol < 0:
        raise ConfigError(
            f"`tolerance` is {tolerance!r}; it must be a finite distance in pixels >= 0 (the audit uses 2)."
        )
    return tol


def _case_precision_recall(pred: np.ndarray, target: np.ndarray, tol: float) -> tuple[float, float]:
    """P and R of one case from bool (H, W) masks."""
    pb, tb = mask_boundary(pred), mask_boundary(target)
    has_p, has_t = bool(pb.any()), bool(tb.any())
    if not has_p and not has_t:
        return 1.0, 1.0
    if not has_p or not has_t:
        return 0.0, 0.0
    # Distance of every pixel to the nearest true (resp. predicted) boundary pixel: the EDT of
    # the complement measures distance to the nearest zero, i.e. to the nearest boundary pixel.
    dist_to_true = ndimage.distance_transform_edt(~tb)  # (H, W)
    dist_to_pred = ndimage.distance_transform_edt(~pb)  # (H, W)
    p = float(np.mean(dist_to_true[pb] <= tol))
    r = float(np.mean(dist_to_pred[tb] <= tol))
    return p, r


def _f1(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def boundary_precision_recall(pred: MaskLike, target: MaskLike, tolerance: float = 2) -> tuple[Any, Any]:
    """Boundary precision and recall within ``tolerance`` pixels (see the module docstring).

    Returns ``(precision, recall)``: two floats for (H, W), two numpy float64 arrays (B,) for
    (B, H, W). Empty rule: both masks empty -> (1.0, 1.0); exactly one empty -> (0.0, 0.0).
    """
    tol = _check_tolerance(tolerance)
    p, t, batched = as_numpy_batch(pred, target)  # (B, H, W) bool
    pr = np.array([_case_precision_recall(p[b], t[b], tol) for b in range(p.shape[0])], dtype=np.float64)
    if batched:
        return pr[:, 0], pr[:, 1]
    return float(pr[0, 0]), float(pr[0, 1])


def boundary_f1(pred: MaskLike, target: MaskLike, tolerance: float = 2) -> Any:
    """Boundary F1 = 2 P R / (P + R) within ``tolerance`` pixels (0 when P + R == 0).

    ``pred`` / ``target``: binary masks (bool or 0/1), numpy or torch, (H, W) or (B, H, W). Returns
    a float for (H, W), a numpy float64 array (B,) for (B, H, W). Empty rule: both masks empty ->
    1.0; exactly one empty -> 0.0.
    """
    p, r = boundary_precision_recall(pred, target, tolerance)
    if isinstance(p, np.ndarray):
        return np.array([_f1(float(a), float(b)) for a, b in zip(p, r)], dtype=np.float64)
    return _f1(p, r)
