"""Studies: many models x seeds on one dataset, scored, audited and compared (``specmamba study``).

:mod:`~specmamba.study.spec` reads and checks a study file, :mod:`~specmamba.study.runner` runs it
resumably, :mod:`~specmamba.study.stats` holds its statistics and :mod:`~specmamba.study.tables`
writes the leaderboard, paired tests, cross-family audit tables and report.
"""

from __future__ import annotations

from .runner import run_study
from .spec import StudySpec, load_study, shipped_studies

__all__ = ["StudySpec", "load_study", "run_study", "shipped_studies"]
