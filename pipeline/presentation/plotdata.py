"""What the plots draw, read from a replay output's DuckDB views: no plotting library here.

    load(PATH, pid, policies, trace) -> PlotData         DuckDB views -> Arrow tables + Heatmaps
    heatmap_matrix(occupancy, policy, ...) -> Heatmap    occupancy rows -> (region x time) arrays

The heatmap reads the replay's ``occupancy`` artifact (one row per snapshot, process,
policy and 1 GiB region with live PTE tables); outputs written before it existed are
plotted without the heatmap, with a one-line note.  png.py and html.py draw a PlotData.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ptreplay.schemas.errors import PipelineError, UsageError
from ptreplay.pipeline.warehouse import connect, execute

MIB = 1 << 20
REGION_BYTES = 1 << 30          # heatmap rows: 1 GiB of address space (one PMD table's reach)
ENTRIES_PER_TABLE = 512         # PTEs in one 4 KiB PTE table
MAX_REGIONS = 64                # more rows than this and the heatmap keeps the busiest
PANELS = [("virt_bytes", "vmsize_bytes", "VIRT"), ("rss_bytes", "vmrss_bytes", "RES"),
          ("vmpte_bytes", "vmpte_bytes", "VmPTE")]  # (timeseries column, truth column, title)
TRUTH_LABEL = "kernel (/proc truth)"
OCCUPANCY_LABEL = "live entries / (PTE tables x 512)"


# ----------------------------------------------------------------------------- the heatmap's data

@dataclass
class Heatmap:
    """One (process, policy)'s PTE-table occupancy: rows are 1 GiB regions (ascending
    address), columns are snapshot times.  `occupancy` is NaN where the region has no
    PTE table; 0 where it has tables but every one is empty."""

    policy: str
    t_ns: np.ndarray              # (T,) snapshot times, ascending
    region_start: np.ndarray      # (R,) uint64, 1 GiB aligned, ascending
    occupancy: np.ndarray         # (R, T) float64 in [0, 1] or NaN
    pte_tables: np.ndarray        # (R, T) int64
    empty_pte_tables: np.ndarray  # (R, T) int64
    live_entries: np.ndarray      # (R, T) int64
    full_pte_tables: np.ndarray   # (R, T) int64
    regions_total: int            # regions of this policy that ever held a PTE table
    all_pte_tables: np.ndarray = field(default=None)        # (T,) summed over every region, shown or not
    all_empty_pte_tables: np.ndarray = field(default=None)  # (T,) likewise

    @property
    def mostly_empty(self) -> np.ndarray:
        """(R, T) bool: more than half of the region's PTE tables are empty (hatched / marked)."""
        return self.empty_pte_tables * 2 > self.pte_tables

    @property
    def labels(self) -> list[str]:
        return [f"0x{int(r):x}" for r in self.region_start]

    @property
    def regions_note(self) -> str:
        shown = len(self.region_start)
        return (f"the {shown} of {self.regions_total} regions with the most PTE tables"
                if self.regions_total > shown else f"{shown} regions")


def heatmap_caption(data: "PlotData", mark: str = "hatched", sep: str = "; ") -> str:
    """One title for the heatmaps of `data` (they share their rows)."""
    return (f"PTE-table occupancy of {data.who}, 1 GiB regions ({data.heatmaps[0].regions_note}){sep}"
            f"{mark}: more than half of a region's PTE tables empty; grey: no PTE table")


def top_regions(occ: pa.Table, policies: list[str], max_regions: int = MAX_REGIONS) -> np.ndarray:
    """The regions (ascending) with the most live PTE tables at any snapshot under any of
    `policies`, at most `max_regions` of them (ties: lower address first)."""
    sel = occ.filter(pc.is_in(occ.column("policy"), pa.array(policies, pa.string())))
    regions = sel.column("region_start").to_numpy().astype(np.uint64)
    tables = sel.column("pte_tables").to_numpy().astype(np.int64)
    keep = tables > 0
    uniq, inv = np.unique(regions[keep], return_inverse=True)
    peak = np.zeros(len(uniq), np.int64)
    np.maximum.at(peak, inv, tables[keep])
    order = np.lexsort((uniq, -peak))[:max_regions]
    return np.sort(uniq[order])


def heatmap_matrix(occ: pa.Table, policy: str, regions: np.ndarray | None = None,
                   times: np.ndarray | None = None, max_regions: int = MAX_REGIONS,
                   regions_total: int | None = None) -> Heatmap:
    """(region x time) arrays of one process's occupancy rows under `policy`.

    `occ` holds one process's rows (any policies).  `regions` defaults to
    :func:`top_regions` of this policy; `times` to the policy's snapshot times
    (pass the whole run's, so a process without tables at a snapshot still gets a column).
    Rows outside `regions` still count in `all_pte_tables` / `all_empty_pte_tables`.
    `regions_total` (for the title) defaults to the regions that held a table under `policy`.
    """
    part = occ.filter(pc.equal(occ.column("policy"), policy))
    t = part.column("t_ns").to_numpy().astype(np.int64)
    reg = part.column("region_start").to_numpy().astype(np.uint64)
    times = np.unique(t) if times is None else np.asarray(times, np.int64)
    regions = (top_regions(occ, [policy], max_regions) if regions is None
               else np.asarray(regions, np.uint64))
    ti = np.searchsorted(times, t)
    in_t = ti < len(times)
    in_t[in_t] = times[ti[in_t]] == t[in_t]
    ri = np.searchsorted(regions, reg)
    in_r = ri < len(regions)
    in_r[in_r] = regions[ri[in_r]] == reg[in_r]
    cell = in_t & in_r
    shape = (len(regions), len(times))
    out = {}
    for name in ("pte_tables", "empty_pte_tables", "live_entries", "full_pte_tables"):
        values = part.column(name).to_numpy().astype(np.int64)
        m = np.zeros(shape, np.int64)
        np.add.at(m, (ri[cell], ti[cell]), values[cell])
        out[name] = m
        if name in ("pte_tables", "empty_pte_tables"):
            total = np.zeros(len(times), np.int64)
            np.add.at(total, ti[in_t], values[in_t])
            out["all_" + name] = total
    tables = out["pte_tables"]
    with np.errstate(invalid="ignore", divide="ignore"):
        occupancy = np.where(tables > 0, out["live_entries"] / (tables * ENTRIES_PER_TABLE), np.nan)
    if regions_total is None:
        regions_total = count_regions(occ, [policy])
    return Heatmap(policy=policy, t_ns=times, region_start=regions, occupancy=occupancy,
                   regions_total=regions_total, **out)


def count_regions(occ: pa.Table, policies: list[str]) -> int:
    """Regions that held a PTE table at some snapshot under any of `policies`."""
    sel = occ.filter(pc.and_(pc.is_in(occ.column("policy"), pa.array(policies, pa.string())),
                             pc.greater(occ.column("pte_tables"), 0)))
    return len(pc.unique(sel.column("region_start")))


# ----------------------------------------------------------------------------- loading

@dataclass
class PlotData:
    """Everything the PNG and the HTML draw, for one process of one trace."""

    path: Path
    trace_id: str
    pid: int
    comm: str
    t0_ns: int                    # x = (t_ns - t0_ns) / 1e9 seconds in every panel
    timeseries: pa.Table          # this process, every policy, ordered by policy, t_ns
    truth: pa.Table               # this process's /proc samples (may be empty)
    summary: pa.Table             # this process, one row per policy
    heatmaps: list[Heatmap]       # one per requested policy; empty when there is no occupancy
    note: str | None = None       # why the heatmap is missing, one line

    @property
    def policies(self) -> list[str]:
        return sorted(set(self.timeseries.column("policy").to_pylist()))

    def seconds(self, t_ns) -> np.ndarray:
        return (np.asarray(t_ns, np.int64) - self.t0_ns) / 1e9

    @property
    def who(self) -> str:
        return f"pid {self.pid} ({self.comm})" if self.comm else f"pid {self.pid}"


def load(path: Path, pid: int | None = None, policies: list[str] | None = None,
         trace: str | None = None, max_regions: int = MAX_REGIONS) -> PlotData:
    """Read what the plots need through the DuckDB views.

    Default process: the one with the largest potential savings (best policy's
    vmpte_saved_bytes; ties: larger peak VmPTE under none).  Default heatmap policies:
    none, and pt_reclaim beside it when it was replayed.
    """
    path = Path(path)
    con = connect(path)
    trace_id, pid, comm = _choose_process(con, pid, trace)
    key = {"trace": trace_id, "pid": pid}
    ts = execute(con, "SELECT * FROM timeseries WHERE trace_id = $trace AND pid = $pid ORDER BY policy, t_ns", key)
    if ts.num_rows == 0:
        raise PipelineError(f"{path}: no timeseries rows for pid {pid} of {trace_id} (run `ptreplay replay` first)")
    summary = execute(con, "SELECT * FROM summary WHERE trace_id = $trace AND pid = $pid ORDER BY policy", key)
    # truth.parquet (written by replay from the events' ptreplay.truth) names its trace in its capture metadata
    truth = execute(con, "SELECT * FROM truth WHERE trace_id = $trace AND pid = $pid ORDER BY t_ns", key)
    replayed = summary.column("policy").to_pylist()
    if policies is None:
        policies = ["none"] + (["pt_reclaim"] if "pt_reclaim" in replayed else [])
    unknown = [p for p in policies if p not in replayed]
    if unknown:
        raise UsageError(f"plot: policy {', '.join(unknown)} was not replayed for pid {pid} "
                         f"(replayed: {', '.join(sorted(replayed))})")
    heatmaps, note = _heatmaps(con, path, trace_id, pid, policies, max_regions)
    return PlotData(path=path, trace_id=trace_id, pid=pid, comm=comm,
                    t0_ns=int(pc.min(ts.column("t_ns")).as_py()), timeseries=ts, truth=truth,
                    summary=summary, heatmaps=heatmaps, note=note)


def _choose_process(con, pid, trace) -> tuple[str, int, str]:
    where = []
    params = {}
    if pid is not None:
        where.append("pid = $pid")
        params["pid"] = pid
    if trace is not None:
        where.append("trace_id = $trace")
        params["trace"] = trace
    rows = execute(con, f"""
        SELECT trace_id, pid, max(comm) AS comm, max(vmpte_saved_bytes) AS potential,
               max(peak_vmpte_bytes) FILTER (WHERE policy = 'none') AS peak
        FROM summary {'WHERE ' + ' AND '.join(where) if where else ''}
        GROUP BY trace_id, pid ORDER BY potential DESC, peak DESC NULLS LAST, trace_id, pid""",
                   params).to_pylist()
    if not rows:
        wanted = " ".join(f"{name} {value}" for name, value in (("pid", pid), ("trace", trace)) if value is not None)
        raise PipelineError(f"plot: no process {wanted or 'at all'} in the summary (run `ptreplay replay` first)")
    if pid is not None and trace is None and len({r["trace_id"] for r in rows}) > 1:
        raise UsageError(f"plot: pid {pid} is in traces {', '.join(sorted(r['trace_id'] for r in rows))}: "
                         "pick one with --trace")
    r = rows[0]
    return r["trace_id"], r["pid"], r["comm"] or ""


def _heatmaps(con, path, trace_id, pid, policies, max_regions) -> tuple[list[Heatmap], str | None]:
    trace = {"trace": trace_id}
    if execute(con, "SELECT count(*) AS n FROM occupancy WHERE trace_id = $trace", trace).to_pylist()[0]["n"] == 0:
        return [], (f"no occupancy.parquet for trace {trace_id} under {path}: heatmap omitted "
                    "(written by `ptreplay replay` since artifact occupancy/1; re-run it)")
    occ = execute(con, "SELECT * FROM occupancy WHERE trace_id = $trace AND pid = $pid", {**trace, "pid": pid})
    # Every policy snapshots at the same ticks, but only regions with tables have rows: take the
    # times of the whole trace, so a snapshot where nothing had a table still gets its column.
    times = execute(con, "SELECT DISTINCT t_ns FROM occupancy WHERE trace_id = $trace ORDER BY t_ns",
                    trace).column("t_ns").to_numpy()
    regions = top_regions(occ, policies, max_regions)
    if len(regions) == 0:
        return [], f"pid {pid} never held a PTE table under {', '.join(policies)}: heatmap omitted"
    total = count_regions(occ, policies)
    return [heatmap_matrix(occ, policy, regions=regions, times=times, regions_total=total)
            for policy in policies], None


def cost_of(row: dict) -> float:
    """The work a policy adds, in tables: re-allocated tables + scanned entries / 512."""
    return row["refaults"] + row["scan_entries"] / ENTRIES_PER_TABLE
