"""The spectral audit: feature hooks, Fourier measures, statistics, shift tests, figures, report.

Facts and the published protocol: REFERENCE.md section 3. ``specmamba audit`` runs
:func:`run_audit`; the measures are usable on their own, e.g. ``avr(feature_map)``.
"""

from __future__ import annotations

from .audit import TABLE_FILES, AuditSettings, load_audited_models, run_audit
from .hooks import FeatureCapture, stage_points, to_bchw
from .measures import (
    MIN_MEASURABLE_SIDE,
    StageSpectrum,
    avr,
    axis_energy_ratio,
    band_energy,
    chebyshev_frequency,
    is_measurable,
    log_power_spectrum,
    measure_stage,
    per_channel_avr,
    power_spectrum,
)
from .shift import DEFAULT_SHIFTS, DIRECTIONS, MODES, ShiftSpec, shift_consistency, shift_specs, translate
from .statistics import bootstrap_ci, correlate, partial_correlation, pearson, residualize, spearman

__all__ = [
    "DEFAULT_SHIFTS",
    "DIRECTIONS",
    "MIN_MEASURABLE_SIDE",
    "MODES",
    "TABLE_FILES",
    "AuditSettings",
    "FeatureCapture",
    "ShiftSpec",
    "StageSpectrum",
    "avr",
    "axis_energy_ratio",
    "band_energy",
    "bootstrap_ci",
    "chebyshev_frequency",
    "correlate",
    "is_measurable",
    "load_audited_models",
    "log_power_spectrum",
    "measure_stage",
    "partial_correlation",
    "pearson",
    "per_channel_avr",
    "power_spectrum",
    "residualize",
    "run_audit",
    "shift_consistency",
    "shift_specs",
    "spearman",
    "stage_points",
    "to_bchw",
    "translate",
]
