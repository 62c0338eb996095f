"""`ptreplay report --by rank`: one row per process, ranked by what each policy would save.

The default report of a host recording (`record -a`, hundreds of processes): rows from the
``process_ranking`` view (schemas/sql/70_ranking.sql), one column of savings per policy, the
kernel's final VmPTE beside the model's where the truth has it; below the table one line per
policy (its total saving and the process it helps most) and one on the model's agreement with
the kernel (final VmPTE within max(1%, 8 kB) under ``pt_reclaim``), plus the tracer's losses.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from ptreplay.pipeline.presentation.tables import cell, format_table

KERNEL_TOLERANCE = (0.01, 8192)     # final VmPTE within max(1% of the kernel's, 8 kB)
POLICY_ORDER = ("pt_reclaim", "refcount", "scan", "delayed", "all_levels")   # columns in this order
HEADS = {"trace_id": "trace", "none_vmpte_bytes": "VmPTE none", "kernel_vmpte_bytes": "kernel VmPTE",
         "pt_reclaim_vmpte_bytes": "VmPTE pt_reclaim", "ideal_pte_bytes": "ideal"}


def is_host(path: Path) -> bool:
    """Does the output hold a host recording (`ptreplay record -a`)?"""
    from ptreplay.pipeline.warehouse import connect, execute
    t = execute(connect(Path(path)), "SELECT count(*) AS n FROM metadata WHERE command_line LIKE 'ptreplay record -a%'")
    return t.column("n")[0].as_py() > 0


def within(model: int, kernel: int) -> bool:
    return abs(model - kernel) <= max(KERNEL_TOLERANCE[0] * kernel, KERNEL_TOLERANCE[1])


def rank_table(path: Path) -> tuple[pa.Table, list[str]]:
    """(one row per process ranked by its largest saving under any policy, lines for below it)."""
    from ptreplay.pipeline.warehouse import connect, execute
    con = connect(Path(path))
    rows = execute(con, """SELECT trace_id, policy, pid, comm, none_vmpte_bytes, ideal_pte_bytes, saved_bytes,
                                  policy_vmpte_bytes, policy_rank, saved_share_pct, trace_saved_bytes
                           FROM process_ranking ORDER BY trace_id, pid, policy""").to_pylist()
    kernel = {(r["trace_id"], r["pid"]): r["kernel"] for r in execute(con, """
        SELECT trace_id, pid, last(vmpte_bytes ORDER BY t_ns) AS kernel FROM truth GROUP BY ALL""").to_pylist()}
    policies = sorted((p for p in dict.fromkeys(r["policy"] for r in rows) if p != "none"), key=_policy_key)
    procs: dict[tuple, dict] = {}
    for r in rows:
        key = (r["trace_id"], r["pid"])
        p = procs.setdefault(key, {"trace_id": r["trace_id"], "pid": r["pid"], "comm": r["comm"],
                                   "none_vmpte_bytes": r["none_vmpte_bytes"], "ideal_pte_bytes": r["ideal_pte_bytes"],
                                   "kernel_vmpte_bytes": kernel.get(key)})
        if r["policy"] == "pt_reclaim":
            p["pt_reclaim_vmpte_bytes"] = r["policy_vmpte_bytes"]
        if r["policy"] != "none":
            p[f"saved_{r['policy']}_bytes"] = r["saved_bytes"]
    ordered = sorted(procs.values(), key=lambda p: (-max([p.get(f"saved_{q}_bytes", 0) for q in policies] or [0]),
                                                    -(p["none_vmpte_bytes"] or 0), p["trace_id"], p["pid"]))
    for i, p in enumerate(ordered, 1):
        p["rank"] = i
    names = (["rank", "trace_id", "pid", "comm", "none_vmpte_bytes", "kernel_vmpte_bytes"]
             + (["pt_reclaim_vmpte_bytes"] if "pt_reclaim" in policies else [])
             + [f"saved_{q}_bytes" for q in policies] + ["ideal_pte_bytes"])
    table = pa.table({n: [p.get(n) for p in ordered] for n in names})
    return table, _lines(rows, policies, ordered) + _lost_lines(Path(path))


def _policy_key(spec: str) -> tuple:
    base = spec.split(":")[0]
    return (POLICY_ORDER.index(base) if base in POLICY_ORDER else len(POLICY_ORDER), spec)


def _head(name: str) -> str:
    if name.startswith("saved_") and name.endswith("_bytes"):
        return "saved " + name[len("saved_"):-len("_bytes")]
    return HEADS.get(name, name)


def _lines(rows: list[dict], policies: list[str], procs: list[dict]) -> list[str]:
    lines = []
    for q in policies:
        mine = [r for r in rows if r["policy"] == q]
        best = min(mine, key=lambda r: (r["policy_rank"], r["trace_id"]))
        total = sum(r["saved_bytes"] for r in mine)
        lines.append(f"{q}: saves {cell(total, '_bytes')} over {len({(r['trace_id'], r['pid']) for r in mine})} "
                     f"processes; most for pid {best['pid']} ({best['comm']}): {cell(best['saved_bytes'], '_bytes')}"
                     + (f", {best['saved_share_pct']:.0f}% of it" if best["saved_share_pct"] is not None else ""))
    checked = [p for p in procs if p["kernel_vmpte_bytes"] is not None and "pt_reclaim_vmpte_bytes" in p]
    if checked:
        ok = [p for p in checked if within(p["pt_reclaim_vmpte_bytes"], p["kernel_vmpte_bytes"])]
        worst = max(checked, key=lambda p: abs(p["pt_reclaim_vmpte_bytes"] - p["kernel_vmpte_bytes"]))
        lines.append(f"kernel truth for {len(checked)} processes: pt_reclaim final VmPTE within max(1%, 8 kB) of "
                     f"the kernel's for {len(ok)}; largest gap pid {worst['pid']} ({worst['comm']}): model "
                     f"{worst['pt_reclaim_vmpte_bytes'] // 1024} kB, kernel {worst['kernel_vmpte_bytes'] // 1024} kB")
    return lines


def _lost_lines(path: Path) -> list[str]:
    """One line per trace whose tracer lost events, by CPU where the capture says (ingest's
    lost_per_cpu, from the capture metadata the summary carries)."""
    from ptreplay.pipeline.events.ingest import lost_per_cpu
    from ptreplay.pipeline.warehouse import files_of
    from ptreplay.schemas.parquet_io import read_capture
    lines = []
    for f in files_of(path, "summary"):
        c = read_capture(Path(f)) or {}
        lost = max(int(c.get("lost_events") or 0), int(c.get("lost_samples") or 0))
        if lost:
            per = lost_per_cpu(c)
            where = ", ".join(f"cpu {k} {per[k]}" for k in sorted(per, key=lambda k: (not k.isdigit(), k.zfill(6))))
            lines.append(f"{c.get('trace_id', f)}: the tracer lost {lost} events" + (f" ({where})" if where else "")
                         + "; results undercount")
    return lines


def ranking_report(path: Path, fmt: str) -> str:
    """The ranking as text: table/md in human units (lines below), json/csv raw values."""
    table, lines = rank_table(path)
    if fmt in ("json", "csv"):
        return format_table(table, fmt)
    human = pa.table({_head(n): [cell(v, n) for v in table.column(n).to_pylist()] for n in table.column_names})
    text = format_table(human, fmt)
    if lines:
        text += "\n" + ("\n\n" if fmt == "md" else "\n").join(lines) + "\n"
    return text
