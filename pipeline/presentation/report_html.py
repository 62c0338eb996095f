"""`ptreplay report --format html`: one standalone page with the summary table, the top call
sites (when attributed) and the plots of the process with the largest potential savings."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from ptreplay.schemas.errors import PipelineError
from ptreplay.pipeline.presentation.plotdata import load
from ptreplay.pipeline.presentation.sites import top_sites


def html_report(human: pa.Table, path: Path, kernel: list[str] | None = None) -> str:
    """A standalone HTML page: the table (every string from a capture escaped) and the plots
    of the process with the largest potential savings when the output has a timeseries:
    interactive plotly figures (plotly.js inline, so the page works offline) when plotly is
    importable, else the PNG as a data URI."""
    import html
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>ptreplay report</title>"
            "<style>table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}</style>"
            f"</head><body><h1>ptreplay report: {html.escape(str(path))}</h1>"
            f"{_html_table(human)}{''.join(f'<p>{html.escape(line)}</p>' for line in kernel or [])}"
            f"{_html_sites(path)}{_html_plots(path)}</body></html>\n")


def _html_table(t: pa.Table) -> str:
    import html
    head = "".join(f"<th>{html.escape(c)}</th>" for c in t.column_names)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r.values()) + "</tr>"
                   for r in t.to_pylist())
    return f"<table><tr>{head}</tr>{rows}</table>"


def _html_sites(path: Path) -> str:
    """The top call sites (`ptreplay attribute` output) when the replay output has them."""
    if not any(Path(path).rglob("attribution.parquet")):
        return ""
    return ("<h2>Call sites leaving empty PTE tables behind (ptreplay attribute)</h2>"
            + _html_table(top_sites(Path(path), top=10)))


def _html_plots(path: Path) -> str:
    import base64
    import html
    import tempfile
    try:
        data = load(path)
    except PipelineError:
        return "<p>(no timeseries to plot)</p>"
    try:
        import plotly  # noqa: F401  (optional: the `plot` extra)
    except ImportError:
        pass
    else:
        from ptreplay.pipeline.presentation.html import fragment
        return fragment(data)
    from ptreplay.pipeline.presentation.png import write_png
    with tempfile.TemporaryDirectory() as d:
        png = write_png(data, Path(d) / "plot.png", force=True)
        encoded = base64.b64encode(png.read_bytes()).decode()
    note = f"<p class='note'>note: {html.escape(data.note)}</p>" if data.note else ""
    return f'{note}<img alt="VIRT, RES and VmPTE per policy" src="data:image/png;base64,{encoded}">'
