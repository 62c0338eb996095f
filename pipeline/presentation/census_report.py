"""Report and figure of a `ptreplay census`: processes ranked by page-table waste.

Numbers come from the ``census_waste`` / ``census_by_mapping`` views (schemas/sql/50_census.sql)
over a census.parquet (and its census_vmas.parquet beside it) or over a tree of them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from ptreplay.schemas import CENSUS, CENSUS_VMAS, PLOT_TAG, SCHEMA_KEY
from ptreplay.schemas.errors import PipelineError
from ptreplay.schemas.parquet_io import atomic_path, mark_of, read_table, write_error
from ptreplay.schemas.units import human_bytes
from ptreplay.pipeline.presentation.tables import cell, format_table

COLUMNS = [("host", "host"), ("pid", "pid"), ("comm", "comm"), ("state", "state"), ("vmpte_bytes", "VmPTE"),
           ("needed_bytes", "needed"), ("waste_bytes", "waste"), ("waste_pct", "waste %"),
           ("waste_tables", "waste tables"), ("occupancy_pct", "occupancy %")]


def is_census(path: Path) -> bool:
    """A census.parquet (by its mark), or a directory holding census files and no replay summary."""
    path = Path(path)
    if path.is_file():
        return (mark_of(path) or "").startswith(f"{CENSUS.name}/")
    return (path.is_dir() and not any(path.rglob("summary.parquet"))
            and any(path.rglob(f"{CENSUS.name}.parquet")))


def connect_census(path: Path):
    """DuckDB connection with the census views: over one census file (and its _vmas sibling), or
    over every census file below a directory (pipeline.warehouse)."""
    path = Path(path)
    if path.is_dir():
        from ptreplay.pipeline.warehouse import connect
        return connect(path)
    import duckdb
    from ptreplay.pipeline.warehouse import SQL_DIR
    from ptreplay.pipeline.capture.census import vmas_path
    if not path.exists():
        raise PipelineError(f"{path}: no such file")
    con = duckdb.connect()
    side = vmas_path(path)
    con.register("census", read_table(path, CENSUS))
    con.register("census_vmas", read_table(side, CENSUS_VMAS) if side.exists() else CENSUS_VMAS.schema.empty_table())
    con.execute((SQL_DIR / "50_census.sql").read_text())
    return con


def census_report(path: Path, fmt: str = "table", top: int | None = None) -> str:
    """Processes by waste (most first); table/md in human units with a totals line, json/csv raw."""
    from ptreplay.pipeline.warehouse import execute
    con = connect_census(path)
    t = execute(con, "SELECT * FROM census_waste" + (f" LIMIT {int(top)}" if top else ""))
    if fmt in ("json", "csv"):
        return format_table(t, fmt)
    cols = [(c, h) for c, h in COLUMNS if c != "host" or len(set(t.column("host").to_pylist())) > 1]
    human = pa.table({h: [cell(v, c) if not c.endswith("_pct") or v is not None else "" for v in t.column(c).to_pylist()]
                      for c, h in cols})
    tot = execute(con, """SELECT count(*) AS n, count(*) FILTER (WHERE state = 'ok') AS ok,
        count(*) FILTER (WHERE state = 'changed') AS changed, count(*) FILTER (WHERE state = 'vanished') AS vanished,
        count(*) FILTER (WHERE state = 'denied') AS denied, coalesce(sum(vmpte_bytes), 0)::BIGINT AS vmpte,
        coalesce(sum(needed_bytes), 0)::BIGINT AS needed, coalesce(sum(waste_bytes), 0)::BIGINT AS waste
        FROM census""").to_pylist()[0]
    line = (f"{tot['n']} processes ({tot['ok']} ok, {tot['changed']} changed, {tot['vanished']} vanished, "
            f"{tot['denied']} denied): VmPTE {human_bytes(tot['vmpte'])}, needed {human_bytes(tot['needed'])}, "
            f"waste {human_bytes(tot['waste'])}")
    maps = execute(con, "SELECT name, kind, processes, pte_tables, pagefree_regions FROM census_by_mapping "
                        "WHERE pagefree_regions > 0 ORDER BY pagefree_regions DESC, name LIMIT 5")
    text = format_table(human, fmt) + "\n" + line + "\n"
    if maps.num_rows:
        text += ("\nmappings with 2 MiB regions holding no page (where the empty tables can be):\n"
                 + format_table(maps, fmt))
    return text


def write_census_png(path: Path, output: Path, force: bool = False, top: int = 20) -> Path:
    """Figure: the `top` processes by waste (needed and waste stacked) and the PTE-table occupancy
    histogram summed over every process; PNG marked as ptreplay's (tEXt chunk)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ptreplay.pipeline.warehouse import execute
    con = connect_census(path)
    t = execute(con, f"SELECT pid, comm, needed_bytes, waste_bytes FROM census_waste WHERE needed_bytes IS NOT NULL "
                     f"LIMIT {int(top)}").to_pylist()
    occ = execute(con, "SELECT pte_occupancy FROM census WHERE pte_occupancy IS NOT NULL").column(0).to_pylist()
    hist = np.sum([np.asarray(o, np.int64) for o in occ], axis=0) if occ else np.zeros(512, np.int64)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, max(4.0, 0.3 * len(t) + 1.5)), layout="constrained")
    labels = [f"{r['comm']} ({r['pid']})" for r in t][::-1]
    need = np.array([r["needed_bytes"] for r in t][::-1], float) / 1024
    waste = np.array([max(r["waste_bytes"], 0) for r in t][::-1], float) / 1024
    a1.barh(labels, need, color="#4c72b0", label="needed")
    a1.barh(labels, waste, left=need, color="#dd8452", label="waste (VmPTE - needed)")
    a1.set_xlabel("kB of page tables")
    a1.set_title(f"page tables per process, top {len(t)} by waste")
    a1.legend(fontsize=8)
    a2.bar(np.arange(1, 513), hist, width=1.0, color="#55a868")
    a2.set_yscale("log")
    a2.set_xlabel("entries in use (of 512)")
    a2.set_ylabel("PTE tables")
    a2.set_title(f"occupancy of the {int(hist.sum()):,} needed PTE tables")
    try:
        with atomic_path(Path(output), force) as tmp:
            try:
                fig.savefig(tmp, format="png", dpi=100, metadata={SCHEMA_KEY.decode(): PLOT_TAG})
            except OSError as e:
                raise write_error(Path(output), e) from None
    finally:
        plt.close(fig)
    return Path(output)
