"""Terminal report of a replay output: savings per process and policy.

Numbers come straight from summary.parquet (the same values `ptreplay sql`
and the DuckDB views see), shown in human units.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa

from pipeline.errors import PipelineError
from pipeline.parquet_io import read_table
from schemas import SUMMARY, conform

COLUMNS = [
    ("trace_id", "trace"), ("pid", "pid"), ("comm", "comm"), ("policy", "policy"),
    ("final_virt_bytes", "VIRT"), ("final_rss_bytes", "RES"), ("final_vmpte_bytes", "VmPTE"),
    ("peak_vmpte_bytes", "peak VmPTE"), ("ideal_pte_bytes", "ideal"), ("vmpte_saved_bytes", "saved"),
    ("vmpte_saved_pct", "saved %"), ("pte_tables_freed", "tables freed"), ("refaults", "refaults"),
]


def human_bytes(n: float) -> str:
    """1234567 -> '1.18M' (binary units, like top's VIRT/RES columns)."""
    n = float(n)
    for unit in ("", "k", "M", "G", "T", "P"):
        if abs(n) < 1024 or unit == "P":
            return f"{n:.0f}{unit}" if unit == "" else f"{n:.3g}{unit}"
        n /= 1024
    return f"{n}"


def load_summary(path: Path) -> pa.Table:
    path = Path(path)
    file = path / "summary.parquet" if path.is_dir() else path
    if path.is_dir() and not file.exists() and any(path.rglob("summary.parquet")):
        from pipeline.warehouse import connect, execute  # a batch tree: every partition's summary
        t = conform(execute(connect(path), "SELECT * FROM summary"), SUMMARY, str(path))
    elif not file.exists():
        raise PipelineError(f"{path}: no summary.parquet (run `ptreplay replay` first)")
    else:
        t = read_table(file, SUMMARY)
    # Largest potential savings first.
    return t.sort_by([("vmpte_saved_bytes", "descending"), ("trace_id", "ascending"), ("pid", "ascending")])


BY = {"process": None, "comm": "comm", "host": "host", "kernel": "kernel_release"}


def report(path: Path, fmt: str = "table", by: str = "process") -> str:
    """The summary sorted by potential savings; table/md/html in human units, json/csv raw.

    `by` rolls processes up per command, host or kernel (summing bytes and counts)
    through the DuckDB views, so the numbers are the summary's own.
    """
    t = load_summary(path) if by == "process" else rollup(path, by)
    if fmt in ("json", "csv"):
        return format_table(t, fmt)
    columns = COLUMNS if by == "process" else [(c, c) for c in t.column_names]
    human = pa.table({head: [_cell(v, col) for v in t.column(col).to_pylist()] for col, head in columns})
    if fmt == "html":
        return html_report(human, Path(path))
    return format_table(human, fmt)


def rollup(path: Path, by: str) -> pa.Table:
    """Summary rows summed per `by` group and policy, largest savings first."""
    from pipeline.warehouse import connect, execute
    col = BY[by]
    return execute(connect(Path(path)), f"""
        SELECT {col} AS {by}, policy, count(*) AS processes,
               sum(final_vmpte_bytes)::BIGINT AS final_vmpte_bytes, sum(peak_vmpte_bytes)::BIGINT AS peak_vmpte_bytes,
               sum(ideal_pte_bytes)::BIGINT AS ideal_pte_bytes, sum(vmpte_saved_bytes)::BIGINT AS vmpte_saved_bytes,
               sum(pte_tables_freed)::BIGINT AS pte_tables_freed, sum(refaults)::BIGINT AS refaults
        FROM _summary_with_capture GROUP BY ALL ORDER BY vmpte_saved_bytes DESC, {by}, policy""")


def html_report(human: pa.Table, path: Path) -> str:
    """A standalone HTML page: the table (every string from a capture escaped) and the plots
    of the process with the largest potential savings when the output has a timeseries:
    interactive plotly figures (plotly.js inline, so the page works offline) when plotly is
    importable, else the PNG as a data URI."""
    import html
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>ptreplay report</title>"
            "<style>table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}</style>"
            f"</head><body><h1>ptreplay report: {html.escape(str(path))}</h1>"
            f"{_html_table(human)}{_html_sites(path)}{_html_plots(path)}</body></html>\n")


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
    from pipeline.attribution import top_sites
    return ("<h2>Call sites leaving empty PTE tables behind (ptreplay attribute)</h2>"
            + _html_table(top_sites(Path(path), top=10)))


def _html_plots(path: Path) -> str:
    import base64
    import html
    import tempfile
    from pipeline.plot import load, write_png
    try:
        data = load(path)
    except PipelineError:
        return "<p>(no timeseries to plot)</p>"
    try:
        import plotly  # noqa: F401  (optional: the `notebooks` extra)
    except ImportError:
        pass
    else:
        from pipeline.plot_html import fragment
        return fragment(data)
    with tempfile.TemporaryDirectory() as d:
        png = write_png(data, Path(d) / "plot.png", force=True)
        encoded = base64.b64encode(png.read_bytes()).decode()
    note = f"<p class='note'>note: {html.escape(data.note)}</p>" if data.note else ""
    return f'{note}<img alt="VIRT, RES and VmPTE per policy" src="data:image/png;base64,{encoded}">'


def format_table(t: pa.Table, fmt: str = "table") -> str:
    """Any Arrow table as text: aligned table, markdown, CSV or JSON (raw values, no unit scaling)."""
    if fmt == "json":
        return json.dumps(t.to_pylist(), indent=1, default=str) + "\n"
    if fmt == "csv":
        import pyarrow.csv as pacsv
        buf = io.BytesIO()
        pacsv.write_csv(t, buf)
        return buf.getvalue().decode()
    heads = t.column_names
    cells = [["" if v is None else str(v) for v in row.values()] for row in t.to_pylist()]
    if fmt == "md":
        return "\n".join(["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
                         + ["| " + " | ".join(c) + " |" for c in cells]) + "\n"
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(heads)]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in [heads] + cells) + "\n"


def _cell(value, column: str) -> str:
    if value is None:
        return ""
    if column.endswith("_bytes"):
        return human_bytes(value)
    if column.endswith("_pct"):
        return f"{value:.1f}"
    return str(value)
