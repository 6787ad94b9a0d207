"""The study's own figures (the audit's figures are embedded from its folder): each model's Dice with
its 95% interval on every scored set, and each family's stage-wise AVR of centred and raw maps.

PNG (300 dpi) and PDF, drawn without pyplot, written atomically (:mod:`specmamba.spectral.figures`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..spectral.figures import new_figure, save_figure
from .spec import StudySpec

__all__ = ["write_study_figures"]


def _dice_intervals(board: Sequence[dict[str, Any]], spec: StudySpec, out: Path) -> list[Path]:
    sets = ["val", *(e.name for e in spec.external)]
    fig = new_figure((6.5, 0.45 * len(board) * len(sets) + 1.2))
    ax = fig.add_subplot()
    labels = [row["label"] for row in board][::-1]  # best at the top
    for j, set_name in enumerate(sets):
        for i, label in enumerate(labels):
            row = next(r for r in board if r["label"] == label)
            mean, low, high = (row.get(f"{set_name}_dice_{k}") for k in ("mean", "ci_low", "ci_high"))
            if mean is None:
                continue
            y = i + (j - (len(sets) - 1) / 2) * 0.8 / len(sets)
            err = [[mean - low], [high - mean]] if low is not None else None
            ax.errorbar(
                mean, y, xerr=err, fmt="o", color=f"C{j}", capsize=3, label=set_name if i == 0 else None
            )
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("Dice (mean, 95% interval over seeds and cases)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return save_figure(fig, out, "leaderboard_dice")


def _avr_centring(families: Sequence[dict[str, Any]], out: Path) -> list[Path]:
    fig = new_figure((6.5, 3.6))
    ax = fig.add_subplot()
    names = list(dict.fromkeys(r["family"] for r in families))
    for i, name in enumerate(names):
        stages = [r for r in families if r["family"] == name and r["stage"].isdigit()]
        x = [int(r["stage"]) for r in stages]
        ax.plot(x, [r["avr_mean"] for r in stages], "-o", color=f"C{i % 10}", label=name)
        if any(r.get("avr_uncentred_mean") is not None for r in stages):
            ax.plot(x, [r.get("avr_uncentred_mean") for r in stages], "--", color=f"C{i % 10}", alpha=0.7)
    ax.set_xlabel("encoder stage")
    ax.set_ylabel("AVR (solid: mean-centred maps; dashed: raw)")
    ax.set_xticks(sorted({int(r["stage"]) for r in families if r["stage"].isdigit()}))
    ax.legend(fontsize=7, ncols=2)
    ax.grid(alpha=0.3)
    return save_figure(fig, out, "avr_centred_vs_uncentred")


def write_study_figures(
    out: Path, board: Sequence[dict[str, Any]], families: Sequence[dict[str, Any]], spec: StudySpec
) -> dict[str, list[Path]]:
    """Write the study's figures into ``out``; returns name -> [png, pdf]."""
    out.mkdir(parents=True, exist_ok=True)
    figures = {"leaderboard_dice": _dice_intervals(board, spec, out)}
    if families:
        figures["avr_centred_vs_uncentred"] = _avr_centring(families, out)
    return figures
