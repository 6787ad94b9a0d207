"""Figures of the spectral audit: PNG (300 dpi) + PDF per figure, atomic writes, no pyplot state."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image

from specmamba.spectral import figures as figures_module
from specmamba.spectral.figures import (
    avr_bf1_scatter,
    avr_channel_distribution,
    band_decomposition,
    power_spectrum_grid,
    shift_consistency_curves,
    stagewise_avr_bars,
    write_all_figures,
)

ALL_NAMES = {
    "stagewise_avr_bars",
    "band_decomposition",
    "power_spectrum_grid",
    "shift_consistency_curves",
    "avr_bf1_scatter",
    "avr_channel_distribution",
}


def _audit_inputs(archs: dict[str, int], not_measurable: frozenset[tuple[str, int]] = frozenset()) -> dict:
    """Small synthetic audit results: ``archs`` maps architecture -> number of seeds (1: std None).

    ``not_measurable`` lists (architecture, stage) pairs without a value. Checkpoint-level rows are
    included too (the figures must ignore them when architecture-level rows exist).
    """
    rng = np.random.default_rng(0)
    stage_rows, band_rows, shift_rows, points, spectra, channel_rows = [], [], [], {}, {}, []
    for a, n in archs.items():
        std = None if n == 1 else 0.02
        for level, label in (("architecture", a), ("checkpoint", f"{a}-seed0")):
            key = dict(level=level, architecture=a, checkpoint=label)
            for stage in (1, 2, 3, 4, "mean"):
                ok = (a, stage) not in not_measurable
                avr = float(rng.uniform(0.1, 0.5)) if ok else None
                stage_rows.append(
                    {**key, "n_checkpoints": n, "stage": stage, "map_size": "8x8", "measurable": ok,
                     "avr_mean": avr, "avr_std": std if ok else None}
                )  # fmt: skip
                if stage == "mean":
                    continue
                low, mid = float(rng.uniform(0.3, 0.6)), float(rng.uniform(0.1, 0.3))
                shares = (low, mid, 1 - low - mid) if ok else (None, None, None)
                band_rows.append(
                    {**key, "stage": stage, "measurable": ok, "low_mean": shares[0], "mid_mean": shares[1],
                     "high_mean": shares[2], "low_std": std, "mid_std": std, "high_std": std}
                )  # fmt: skip
            for direction in ("horizontal", "vertical"):
                for mode in ("cyclic", "reflect"):
                    for shift in (2.0, 0.5, 1.0, 0.25):  # unsorted on purpose
                        iou = 0.99 - 0.01 * shift
                        shift_rows.append(
                            {**key, "direction": direction, "mode": mode, "shift": shift, "iou_mean": iou,
                             "iou_std": std}
                        )  # fmt: skip
        for seed in range(n):
            for stage in (1, 2, 3, 4):
                ok = (a, stage) not in not_measurable
                q = np.sort(rng.uniform(0.05, 0.6, size=5)) if ok else [None] * 5
                channel_rows.append(
                    {"level": "checkpoint", "architecture": a, "checkpoint": f"{a}-seed{seed}",
                     "stage": stage, "measurable": ok, **dict(zip(("min", "q25", "median", "q75", "max"), q))}
                )  # fmt: skip
        avrs = [None] + [float(v) for v in rng.uniform(0.2, 0.4, size=11)]  # one image without AVR
        points[a] = [dict(checkpoint=a, avr_mean=v, bf1=float(rng.random())) for v in avrs]
        for seed in range(n):
            maps = []
            for stage, size in enumerate((8, 6, 4, 2), start=1):
                if (a, stage) in not_measurable:
                    maps.append(None)
                    continue
                power = rng.random((size, size)) + 0.1
                power[size // 2, size // 2] = 0.0  # zero DC of mean-centred maps: log10 -> -inf
                with np.errstate(divide="ignore"):
                    maps.append(np.log10(power))
            spectra[f"{a}-seed{seed}"] = maps
    return {
        "stage_rows": stage_rows,
        "band_rows": band_rows,
        "shift_rows": shift_rows,
        "points": points,
        "spectra": spectra,
        "channel_rows": channel_rows,
    }


SCENARIOS = {
    # one architecture, one seed (std None), one stage not measurable
    "one-arch-single-seed": lambda: _audit_inputs({"vmunet": 1}, frozenset({("vmunet", 4)})),
    # several architectures, mixed seed counts, a stage not measurable in one of them
    "several-archs": lambda: _audit_inputs({"vmunet": 2, "swin_unet": 1}, frozenset({("swin_unet", 3)})),
}

CALLS = {
    "stagewise_avr_bars": lambda d, out: stagewise_avr_bars(d["stage_rows"], out),
    "band_decomposition": lambda d, out: band_decomposition(d["band_rows"], out),
    "power_spectrum_grid": lambda d, out: power_spectrum_grid(d["spectra"], out),
    "shift_consistency_curves": lambda d, out: shift_consistency_curves(d["shift_rows"], out),
    "avr_bf1_scatter": lambda d, out: avr_bf1_scatter(d["points"], out),
    "avr_channel_distribution": lambda d, out: avr_channel_distribution(d["channel_rows"], out),
}


def _check_pair(paths: list[Path], out: Path, name: str) -> None:
    png, pdf = out / f"{name}.png", out / f"{name}.pdf"
    assert paths == [png, pdf]
    assert png.stat().st_size > 0 and pdf.stat().st_size > 0
    with Image.open(png) as im:
        assert im.format == "PNG"
        assert im.info["dpi"] == pytest.approx((300, 300), abs=0.5)
    assert pdf.read_bytes().startswith(b"%PDF")


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize("name", sorted(CALLS))
def test_figure_writes_png_and_pdf(tmp_path, name, scenario):
    backend = matplotlib.get_backend()
    had_pyplot = "matplotlib.pyplot" in sys.modules
    paths = CALLS[name](SCENARIOS[scenario](), tmp_path)
    _check_pair(paths, tmp_path, name)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{name}.pdf", f"{name}.png"]
    # No global state: the backend is unchanged and pyplot is not pulled in.
    assert matplotlib.get_backend() == backend
    assert ("matplotlib.pyplot" in sys.modules) == had_pyplot


def test_figures_accept_empty_inputs(tmp_path):
    """A placeholder figure, not a crash, when a table has no rows at all."""
    for paths, name in (
        (stagewise_avr_bars([], tmp_path), "stagewise_avr_bars"),
        (power_spectrum_grid({}, tmp_path), "power_spectrum_grid"),
        (avr_channel_distribution([], tmp_path), "avr_channel_distribution"),
    ):
        _check_pair(paths, tmp_path, name)


def test_scatter_skips_degenerate_fit_lines(tmp_path):
    points = {
        "two_points": [dict(checkpoint="a", avr_mean=x, bf1=0.5) for x in (0.2, 0.3)],
        "no_x_variance": [dict(checkpoint="b", avr_mean=0.25, bf1=v) for v in (0.1, 0.5, 0.9)],
        "fits": [dict(checkpoint="c", avr_mean=x, bf1=2 * x) for x in (0.1, 0.2, float("nan"), 0.4)],
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RankWarning / RuntimeWarning from a degenerate fit
        _check_pair(avr_bf1_scatter(points, tmp_path), tmp_path, "avr_bf1_scatter")


def test_figures_are_deterministic(tmp_path):
    data = SCENARIOS["several-archs"]()
    a = stagewise_avr_bars(data["stage_rows"], tmp_path / "a")
    b = stagewise_avr_bars(data["stage_rows"], tmp_path / "b")
    for pa, pb in zip(a, b):
        assert pa.read_bytes() == pb.read_bytes()


def test_write_all_figures_skips_shift_when_no_rows(tmp_path):
    data = SCENARIOS["one-arch-single-seed"]()
    data["shift_rows"] = []
    written = write_all_figures(tmp_path, **data)
    assert set(written) == ALL_NAMES - {"shift_consistency_curves"}
    for name, paths in written.items():
        assert [p.name for p in paths] == [f"{name}.png", f"{name}.pdf"]
        assert all(p.is_file() for p in paths)
    assert not list(tmp_path.glob("shift_consistency_curves.*"))
    assert _leftovers(tmp_path) == []


def test_write_all_figures_skips_scatter_without_avr(tmp_path, monkeypatch):
    data = SCENARIOS["one-arch-single-seed"]()
    for pts in data["points"].values():
        for p in pts:
            p["avr_mean"] = None
    # Only the skip logic is under test here: stub the drawing to keep the test fast.
    calls = []
    for name in ALL_NAMES:
        monkeypatch.setattr(figures_module, name, lambda *a, _n=name: calls.append(_n) or [Path(_n)])
    written = write_all_figures(tmp_path, **data)
    assert set(written) == set(calls) == ALL_NAMES - {"avr_bf1_scatter"}


def _old_files(folder: Path, name: str) -> dict[Path, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    old = {folder / f"{name}.png": b"old png", folder / f"{name}.pdf": b"old pdf"}
    for path, content in old.items():
        path.write_bytes(content)
    return old


def _assert_untouched(folder: Path, old: dict[Path, bytes]) -> None:
    for path, content in old.items():
        assert path.read_bytes() == content
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in old)  # no temp files


@pytest.mark.parametrize("fail_on", ["png", "pdf"])
def test_failed_save_keeps_previous_files(tmp_path, monkeypatch, fail_on):
    """A save that dies half-way (PNG, or PDF after a good PNG) leaves both old files, no temp file."""
    from matplotlib.figure import Figure

    old = _old_files(tmp_path, "stagewise_avr_bars")
    real_savefig = Figure.savefig

    def flaky_savefig(self, fname, *args, **kwargs):
        if kwargs.get("format") == fail_on:
            Path(fname).write_bytes(b"half a fig")
            raise OSError("disk full")
        return real_savefig(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", flaky_savefig)
    with pytest.raises(OSError, match="disk full"):
        stagewise_avr_bars(SCENARIOS["one-arch-single-seed"]()["stage_rows"], tmp_path)
    _assert_untouched(tmp_path, old)


def test_failed_rename_keeps_previous_files(tmp_path, monkeypatch):
    old = _old_files(tmp_path, "band_decomposition")

    def no_replace(src, dst):
        raise OSError("rename refused")

    monkeypatch.setattr(os, "replace", no_replace)
    with pytest.raises(OSError, match="rename refused"):
        band_decomposition(SCENARIOS["one-arch-single-seed"]()["band_rows"], tmp_path)
    _assert_untouched(tmp_path, old)
