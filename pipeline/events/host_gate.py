"""Which processes of a host recording (`record -a`, capture/host.py) are replayed.

perf -a sees every task on the machine; a replay is right only for a process whose address
space it knows from the start.  A process is *known*, and its events kept, from

* its start snapshot (snapshot.parquet; its traced events before the snapshot time are dropped by
  ingest.StartStates, as in attach mode; so is its fork row when it was born before its snapshot),
* its fork by a known process (the child starts as the parent's copy), or
* its exec (a fresh address space, as in launch mode),

and is forgotten at its exit (a later process under the same pid is a new one).  Everything
else is dropped and counted per reason: ptreplay's own processes (`excluded`), processes the
filters left out (`filtered`), processes running at the start without a snapshot (exited
before their turn, not reached, kernel threads: `no_snapshot`), and processes born of an
unknown one that never exec'd (children of kernel threads, or of a process before its
snapshot: `unknown_start`).  The filters of record.json ``host.filters`` apply to processes
born during the capture as well: ``comm`` to the name at fork or exec, ``min_vmpte_bytes`` to
the largest VmPTE the truth sampled for the pid (one never sampled does not reach it).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from ptreplay.pipeline.events.arrow_np import to_arrow, to_numpy
from ptreplay.schemas import EVENT_KINDS
from ptreplay.schemas.events_layout import EventParts

FORK, EXEC, EXIT = (EVENT_KINDS.index(k) for k in ("fork", "exec", "exit"))


def host_info(path: Path) -> dict | None:
    """record.json ``host`` of a `record -a` directory, or None for any other input."""
    file = Path(path) / "record.json"
    if not (Path(path).is_dir() and file.exists()):
        return None
    try:
        return json.loads(file.read_text()).get("host")
    except (OSError, ValueError):
        return None


class HostGate:
    """Streaming filter over normalized event batches (time order), state carried across batches."""

    def __init__(self, host: dict, snapshot_pids, truth: pa.Table | None):
        snap = host.get("snapshot") or {}
        self.excluded = {int(p) for p in host.get("excluded", {})}
        self.filtered = {int(p) for p in snap.get("filtered_pids", {})}
        self.listed = set(snap.get("listed_pids", [])) | set(snap.get("born_pids", [])) | self.filtered
        f = host.get("filters") or {}
        self.comm = set(f.get("comm") or ())
        self.min_vmpte = int(f.get("min_vmpte_bytes") or 0)
        self.peak: dict[int, int] = {}
        if self.min_vmpte and truth is not None and truth.num_rows:
            pid, v = to_numpy(truth.column("pid")), to_numpy(truth.column("vmpte_bytes"))
            order = np.lexsort((v, pid))
            last = np.r_[pid[order][1:] != pid[order][:-1], True]
            self.peak = dict(zip(pid[order][last].tolist(), v[order][last].tolist()))
        self.snapshot_t0 = {int(p): int(t) for p, t in dict(snapshot_pids).items()}   # pid -> snapshot time
        self.filtered_born: set[int] = set()             # born during the capture, left out by the filters
        if self.min_vmpte:      # snapshotted young (born during the snapshot pass): judged on the truth
            for pid in set(snap.get("born_pids", [])) & set(self.snapshot_t0):
                if self.peak.get(pid, -1) < self.min_vmpte:
                    self.filtered_born.add(pid)
                    del self.snapshot_t0[pid]
        self.snapshot_pids = set(self.snapshot_t0)
        self.known: set[int] = set(self.snapshot_pids)
        self.dropped: dict[str, dict[int, int]] = {}     # reason -> pid -> events
        self.born: set[int] = set()                      # pids that became known by fork or exec
        self.kept_pids: set[int] = set()                 # pids with events kept
        self.forks_dropped = 0                           # fork rows of known parents, child not replayed
        self.forks_before_snapshot = 0                   # fork rows of children that start from a snapshot

    def _admits(self, pid: int, comm: str | None) -> bool:
        """May a process born during the capture (fork child or exec) be replayed?"""
        if pid in self.excluded or pid in self.filtered:
            return False
        if (self.comm and (comm or "") not in self.comm) or (self.min_vmpte and self.peak.get(pid, -1) < self.min_vmpte):
            self.filtered_born.add(pid)
            return False
        return True

    def filter(self, ev: pa.Table | EventParts) -> pa.Table | EventParts:
        """The rows of known processes (module docstring); the others counted by reason.  An
        events table, or events/2 parts (the ingest's fast path: kept as parts, the others' rows
        renumbered)."""
        if not ev.num_rows:
            return ev
        if isinstance(ev, EventParts):
            return self._filter_parts(ev)
        keep = self._keep(to_numpy(ev.column("pid")), np.arange(ev.num_rows), ev)
        return ev if keep is None else ev.filter(pa.array(keep))

    def _filter_parts(self, ev: EventParts) -> EventParts:
        """filter() of events/2 parts: the same rows as filtering their joined table.  Every
        fork, exec and exit is among the others; the faults fill the rows the others leave."""
        row = to_numpy(ev.others.column("row"))
        is_fault = np.ones(ev.num_rows, bool)
        is_fault[row] = False
        pid = np.empty(ev.num_rows, np.int64)
        pid[row] = to_numpy(ev.others.column("pid"))
        pid[is_fault] = to_numpy(ev.faults.column("pid"))
        keep = self._keep(pid, row, ev.others)
        if keep is None:
            return ev
        others = ev.others.filter(to_arrow(keep[row], pa.bool_()))
        # a kept row moves up by the rows dropped before it
        dropped_before = np.cumsum(~keep)
        kept_rows = row[keep[row]]
        others = others.set_column(0, others.schema.field("row"),
                                   to_arrow(kept_rows - dropped_before[kept_rows], pa.int64()))
        return EventParts(ev.faults.filter(to_arrow(keep[is_fault], pa.bool_())), others)

    def _keep(self, pid: np.ndarray, at: np.ndarray, ev: pa.Table) -> np.ndarray | None:
        """Which of a batch's rows (pid: every row's) to keep, None for all; `ev` holds its rows
        that may be forks, execs or exits (kind, child_pid, t_ns, comm), at rows `at`."""
        kind_col = ev.column("kind").combine_chunks()
        if not pa.types.is_dictionary(kind_col.type):     # events/2 others read back: strings
            kind_col = kind_col.dictionary_encode()
        codes = to_numpy(kind_col.indices).astype(np.int16)
        names = kind_col.dictionary.to_pylist()
        lut = np.array([EVENT_KINDS.index(n) for n in names], np.int16)
        kind = lut[codes]
        before = set(self.known)
        changes: dict[int, list[tuple[int, bool]]] = {}
        fork_drop: list[int] = []
        transitions = np.flatnonzero((kind == FORK) | (kind == EXEC) | (kind == EXIT))
        if len(transitions):
            child = to_numpy(ev.column("child_pid"))
            t = to_numpy(ev.column("t_ns"))
            comm = dict(zip(transitions.tolist(), ev.column("comm").take(pa.array(transitions)).to_pylist()))
            for j in transitions.tolist():
                i, k = int(at[j]), int(kind[j])
                p = int(pid[i])
                if k == FORK and int(child[j]) in self.snapshot_t0 and t[j] < self.snapshot_t0[int(child[j])]:
                    fork_drop.append(i)          # the child starts from its own snapshot, taken later
                    self.forks_before_snapshot += 1
                elif k == FORK and p in self.known:
                    c = int(child[j])
                    if c not in self.known and self._admits(c, comm[j]):
                        self.known.add(c)
                        self.born.add(c)
                        changes.setdefault(c, []).append((i, True))
                    elif c not in self.known:            # its child is not replayed: neither is the fork
                        fork_drop.append(i)
                        self.forks_dropped += 1
                elif k == EXEC and p not in self.known and self._admits(p, comm[j]):
                    self.known.add(p)
                    self.born.add(p)
                    changes.setdefault(p, []).append((i, True))
                elif k == EXIT and p in self.known:
                    self.known.discard(p)
                    changes.setdefault(p, []).append((i + 1, False))
        keep = np.isin(pid, np.fromiter(before, np.int64, len(before))) if before else np.zeros(len(pid), bool)
        rows = np.arange(len(pid))
        for p, steps in changes.items():
            mine = rows[pid == p]
            state = np.full(len(mine), p in before)
            for on_at, on in steps:
                state[mine >= on_at] = on
            keep[mine] = state
        self.kept_pids.update(np.unique(pid[keep]).tolist())
        drop = ~keep
        if fork_drop:
            keep[fork_drop] = False
        if keep.all():
            return None
        self._count(pid[drop])
        return keep

    def _count(self, pids: np.ndarray) -> None:
        uniq, n = np.unique(pids, return_counts=True)
        for p, c in zip(uniq.tolist(), n.tolist()):
            reason = ("excluded" if p in self.excluded else "filtered" if p in self.filtered | self.filtered_born
                      else "no_snapshot" if p in self.listed and p not in self.born else "unknown_start")
            per = self.dropped.setdefault(reason, {})
            per[p] = per.get(p, 0) + c

    def report(self) -> dict:
        """For the events metadata ``host_recording``: dropped events and processes per reason."""
        return {"replayed_born": len(self.born), "forks_of_dropped_children": self.forks_dropped,
                "forks_of_snapshotted_children": self.forks_before_snapshot,
                "replayed_pids": sorted(self.kept_pids | self.snapshot_pids),
                "dropped": {r: {"processes": len(d), "events": sum(d.values())}
                            for r, d in sorted(self.dropped.items())},
                "dropped_pids": {r: sorted(d) for r, d in sorted(self.dropped.items())}}
