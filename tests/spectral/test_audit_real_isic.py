"""The audit on real ISIC 2017 pairs at their original 256x256 (skipped without ../shared/data)."""

from __future__ import annotations

import csv

import pytest

from specmamba.spectral.audit import AuditSettings, run_audit


@pytest.mark.slow
def test_audit_of_two_architectures_on_real_pairs(tmp_path, isic_subset, train_tiny, one_torch_thread):
    subset = isic_subset(tmp_path / "isic20", 20)
    checkpoints = [
        train_tiny(subset, tmp_path / m, m, img_size=64, batch_size=8) for m in ("test_unet", "test_vmunet")
    ]
    summary = run_audit(
        checkpoints,
        subset,
        tmp_path / "audit",
        device="cpu",
        settings=AuditSettings(shifts=(1.0,), directions=("horizontal",), n_boot=50),
        progress=False,
    )
    assert summary["n_images"] == 4  # the seeded 20% of 20 pairs
    with open(tmp_path / "audit" / "per_image.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8
    for row in rows:
        assert 0.0 <= float(row["dice"]) <= 1.0 and 0.0 <= float(row["bf1"]) <= 1.0
        assert 0.0 < float(row["avr_s1"]) < 1.0
    # stage maps of test_vmunet at 64 px: 16, 8, 4, 2 -> the last is not measurable
    assert all(r["avr_s4"] == "" for r in rows if r["architecture"] == "test_vmunet")
    assert (tmp_path / "audit" / "report.html").is_file()
