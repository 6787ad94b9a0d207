"""Figures of the spectral audit (REFERENCE.md section 3): stage-wise AVR, frequency bands, power spectra,
shift consistency and the AVR-vs-BF1 scatter, each written as PNG (300 dpi) and PDF; plus the spread of
the per-channel AVR over a stage's channels (specmamba's own).

Inputs are the plain rows the audit also writes as CSV (lists of dicts, None where a value is not
measurable). Bar and curve figures use the ``level == "architecture"`` rows: the mean over training
seeds, with the standard deviation over seeds as error bar (none when the std is None or 0, i.e. one
seed). Frequencies are Chebyshev-normalised: f = max(|ky - cy| / (h/2), |kx - cx| / (w/2)), 1 = Nyquist.

Figures are drawn on ``matplotlib.figure.Figure`` with the Agg canvas, never through pyplot, so the
user's global backend and pyplot's figure registry are untouched; matplotlib is imported lazily.
Both files of a figure are written atomically and together: a failed save leaves the previous PNG
and PDF in place and no temporary file behind.

Shape letters: h/w height/width of a stage's power spectrum.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..atomic import atomic_path
from .measures import DEFAULT_THRESHOLD

if TYPE_CHECKING:  # pragma: no cover - typing only
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "avr_bf1_scatter",
    "avr_channel_distribution",
    "band_decomposition",
    "new_figure",
    "power_spectrum_grid",
    "save_figure",
    "shift_consistency_curves",
    "stagewise_avr_bars",
    "write_all_figures",
]

DPI = 300
DIRECTION_ORDER = ("horizontal", "vertical", "diagonal")
MODE_STYLES = {"cyclic": "-", "reflect": "--"}
BAND_COLORS = {"low": "#4c72b0", "mid": "#55a868", "high": "#c44e52"}
BAND_LABELS = {"low": "low (f \u2264 0.25)", "mid": "mid (0.25 < f \u2264 0.75)", "high": "high (f > 0.75)"}
NOT_MEASURABLE = "n/m"

# PDF: no creation date (byte-identical reruns); TrueType fonts keep the text editable in journals.
_PDF_METADATA = {"CreationDate": None}
_PDF_RC = {"pdf.fonttype": 42}


# --------------------------------------------------------------------------------------------- helpers
def new_figure(figsize: tuple[float, float]) -> Figure:
    """A pyplot-free figure on the Agg canvas (no backend switch, no global figure registry)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, out_dir: str | Path, name: str) -> list[Path]:
    """Write ``name``.png (300 dpi) and ``name``.pdf; both replace their targets only if both succeed."""
    import matplotlib

    out = Path(out_dir)
    png, pdf = out / f"{name}.png", out / f"{name}.pdf"
    try:
        with contextlib.ExitStack() as stack:
            tmp_png = stack.enter_context(atomic_path(png))
            tmp_pdf = stack.enter_context(atomic_path(pdf))
            # The temporary names end in .tmp, so the format must be given explicitly.
            fig.savefig(tmp_png, format="png", dpi=DPI)
            with matplotlib.rc_context(_PDF_RC):
                fig.savefig(tmp_pdf, format="pdf", dpi=DPI, metadata=_PDF_METADATA)
    finally:
        fig.clear()  # drop the artists now rather than at the next garbage collection
    return [png, pdf]


def _finite(value: Any) -> float | None:
    """``value`` as a float, or None when it is missing, not a number, NaN or infinite."""
    if value is None or isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _error(value: Any) -> float | None:
    """An error-bar length: a positive finite std, else None (one seed gives std None or 0)."""
    x = _finite(value)
    return x if x is not None and x > 0 else None


def _stage_number(value: Any) -> int | None:
    """Stage as int (rows read back from CSV carry "1"); None for the "mean" row and the like."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _group_rows(rows: Iterable[Mapping[str, Any]]) -> tuple[dict[str, list[Mapping[str, Any]]], str]:
    """Architecture-level rows grouped by architecture, in order of first appearance.

    Falls back to grouping the checkpoint-level rows by checkpoint label when no architecture-level
    row exists (e.g. a caller that only has per-checkpoint rows).
    """
    rows = list(rows)
    arch = [r for r in rows if r.get("level", "architecture") == "architecture"]
    key, chosen = ("architecture", arch) if arch else ("checkpoint", rows)
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in chosen:
        label = r.get(key)
        if label is None:
            label = r.get("architecture", r.get("checkpoint", "?"))
        groups.setdefault(str(label), []).append(r)
    return groups, key


def _series_label(name: str, rows: Sequence[Mapping[str, Any]]) -> str:
    """Legend label: the architecture, with the number of seeds when the mean is over several."""
    counts = {r.get("n_checkpoints") for r in rows} - {None}
    n = max((int(c) for c in counts if _finite(c) is not None), default=1)
    return f"{name} (n={n})" if n > 1 else name


def _colors(n: int) -> list[Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _no_data(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _mark_not_measurable(ax: Axes, x: float, fontsize: float = 7) -> None:
    """The "n/m" marker at a bar position, just above the axis (x in data, y in axes coordinates)."""
    ax.text(
        x,
        0.01,
        NOT_MEASURABLE,
        transform=ax.get_xaxis_transform(),
        ha="center",
        va="bottom",
        rotation=90,
        fontsize=fontsize,
        color="0.35",
    )


def _by_stage(
    groups: Mapping[str, Sequence[Mapping[str, Any]]],
) -> tuple[dict[str, dict[int, Mapping[str, Any]]], list[int]]:
    """Each series' rows keyed by stage number (the "mean" row and the like left out), and the stages."""
    by_stage = {
        name: {s: r for r in rows if (s := _stage_number(r.get("stage"))) is not None}
        for name, rows in groups.items()
    }
    return by_stage, sorted({s for table in by_stage.values() for s in table})


def _stage_slots_figure(n_series: int, n_stages: int) -> tuple[Figure, Axes]:
    """A figure with one group of ``n_series`` slots per stage, and room for the legend on the right."""
    fig = new_figure((max(6.0, 2.4 + 0.45 * n_series * max(n_stages, 1)), 3.8))
    return fig, fig.add_subplot()


def _slot_x(stage: int, i: int, n_series: int) -> float:
    """x of series ``i``'s slot in the group of ``stage`` (slots 0.8 / n_series wide, centred)."""
    return stage + (i - (n_series - 1) / 2) * 0.8 / n_series


def _finish_stage_axes(ax: Axes, stages: Sequence[int], handles: Sequence[Any] | None = None) -> None:
    """Stage ticks and limits, a light y grid, and the legend outside on the right."""
    ax.set_xticks(stages, [f"stage {s}" for s in stages])
    ax.set_xlim(stages[0] - 0.5, stages[-1] + 0.5)  # "n/m" texts do not widen the autoscaled limits
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    legend = {"handles": handles} if handles is not None else {}
    ax.legend(**legend, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)


# --------------------------------------------------------------------------------------------- figures
def stagewise_avr_bars(stage_rows: Iterable[Mapping[str, Any]], out_dir: str | Path) -> list[Path]:
    """Grouped bars of the AVR per encoder stage, one bar per architecture, std over seeds as error bar.

    Stages that are not measurable (``measurable`` False or ``avr_mean`` None) get no bar but the text
    "n/m" at the bar's position. Writes ``stagewise_avr_bars.png`` / ``.pdf``; returns both paths.
    """
    groups, _ = _group_rows(stage_rows)
    by_stage, stages = _by_stage(groups)
    n = max(len(groups), 1)
    fig, ax = _stage_slots_figure(n, len(stages))
    if not stages:
        _no_data(ax, "no stage-wise AVR rows")
        return save_figure(fig, out_dir, "stagewise_avr_bars")

    top = 0.0
    for i, (name, color) in enumerate(zip(groups, _colors(n))):
        xs, heights, err_x, err_h, err_e = [], [], [], [], []
        for s in stages:
            x = _slot_x(s, i, n)
            row = by_stage[name].get(s)
            avr = _finite(row.get("avr_mean")) if row is not None and row.get("measurable", True) else None
            if avr is None:
                _mark_not_measurable(ax, x)
                continue
            xs.append(x)
            heights.append(avr)
            top = max(top, avr)
            std = _error(row.get("avr_std"))
            if std is not None:
                err_x.append(x)
                err_h.append(avr)
                err_e.append(std)
                top = max(top, avr + std)
        ax.bar(xs, heights, 0.8 / n * 0.95, color=color, label=_series_label(name, groups[name]))
        if err_x:
            ax.errorbar(err_x, err_h, yerr=err_e, fmt="none", ecolor="black", elinewidth=0.8, capsize=2)
    ax.set_ylim(0, max(top * 1.15, 0.05))
    ax.set_ylabel("AVR (share of energy above 0.5 Nyquist)")
    ax.set_title("Alias violation ratio per encoder stage")
    _finish_stage_axes(ax, stages)
    return save_figure(fig, out_dir, "stagewise_avr_bars")


def band_decomposition(band_rows: Iterable[Mapping[str, Any]], out_dir: str | Path) -> list[Path]:
    """Per architecture a group of stacked bars (one per stage) of the low / mid / high energy shares.

    Error bars (std over seeds) sit on the two band boundaries: the low|mid boundary carries the std of
    the low share, the mid|high boundary the std of the high share. Writes ``band_decomposition.*``.
    """
    groups, _ = _group_rows(band_rows)
    by_stage, stages = _by_stage(groups)
    n_bars = len(groups) * (len(stages) + 1)
    fig = new_figure((max(6.5, 3.0 + 0.4 * n_bars), 4.0))  # + room for the legend
    ax = fig.add_subplot()
    if not stages:
        _no_data(ax, "no band decomposition rows")
        return save_figure(fig, out_dir, "band_decomposition")

    ticks, tick_labels = [], []
    labelled: set[str] = set()  # label each band once, so the legend has three entries
    for g, name in enumerate(groups):
        base = g * (len(stages) + 1)  # one empty slot between architectures
        for j, s in enumerate(stages):
            x = base + j
            ticks.append(x)
            tick_labels.append(f"S{s}")
            row = by_stage[name].get(s)
            shares = None
            if row is not None and row.get("measurable", True):
                shares = [_finite(row.get(f"{b}_mean")) for b in BAND_COLORS]
            if shares is None or any(v is None for v in shares):
                _mark_not_measurable(ax, x)
                continue
            bottom = 0.0
            for band, share in zip(BAND_COLORS, shares):
                label = None if band in labelled else BAND_LABELS[band]
                labelled.add(band)
                ax.bar(x, share, 0.8, bottom=bottom, color=BAND_COLORS[band], label=label)
                bottom += share
            for boundary, std_key in ((shares[0], "low_std"), (shares[0] + shares[1], "high_std")):
                std = _error(row.get(std_key))
                if std is not None:
                    ax.errorbar(x, boundary, yerr=std, fmt="none", ecolor="black", elinewidth=0.7, capsize=2)
        ax.text(
            base + (len(stages) - 1) / 2,
            -0.1,
            _series_label(name, groups[name]),
            transform=ax.get_xaxis_transform(),
            ha="center",
            va="top",
            fontsize=9,
        )
    ax.set_xticks(ticks, tick_labels, fontsize=8)
    ax.set_xlim(-0.7, n_bars - 1.3)
    ax.set_ylim(0, 1.0)
    ax.set_ylabel("share of spectral energy")
    ax.set_title("Frequency bands per stage (S = stage)")
    if labelled:  # nothing measurable: no legend (and no "no artists" warning)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return save_figure(fig, out_dir, "band_decomposition")


def _symmetric_spectrum(m: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The map with its Nyquist row/column repeated at +1, and its extent in Nyquist units.

    An fftshift-ed axis of even length n holds the bins -n/2 .. n/2 - 1: the Nyquist bin only at -1.
    It is the same frequency as +1, so repeating it makes the picture symmetric about DC, with each bin
    drawn centred on its own normalised frequency (k - n//2) / (n/2).
    """
    h, w = m.shape
    if h % 2 == 0:
        m = np.concatenate([m, m[:1]], axis=0)  # (h+1, w)
    if w % 2 == 0:
        m = np.concatenate([m, m[:, :1]], axis=1)  # (h', w+1)
    ey = (m.shape[0] // 2 + 0.5) / (h / 2)
    ex = (m.shape[1] // 2 + 0.5) / (w / 2)
    return m, (-ex, ex, -ey, ey)


def _colour_range(maps: Sequence[np.ndarray | None]) -> tuple[float | None, float | None]:
    """Shared colour limits of one row, over the finite values of all maps except their DC bins.

    Mean-centred feature maps have (almost) no DC power; its log would stretch the scale by orders of
    magnitude and flatten everything else, so DC is left out and drawn grey.
    """
    values = []
    for m in maps:
        if m is None:
            continue
        keep = np.isfinite(m)
        keep[m.shape[0] // 2, m.shape[1] // 2] = False
        values.append(m[keep])
    values = [v for v in values if v.size]
    if not values:
        return None, None
    return min(float(v.min()) for v in values), max(float(v.max()) for v in values)


def power_spectrum_grid(
    spectra: Mapping[str, Sequence[np.ndarray | None]], out_dir: str | Path
) -> list[Path]:
    """Log10 mean power spectra: one row per checkpoint, one column per stage, a colour scale per row.

    Each map (h, w) is fftshift-ed (DC at the centre); axes are normalised frequency from -1 to 1
    (1 = Nyquist), each bin centred on its own frequency (see ``_symmetric_spectrum``). The dashed
    square marks f = 0.5, the AVR boundary. The colour scale leaves out the DC bin (no power in
    mean-centred maps; drawn grey when below the scale); non-finite values are grey too. Stages given
    as None are marked "not measurable". Writes ``power_spectrum_grid.*``.
    """
    import matplotlib

    labels = list(spectra)
    n_cols = max((len(spectra[k]) for k in labels), default=0)
    n_rows = len(labels)
    fig = new_figure((1.6 + 2.3 * max(n_cols, 1), 0.6 + 2.2 * max(n_rows, 1)))
    if n_rows == 0 or n_cols == 0:
        _no_data(fig.add_subplot(), "no power spectra")
        return save_figure(fig, out_dir, "power_spectrum_grid")

    # Grey for both: non-finite values (masked) and the DC bin (below the range by construction).
    cmap = matplotlib.colormaps["magma"].with_extremes(bad="0.6", under="0.6")
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for r, label in enumerate(labels):
        maps = [None if m is None else np.asarray(m, dtype=np.float64) for m in spectra[label]]
        maps = [m if m is not None and m.ndim == 2 and m.size else None for m in maps]
        maps += [None] * (n_cols - len(maps))
        vmin, vmax = _colour_range(maps)
        image = None
        for c, m in enumerate(maps):
            ax = axes[r, c]
            # Per-axes titles: the map size differs between stages and between models.
            size = "" if m is None else f" ({m.shape[0]}x{m.shape[1]})"
            ax.set_title(f"stage {c + 1}{size}", fontsize=8)
            if m is None:
                _no_data(ax, "not measurable")
            else:
                shown, extent = _symmetric_spectrum(m)
                image = ax.imshow(
                    np.ma.masked_invalid(shown),
                    cmap=cmap,
                    vmin=vmin,
                    vmax=vmax,
                    origin="lower",
                    extent=extent,
                    interpolation="nearest",
                    aspect="equal",
                )
                ax.plot([-0.5, 0.5, 0.5, -0.5, -0.5], [-0.5, -0.5, 0.5, 0.5, -0.5], "w--", lw=0.6)
                ax.set_xticks([-1, 0, 1])
                ax.set_yticks([-1, 0, 1])
                ax.tick_params(labelsize=7)
            if c == 0:
                ax.set_ylabel(f"{label}\nf_y / Nyquist", fontsize=8)
            if r == n_rows - 1 and m is not None:
                ax.set_xlabel("f_x / Nyquist", fontsize=8)
        if image is not None:
            bar = fig.colorbar(image, ax=list(axes[r]), shrink=0.9, pad=0.02)
            bar.set_label("log10 power", fontsize=8)
            bar.ax.tick_params(labelsize=7)
    fig.suptitle("Mean power spectrum per stage (log10; grey: DC)", fontsize=10)
    return save_figure(fig, out_dir, "power_spectrum_grid")


def shift_consistency_curves(shift_rows: Iterable[Mapping[str, Any]], out_dir: str | Path) -> list[Path]:
    """IoU of the shifted-and-unshifted prediction with the plain one against the shift, per direction.

    One subplot per direction present; one colour per architecture; solid = cyclic, dashed = reflect;
    a band of +- one std over seeds. Sub-pixel shifts share the same axis. Writes
    ``shift_consistency_curves.*``.
    """
    groups, _ = _group_rows(shift_rows)
    present = {str(r.get("direction")) for rows in groups.values() for r in rows}
    directions = [d for d in DIRECTION_ORDER if d in present] + sorted(present - set(DIRECTION_ORDER))
    n_dir = max(len(directions), 1)
    fig = new_figure((1.8 + 3.6 * n_dir, 3.6))
    if not directions:
        _no_data(fig.add_subplot(), "no shift consistency rows")
        return save_figure(fig, out_dir, "shift_consistency_curves")

    axes = fig.subplots(1, n_dir, squeeze=False, sharey=True)[0]
    colors = dict(zip(groups, _colors(len(groups))))
    modes_seen: list[str] = []
    for ax, direction in zip(axes, directions):
        for name, rows in groups.items():
            modes = sorted({str(r.get("mode")) for r in rows if str(r.get("direction")) == direction})
            for mode in modes:
                pts = []
                for r in rows:
                    if str(r.get("direction")) != direction or str(r.get("mode")) != mode:
                        continue
                    s, iou = _finite(r.get("shift")), _finite(r.get("iou_mean"))
                    if s is not None and iou is not None:
                        pts.append((s, iou, _error(r.get("iou_std")) or 0.0))
                if not pts:
                    continue
                pts.sort()
                xs, ys, es = (np.array(v) for v in zip(*pts))
                style = MODE_STYLES.get(mode, ":")
                if mode not in modes_seen:
                    modes_seen.append(mode)
                ax.plot(xs, ys, linestyle=style, marker="o", markersize=3, color=colors[name], lw=1.2)
                if np.any(es > 0):
                    ax.fill_between(xs, ys - es, ys + es, color=colors[name], alpha=0.15, lw=0)
        ax.set_title(direction, fontsize=9)
        ax.set_xlabel("shift (px)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("IoU with the unshifted prediction")

    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colors[k], lw=2, label=_series_label(k, groups[k])) for k in groups]
    handles += [Line2D([], [], color="0.3", linestyle=MODE_STYLES.get(m, ":"), label=m) for m in modes_seen]
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False)
    fig.suptitle("Shift consistency", fontsize=10)
    return save_figure(fig, out_dir, "shift_consistency_curves")


def avr_bf1_scatter(points: Mapping[str, Iterable[Mapping[str, Any]]], out_dir: str | Path) -> list[Path]:
    """Per-image mean AVR (x) against boundary F1 (y), one colour per architecture.

    Images whose AVR is None (no measurable stage) are left out. A least-squares line is drawn per
    architecture when it has at least 3 finite points and its AVR values vary. Writes
    ``avr_bf1_scatter.*``.
    """
    names = list(points)
    fig = new_figure((6.4, 4.2))
    ax = fig.add_subplot()
    drawn = 0
    for name, color in zip(names, _colors(len(names))):
        xy = [(_finite(p.get("avr_mean")), _finite(p.get("bf1"))) for p in points[name]]
        xy = [(x, y) for x, y in xy if x is not None and y is not None]
        if not xy:
            continue
        x, y = (np.array(v) for v in zip(*xy))
        ax.scatter(x, y, s=8, alpha=0.35, color=color, linewidths=0, label=f"{name} (n={len(x)})")
        drawn += 1
        if len(x) >= 3 and np.ptp(x) > 0:
            slope, intercept = np.polyfit(x, y, 1)
            line_x = np.array([x.min(), x.max()])
            ax.plot(line_x, slope * line_x + intercept, color=color, lw=1.5)
    if drawn == 0:
        _no_data(ax, "no image with a measurable AVR")
    else:
        ax.set_xlabel("per-image mean AVR over measurable stages")
        ax.set_ylabel("boundary F1 (2 px)")
        ax.set_title("AVR vs boundary F1 (lines: least squares)")
        ax.grid(alpha=0.3)
        legend = ax.legend(
            loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, markerscale=2
        )
        for handle in legend.legend_handles:
            handle.set_alpha(1.0)  # the points are faint; their legend keys should not be
    return save_figure(fig, out_dir, "avr_bf1_scatter")


def avr_channel_distribution(
    channel_rows: Iterable[Mapping[str, Any]], out_dir: str | Path, threshold: float = DEFAULT_THRESHOLD
) -> list[Path]:
    """Per stage, one box per checkpoint of its channels' AVR: box q25..q75, line at the median,
    whiskers at the lowest and highest channel; a dashed line at ``threshold`` (the AVR's frequency
    cut, here as an AVR level for reference). Stages without a measurable map get "n/m". Reads the
    checkpoint rows of ``avr_channel_distribution.csv``; writes ``avr_channel_distribution.*``.
    """
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in channel_rows:
        if r.get("level", "checkpoint") == "checkpoint":
            groups.setdefault(str(r.get("checkpoint", r.get("architecture", "?"))), []).append(r)
    by_stage, stages = _by_stage(groups)
    n = max(len(groups), 1)
    fig, ax = _stage_slots_figure(n, len(stages))
    if not stages:
        _no_data(ax, "no per-channel AVR rows")
        return save_figure(fig, out_dir, "avr_channel_distribution")

    from matplotlib.patches import Patch

    handles = []
    for i, (name, color) in enumerate(zip(groups, _colors(n))):
        stats, positions = [], []
        for s in stages:
            x = _slot_x(s, i, n)
            row = by_stage[name].get(s)
            values = [_finite(row.get(k)) for k in ("min", "q25", "median", "q75", "max")] if row else [None]
            if any(v is None for v in values):
                _mark_not_measurable(ax, x)
                continue
            low, q1, med, q3, high = values
            stats.append({"whislo": low, "q1": q1, "med": med, "q3": q3, "whishi": high, "fliers": []})
            positions.append(x)
        if stats:
            ax.bxp(
                stats,
                positions=positions,
                widths=0.8 / n * 0.8,
                patch_artist=True,
                boxprops={"facecolor": color, "alpha": 0.75, "linewidth": 0.6},
                medianprops={"color": "black", "linewidth": 1.0},
                whiskerprops={"linewidth": 0.6},
                capprops={"linewidth": 0.6},
            )
        handles.append(Patch(facecolor=color, alpha=0.75, label=name))
    ax.axhline(threshold, color="0.4", linestyle="--", linewidth=0.8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("AVR of one channel")
    ax.set_title("Per-channel AVR: spread over a stage's channels (whiskers: min and max)")
    _finish_stage_axes(ax, stages, handles)
    return save_figure(fig, out_dir, "avr_channel_distribution")


def write_all_figures(
    out_dir: str | Path,
    stage_rows: Iterable[Mapping[str, Any]],
    band_rows: Iterable[Mapping[str, Any]],
    shift_rows: Iterable[Mapping[str, Any]],
    points: Mapping[str, Iterable[Mapping[str, Any]]],
    spectra: Mapping[str, Sequence[np.ndarray | None]],
    channel_rows: Iterable[Mapping[str, Any]] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> dict[str, list[Path]]:
    """Write every audit figure into ``out_dir``; returns figure name -> [png, pdf].

    The shift figure is skipped when there are no shift rows, the scatter when no image has an AVR,
    the per-channel figure when ``channel_rows`` is None.
    """
    shift_rows = list(shift_rows)
    points = {k: list(v) for k, v in points.items()}
    written = {
        "stagewise_avr_bars": stagewise_avr_bars(stage_rows, out_dir),
        "band_decomposition": band_decomposition(band_rows, out_dir),
        "power_spectrum_grid": power_spectrum_grid(spectra, out_dir),
    }
    if shift_rows:
        written["shift_consistency_curves"] = shift_consistency_curves(shift_rows, out_dir)
    if any(_finite(p.get("avr_mean")) is not None for pts in points.values() for p in pts):
        written["avr_bf1_scatter"] = avr_bf1_scatter(points, out_dir)
    if channel_rows is not None:
        written["avr_channel_distribution"] = avr_channel_distribution(channel_rows, out_dir, threshold)
    return written
