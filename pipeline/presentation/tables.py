"""Any Arrow table as text (aligned table, markdown, CSV, JSON), and summary cells in human units."""
from __future__ import annotations

import io
import json

import pyarrow as pa

from ptreplay.schemas.units import human_bytes


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


def cell(value, column: str) -> str:
    """One summary value for people: *_bytes in binary units, *_pct to one decimal."""
    if value is None:
        return ""
    if column.endswith("_bytes"):
        return human_bytes(value)
    if column.endswith("_pct"):
        return f"{value:.1f}"
    return str(value)
