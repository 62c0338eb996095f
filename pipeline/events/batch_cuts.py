"""Where the normalizer cuts the reader's batches: a fault and its end, or an exec and what
precedes it, must be in one batch (`Normalizer.batches`).

`cut_at(prev, raw, item)` is where prev's rows must go with raw instead.  Batches with their
fault rows apart (the perf.data reader's `split`) get the same rules, applied to the few rows
they read, merged: those near prev's end and near raw's start.
"""
from __future__ import annotations

import numpy as np

from ptreplay.pipeline.events import fault_ends
from ptreplay.pipeline.formats import RawColumns
from ptreplay.pipeline.formats.base import FAULT_EVENTS


def cut_at(prev: RawColumns, raw: RawColumns, fault_end_item: int | None) -> int:
    """Where prev must be cut (`Normalizer.batches`; len(prev): nowhere): the earliest of
    `open_fault_start` and `exec_run_start`.  For batches with their fault rows apart, the
    same rules on the rows they look at, merged: prev's last HOLD_NS and raw's rows up to HOLD_NS
    after prev's end (and the rows at the first time after that, so that raw is seen to go on),
    once the other rows say a cut may be needed at all."""
    if prev.faults is None and raw.faults is None:
        return min(open_fault_start(prev, raw, fault_end_item), exec_run_start(prev, raw))
    end = prev.last_t()
    if end is None or not _may_cut(prev, raw, end, fault_end_item):
        return len(prev)
    tail = prev.between(end - fault_ends.HOLD_NS, None)
    later = [p["t_ns"] for p in (raw.columns, raw.faults) if p is not None]
    after = [t[np.searchsorted(t, end + fault_ends.HOLD_NS, side="right"):][:1] for t in later]
    after = [int(t[0]) for t in after if len(t)]
    head = raw.between(None, min(after) if after else None)
    at = min(open_fault_start(tail, head, fault_end_item), exec_run_start(tail, head))
    return len(prev) - len(tail) + at if at < len(tail) else len(prev)


def _may_cut(prev: RawColumns, raw: RawColumns, end: int, fault_end_item: int | None) -> bool:
    """Whether `cut_at`'s rules may cut prev (prev ends at time `end`): an exit_mmap among its
    other rows within HOLD_NS of its end (an exec in progress), or, where fault ends are
    traced, an end record in raw within HOLD_NS after it or raw ending before that."""
    names, t = list(prev.events), prev.columns["t_ns"]
    if "exit_mmap" in names:
        recent = prev.event[np.searchsorted(t, end - fault_ends.HOLD_NS):]
        if (recent == names.index("exit_mmap")).any():
            return True
    if fault_end_item is None:
        return False
    last = raw.last_t()
    if last is None or last <= end + fault_ends.HOLD_NS:
        return True
    r_names, r_t = list(raw.events), raw.columns["t_ns"]
    if fault_ends.END_EVENT not in r_names:
        return False
    soon = raw.event[:np.searchsorted(r_t, end + fault_ends.HOLD_NS, side="right")]
    return bool((soon == r_names.index(fault_ends.END_EVENT)).any())


def open_fault_start(prev: RawColumns, raw: RawColumns, fault_end_item: int | None) -> int:
    """The earliest fault of prev that may end in raw (len(prev): none, or no fault ends traced)."""
    if fault_end_item is None:
        return len(prev)
    is_fault = np.array([n in FAULT_EVENTS for n in prev.events] or [False])     # per event code
    open_ = fault_ends.open_faults(prev.columns["tid"], prev.columns["t_ns"], prev.event, is_fault)
    if len(open_) and fault_ends.ends_in(prev, open_, raw, fault_end_item):
        return int(open_.min())
    return len(prev)


def exec_run_start(prev: RawColumns, raw: RawColumns) -> int:
    """Where prev must be cut so that an exec in progress at its end meets its exec event in raw
    (len(prev): nowhere); `move_exec_before_loader_faults` needs the old mm's teardown, the loader
    faults and the exec in one batch.  An exec in progress is an ``exit_mmap`` (the old mm torn
    down inside exec) within HOLD_NS of prev's end that only loader rows of its thread follow
    there: kernel-mode faults (the ELF image loaded into the new mm) and perf's COMM record of the
    exec.  Its exec is in raw when that thread's first row in raw that is no loader row is
    ``sched_process_exec``; it may come after raw when the thread has no such row in raw and raw
    ends before HOLD_NS passed."""
    names = list(prev.events)
    t, tid, ev = prev.columns["t_ns"], prev.columns["tid"], prev.event
    if "exit_mmap" not in names or not len(t):
        return len(prev)
    r_names = list(raw.events)
    loader = np.isin(names, ("page_fault_kernel", "perf_comm"))         # per event code
    r_loader = np.isin(r_names, ("page_fault_kernel", "perf_comm"))
    r_exec = r_names.index("sched_process_exec") if "sched_process_exec" in r_names else -1
    lo = fault_ends.recent_start(t)
    cut = len(prev)
    for e in (np.flatnonzero(ev[lo:] == names.index("exit_mmap")) + lo).tolist():
        after = np.flatnonzero(tid[e + 1:] == tid[e]) + e + 1
        if not loader[ev[after]].all():
            continue
        mine, unfinished = fault_ends.thread_rows(raw, int(tid[e]), int(t[e]))
        other = mine[~r_loader[raw.event[mine]]]
        if (raw.event[other[0]] == r_exec) if len(other) else unfinished:
            cut = min(cut, e)
    return cut
