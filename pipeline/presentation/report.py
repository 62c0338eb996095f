"""Terminal report of a replay output: savings per process and policy.

Numbers come straight from summary.parquet (the same values `ptreplay sql`
and the DuckDB views see), shown in human units.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from ptreplay.schemas import SUMMARY, conform
from ptreplay.schemas.errors import PipelineError
from ptreplay.schemas.parquet_io import read_table
from ptreplay.pipeline.presentation.tables import cell, format_table

COLUMNS = [
    ("trace_id", "trace"), ("pid", "pid"), ("comm", "comm"), ("policy", "policy"),
    ("final_virt_bytes", "VIRT"), ("final_rss_bytes", "RES"), ("final_vmpte_bytes", "VmPTE"),
    ("peak_vmpte_bytes", "peak VmPTE"), ("ideal_pte_bytes", "ideal"), ("vmpte_saved_bytes", "saved"),
    ("vmpte_saved_pct", "saved %"), ("pte_tables_freed", "tables freed"), ("refaults", "refaults"),
]


def load_summary(path: Path) -> pa.Table:
    path = Path(path)
    file = path / "summary.parquet" if path.is_dir() else path
    if path.is_dir() and not file.exists() and any(path.rglob("summary.parquet")):
        from ptreplay.pipeline.warehouse import connect, execute  # a batch tree: every partition's summary
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
    human = pa.table({head: [cell(v, col) for v in t.column(col).to_pylist()] for col, head in columns})
    if fmt == "html":
        from ptreplay.pipeline.presentation.report_html import html_report
        return html_report(human, Path(path))
    return format_table(human, fmt)


def rollup(path: Path, by: str) -> pa.Table:
    """Summary rows summed per `by` group and policy, largest savings first."""
    from ptreplay.pipeline.warehouse import connect, execute
    col = BY[by]
    return execute(connect(Path(path)), f"""
        SELECT {col} AS {by}, policy, count(*) AS processes,
               sum(final_vmpte_bytes)::BIGINT AS final_vmpte_bytes, sum(peak_vmpte_bytes)::BIGINT AS peak_vmpte_bytes,
               sum(ideal_pte_bytes)::BIGINT AS ideal_pte_bytes, sum(vmpte_saved_bytes)::BIGINT AS vmpte_saved_bytes,
               sum(pte_tables_freed)::BIGINT AS pte_tables_freed, sum(refaults)::BIGINT AS refaults
        FROM _summary_with_capture GROUP BY ALL ORDER BY vmpte_saved_bytes DESC, {by}, policy""")
