"""Forks that came after rows of their child, in schema-valid but reordered or hostile events.

In a perf capture sched_process_fork fires in kernel_clone before wake_up_new_task, so the child
cannot run before its fork row; when its rows come first anyway, the fork is applied just before
the child's first row, at its time (the child starts as a copy of its parent there, its own rows
follow in the inherited VMAs), and the late fork row is dropped and counted
(`forks_after_child_events`).  RowsSeen finds such forks while the engine converts batches;
ForkPlan and apply_plan move them on a second pass.  See docs/MODEL.md#fork.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ptreplay.replay.layout import K_FORK

# neutral values of a fork row's other kernel columns (synth.events_table's defaults)
_FORK_ROW = {"addr": 0, "len": 0, "prot": -1, "flags": -1, "fd": -1, "pgoff": 0, "advice": -1, "ecode": -1,
             "new_addr": 0, "new_len": 0, "ret": 0}


@dataclass
class RowsSeen:
    """What the rows said so far of each process index: rows of its own (`ran`, the first at
    input row `first_row`), named as a fork's child (`forked`); `early`: the forks that came after
    rows of their child as (child, parent, fork row, child's first row)."""

    ran: np.ndarray = field(default_factory=lambda: np.zeros(16, bool))
    forked: np.ndarray = field(default_factory=lambda: np.zeros(16, bool))
    first_row: np.ndarray = field(default_factory=lambda: np.zeros(16, np.int64))
    early: list = field(default_factory=list)

    def note(self, nproc: int, proc: np.ndarray, row: np.ndarray, kind: np.ndarray, child: np.ndarray) -> None:
        """Record one batch's kernel columns (nproc: process indices so far)."""
        if nproc > len(self.ran):
            cap = 1 << (nproc - 1).bit_length()
            self.ran, self.forked, self.first_row = (_grown(self.ran, cap), _grown(self.forked, cap),
                                                     _grown(self.first_row, cap))
        if len(proc) == 0:
            return
        first = np.full(nproc, len(proc), np.int64)  # each index's first position in the batch
        first[proc[::-1]] = np.arange(len(proc) - 1, -1, -1)
        for f in np.flatnonzero((kind == K_FORK) & (child >= 0)).tolist():
            c = int(child[f])
            if not self.forked[c] and c != proc[f] and (self.ran[c] or first[c] < f):
                self.early.append((c, int(proc[f]), int(row[f]),
                                   int(self.first_row[c] if self.ran[c] else row[first[c]])))
            self.forked[c] = True
        new = np.flatnonzero((first < len(proc)) & ~self.ran[:nproc])
        self.first_row[new] = row[first[new]]
        self.ran[new] = True


@dataclass
class ForkPlan:
    """The late forks of one input, by the child's first row (ascending)."""

    late_rows: np.ndarray    # input rows of the late fork rows (dropped)
    first_rows: np.ndarray   # input row of each child's first row, ascending
    parents: np.ndarray      # the parent pid of each
    fork_rows: np.ndarray    # the late fork's input row of each (the effects' event_row)

    @classmethod
    def of(cls, seen: RowsSeen, pids: np.ndarray) -> "ForkPlan":
        early = sorted(seen.early, key=lambda e: e[3])
        rows = np.array([e[2] for e in early], np.int64)
        return cls(late_rows=rows, first_rows=np.array([e[3] for e in early], np.int64),
                   parents=pids[[e[1] for e in early]] if early else np.zeros(0, np.int32), fork_rows=rows)


def apply_plan(cols: dict, plan: ForkPlan, parent_index) -> tuple[dict, int]:
    """(kernel columns with the plan's forks inserted before their child's first row and the late
    fork rows dropped, rows dropped).  parent_index: pids -> process indices (int32)."""
    row = cols["row"]
    drop = np.flatnonzero(np.isin(row, plan.late_rows))
    at = np.flatnonzero(np.isin(row, plan.first_rows))
    if len(drop) == 0 and len(at) == 0:
        return cols, 0
    j = np.searchsorted(plan.first_rows, row[at])
    fork = {"t": cols["t"][at], "kind": K_FORK, "proc": parent_index(plan.parents[j]), "child": cols["proc"][at],
            "row": plan.fork_rows[j], **_FORK_ROW}
    gone = drop + np.searchsorted(at, drop, side="right")  # positions after the inserts
    out = {}
    for name, a in cols.items():
        out[name] = np.delete(np.insert(a, at, np.asarray(fork[name]).astype(a.dtype)), gone)
        out[name].flags.writeable = False  # like the engine's other columns (one kernel signature)
    return out, len(drop)


def _grown(a: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n, a.dtype)
    out[: len(a)] = a
    return out
