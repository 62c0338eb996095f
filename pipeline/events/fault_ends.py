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
MAP_POPULATE, MADV_POPULATE_WRITE, ...) or is in an earlier batch ends nothing the replay can
move; both are counted (Stats).  The records themselves become no event row.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
