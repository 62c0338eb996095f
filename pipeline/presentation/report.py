"""Terminal report of a replay output: savings per process and policy.

Numbers come straight from summary.parquet (the same values `ptreplay sql`
and the DuckDB views see), shown in human units; below the table, for every
process with kernel truth (truth.parquet, carried from `ptreplay record` by
ingest and replay), the kernel's own final VmPTE next to the model's.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from ptreplay.schemas import SUMMARY, conform
from ptreplay.schemas.errors import PipelineError, UsageError
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


BY = {"process": None, "comm": "comm", "host": "host", "kernel": "kernel_release", "rank": None}


def report(path: Path, fmt: str = "table", by: str | None = None) -> str:
    """The summary sorted by potential savings; table/md/html in human units, json/csv raw.

    `by` rolls processes up per command, host or kernel (summing bytes and counts)
    through the DuckDB views, so the numbers are the summary's own.  A fleet output
    (pipeline.presentation.fleet_report) shows its host and command rankings unless
    `by` is 'process' or 'kernel'; ``rank`` gives one row per process ranked by what each
    policy saves (presentation/ranking.py), the default for a host recording (`record -a`).
    """
    from ptreplay.pipeline.presentation.census_report import census_report, is_census
    from ptreplay.pipeline.presentation.fleet_report import fleet_report, is_fleet
    if by in (None, "host", "comm") and is_fleet(Path(path)):
        return fleet_report(Path(path), fmt, by)
    if is_census(Path(path)):     # a `ptreplay census` output: processes ranked by page-table waste
        if fmt == "html" or by not in (None, "process"):
            raise UsageError("report: a census takes --format table, md, json or csv and no --by")
        return census_report(Path(path), fmt)
    if by is None or by == "rank":
        load_summary(path)        # the one-line refusal of a directory without a replay output
        from ptreplay.pipeline.presentation.ranking import is_host, ranking_report
        if by == "rank" or is_host(Path(path)):
            if fmt == "html":
                raise UsageError("report: --by rank (the default for a host recording) takes --format table, md, "
                                 "json or csv; for html add --by process")
            return ranking_report(Path(path), fmt)
        by = "process"
    t = load_summary(path) if by == "process" else rollup(path, by)
    if fmt in ("json", "csv"):
        return format_table(t, fmt)
    columns = COLUMNS if by == "process" else [(c, c) for c in t.column_names]
    human = pa.table({head: [cell(v, col) for v in t.column(col).to_pylist()] for col, head in columns})
    kernel = kernel_lines(Path(path)) if by == "process" else []
    if fmt == "html":
        from ptreplay.pipeline.presentation.report_html import html_report
        return html_report(human, Path(path), kernel)
    text = format_table(human, fmt)
    if kernel:   # below the table, after a blank line (markdown: a paragraph each)
        text += "\n" + ("\n\n" if fmt == "md" else "\n").join(kernel) + "\n"
    return text


def kernel_lines(path: Path) -> list[str]:
    """One line per replayed process with kernel truth: the last VmPTE the kernel reported
    (/proc/PID/status, sampled while recording) next to the model's final VmPTE per policy,
    e.g. 'pid 6306: kernel (CONFIG_PT_RECLAIM=y) final VmPTE 64 kB; model: none 6064 kB, ...'
    (the trace id leads when the output holds several traces)."""
    from ptreplay.pipeline.warehouse import connect, execute, files_of
    if not files_of(path, "truth"):
        return []
    con = connect(path)
    kernel = execute(con, """
        SELECT t.trace_id, t.pid, last(t.vmpte_bytes ORDER BY t.t_ns) AS kernel_bytes, any_value(m.pt_reclaim) AS pt_reclaim
        FROM truth t LEFT JOIN metadata m USING (trace_id) GROUP BY ALL ORDER BY t.trace_id, t.pid""").to_pylist()
    model: dict[tuple, list[str]] = {}
    for r in execute(con, "SELECT trace_id, pid, policy, final_vmpte_bytes FROM summary").to_pylist():
        model.setdefault((r["trace_id"], r["pid"]), []).append(f"{r['policy']} {r['final_vmpte_bytes'] // 1024} kB")
    kernel = [k for k in kernel if (k["trace_id"], k["pid"]) in model]
    several = len({k["trace_id"] for k in kernel}) > 1
    lines = []
    for k in kernel:
        who = f"{k['trace_id']} pid {k['pid']}" if several else f"pid {k['pid']}"
        config = f" (CONFIG_PT_RECLAIM={k['pt_reclaim']})" if k["pt_reclaim"] in ("y", "n") else ""
        lines.append(f"{who}: kernel{config} final VmPTE {k['kernel_bytes'] // 1024} kB; "
                     f"model: {', '.join(model[k['trace_id'], k['pid']])}")
    return lines


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
