"""Report of a fleet output (`ptreplay batch --fleet/--manifest`): hosts and commands ranked.

Numbers come from the ``fleet_by_host`` and ``fleet_by_comm`` views (schemas/sql/60_fleet.sql),
turned from one row per (group, policy) into one row per group: the census's VmPTE and waste
now (waste = VmPTE - needed: what an ideal policy would give back at once), then what each
replayed policy would have saved at the traces' ends.  Ranked by waste now, then by the
largest replay saving.
"""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from ptreplay.schemas.errors import UsageError
from ptreplay.pipeline.presentation.tables import cell, format_table

TOP = 20    # rows per ranking in table and md (json and csv have them all)


def is_fleet(path: Path) -> bool:
    """A batch tree with host=H partitions, or one holding both replay summaries and censuses."""
    path = Path(path)
    if not path.is_dir():
        return False
    if any(p.is_dir() and p.name.startswith("host=") for p in path.iterdir()):
        return True
    return any(path.rglob("summary.parquet")) and any(path.rglob("census.parquet"))


def ranking(con, by: str) -> pa.Table:
    """One row per host (`by` = 'host') or command ('comm'), most waste now first."""
    from ptreplay.pipeline.warehouse import execute
    rows = execute(con, f"SELECT * FROM fleet_by_{by}").to_pylist()
    saved: dict[str, int] = {}
    for r in rows:
        if r["policy"] not in (None, "none"):
            saved[r["policy"]] = saved.get(r["policy"], 0) + (r["saved_bytes"] or 0)
    policies = sorted(saved, key=lambda p: (-saved[p], p))
    groups: dict[str, dict] = {}
    for r in rows:
        g = groups.setdefault(r[by], {
            by: r[by], **({"hosts": r["hosts"]} if by == "comm" else {}), "traces": r["traces"],
            "processes": r["processes"], "census_processes": r["census_processes"],
            "vmpte_now_bytes": r["census_vmpte_bytes"], "waste_now_bytes": r["census_waste_bytes"],
            "waste_now_pct": r["census_waste_pct"], "traced_none_vmpte_bytes": r["none_vmpte_bytes"],
            **{f"saved_{p}_bytes": None for p in policies}})
        if r["policy"] in saved:
            g[f"saved_{r['policy']}_bytes"] = r["saved_bytes"]
    best = lambda g: max([g[f"saved_{p}_bytes"] or 0 for p in policies] or [0])  # noqa: E731
    ordered = sorted(groups.values(), key=lambda g: (-(g["waste_now_bytes"] or 0), -best(g), str(g[by])))
    if not ordered:
        return pa.table({"rank": pa.array([], pa.int64()), by: pa.array([], pa.string())})
    return pa.Table.from_pylist([{"rank": n, **g} for n, g in enumerate(ordered, start=1)])


_HEADS = {"census_processes": "censused", "vmpte_now_bytes": "VmPTE now", "waste_now_bytes": "waste now",
          "waste_now_pct": "waste %", "traced_none_vmpte_bytes": "traced VmPTE (none)"}


def _human(t: pa.Table, fmt: str) -> str:
    t = t.slice(0, TOP)
    cols = {}
    for name in t.column_names:
        head = _HEADS.get(name) or (f"saved {name[6:-6]}" if name.startswith("saved_") else name)
        cols[head] = [cell(v, name) for v in t.column(name).to_pylist()]
    return format_table(pa.table(cols), fmt)


def fleet_report(path: Path, fmt: str = "table", by: str | None = None) -> str:
    """Both rankings (table, md, json), or the one `by` names (any format but html)."""
    from ptreplay.pipeline.warehouse import connect
    if fmt == "html":
        raise UsageError("report: a fleet output takes --format table, md, json or csv")
    if by not in (None, "host", "comm"):
        raise UsageError(f"report: a fleet output ranks hosts and commands: --by host or --by comm, not --by {by}")
    if fmt == "csv" and by is None:
        raise UsageError("report: --format csv of a fleet output needs --by host or --by comm (one table)")
    con = connect(Path(path))
    wanted = [by] if by else ["host", "comm"]
    tables = {b: ranking(con, b) for b in wanted}
    if fmt in ("json", "csv"):
        if by:
            return format_table(tables[by], fmt)
        return json.dumps({"hosts": tables["host"].to_pylist(), "commands": tables["comm"].to_pylist()},
                          indent=1, default=str) + "\n"
    titles = {"host": "hosts, most page-table waste now first (census: VmPTE - needed tables; saved: what "
                      "each policy would have saved at the traces' ends)",
              "comm": "commands across hosts, same order"}
    parts = []
    for b in wanted:
        t = tables[b]
        more = f" (top {TOP} of {t.num_rows})" if t.num_rows > TOP else ""
        parts.append(("## " if fmt == "md" else "") + titles[b] + more + "\n\n" + _human(t, fmt))
    return "\n".join(parts)
