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
    t = load_summary(path)
    rows = t.to_pylist()
    if fmt == "json":
        return json.dumps(rows, indent=1) + "\n"
    if fmt == "csv":
        buf = io.BytesIO()
        import pyarrow.csv as pacsv
        pacsv.write_csv(t, buf)
        return buf.getvalue().decode()
    cells = [[_cell(r[c], c) for c, _ in COLUMNS] for r in rows]
    heads = [h for _, h in COLUMNS]
    if fmt == "md":
        lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
        lines += ["| " + " | ".join(c) + " |" for c in cells]
        return "\n".join(lines) + "\n"
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(heads)]
    fmt_row = lambda cs: "  ".join(c.rjust(w) if i >= 4 else c.ljust(w) for i, (c, w) in enumerate(zip(cs, widths)))
    return "\n".join([fmt_row(heads)] + [fmt_row(c) for c in cells]) + "\n"


def _cell(value, column: str) -> str:
    if value is None:
        return ""
    if column.endswith("_bytes"):
        return human_bytes(value)
    if column.endswith("_pct"):
        return f"{value:.1f}"
    return str(value)
