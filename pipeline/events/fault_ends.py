"""Faults whose end the kernel reported: a huge page fault takes effect when it ends.

``exceptions:page_fault_user`` fires at a fault's entry.  A fault that installs a transparent
huge page first zeroes 2 MiB (tens of us, up to ms when memory must be compacted), and the
kernel's VmPTE and RssAnon change only when ``map_anon_folio_pmd`` (mm/huge_memory.c) sets the
PMD: right there it counts THP_FAULT_ALLOC to the mm's memcg (``count_memcg_event_mm``), which
``ptreplay record`` traces (``memcg:count_memcg_events`` filtered on that counter's item;
record.json ``fault_ends``).  Such a record ends the fault its thread is in, which is the
thread's previous record when that is a fault: the fault row is then stamped with the end time
(events ``t_ns``) and its duration (``dur_ns`` = end - entry, > 0 only for these), and takes its
place in time order there.  So the replay applies the huge page when the kernel mapped it, and
knows which THP-eligible faults got one: a write fault the model would give a huge page and that
has no end fell back to a 4 KiB page (docs/MODEL.md#thp-fault).

A record whose thread's previous record is no fault (a huge page populated inside a syscall:
MAP_POPULATE, MADV_POPULATE_WRITE, ...) ends nothing the replay can move; it is counted (Stats).
The records themselves become no event row.  So that a fault and its end are never in two batches,
the normalizer looks at each batch's open faults (`open_faults`: faults that are their thread's last
record, within HOLD_NS of the batch's end) once the next batch is known: when one of them may end
there (`ends_in`), the batch's rows from the earliest open fault on go with the next batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ptreplay.pipeline.formats import RawColumns
from ptreplay.pipeline.formats.base import name_code

END_EVENT = "count_memcg_events"


@dataclass
class Ends:
    """The fault ends of one raw batch: end rows, the fault rows they end, the end records that
    end no fault of the batch, and every end record (to keep out of the other rows)."""
    ends: np.ndarray
    faults: np.ndarray
    unmatched: int
    records: np.ndarray


def match(tid: np.ndarray, a0: np.ndarray, code: np.ndarray, names: list, is_fault: np.ndarray,
          item: int | None) -> Ends:
    """Pair every end record (END_EVENT with a0 == item) with its thread's previous record,
    when that is a fault (`is_fault` per event code).  Rows are the batch's, in time order."""
    codes = [i for i, n in enumerate(names) if n == END_EVENT]
    none = np.empty(0, np.int64)
    if not codes:
        return Ends(none, none, 0, none)
    records = np.flatnonzero(np.isin(code, codes))
    ends = records[a0[records] == item] if item is not None else none
    if not len(ends):
        return Ends(none, none, 0, records)
    keep = np.ones(len(code), bool)
    keep[records] = False
    keep[ends] = True
    rows = np.flatnonzero(keep)
    order = rows[np.lexsort((rows, tid[rows]))]        # each thread's rows, in time order
    where = np.full(len(code), -1, np.int64)
    where[order] = np.arange(len(order))
    pos = where[ends]
    prev = np.where(pos > 0, order[np.maximum(pos - 1, 0)], 0)
    ok = (pos > 0) & (tid[prev] == tid[ends]) & is_fault[code[prev]]
    return Ends(ends[ok], prev[ok], int((~ok).sum()), records)


# A huge-page fault's end comes within this of its entry (~48 us here; direct compaction: ms).
HOLD_NS = 20_000_000


def recent_start(t: np.ndarray) -> int:
    """The first row within HOLD_NS of the last (t sorted, at least one row)."""
    return int(np.searchsorted(t, t[-1] - HOLD_NS))


def thread_rows(raw: RawColumns, tid: int, t: int) -> tuple[np.ndarray, bool]:
    """Thread tid's rows in raw within HOLD_NS of time t, and whether raw ends before HOLD_NS
    passed (more of them may come in a later batch)."""
    r_t = raw.columns["t_ns"]
    w = int(np.searchsorted(r_t, t + HOLD_NS, side="right"))
    return np.flatnonzero(raw.columns["tid"][:w] == tid), w == len(r_t)


def open_faults(tid: np.ndarray, t: np.ndarray, event: np.ndarray, is_fault_code: np.ndarray) -> np.ndarray:
    """The faults (`is_fault_code` per event code) that are their thread's last record and lie
    within HOLD_NS of the batch's last time (rows sorted by time): their ends may come in the
    next batch."""
    if not len(t):
        return np.empty(0, np.int64)
    lo = recent_start(t)
    _, first = np.unique(tid[lo:][::-1], return_index=True)
    last = len(t) - 1 - first                 # each thread's last row, for the threads seen that late
    return last[is_fault_code[event[last]]]


def ends_in(before: RawColumns, open_: np.ndarray, raw: RawColumns, item: int | None) -> bool:
    """Whether one of the open faults (`open_faults`) of the batch `before` may end in `raw` or
    after it: for its thread, the first row in raw within HOLD_NS of the fault is an end record,
    or raw ends before HOLD_NS passed without a row of that thread."""
    tid, t = before.columns["tid"], before.columns["t_ns"]
    ends = np.zeros(len(raw.events) + 1, bool)
    ends[[i for i, n in enumerate(raw.events) if n == END_EVENT]] = True
    for i in open_.tolist():
        mine, unfinished = thread_rows(raw, int(tid[i]), int(t[i]))
        mine = mine[~ends[raw.event[mine]] | (raw.columns["a0"][mine] == item)]   # as `match`: other items skipped
        if ends[raw.event[mine[0]]] if len(mine) else unfinished:
            return True
    return False


def join(head: RawColumns, tail: RawColumns) -> RawColumns:
    """head's rows then tail's, the event and comm codes of both in one name list."""
    events, comms = list(tail.events), list(tail.comms)
    ev_map = np.array([name_code(events, n) for n in head.events] or [0], np.int64)
    comm_map = np.array([name_code(comms, c) for c in head.comms] + [-1], np.int64)   # [-1]: comm -1 stays -1
    cols = {k: np.concatenate([head.columns[k], tail.columns[k]]) for k in tail.columns}
    named = (head.comm >= 0) & (head.comm < len(head.comms))     # fault rows' comm is undefined (LAY_NARROW)
    head_comm = np.where(named, comm_map[np.where(named, head.comm, -1)], -1)
    return RawColumns(cols, np.concatenate([ev_map[head.event], tail.event]).astype(tail.event.dtype), events,
                      np.concatenate([head_comm, tail.comm]).astype(tail.comm.dtype), comms)


def cut(raw: RawColumns, at: int) -> tuple[RawColumns, RawColumns]:
    """raw's rows before `at` and (copied: the reader may reuse its buffers) from `at` on."""
    def part(sl, copy):
        cols = {k: (v[sl].copy() if copy else v[sl]) for k, v in raw.columns.items()}
        return RawColumns(cols, raw.event[sl].copy() if copy else raw.event[sl], list(raw.events),
                          raw.comm[sl].copy() if copy else raw.comm[sl], list(raw.comms))
    return part(slice(0, at), False), part(slice(at, None), True)
