"""Replay an events table through the page-table model under reclaim policies.

events Parquet (or Arrow table) -> validate -> numpy batches -> compiled
kernels (replay.kernels, one state per policy) -> timeseries, summary,
effects (page-table changes per event) and occupancy (per 1 GiB region) tables.

Public surface::

    replay(events, opts=None, capture=None, trace_id=None) -> ReplayResult
    replay_to_dir(events_path, out_dir, opts, force=False) -> Path

The engine streams record batches, so memory grows with live page tables,
VMAs and output rows, not with the number of events.
"""
from __future__ import annotations

import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ptreplay.schemas.errors import LimitError, SchemaError, UsageError
from ptreplay.schemas.units import format_ns, parse_size
from ptreplay.schemas.parquet_io import (check_writable, events2_time_range, events_batches, is_events2,
                                        open_artifact, output_dir, read_truth, write_table)
from ptreplay.replay import kernels as K
from ptreplay.replay import layout as L
from ptreplay.replay.outputs import KIND_NAMES, effects_table, metadata, occupancy_table, summary_table, timeseries_table
from ptreplay.replay.policies import Policy, parse_policies
from ptreplay.replay.reorder import ForkPlan, RowsSeen, apply_plan
from ptreplay.schemas import CAPTURE_KEY, EFFECTS, REPLAY_KEY, EVENTS, OCCUPANCY, SUMMARY, TIMESERIES, TRUTH, conform

_RESULT_NEEDED = ("mmap", "mremap", "brk")  # unfinished: result unknown -> skipped
MAX_PROCS = 1 << 20
MAX_T_NS = 1 << 62  # the kernels' clock arithmetic (t + interval, timer sentinels) stays in int64 below it
LOG = logging.getLogger("ptreplay.replay")   # warnings; the command line prints them as one line each
THP_CODES = {"never": L.THP_NEVER, "madvise": L.THP_MADVISE, "always": L.THP_ALWAYS}
TIMESERIES_ROWS = {"changes": 0, "ticks": 1}  # ReplayOptions.timeseries -> prm[PR_TS_TICKS]


@dataclass
class ReplayOptions:
    """What to replay: policies (specs or 'all'), THP mode (None = the capture's),
    timeseries step, 5-level paging (None/False = the capture's), number of
    occupancy snapshots (every k-th timeseries tick plus the trace end; 0: none), and which
    timeseries rows: "changes" (a process's start and end rows, a tick row when its values
    changed since its latest row, a row at the trace end) or "ticks" (also a row at every tick
    for every live process, changed or not)."""

    policies: object = "all"
    thp: str | None = None
    interval_ns: int = 10_000_000
    la57: bool | None = None
    batch_rows: int = 1 << 18  # 256 Ki rows: with 1 Mi, peak RSS +320 MB and slower (cache, page faults)
    fast_path: bool = True  # False: every event takes the generic kernel path (benchmark baseline, tests)
    threads: int | None = None  # policies replayed in parallel; None = one per CPU (at most one per policy)
    occupancy_snapshots: int = 120  # at most this many occupancy snapshot times per trace
    timeseries: str = "changes"  # or "ticks"; see TIMESERIES_ROWS


@dataclass
class ReplayResult:
    timeseries: pa.Table
    summary: pa.Table
    metadata: dict = field(default_factory=dict)
    effects: pa.Table = field(default_factory=EFFECTS.schema.empty_table)
    occupancy: pa.Table = field(default_factory=OCCUPANCY.schema.empty_table)


# ----------------------------------------------------------------------------- one policy's state

class PolicyState:
    """The kernel arrays of one policy's replay, grown on demand."""

    def __init__(self, policy: Policy, thp_code: int, interval_ns: int, top: int, nproc: int = 16,
                 fast_path: bool = True, snap_every: int = 0, snap_end: bool = False, source: str = "<events>",
                 limit: int | None = None, shares: int = 1, ts_ticks: bool = False, thp_ends: bool = False):
        self.policy = policy
        self.source = source
        self.limit = memory_limit() if limit is None else limit  # bytes for all policies' replays
        self.budget = self.limit // shares                       # this policy's share
        self.prm = np.zeros(L.N_PRM, np.int64)
        self.prm[L.PR_POLICY] = policy.code
        self.prm[L.PR_TICK] = interval_ns
        self.prm[L.PR_SCAN] = policy.arg_ns if policy.name == "scan" else 0
        self.prm[L.PR_HOLD] = policy.arg_ns if policy.name == "delayed" else 0
        self.prm[L.PR_THP] = thp_code
        self.prm[L.PR_TOP] = top
        self.prm[L.PR_FAST] = int(fast_path)
        self.prm[L.PR_SNAP_EVERY] = snap_every
        self.prm[L.PR_SNAP_END] = int(snap_end)
        self.prm[L.PR_TS_TICKS] = int(ts_ticks)
        self.prm[L.PR_THP_ENDS] = int(thp_ends)
        self.ps = np.zeros((nproc, L.N_PS), np.int64)
        self.pf = np.zeros(nproc, np.float64)
        self.vm = np.zeros((nproc, 16, L.N_VM), np.int64)
        self.hk = np.full(1 << 12, -1, np.int64)
        self.hv = np.zeros(1 << 12, np.int64)
        self.sl = np.zeros((256, L.N_SL), np.int64)
        self.pg = np.zeros(256 * 512, np.int8)
        self.fs = np.zeros(256, np.int64)
        self.g = np.zeros(L.N_G + 4096 * L.N_EF, np.int64)  # scalars, then the effects rows
        self.dq = np.zeros((1024 if policy.name == "delayed" else 1, 3), np.int64)
        self.ts = np.zeros((4096, L.N_TS), np.int64)
        self.oc = np.zeros((1024, L.N_OC), np.int64)
        self.rows: list[np.ndarray] = []
        self.oc_rows: list[np.ndarray] = []
        self.kernel_s = 0.0
        self.loaded = False
        self.next_t = 0  # time of the event run_events stopped before

    def arrays(self):
        return (self.prm, self.ps, self.pf, self.vm, self.hk, self.hv, self.sl, self.pg, self.fs, self.g,
                self.dq, self.ts, self.oc)

    def ensure_procs(self, n: int) -> None:
        if n <= self.ps.shape[0]:
            return
        cap = max(n, 2 * self.ps.shape[0])
        self.ps = _grow_rows(self.ps, cap)
        self.pf = _grow_rows(self.pf, cap)
        self.vm = _grow_rows(self.vm, cap)

    def check_budget(self, what: str, rows: int, row_bytes: int) -> None:
        """Refuse, before allocating, an output or state that would pass this policy's share of the
        memory limit (a trace with an outlying t_ns, a tiny --interval over a long gap)."""
        need = rows * row_bytes
        if need <= self.budget:
            return
        gap_s = (self.next_t - int(self.g[L.G_NOW])) / 1e9
        hint = (f"the event at t_ns={self.next_t} is {gap_s:.3g} s after the one before, at --interval "
                f"{format_ns(int(self.prm[L.PR_TICK]))}: use a larger --interval, or drop outlying t_ns values"
                if what == "timeseries" else "split the trace")
        raise LimitError(f"{self.source}: replaying {self.policy.spec} would need {rows:,} {what} rows "
                         f"({_gib(need)}), over its share of the memory limit ({_gib(self.budget)} of "
                         f"{_gib(self.limit)}; PTREPLAY_MEMORY_LIMIT, default half of "
                         f"MemAvailable); {hint}")

    def grow(self, code: int, amount: int) -> None:
        """Make room after run_events stopped with NEED_<code>."""
        if code == L.NEED_ROWS:
            self.drain_rows()
            self.check_budget("timeseries", sum(len(r) for r in self.rows) + amount, TS_ROW_BYTES)
            if 4 * amount > self.ts.shape[0]:  # room for a few ticks of every live process per drain
                self.ts = np.zeros((_pow2(4 * amount), L.N_TS), np.int64)
        elif code == L.NEED_SLOTS:
            cap = _pow2(self.sl.shape[0] + amount)
            self.check_budget("page-table slot", cap, 8 * L.N_SL + 512 + 8)
            self.sl = _grow_rows(self.sl, cap)
            self.fs = _grow_rows(self.fs, cap)
            self.pg = _grow_rows(self.pg, cap * 512)
        elif code == L.NEED_HASH:
            cap = max(_pow2(4 * amount), self.hk.shape[0])
            self.check_budget("table-hash", 2 * cap, 16)
            self.hk, self.hv, count = L.rehash(self.hk, self.hv, cap, self.g[L.G_NOW])
            self.g[L.G_HCOUNT] = count
            if 2 * (count + self.g[L.G_LIVE_SLOTS]) + 4 * (amount - count - self.g[L.G_LIVE_SLOTS]) > cap:
                self.hk, self.hv, count = L.rehash(self.hk, self.hv, 2 * cap, self.g[L.G_NOW])
                self.g[L.G_HCOUNT] = count
        elif code == L.NEED_VMAS:
            cap = _pow2(amount)
            self.check_budget("VMA-table", self.vm.shape[0] * cap, L.N_VM * 8)
            vm = np.zeros((self.vm.shape[0], cap, L.N_VM), np.int64)
            vm[:, : self.vm.shape[1]] = self.vm
            self.vm = vm
        elif code == L.NEED_QUEUE:
            self.dq = _grow_rows(self.dq, _pow2(amount))
        elif code == L.NEED_EFFECTS:  # rows stay: empty tables point at their emptier's row
            rows = _pow2(max(amount, 2 * (len(self.g) - L.N_G) // L.N_EF))
            self.check_budget("effects", rows, EF_ROW_BYTES)
            self.g = _grow_rows(self.g, L.N_G + rows * L.N_EF)
        elif code == L.NEED_OCC:
            self.drain_occupancy()
            self.check_budget("occupancy", sum(len(r) for r in self.oc_rows) + amount, OC_ROW_BYTES)
            if 4 * amount > self.oc.shape[0]:  # a few snapshots per drain
                self.oc = np.zeros((_pow2(4 * amount), L.N_OC), np.int64)

    def drain_rows(self) -> None:
        n = int(self.g[L.G_NROWS])
        if n:
            self.rows.append(self.ts[:n].copy())
            self.g[L.G_NROWS] = 0

    def effects(self) -> np.ndarray:
        """The effects rows [row, EF_*] (they live in g after the scalars)."""
        n = int(self.g[L.G_NEF])
        return self.g[L.N_G: L.N_G + n * L.N_EF].reshape(n, L.N_EF)

    def drain_occupancy(self) -> None:
        n = int(self.g[L.G_NOC])
        if n:
            self.oc_rows.append(self.oc[:n].copy())
            self.g[L.G_NOC] = 0

    def run(self, cols: dict) -> None:
        n = len(cols["t"])
        i = 0
        if not self.loaded:  # load (or compile) run_events outside kernel_seconds: an empty call
            self._run_events(0, 0, cols)
            self.loaded = True
        t0 = time.perf_counter()
        while i < n:
            i, code, amount = self._run_events(i, n, cols)
            if code != L.NEED_NONE:
                self.next_t = int(cols["t"][i])
                self.grow(code, amount)
        self.kernel_s += time.perf_counter() - t0
        self.drain_rows()
        self.drain_occupancy()

    def _run_events(self, i: int, n: int, cols: dict):
        return K.run_events(i, n, cols["t"], cols["kind"], cols["proc"], cols["addr"], cols["len"], cols["prot"],
                            cols["flags"], cols["fd"], cols["pgoff"], cols["advice"], cols["ecode"], cols["new_addr"],
                            cols["new_len"], cols["ret"], cols["child"], cols["row"], *self.arrays())

    def finish(self, t_end: int) -> None:
        need = int(self.g[L.G_NPEND] + self.g[L.G_NLIVE]) + 2
        if need > self.ts.shape[0] - self.g[L.G_NROWS]:
            self.grow(L.NEED_ROWS, need)
        need_oc = int(self.ps[:, L.PS_PMD].sum()) + 1
        if need_oc > self.oc.shape[0] - self.g[L.G_NOC]:
            self.grow(L.NEED_OCC, need_oc)
        K.finish(self.ps, self.pf, self.sl, self.g, self.ts, self.oc, self.prm, t_end)
        self.drain_rows()
        self.drain_occupancy()
        if self.g[L.G_OVERFLOW]:
            raise RuntimeError(f"replay kernels: {int(self.g[L.G_OVERFLOW])} effects/occupancy rows found no "
                               f"room under {self.policy.spec} (a bug in the capacity checks)")


# Bytes one output row costs until it is written: the kernel's numpy row, its drained copy, Arrow.
TS_ROW_BYTES = 3 * 8 * L.N_TS
EF_ROW_BYTES = 3 * 8 * L.N_EF
OC_ROW_BYTES = 3 * 8 * L.N_OC


def memory_limit() -> int:
    """Bytes a replay may hold in outputs and growable state: PTREPLAY_MEMORY_LIMIT (bytes, or
    with a unit: 8G), else half of this machine's MemAvailable."""
    text = os.environ.get("PTREPLAY_MEMORY_LIMIT")
    if text:
        return parse_size(text, "PTREPLAY_MEMORY_LIMIT")
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 // 2
    except OSError:
        pass
    return 8 << 30


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.3g} GiB"


def _pow2(n: int) -> int:
    return 1 << max(int(n) - 1, 1).bit_length()


def _grow_rows(a: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((n,) + a.shape[1:], a.dtype)
    out[: a.shape[0]] = a
    return out


# ----------------------------------------------------------------------------- input

class _Procs:
    """pid -> dense process index (the kernels' `p`), with each process's comm and what the rows
    said so far of each index (replay.reorder.RowsSeen: forks that came after their child)."""

    def __init__(self):
        self.index: dict[int, int] = {}
        self.pids: list[int] = []
        self.comm: dict[int, str] = {}
        self.seen = RowsSeen()

    def map(self, pids: np.ndarray) -> np.ndarray:
        """Dense indices of `pids` (int32); new pids get the next indices in ascending pid order."""
        if len(pids) == 0:
            return np.empty(0, np.int32)
        lo, hi = int(pids.min()), int(pids.max())
        if lo == hi:  # one process (the common case): no hashing
            return np.full(len(pids), self._index_of([lo])[0], np.int32)
        uniq = np.sort(pc.unique(pa.array(pids)).to_numpy())
        idx = self._index_of(uniq.tolist())
        pos = pc.index_in(pa.array(pids), value_set=pa.array(uniq)).to_numpy()
        return idx[pos]

    def _index_of(self, uniq: list[int]) -> np.ndarray:
        idx = np.empty(len(uniq), np.int32)
        for j, pid in enumerate(uniq):
            if pid not in self.index:
                if len(self.pids) >= MAX_PROCS:
                    raise SchemaError(f"more than {MAX_PROCS} processes in one trace")
                self.index[pid] = len(self.pids)
                self.pids.append(pid)
            idx[j] = self.index[pid]
        return idx


@dataclass
class _Counts:
    events_in: int = 0
    failed_skipped: int = 0
    unfinished_skipped: int = 0
    unfinished_applied: int = 0
    values_clamped: int = 0         # address/length values above 2^62 (none is a user address)
    beyond_top_dropped: int = 0     # successful syscalls over a range above the user top: a corrupt row
    madvise_not_modelled: dict = field(default_factory=dict)  # advice name -> calls
    forks_after_child_events: int = 0  # fork rows after rows of their child: applied at the child's first
    first_t: int | None = None
    last_t: int | None = None


def _batches(events, batch_rows: int):
    """Record batches of the events (a Path to Parquet or an Arrow table), conformed."""
    if isinstance(events, pa.Table):
        table = conform(events, EVENTS, "<events table>")
        if table.num_rows and table.column(0).num_chunks * batch_rows > 4 * table.num_rows:
            table = table.combine_chunks()  # many small chunks (a concatenation): each batch costs ~1 ms
        yield from table.to_batches(max_chunksize=batch_rows)
        return
    path = Path(events)
    pf = open_artifact(path, EVENTS)
    if is_events2(pf):           # faults and the other rows joined, both parts conformed
        yield from events_batches(path, batch_rows, pf=pf)
        return
    try:
        conform(pf.schema_arrow.empty_table(), EVENTS, str(path))
    except SchemaError:  # wrong columns or types: conform each batch, for its exact message
        for b in pf.iter_batches(batch_size=batch_rows):
            yield from conform(pa.Table.from_batches([b]), EVENTS, str(path)).to_batches()
        return
    # The file's columns and types are right; read the string columns as dictionaries (a few
    # distinct values: decoding them per row was most of the read time) and check nulls per batch.
    pf = pq.ParquetFile(path, read_dictionary=[c for c in _DICT_COLUMNS if c in pf.schema_arrow.names])
    for b in pf.iter_batches(batch_size=batch_rows):
        yield _conform_nulls(b, str(path))


_DICT_COLUMNS = ("kind", "comm")


def _conform_nulls(batch: pa.RecordBatch, source: str) -> pa.RecordBatch:
    """conform() for a batch of a file whose schema already conforms: EVENTS' column order, and
    no nulls in non-nullable columns (same message); dictionary-read columns stay dictionaries."""
    wrong = [f"{f.name} has {batch.column(f.name).null_count} nulls, expected none"
             for f in EVENTS.schema if not f.nullable and batch.column(f.name).null_count]
    if wrong:
        raise SchemaError(f"{source}: not a valid {EVENTS.tag} table: " + "; ".join(wrong))
    return pa.RecordBatch.from_arrays([batch.column(n) for n in EVENTS.schema.names], names=EVENTS.schema.names)


# madvise advices with an effect on tables or RSS in the kernel that the model does not replay
# (docs/MODEL.md#madvise-ignored), and those with none (COLD only deactivates pages): counted
MADV_NOT_MODELLED = {20: "MADV_COLD", 21: "MADV_PAGEOUT", 25: "MADV_COLLAPSE", 102: "MADV_GUARD_INSTALL",
                     103: "MADV_GUARD_REMOVE", 100: "MADV_HWPOISON", 101: "MADV_SOFT_OFFLINE"}
MADV_NO_EFFECT = (0, 1, 2, 3, 12, 13, 16, 17)  # NORMAL .. WILLNEED, (UN)MERGEABLE, (DO|DONT)DUMP: not counted
MADV_MODELLED = (4, 8, 9, 10, 11, 14, 15, 18, 19, 22, 23, 24)
_RANGE_KINDS = ("mmap", "munmap", "mprotect", "madvise", "mremap", "brk", "snapshot_vma", "snapshot_pages")


def _to_columns(batch: pa.RecordBatch, procs: _Procs, counts: _Counts, source: str, offset: int,
                top: int = 1 << 47, plan: ForkPlan | None = None) -> dict:
    """Validate one batch and turn it into the kernels' numpy columns (failed
    rows, unfinished mmap/mremap/brk rows and successful calls over ranges above
    the user top removed; values above 2^62 clamped; late forks moved (plan); all counted)."""
    n = batch.num_rows
    kind = _kind_codes(batch.column("kind"))
    if (kind < 0).any():
        col = batch.column("kind")
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        bad = pc.filter(col, pa.array(kind < 0)).unique().to_pylist()
        raise SchemaError(f"{source}: row {offset}+: unknown event kind(s) {bad[:5]} "
                          f"(expected one of {', '.join(KIND_NAMES)})")
    t = batch.column("t_ns").to_numpy()
    if n > 1 and (t[1:] < t[:-1]).any():
        row = int(np.argmax(t[1:] < t[:-1])) + 1
        raise SchemaError(f"{source}: row {offset + row}: t_ns goes backwards ({t[row - 1]} then {t[row]}); "
                          "events must be sorted by t_ns (run ingest)")
    if n and (t[0] < 0 or t[-1] >= MAX_T_NS):
        row = int(np.argmax((t < 0) | (t >= MAX_T_NS)))
        raise SchemaError(f"{source}: row {offset + row}: t_ns {t[row]} is outside [0, 2^62) ns (no capture clock "
                          "reads a negative time or one past 146 years); a corrupt time?")
    if n and counts.last_t is not None and t[0] < counts.last_t:
        raise SchemaError(f"{source}: row {offset}: t_ns goes backwards across batches; events must be sorted")
    failed = batch.column("failed").to_numpy(zero_copy_only=False)
    failed = failed & ~_partly_applied(batch, kind)
    unfinished = batch.column("unfinished").to_numpy(zero_copy_only=False)
    needs_result = np.isin(kind, [L.KIND_CODES[k] for k in _RESULT_NEEDED])
    skip_unfinished = unfinished & needs_result & ~failed
    keep = ~failed & ~skip_unfinished & ~_beyond_top(batch, kind, top, counts)
    _count_madvise(batch, kind, keep, counts)
    counts.events_in += n
    counts.failed_skipped += int(failed.sum())
    counts.unfinished_skipped += int(skip_unfinished.sum())
    counts.unfinished_applied += int((unfinished & keep).sum())
    if n:
        counts.first_t = int(t[0]) if counts.first_t is None else counts.first_t
        counts.last_t = int(t[-1])
    _note_comms(batch, kind, keep, procs)
    sel = np.flatnonzero(keep) if not keep.all() else None

    def col(name, dtype):
        a = batch.column(name).to_numpy(zero_copy_only=False)
        if sel is not None:
            a = a[sel]
        return _frozen(np.ascontiguousarray(a, dtype=dtype) if a.dtype != dtype else a)

    def addr_col(name):
        a = batch.column(name).to_numpy(zero_copy_only=False)
        if sel is not None:
            a = a[sel]
        if len(a) and a.max() > np.uint64(1 << 62):
            counts.values_clamped += int((a > np.uint64(1 << 62)).sum())
            a = np.minimum(a, np.uint64(1 << 62))
        return _frozen(a.view(np.int64))

    kind = kind if sel is None else kind[sel]
    row = np.arange(offset, offset + n, dtype=np.int64) if sel is None else sel.astype(np.int64) + offset
    pid = col("pid", np.int32)
    child = col("child_pid", np.int32)
    proc = procs.map(pid)
    child_idx = np.full(len(child), -1, np.int32)
    forks = np.flatnonzero((kind == L.K_FORK) & (child >= 0))
    if len(forks):
        child_idx[forks] = procs.map(child[forks])
    cols = {"t": col("t_ns", np.int64), "kind": _frozen(kind), "proc": _frozen(proc), "addr": addr_col("addr"),
            "len": addr_col("len"), "prot": col("prot", np.int32), "flags": col("flags", np.int64),
            "fd": col("fd", np.int32), "pgoff": addr_col("pgoff"), "advice": col("advice", np.int32),
            "ecode": _ecodes(col, kind), "new_addr": addr_col("new_addr"), "new_len": addr_col("new_len"),
            "ret": col("ret", np.int64),
            "child": _frozen(child_idx), "row": _frozen(row)}
    if plan is not None:
        cols, dropped = apply_plan(cols, plan, procs.map)
        counts.forks_after_child_events += dropped
    procs.seen.note(len(procs.pids), cols["proc"], cols["row"], cols["kind"], cols["child"])
    return cols


def _ecodes(col, kind: np.ndarray) -> np.ndarray:
    """error_code, with EC_ENDED on the faults whose end the trace has (dur_ns > 0)."""
    ec = col("error_code", np.int32)
    ended = (kind == L.K_FAULT) & (col("dur_ns", np.int64) > 0)
    if not ended.any():
        return ec
    ec = ec.copy()
    ec[ended] |= L.EC_ENDED
    return _frozen(ec)


def _fork_plan(events, batch_rows: int, source: str, top: int) -> ForkPlan:
    """Scan the input (its kernel columns, nothing replayed) for forks that came after rows of
    their child."""
    procs, counts, offset = _Procs(), _Counts(), 0
    for batch in _batches(events, batch_rows):
        _to_columns(batch, procs, counts, source, offset, top)
        offset += batch.num_rows
    return ForkPlan.of(procs.seen, np.asarray(procs.pids, np.int32))


def _partly_applied(batch: pa.RecordBatch, kind: np.ndarray) -> np.ndarray:
    """Failed madvise calls the kernel applied to the mapped parts of their range: -ENOMEM for
    holes is set by `madvise_walk_vmas` (mm/madvise.c) after it visited every VMA; not
    MADV_POPULATE_READ/WRITE (22/23: `madvise_populate` stops at the hole).  See
    docs/MODEL.md#syscall-results."""
    ret = batch.column("ret").to_numpy()
    advice = batch.column("advice").to_numpy()
    return (kind == L.KIND_CODES["madvise"]) & (ret == -12) & (advice != 22) & (advice != 23)


def _beyond_top(batch: pa.RecordBatch, kind: np.ndarray, top: int, counts: _Counts) -> np.ndarray:
    """Rows of successful syscalls whose range reaches above the user top (the kernel refuses
    those: -ENOMEM/-EINVAL), so the row is corrupt: dropped and counted, never applied."""
    ranged = np.isin(kind, [L.KIND_CODES[k] for k in _RANGE_KINDS])
    if not ranged.any():
        return np.zeros(len(kind), bool)

    def u(name):  # as float64: a sum of two u64 cannot wrap; a comparison with the top needs no exactness
        return batch.column(name).to_numpy(zero_copy_only=False).astype(np.float64)

    addr, length = u("addr"), u("len")
    end = addr + np.where(kind == L.K_BRK, 0, length)
    remap = kind == L.K_MREMAP
    end = np.where(remap, np.maximum(end, u("new_addr") + u("new_len")), end)
    bad = ranged & (end > top)
    counts.beyond_top_dropped += int(bad.sum())
    return bad


def _count_madvise(batch: pa.RecordBatch, kind: np.ndarray, keep: np.ndarray, counts: _Counts) -> None:
    """Count the applied madvise calls whose advice the model does not replay."""
    rows = keep & (kind == L.K_MADVISE)
    if not rows.any():
        return
    advice = batch.column("advice").to_numpy(zero_copy_only=False)[rows]
    values, n = np.unique(advice[~np.isin(advice, MADV_MODELLED + MADV_NO_EFFECT)], return_counts=True)
    for v, c in zip(values.tolist(), n.tolist()):
        name = MADV_NOT_MODELLED.get(v, f"advice {v} (unknown)")
        counts.madvise_not_modelled[name] = counts.madvise_not_modelled.get(name, 0) + c


def _frozen(a: np.ndarray) -> np.ndarray:
    """Read-only, so every batch calls run_events with one signature (Arrow's
    zero-copy views are read-only, copies are not; numba compiles per flag)."""
    a.flags.writeable = False
    return a


def _kind_codes(col: pa.Array) -> np.ndarray:
    """K_* code (int8) of each kind string, -1 for unknown; a dictionary column maps only its dictionary."""
    value_set = pa.array(KIND_NAMES)
    if pa.types.is_dictionary(col.type) and not col.null_count:
        codes = pc.index_in(col.dictionary, value_set=value_set).fill_null(-1).to_numpy(zero_copy_only=False)
        return codes.astype(np.int8)[col.indices.to_numpy(zero_copy_only=False)]
    return pc.index_in(col, value_set=value_set).fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int8)


def _note_comms(batch, kind, keep, procs: _Procs) -> None:
    """comm per pid: exec sets it, fork gives it to the child, exit fills it if unknown."""
    comm = batch.column("comm")
    if comm.null_count == len(comm):
        return
    rows = np.flatnonzero(~np.asarray(comm.is_null().to_numpy(zero_copy_only=False)) & keep)
    pids = batch.column("pid").to_numpy()
    childs = batch.column("child_pid").to_numpy()
    names = dict(zip(rows.tolist(), comm.take(pa.array(rows)).to_pylist()))
    for r in rows.tolist():
        k = int(kind[r])
        if k == L.K_EXEC:
            procs.comm[int(pids[r])] = names[r]
        elif k == L.K_FORK:
            procs.comm.setdefault(int(childs[r]), names[r])
        else:
            procs.comm.setdefault(int(pids[r]), names[r])


# ----------------------------------------------------------------------------- replay

def _resolve(opts: ReplayOptions, capture: dict) -> tuple[list[Policy], list[Policy], str, int, bool]:
    wanted = parse_policies(opts.policies)
    run = list(wanted)
    if not any(p.name == "none" for p in run):
        run.insert(0, Policy("none"))  # needed for the savings columns
    thp = opts.thp or capture.get("thp_mode") or "madvise"
    if thp not in THP_CODES:
        raise UsageError(f"THP mode '{thp}' is not one of never, madvise, always")
    if opts.interval_ns is None or opts.interval_ns <= 0:
        raise UsageError(f"interval must be positive, got {opts.interval_ns}")
    la57 = bool(opts.la57) or capture.get("paging_levels") == 5
    if opts.timeseries not in TIMESERIES_ROWS:
        raise UsageError(f"timeseries rows '{opts.timeseries}' is not one of {', '.join(TIMESERIES_ROWS)}")
    snaps = opts.occupancy_snapshots
    if isinstance(snaps, bool) or not isinstance(snaps, (int, np.integer)) or snaps < 0:
        raise UsageError(f"occupancy snapshots must be a whole number >= 0, got {snaps!r}")
    return wanted, run, thp, int(opts.interval_ns), la57


def snapshot_every(first_t: int | None, last_t: int | None, interval: int, snapshots: int) -> tuple[int, bool]:
    """(k, end): occupancy snapshots at the timeseries ticks T with (T / interval) % k == 0
    (k = 0: none) and one at the trace end, at most `snapshots` in all.

    Ticks are the multiples of `interval` in (first_t, last_t) (a timeseries row
    is emitted for ticks before the last event); k is the smallest that leaves
    at most snapshots - 1 of them.
    """
    if snapshots <= 0 or first_t is None or last_t is None:
        return 0, False
    if snapshots == 1:
        return 0, True
    a = first_t // interval + 1            # first tick index
    b = (last_t - 1) // interval           # last tick index (tick b * interval < last_t)
    if b < a:
        return 1, True

    def count(k):  # multiples of k in [a, b]
        return b // k - (a - 1) // k

    k = max(1, (b - a + 1) // snapshots)  # any smaller k leaves at least `snapshots` ticks
    while count(k) > snapshots - 1:
        k += 1
    return k, True


def _time_range(events) -> tuple[int | None, int | None]:
    """(first, last) t_ns of the events input, before replaying it (for the snapshot
    spacing): Arrow compute on a table, the row groups' statistics of a Parquet
    file (the t_ns column itself when they are missing); (None, None) when empty
    or unreadable (the replay then reports the problem)."""
    try:
        if isinstance(events, pa.Table):
            col = events.column("t_ns")
        else:
            pf = pq.ParquetFile(events)
            if is_events2(pf):                  # faults' statistics and the other rows' times
                return events2_time_range(pf, Path(events))
            md = pf.metadata
            j = md.schema.to_arrow_schema().get_field_index("t_ns")
            stats = [md.row_group(i).column(j).statistics for i in range(md.num_row_groups)] if j >= 0 else []
            if stats and all(st is not None and st.has_min_max for st in stats):
                return int(min(st.min for st in stats)), int(max(st.max for st in stats))
            col = pq.read_table(events, columns=["t_ns"]).column("t_ns")
        if len(col) == 0 or not pa.types.is_integer(col.type):
            return None, None
        mm = pc.min_max(col).as_py()
        return mm["min"], mm["max"]
    except (KeyError, OSError, pa.ArrowException):
        return None, None


def replay(events, opts: ReplayOptions | None = None, capture: dict | None = None,
           trace_id: str | None = None) -> ReplayResult:
    """Replay `events` (EVENTS Arrow table or Parquet path) under opts.policies."""
    opts = opts or ReplayOptions()
    if capture is None:
        capture = _read_capture(events)
    if trace_id is None:
        trace_id = capture.get("trace_id") or (Path(events).name.split(".")[0] if not isinstance(events, pa.Table)
                                               else "<table>")
    wanted, run, thp, interval, la57 = _resolve(opts, capture)
    top = 1 << (56 if la57 else 47)
    first_t, last_t = _time_range(events)
    if first_t is not None and (first_t < 0 or last_t >= MAX_T_NS):  # refused by _to_columns, which names the row
        first_t = last_t = None  # (snapshot_every's search over such a range took 10 s)
    snap_every, snap_end = snapshot_every(first_t, last_t, interval, int(opts.occupancy_snapshots))
    source = "<events table>" if isinstance(events, pa.Table) else str(events)
    limit = memory_limit()
    plan = None
    while True:
        states = [PolicyState(p, THP_CODES[thp], interval, top, fast_path=opts.fast_path, snap_every=snap_every,
                              snap_end=snap_end, source=source, limit=limit, shares=len(run),
                              ts_ticks=bool(TIMESERIES_ROWS[opts.timeseries]),
                              thp_ends=bool(capture.get("fault_ends"))) for p in run]
        try:
            procs, counts, convert_s = _replay_pass(events, opts, states, source, top, plan)
            break
        except _ChildRanFirst:  # rare (hostile or reordered input): replay again with the forks moved
            plan = _fork_plan(events, opts.batch_rows, source, top)
    t_end = counts.last_t if counts.last_t is not None else 0
    for st in states:
        st.finish(t_end)
    none_state = next(st for st in states if st.policy.name == "none")
    out_states = [st for st in states if st.policy in wanted]
    ts = timeseries_table(out_states, procs, trace_id)
    # perf reports one loss twice (a LOST record and LOST_SAMPLES records of the same count)
    lost = max(int(capture.get("lost_events") or 0), int(capture.get("lost_samples") or 0))
    if lost:
        LOG.warning(f"{trace_id}: the capture lost {lost} events; every result of this replay undercounts "
                    f"(summary.lost_events)")
    _warn_guesses(trace_id, counts)
    summary = summary_table(out_states, none_state, procs, trace_id, lost)
    meta = metadata(opts, wanted, thp, interval, la57, counts, states, convert_s, trace_id, capture)
    meta["occupancy_snapshot_every_ticks"] = snap_every
    return ReplayResult(ts, summary, meta, effects_table(out_states, procs, trace_id),
                        occupancy_table(out_states, procs, trace_id))


class _ChildRanFirst(Exception):
    """A fork came after rows of its child: the replay starts again with a ForkPlan."""


def _replay_pass(events, opts: ReplayOptions, states: list, source: str, top: int, plan: ForkPlan | None):
    """Stream the events through every policy's state: (procs, counts, convert seconds).  Without
    a plan, stops at the first fork that came after rows of its child (_ChildRanFirst)."""
    procs = _Procs()
    counts = _Counts()
    offset = 0
    convert_s = 0.0
    threads = min(len(states), opts.threads or os.cpu_count() or 1)
    with ThreadPoolExecutor(threads) if threads > 1 else _Serial() as pool:
        for batch in _batches(events, opts.batch_rows):
            t0 = time.perf_counter()
            cols = _to_columns(batch, procs, counts, source, offset, top, plan)
            convert_s += time.perf_counter() - t0
            if procs.seen.early and plan is None:
                raise _ChildRanFirst()
            offset += batch.num_rows
            for st in states:
                st.ensure_procs(len(procs.pids))
            # run_events releases the GIL: policies are independent, so they run side by side
            list(pool.map(lambda st: st.run(cols), states))
    return procs, counts, convert_s


def _warn_guesses(trace_id: str, counts: _Counts) -> None:
    """One warning line per kind of input the replay had to drop, clamp or leave unmodelled."""
    if counts.beyond_top_dropped:
        LOG.warning(f"{trace_id}: {counts.beyond_top_dropped} successful syscalls over ranges above the user "
                    f"top were dropped (the kernel refuses those: corrupt rows?); metadata counts")
    if counts.forks_after_child_events:
        LOG.warning(f"{trace_id}: {counts.forks_after_child_events} forks came after events of their child "
                    f"(reordered input?); each was applied at the child's first event (metadata counts; "
                    f"docs/MODEL.md#fork)")
    if counts.values_clamped:
        LOG.warning(f"{trace_id}: {counts.values_clamped} address/length values above 2^62 were clamped")
    effect = {k: v for k, v in counts.madvise_not_modelled.items() if k != "MADV_COLD"}
    if effect:
        calls = ", ".join(f"{v} {k}" for k, v in sorted(effect.items()))
        LOG.warning(f"{trace_id}: madvise calls the model does not replay: {calls} (their table/RSS "
                    f"effect is missing; docs/MODEL.md#madvise-ignored)")


class _Serial:
    """Stand-in for a thread pool of one: map runs in the caller's thread."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    @staticmethod
    def map(fn, items):
        return map(fn, items)


def _read_capture(events) -> dict:
    if isinstance(events, pa.Table):
        raw = (events.schema.metadata or {}).get(CAPTURE_KEY)
        return json.loads(raw) if raw else {}
    from ptreplay.schemas.parquet_io import read_capture
    try:
        return read_capture(Path(events))
    except (OSError, pa.ArrowInvalid) as e:
        raise SchemaError(f"{events}: not a readable Parquet file ({str(e).splitlines()[0]})") from None


# ----------------------------------------------------------------------------- output

REPLAY_OUTPUTS = (TIMESERIES, SUMMARY, EFFECTS, OCCUPANCY)


def replay_outputs(out_dir: Path, truth: bool = True) -> list[Path]:
    """The files replay_to_dir writes into `out_dir`: one per REPLAY_OUTPUTS artifact, then
    truth.parquet (written when the events carry the kernel's truth)."""
    return [Path(out_dir) / f"{a.name}.parquet" for a in REPLAY_OUTPUTS + ((TRUTH,) if truth else ())]


def replay_to_dir(events_path: Path, out_dir: Path, opts: ReplayOptions | None = None, force: bool = False,
                  events_as: Path | None = None) -> Path:
    """Replay an events Parquet file; write OUTDIR/{timeseries,summary,effects,occupancy}.parquet
    atomically, each, and OUTDIR/truth.parquet when the events carry the kernel's truth (ingested
    from a `ptreplay record` directory).  An existing output is replaced only with `force`, and
    only when ptreplay wrote it; nothing else in OUTDIR is touched.  The summary's metadata names
    the events file (`events_as` when given: where batch will publish it) for `ptreplay attribute`."""
    out_dir = Path(out_dir)
    paths = dict(zip(REPLAY_OUTPUTS + (TRUTH,), replay_outputs(out_dir)))
    for artifact in REPLAY_OUTPUTS:
        check_writable(paths[artifact], force)
    events_path = Path(events_path)
    if not events_path.exists():
        raise UsageError(f"{events_path}: no such events file")
    truth = read_truth(events_path)
    if truth is not None:
        check_writable(paths[TRUTH], force)
    output_dir(out_dir)
    capture = _read_capture(events_path)
    result = replay(events_path, opts, capture=capture)
    result.metadata["events_path"] = str(Path(events_as or events_path).resolve())   # for `ptreplay attribute`
    for artifact, table in ((TIMESERIES, result.timeseries), (SUMMARY, result.summary), (EFFECTS, result.effects),
                            (OCCUPANCY, result.occupancy)):
        write_table(table, paths[artifact], artifact, capture or None, force=force,
                    extra={REPLAY_KEY.decode(): result.metadata})
    if truth is not None:
        write_table(truth, paths[TRUTH], TRUTH, capture or None, force=force)
    return out_dir
