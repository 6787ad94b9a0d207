"""The HTML report of the spectral audit (REFERENCE.md section 3): one self-contained ``report.html``.

Headline numbers first, then the figures (PNG embedded as base64 data URIs, PDF linked by relative
name), the result tables (linked to their CSV files), notes and provenance (data, split, checkpoints
with their sha256, software versions, command). The page needs no other file and no network: CSS is
inline. Everything taken from data (labels, paths, notes) is HTML-escaped. The file is written
atomically, so an interrupted run leaves the previous report intact.
"""

from __future__ import annotations

import base64
import html
import math
import os
import platform
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..atomic import atomic_write_text

__all__ = ["MAX_TABLE_ROWS", "format_value", "software_versions", "write_report"]

MAX_TABLE_ROWS = 200  # longer tables are cut in the page; the CSV keeps every row
MISSING = "\u2014"  # em dash for None / not measurable

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2rem auto;
       max-width: 1200px; padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; border-bottom: 2px solid #444; padding-bottom: .3rem; }
h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #bbb; }
h3 { font-size: 1.05rem; margin-top: 1.5rem; }
nav a { margin-right: 1rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .85rem; }
th, td { border: 1px solid #ccc; padding: .2rem .5rem; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.scroll { overflow-x: auto; }
figure { margin: 1rem 0 2rem; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: .9rem; color: #444; }
.note { color: #8a4b00; font-size: .85rem; }
dl { margin: .2rem 0; }
dt { font-weight: 600; margin-top: .3rem; }
dd { margin-left: 1.2rem; }
code { font-size: .85rem; }
"""


# ---------------------------------------------------------------------------------------------- values
def _plain(value: Any) -> Any:
    """numpy scalars (and 0-d arrays) as their Python value; everything else unchanged."""
    if type(value).__module__ == "numpy" and hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()
    return value


def format_value(value: Any) -> str:
    """Display text of one cell: None -> em dash, bool -> yes/no, floats with 4 decimals.

    Floats print with 4 decimals (0.4600); magnitudes below 1e-3 or from 1e6 on print with 4
    significant digits (2.345e-08) so that small p-values do not collapse to 0.0000.
    """
    value = _plain(value)
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value == 0 or 1e-3 <= abs(value) < 1e6:
            return f"{value:.4f}"
        return f"{value:.4g}"
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)


def _is_number(value: Any) -> bool:
    value = _plain(value)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cell(value: Any) -> str:
    cls = ' class="num"' if _is_number(value) else ""
    return f"<td{cls}>{html.escape(format_value(value))}</td>"


def _anchor(prefix: str, text: str, used: set[str]) -> str:
    """A unique, URL-safe id for a section heading."""
    base = f"{prefix}-" + (re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "item")
    anchor, i = base, 2
    while anchor in used:
        anchor, i = f"{base}-{i}", i + 1
    used.add(anchor)
    return anchor


def _href(target: str | Path, base: Path) -> str:
    """Relative, URL-quoted link from the report's folder to ``target`` (HTML-escaped for attributes)."""
    target = Path(target)
    try:  # relative paths are taken as relative to the working directory, like open() does
        rel = os.path.relpath(target.resolve(), base.resolve())
    except ValueError:  # other drive on Windows: fall back to the file name
        rel = target.name
    return html.escape(quote(Path(rel).as_posix()), quote=True)


# ---------------------------------------------------------------------------------------------- blocks
def _rows_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """An HTML table of dict rows; columns default to the keys of the first row, in order."""
    if not rows:
        return "<p><em>(no rows)</em></p>"
    cols = list(columns) if columns is not None else list(rows[0].keys())
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "\n".join("<tr>" + "".join(_cell(r.get(c)) for c in cols) + "</tr>" for r in rows)
    return _table_html(head, body)


def _table_html(head: str, body: str) -> str:
    table = f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table>"
    return f'<div class="scroll">{table}</div>'


def _render(value: Any) -> str:
    """Generic rendering for provenance: dicts as definition lists, lists of dicts as tables."""
    value = _plain(value)
    if isinstance(value, Mapping):
        if not value:
            return MISSING
        items = "".join(f"<dt>{html.escape(str(k))}</dt><dd>{_render(v)}</dd>" for k, v in value.items())
        return f"<dl>{items}</dl>"
    if isinstance(value, (list, tuple)):
        if not value:
            return MISSING
        if all(isinstance(v, Mapping) for v in value):
            columns: list[str] = []  # union of keys in order of first appearance
            for v in value:
                columns += [str(k) for k in v if str(k) not in columns]
            head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
            by_name = [{str(k): x for k, x in v.items()} for v in value]
            body = "\n".join(
                "<tr>" + "".join(_nested_cell(v.get(c)) for c in columns) + "</tr>" for v in by_name
            )
            return _table_html(head, body)
        return "<ul>" + "".join(f"<li>{_render(v)}</li>" for v in value) + "</ul>"
    return html.escape(format_value(value))


def _nested_cell(value: Any) -> str:
    if isinstance(value, (Mapping, list, tuple)):
        return f"<td>{_render(value)}</td>"
    return _cell(value)


def _summary_block(summary: Mapping[str, Any]) -> str:
    if not summary:
        return "<p><em>No headline numbers.</em></p>"
    rows = "\n".join(f"<tr><th>{html.escape(str(k))}</th>{_nested_cell(v)}</tr>" for k, v in summary.items())
    return f"<table>\n{rows}\n</table>"


def _figures_block(figures: Mapping[str, Sequence[str | Path]], base: Path) -> str:
    if not figures:
        return "<p><em>No figures.</em></p>"
    parts = []
    for name, paths in figures.items():
        paths = [Path(p) for p in paths]
        pngs = [p for p in paths if p.suffix.lower() == ".png"]
        others = [p for p in paths if p.suffix.lower() != ".png"]
        body = []
        for png in pngs:
            if png.is_file():
                data = base64.b64encode(png.read_bytes()).decode("ascii")
                body.append(f'<img src="data:image/png;base64,{data}" alt="{html.escape(name, quote=True)}">')
            else:
                body.append(f'<p class="note">PNG not found: {html.escape(str(png))}</p>')
        links = " ".join(
            f'<a href="{_href(p, base)}">{html.escape(p.suffix.lstrip(".").upper() or p.name)}</a>'
            for p in others  # the PNG is already embedded
        )
        parts.append(
            f"<figure>\n{''.join(body)}\n<figcaption><strong>{html.escape(name)}</strong>"
            + (f" &middot; {links}" if links else "")
            + "</figcaption>\n</figure>"
        )
    return "\n".join(parts)


def _tables_block(tables: Mapping[str, Sequence[Mapping[str, Any]]], used: set[str]) -> str:
    if not tables:
        return "<p><em>No tables.</em></p>"
    parts = []
    for title, rows in tables.items():
        rows = list(rows)
        anchor = _anchor("table", title, used)
        head = f'<h3 id="{anchor}">{html.escape(title)}</h3>'
        is_csv = title.lower().endswith(".csv")
        if is_csv:
            href = html.escape(quote(title), quote=True)
            head += f'\n<p>CSV: <a href="{href}">{html.escape(title)}</a> ({len(rows)} rows)</p>'
        shown = rows[:MAX_TABLE_ROWS]
        note = ""
        if len(rows) > MAX_TABLE_ROWS:
            where = f"; the CSV file {html.escape(title)} has all {len(rows)} rows" if is_csv else ""
            note = f"Truncated: showing the first {MAX_TABLE_ROWS} of {len(rows)} rows{where}."
            note = f'<p class="note">{note}</p>'
        columns = list(rows[0].keys()) if rows else None
        parts.append(f"{head}\n{note}\n{_rows_table(shown, columns)}")
    return "\n".join(parts)


def _notes_block(notes: Sequence[str]) -> str:
    if not notes:
        return "<p><em>No notes.</em></p>"
    return "<ul>\n" + "\n".join(f"<li>{html.escape(str(n))}</li>" for n in notes) + "\n</ul>"


# ---------------------------------------------------------------------------------------------- public
def write_report(
    path: str | Path,
    *,
    title: str,
    summary: Mapping[str, Any],
    tables: Mapping[str, Sequence[Mapping[str, Any]]],
    figures: Mapping[str, Sequence[str | Path]],
    notes: Sequence[str],
    provenance: Mapping[str, Any],
) -> Path:
    """Write the self-contained audit report to ``path`` (a folder means ``path/report.html``).

    ``summary``: label -> headline number or text. ``tables``: title -> rows (dicts; the first row's
    keys are the columns); a title ending in ".csv" is linked to that file beside the report.
    ``figures``: name -> paths from ``figures.py``; the PNG is embedded, the others (PDF) linked by
    their path relative to the report. ``notes``: free text lines. ``provenance``: any nesting of
    dicts, lists and scalars (data, split, n_images, checkpoints, software, command, created).
    Nothing but the report file is written. Returns the report path.
    """
    target = Path(path)
    if target.is_dir():
        target = target / "report.html"
    base = target.parent
    used: set[str] = set()
    sections = [
        ("summary", "Summary", _summary_block(summary)),
        ("figures", "Figures", _figures_block(figures, base)),
        ("tables", "Tables", _tables_block(tables, used)),
        ("notes", "Notes", _notes_block(notes)),
        ("provenance", "Provenance", _render(dict(provenance)) if provenance else "<p><em>None.</em></p>"),
    ]
    nav = " ".join(f'<a href="#{sid}">{name}</a>' for sid, name, _ in sections)
    body = "\n".join(
        f'<section id="{sid}">\n<h2>{name}</h2>\n{block}\n</section>' for sid, name, block in sections
    )
    page = (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n<nav>{nav}</nav>\n{body}\n</body>\n</html>\n"
    )
    atomic_write_text(target, page)
    return target


def _module_version(module: str) -> str:
    """``module.__version__`` if the module imports, else "not installed"."""
    import importlib

    try:
        mod = importlib.import_module(module)
    except Exception:  # a broken optional install (e.g. built for another torch) is not usable either
        return "not installed"
    return str(getattr(mod, "__version__", "unknown"))


def software_versions() -> dict[str, str]:
    """Versions of Python, specmamba and its scientific stack, the platform, and the CUDA device if any."""
    import torch

    from .. import __version__

    versions = {
        "python": platform.python_version(),
        "specmamba": __version__,
        "torch": str(torch.__version__),
        "numpy": _module_version("numpy"),
        "scipy": _module_version("scipy"),
        "matplotlib": _module_version("matplotlib"),
        "monai": _module_version("monai"),
        "numba": _module_version("numba"),
        "platform": platform.platform(),
    }
    if torch.cuda.is_available():
        versions["cuda_device"] = torch.cuda.get_device_name(0)
        versions["cuda"] = str(torch.version.cuda)
    return versions
