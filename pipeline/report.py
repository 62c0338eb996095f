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
from schemas import SUMMARY

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
    if not file.exists():
        raise PipelineError(f"{path}: no summary.parquet (run `ptreplay replay` first)")
    t = read_table(file, SUMMARY)
    # Largest potential savings first.
    return t.sort_by([("vmpte_saved_bytes", "descending"), ("trace_id", "ascending"), ("pid", "ascending")])


def report(path: Path, fmt: str = "table") -> str:
    """The summary sorted by potential savings; table/md in human units, json/csv raw."""
    t = load_summary(path)
    if fmt in ("json", "csv"):
        return format_table(t, fmt)
    human = pa.table({head: [_cell(v, col) for v in t.column(col).to_pylist()] for col, head in COLUMNS})
    return format_table(human, fmt)


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
