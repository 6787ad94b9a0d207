"""The audit's HTML report: self-contained, escaped, truncated long tables, atomic, software versions."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from specmamba.spectral.report import MAX_TABLE_ROWS, format_value, software_versions, write_report

SKIP_NOTE = "Pooled and partial statistics skipped: only one architecture."


def _figure_files(folder: Path, name: str) -> list[Path]:
    """A tiny PNG and a stand-in PDF, as figures.py would hand them over."""
    folder.mkdir(parents=True, exist_ok=True)
    png, pdf = folder / f"{name}.png", folder / f"{name}.pdf"
    Image.new("RGB", (4, 3), (200, 30, 30)).save(png)
    pdf.write_bytes(b"%PDF-1.4 stand-in")
    return [png, pdf]


def _report_inputs(folder: Path) -> dict:
    figures = {name: _figure_files(folder, name) for name in ("stagewise_avr_bars", "band_decomposition")}
    stage_rows = [
        dict(level="architecture", architecture="<script>alert(1)</script>", stage=s, measurable=s < 4,
             avr_mean=0.46004 if s < 4 else None, p=np.float64(2.5e-9))
        for s in (1, 2, 3, 4)
    ]  # fmt: skip
    return dict(
        title="Spectral audit <ISIC2018>",
        summary={"images": 519, "pooled r(AVR, BF1)": 0.010812, "best BF1": "swin_unet"},
        tables={
            "avr_stagewise_results_matched.csv": stage_rows,
            "shift_consistency_results.csv": [dict(shift=float(i), iou_mean=1 - i / 1e3) for i in range(250)],
        },
        figures=figures,
        notes=[SKIP_NOTE, "AVR & BF1 <n/a> for 2 images"],
        provenance={
            "data": "/data/isic2018",
            "split": "val",
            "n_images": 519,
            "checkpoints": [
                dict(
                    label="vmunet",
                    path="/runs/vmunet/checkpoint_best.pt",
                    architecture="vmunet",
                    epoch=99,
                    img_size=256,
                    sha256="0" * 64,
                )
            ],
            "software": software_versions(),
            "command": "specmamba audit --checkpoint A --data D",
            "created": "2025-01-01T00:00:00+00:00",
        },
    )


def test_report_is_self_contained_and_escaped(tmp_path):
    inputs = _report_inputs(tmp_path)
    before = {p.name for p in tmp_path.iterdir()}
    path = write_report(tmp_path / "report.html", **inputs)
    assert path == tmp_path / "report.html"
    assert {p.name for p in tmp_path.iterdir()} == before | {"report.html"}  # nothing else written
    text = path.read_text(encoding="utf-8")

    for title in inputs["tables"]:
        assert title in text
        assert f'href="{title}"' in text  # CSV linked by its relative name
    for name in inputs["figures"]:
        assert name in text
        assert f'href="{name}.pdf"' in text  # PDF linked relative to the report
    assert text.count('src="data:image/png;base64,') == len(inputs["figures"])
    # Self-contained: no external resources.
    assert "<link" not in text and "http://" not in text and "https://" not in text and "<script" not in text

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "Spectral audit &lt;ISIC2018&gt;" in text
    for note in (SKIP_NOTE, "AVR &amp; BF1 &lt;n/a&gt;"):
        assert note in text
    # Formatting: floats with 4 decimals, None as a dash, bools as yes/no, tiny p-values readable.
    assert "0.4600" in text and "0.0108" in text and "\u2014" in text and ">yes<" in text and ">no<" in text
    assert "2.5e-09" in text
    # Provenance with the software versions and the checkpoint table.
    assert torch.__version__ in text and np.__version__ in text
    assert "0" * 64 in text and "/runs/vmunet/checkpoint_best.pt" in text
    # The 250-row table is cut at 200 rows with a note on the full CSV.
    assert f"first {MAX_TABLE_ROWS} of 250 rows" in text
    assert '<td class="num">199.0000</td>' in text and '<td class="num">200.0000</td>' not in text


def test_report_into_folder_and_pdf_in_subfolder(tmp_path):
    figures = {"power_spectrum_grid": _figure_files(tmp_path / "figures", "power_spectrum_grid")}
    path = write_report(tmp_path, title="t", summary={}, tables={}, figures=figures, notes=[], provenance={})
    assert path == tmp_path / "report.html"
    text = path.read_text(encoding="utf-8")
    assert 'href="figures/power_spectrum_grid.pdf"' in text
    assert "No notes." in text


def test_failed_report_write_keeps_previous_report(tmp_path, monkeypatch):
    inputs = _report_inputs(tmp_path)
    target = tmp_path / "report.html"
    target.write_text("previous report", encoding="utf-8")
    before = sorted(p.name for p in tmp_path.iterdir())

    def no_replace(src, dst):
        raise OSError("rename refused")

    monkeypatch.setattr(os, "replace", no_replace)
    with pytest.raises(OSError, match="rename refused"):
        write_report(target, **inputs)
    assert target.read_text(encoding="utf-8") == "previous report"
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no temporary file left


def test_format_value():
    assert format_value(None) == "\u2014"
    assert format_value(True) == "yes" and format_value(np.bool_(False)) == "no"
    assert format_value(0.123456) == "0.1235" and format_value(np.float32(0.5)) == "0.5000"
    assert format_value(0.0) == "0.0000" and format_value(3.2e-7) == "3.2e-07"
    assert format_value(7) == "7" and format_value(np.int64(7)) == "7"
    assert format_value(float("nan")) == "NaN"


def test_software_versions():
    versions = software_versions()
    assert versions["torch"] == torch.__version__
    assert versions["numpy"] == np.__version__
    for key in ("python", "specmamba", "scipy", "matplotlib", "monai", "numba", "platform"):
        assert isinstance(versions[key], str) and versions[key]
    assert ("cuda_device" in versions) == torch.cuda.is_available()
