"""One normalization for every reader: raw tracepoint records -> `events` rows.

Readers (pipeline/formats/) only decode; everything that gives the records a
meaning happens here, identically for perf.data, perf script, ftrace and
trace-cmd input:

* **syscalls** are paired per thread: a ``sys_enter_X`` is closed by the next
  record of the same thread if that is ``sys_exit_X``.  The event is stamped
  with the *exit* time (its effect is complete and its result known; the
  duration is kept in ``dur_ns``).  Failed calls (negative return) are kept
  with ``failed=True`` and never applied.  An enter followed by anything else
  on its thread lost its exit: it is kept with ``unfinished=True``; so is an
  enter still open when the capture ends.  An exit without an enter (the
  capture began inside the call) is dropped and counted.  Calls still open at
  the end are stamped with the capture's last time (they are the last thing
  their thread did).
* **faults** on kernel addresses are dropped; kernel-mode faults on user
  addresses (``page_fault_kernel``, e.g. execve loading the ELF image or
  copy_to_user into a fresh buffer) are kept with ``user_mode=False``.
* **pid** is the thread-group id: taken from the record when the format has it
  (perf's TID field, ftrace's record-tgid), otherwise from what earlier records
  said about that thread (perf FORK records, clone events, ftrace tgid
  columns).  A thread never seen with its tgid is assumed to be a group leader
  (pid = tid); the count of such rows is reported (`assumed_tgid_rows`).
* **fork/clone**: ``sched_process_fork`` is a ``fork`` when the child is a new
  thread group and a ``clone`` (new thread) when it joins the parent's group;
  perf FORK records (pid != tid) or later sightings of the child decide.
  Without either, the child is taken to be a new process.
* **exec**: the new address space exists before ``sched_process_exec`` fires
  (exec_binprm loads the ELF image with kernel-mode faults first), so the
  ``exec`` event is moved back to the first of the kernel-mode faults that
  immediately precede it on the same thread.  An ``exit_mmap`` directly
  before that run is the old mm's teardown inside exec and is dropped.
* **exit** (teardown of the address space): when the last known thread of the
  group passes ``sched_process_exit``, moved to what follows it in the same batch:
  the ``mmap:exit_mmap`` (whole-host captures: ~60 us later; per-task perf stops
  following a task at its exit and never records it), else perf's EXIT record of
  that thread (perf_event_exit_task() runs after exit_mm() in do_exit(), so after
  the mm was released); once the capture has shown an ``exit_mmap`` at a process's
  end, at ``exit_mmap`` only; failing both, at the end of the capture for a group
  that called exit_group.  The ``exit_mmap`` of an
  exec (the old mm torn down, just before the exec) is no process's end.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from ptreplay.pipeline.events import arrow_np, batch_cuts, fault_ends
from ptreplay.pipeline.formats import RawColumns
from ptreplay.pipeline.formats.base import KERNEL_FAULT, NOT_FAULT, USER_FAULT, rank
from ptreplay.replay import aot
from ptreplay.schemas import EVENT_FAULTS, EVENT_KINDS, EVENT_OTHERS, EVENTS, events_layout
from ptreplay.schemas.events_layout import EventParts

USER_LIMIT_4LEVEL = 1 << 47
USER_LIMIT_5LEVEL = 1 << 56

# Syscalls whose enter/exit pairs become events, and the event kind they map to.
SYSCALLS = {
    "mmap": "mmap", "munmap": "munmap", "mremap": "mremap", "brk": "brk",
    "mprotect": "mprotect", "madvise": "madvise", "process_madvise": "madvise",
}
_SYSCALL_NAMES = list(SYSCALLS)


@dataclass
class Stats:
    """Counts of everything normalization dropped or guessed (goes into capture metadata)."""
    kernel_address_faults_dropped: int = 0
    orphan_exits_dropped: int = 0
    lost_exit_syscalls: int = 0
    unfinished_syscalls: int = 0
    assumed_tgid_rows: int = 0
    process_madvise_other_mm: int = 0
    time_clamped_rows: int = 0
    fault_rows: int = 0
    fault_ends: int = 0              # faults stamped with the end the kernel reported (fault_ends.py)
    fault_ends_unmatched: int = 0    # end records whose thread was in no fault of the batch
    foreign_exit_mmaps: int = 0      # exit_mmap run by a task still alive: another process's mm (#exit)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class _Pending:
    """A sys_enter waiting for its exit (carried across batches)."""
    t_ns: int
    seq: int
    pid: int
    tid: int
    cpu: int
    name: str
    args: tuple


@dataclass
class Normalizer:
    """Streaming normalizer: push() raw batches in time order, then finish().

    Memory is bounded by the batch size plus per-thread state (open syscalls,
    thread -> group map, live threads per group).
    """
    paging_levels: int = 4
    fault_end_item: int | None = None    # record.json fault_ends.item: which end records count
    whole_host: bool = False             # a `record -a` capture: every process's exit_mmap is in it
    reader_meta: dict = field(default_factory=dict)   # the reader's metadata, as it fills in (exit_traced_first)
    stats: Stats = field(default_factory=Stats)
    _tgid: dict = field(default_factory=dict)        # tid -> tgid
    _threads: dict = field(default_factory=dict)     # tgid -> set of live tids
    _pending: dict = field(default_factory=dict)     # tid -> _Pending
    _exited: set = field(default_factory=set)        # tgids whose mm was torn down
    _gone: set = field(default_factory=set)          # tids whose sched_process_exit was seen
    _awaiting: dict = field(default_factory=dict)    # tgid -> (tid, comm): ended, its teardown to come
    _exit_group: dict = field(default_factory=dict)  # tgid -> (t_ns, seq, tid, cpu) of exit_group
    _comm: dict = field(default_factory=dict)        # tgid -> comm
    _last_t: int = -(1 << 62)
    _has_exit_mmap: bool = False       # processes end at their exit_mmap only (see _lifecycle)

    def __post_init__(self):
        self._has_exit_mmap = self.whole_host

    @property
    def user_limit(self) -> int:
        return USER_LIMIT_5LEVEL if self.paging_levels == 5 else USER_LIMIT_4LEVEL

    # ------------------------------------------------------------------ batches
    def push(self, raw: pa.Table | RawColumns) -> pa.Table:
        """Normalize one raw batch (sorted by t_ns, seq); returns events rows (BATCH_SCHEMA).

        `raw` is a RAW table, or the same rows as numpy columns (`RawColumns`, from
        the perf.data reader: no strings to build and re-encode)."""
        if len(raw) == 0:
            return _empty()
        if isinstance(raw, RawColumns):
            raw = raw.merged()
        cols, code, fault_kind, others = self._prepare(raw)
        out = self._merge(cols, code, fault_kind, others)
        self._clamp_parts(out)
        if len(others["kind"]) and (others["kind"] == KIND["exec"]).any():
            out = move_exec_before_loader_faults(out)
        return _to_table(out)

    def push_parts(self, raw: pa.Table | RawColumns) -> EventParts:
        """push() in the events/2 layout (the same rows): the fault rows packed into the
        EVENT_FAULTS columns, the others with their row in the batch.  A batch with an exec
        (rare: its row moves before loader faults) is merged as push() does and then split."""
        if len(raw) == 0:
            return _empty_parts()
        if isinstance(raw, RawColumns) and raw.faults is not None:
            pairs = self._split_pairs(raw)
            if pairs is not None:
                return self._push_split(raw, pairs)
            raw = raw.merged()
        cols, code, fault_kind, others = self._prepare(raw)
        if len(others["kind"]) and (others["kind"] == KIND["exec"]).any():
            out = self._merge(cols, code, fault_kind, others)
            self._clamp_parts(out)
            return _parts_of_merged(move_exec_before_loader_faults(out))
        faults, at = self._split(cols, code, fault_kind, others)
        self._clamp_parts(faults, others)
        return _parts(faults, others, at)

    def _split_pairs(self, raw: RawColumns) -> tuple | None:
        """For a batch with its fault rows apart (the perf.data reader's `split`): the (tid, pid)
        pairs its fault rows state, in order (`_pid_runs`), when push_parts can take the
        batch as it is; None when it must merge it first (anything that needs the fault rows
        among the others: a fault row among the others, an exec, a fault end, a fault without its
        pid or on a kernel address, a thread with two pids)."""
        names, code, f = list(raw.events), raw.event, raw.faults
        if len(code):
            if (_fault_kinds(names)[code] != NOT_FAULT).any():
                return None
            for name in ("sched_process_exec", fault_ends.END_EVENT):
                if name in names and (code == names.index(name)).any():
                    if name == "sched_process_exec" or self.fault_end_item is not None and (
                            raw.columns["a0"][code == names.index(name)] == self.fault_end_item).any():
                        return None
        if not len(f["seq"]):
            return [], []
        if f["pid"].min() < 0 or f["addr"].max() >= self.user_limit:
            return None
        tids, pids = _pid_runs(f["tid"], f["pid"])
        seen = dict(zip(tids, pids))
        if len(set(zip(tids, pids))) != len(seen):
            return None                              # a thread with two pids in one batch
        if len(code) and _pid_conflict(seen, raw.columns["tid"], raw.columns["pid"]):
            return None
        return tids, pids

    def _push_split(self, raw: RawColumns, pairs: tuple) -> EventParts:
        """push_parts of a batch whose fault rows are apart and need nothing of the others
        (`_split_pairs`): the same rows as merging it would give, without touching the fault
        rows but to learn their threads' pids."""
        for tid, pid in zip(*pairs):               # as _learn_tgids does for every row
            self._tgid[tid] = pid
            self._threads.setdefault(pid, set()).add(tid)
        cols, code, fault_kind, others = self._prepare(raw)
        f = raw.faults
        faults = {k: f[k] for k in events_layout.FAULT_COLUMNS}
        at = rank(others["t_ns"], others["seq"], f["t_ns"], f["seq"]) + np.arange(len(others["t_ns"]))
        self.stats.fault_rows += len(f["seq"])
        self._clamp_parts(faults, others)
        return _parts(faults, others, at)

    def batches(self, raws):
        """The reader's batches as the batches to push: a batch goes out once the next one is
        known, whole, unless something at its end completes in the next, which a batch boundary
        must not part: a fault and its end (where fault ends are traced: fault_ends.ends_in),
        an exec and the old mm's teardown and loader faults before it (`batch_cuts.exec_run_start`).  Then
        its rows from there on are joined to the next batch."""
        prev = None
        for raw in raws:
            if not isinstance(raw, RawColumns):
                yield raw
                continue
            if prev is not None:
                at = batch_cuts.cut_at(prev, raw, self.fault_end_item)
                if at < len(prev):
                    head, tail = fault_ends.cut(prev.merged(), at)
                    yield head
                    raw = fault_ends.join(tail, raw.merged())
                else:
                    yield prev
            prev = raw
        if prev is not None:
            yield prev

    def finish_parts(self) -> EventParts:
        """finish() in the events/2 layout."""
        out = self._finish()
        return _empty_parts() if out is None else _parts_of_merged(out)

    def _prepare(self, raw: pa.Table | RawColumns) -> tuple:
        """The raw batch as columns, its event codes, which codes are faults, and its other
        rows (syscalls paired, lifecycle events) as sorted columns (`_rows_dict`)."""
        if isinstance(raw, RawColumns):
            cols, names, code, text_of = dict(raw.columns), list(raw.events), raw.event, raw.comm_text
        else:
            cols = {name: _filled(raw.column(name), -1 if name in ("pid", "tid", "cpu") else 0) for name in
                    ("t_ns", "pid", "tid", "cpu", "a0", "a1", "a2", "a3", "a4", "a5", "ret", "seq")}
            enc = raw.column("event").combine_chunks().dictionary_encode()
            names = [str(x) for x in enc.dictionary.to_pylist()]
            code = enc.indices.to_numpy(zero_copy_only=False)
            comm = raw.column("comm")

            def text_of(i):
                return comm[i].as_py()

        fault_kind = _fault_kinds(names)
        rest = np.flatnonzero(fault_kind[code] == 0)     # the few rows that are not faults
        self._learn_tgids(cols, names, code, rest)
        code, rest, ended = self._fault_ends(cols, names, code, fault_kind, rest)
        rows, paired = self._syscalls(cols, names, code, rest)
        others = _rows_dict(rows + self._lifecycle(cols, names, code, rest, text_of) + ended, paired)
        return cols, code, fault_kind, others

    def _fault_ends(self, c, names, code, fault_kind, rest) -> tuple:
        """Faults the kernel said ended (pipeline/events/fault_ends.py): each becomes an other row
        at its end time with its dur_ns (its event code is the end record's from here on, so the
        fault merge passes it by); the end records leave the other rows."""
        e = fault_ends.match(c["tid"], c["a0"], code, names, fault_kind != 0, self.fault_end_item)
        if not len(e.records):
            return code, rest, []
        rest = np.setdiff1d(rest, e.records, assume_unique=True)
        self.stats.fault_ends += len(e.ends)
        self.stats.fault_ends_unmatched += e.unmatched
        rows = []
        for end, f in zip(e.ends.tolist(), e.faults.tolist()):
            t = int(c["t_ns"][end])
            rows.append(_row(t, int(c["seq"][end]), int(c["pid"][f]), int(c["tid"][f]), int(c["cpu"][f]), "fault",
                             addr=int(c["a0"][f]), ip=int(c["a1"][f]), error_code=_low32(int(c["a2"][f])),
                             user_mode=bool(fault_kind[code[f]] == USER_FAULT),
                             dur_ns=t - int(c["t_ns"][f])))
        if rows:
            code = code.copy()
            code[e.faults] = code[e.ends]
        return code, rest, rows

    def _clamp_parts(self, *parts: dict) -> None:
        """Keep the output in time order across batches: a row older than what was
        already emitted (disordered input, or a call left open until the end) is
        stamped with the last emitted time and counted (`time_clamped_rows`).
        `parts`: the dicts whose t_ns together are the batch's (events/2: faults, others)."""
        last = self._last_t
        for part in parts:
            t = part["t_ns"]
            if not len(t):
                continue
            early = t < self._last_t
            if early.any():
                self.stats.time_clamped_rows += int(early.sum())
                part["t_ns"] = t = t.copy()                   # may be a view of the reader's column
                t[early] = self._last_t
            last = max(last, int(t.max()))
        self._last_t = last

    def finish(self) -> pa.Table:
        """Close the stream: open syscalls become unfinished, exit_group-only groups exit."""
        out = self._finish()
        return _empty() if out is None else _to_table(out)

    def _finish(self) -> dict | None:
        rows = []
        for p in sorted(self._pending.values(), key=lambda p: (p.t_ns, p.seq)):
            rows.append(self._syscall_row(p, ret=0, t_exit=None, unfinished=True))
            self.stats.unfinished_syscalls += 1
        self._pending.clear()
        for tgid, (t, seq, tid, cpu) in sorted(self._exit_group.items()):
            if tgid not in self._exited:
                rows.append(_row(t, seq, tgid, tid, cpu, "exit", comm=self._comm.get(tgid)))
                self._exited.add(tgid)
        if not rows:
            return None
        out = self._merge(_NO_RAW, np.empty(0, np.int32), np.zeros(1, np.int8), _rows_dict(rows))
        self._clamp_parts(out)
        return out

    # ------------------------------------------------------------- tgid tracking
    def _learn_tgids(self, c, names, code, rest) -> None:
        """Remember tid -> tgid from every record that states it, and from perf FORK records."""
        known = c["pid"] >= 0
        everyone = bool(known.all())
        if everyone or known.any():
            tids, pids = (c["tid"], c["pid"]) if everyone else (c["tid"][known], c["pid"][known])
            first = {}
            for tid, pid in zip(*_pid_runs(tids, pids)):
                first.setdefault(tid, pid)
            for tid, pid in first.items():
                self._tgid[tid] = pid
                self._threads.setdefault(pid, set()).add(tid)
        for i in _rows_of(names, code, rest, "perf_fork"):
            pid, tid = int(c["a0"][i]), int(c["a1"][i])
            self._tgid[tid] = pid
            self._threads.setdefault(pid, set()).add(tid)
        if not everyone:
            missing = ~known
            c["pid"] = c["pid"].copy()           # the reader's column stays as it was
            tids = c["tid"][missing]
            c["pid"][missing] = [self._tgid.get(t, -1) for t in tids.tolist()]
            still = c["pid"] < 0
            if still.any():
                self.stats.assumed_tgid_rows += int(still.sum())
                c["pid"][still] = c["tid"][still]
                for t in np.unique(c["tid"][still]).tolist():
                    self._threads.setdefault(t, set()).add(t)

    # -------------------------------------------------------------------- faults
    def _merge(self, c, code, fault_kind, small: dict) -> dict:
        """The batch's `fault` rows (page_fault_user / page_fault_kernel on user addresses)
        and the few other rows (`small`, sorted) as one batch ordered by (t_ns, seq).

        Faults are nearly all of a capture's records: one compiled pass
        (`pipeline.events.fault_merge.merge_faults`, from `replay.aot.kernels()`) writes their
        columns and leaves the slots of the other rows, filled here.  Columns that are constant
        for faults stay absent while the other rows hold the default too (`_to_table` fills them
        cheaply).  comm is kept as `comm_rows`/`comm_texts`.
        """
        t = c["t_ns"]
        if len(t) > 1 and (t[1:] < t[:-1]).any():        # a reader gave disordered records
            order = np.lexsort((c["seq"], t))
            c = {k: c[k][order] for k in ("t_ns", "seq", "pid", "tid", "cpu", "a0", "a1", "a2")}
            code = code[order]
        size = len(t) + len(small["t_ns"])
        out = {k: np.empty(size, _DTYPES[k]) for k in _FAULT_COLUMNS}
        at = np.empty(len(small["t_ns"]), np.int64)
        n, dropped = aot.kernels().merge_faults(
            c["t_ns"], c["seq"], c["pid"], c["tid"], c["cpu"], c["a0"], c["a1"], c["a2"], code, fault_kind,
            np.uint64(self.user_limit), np.int8(KIND["fault"]), small["t_ns"], small["seq"],
            *(out[k] for k in _FAULT_COLUMNS), at)
        self.stats.kernel_address_faults_dropped += dropped
        self.stats.fault_rows += n - len(at)
        out = {k: v[:n] for k, v in out.items()}
        for k, dt in _DTYPES.items():
            if k in out:
                out[k][at] = small[k]
            elif (small[k] != _DEFAULTS[k]).any():
                out[k] = np.full(n, _DEFAULTS[k], dtype=dt)
                out[k][at] = small[k]
        out["comm_rows"] = at[small["comm_rows"]]
        out["comm_texts"] = small["comm_texts"]
        return out

    def _split(self, c, code, fault_kind, small: dict) -> tuple[dict, np.ndarray]:
        """`_merge` for the events/2 layout: the fault rows packed (EVENT_FAULTS columns) and
        the row each of the other rows (`small`) takes in the batch."""
        t = c["t_ns"]
        if len(t) > 1 and (t[1:] < t[:-1]).any():        # a reader gave disordered records
            order = np.lexsort((c["seq"], t))
            c = {k: c[k][order] for k in ("t_ns", "seq", "pid", "tid", "cpu", "a0", "a1", "a2")}
            code = code[order]
        out = {k: np.empty(len(t), _DTYPES[k]) for k in events_layout.FAULT_COLUMNS}
        at = np.empty(len(small["t_ns"]), np.int64)
        n, dropped = aot.kernels().split_faults(
            c["t_ns"], c["seq"], c["pid"], c["tid"], c["cpu"], c["a0"], c["a1"], c["a2"], code, fault_kind,
            np.uint64(self.user_limit), small["t_ns"], small["seq"], *(out[k] for k in events_layout.FAULT_COLUMNS),
            at)
        self.stats.kernel_address_faults_dropped += dropped
        self.stats.fault_rows += n
        return {k: v[:n] for k, v in out.items()}, at

    # ------------------------------------------------------------------ syscalls
    def _syscalls(self, c, names, code, rest) -> tuple[list[dict], dict | None]:
        """Pair sys_enter/sys_exit per thread (including pairs split across batches).

        Returns (rows, columns): an enter directly followed on its thread by its
        exit (nearly every call) is paired with numpy and returned as columns;
        everything else (lost exits, orphans, exit_group, pairs with an enter left
        open by the previous batch) goes through the per-thread state in a loop.
        """
        sys_codes = {i: n for i, n in enumerate(names)
                     if (n.startswith("sys_enter_") and n[10:] in SYSCALLS) or
                        (n.startswith("sys_exit_") and n[9:] in SYSCALLS) or n == "sys_enter_exit_group"}
        idx = _select(code, rest, list(sys_codes))
        if not len(idx) and not self._pending:
            return [], None
        # per thread in time order: seq is file order, and a call that migrated CPUs
        # may have its exit earlier in the file than its enter
        order = idx[np.lexsort((c["seq"][idx], c["t_ns"][idx], c["tid"][idx]))]
        ev = code[order]
        # per code: the syscall of an enter / of an exit (-1: neither)
        enter_of = np.full(len(names), -1, np.int64)
        exit_of = np.full(len(names), -1, np.int64)
        for i, n in sys_codes.items():
            if n.startswith("sys_enter_") and n[10:] in SYSCALLS:
                enter_of[i] = _SYSCALL_NAMES.index(n[10:])
            elif n.startswith("sys_exit_"):
                exit_of[i] = _SYSCALL_NAMES.index(n[9:])
        tid = c["tid"][order]
        enter, leave = enter_of[ev], exit_of[ev]
        same = tid[1:] == tid[:-1]
        # pairs[j]: records j and j + 1 are an enter and its exit on one thread
        pairs = np.zeros(len(order), bool)
        pairs[:-1] = same & (enter[:-1] >= 0) & (enter[:-1] == leave[1:])
        in_pair = pairs.copy()
        in_pair[1:] |= pairs[:-1]
        first = np.ones(len(order), bool)      # the thread's first record in this batch
        first[1:] = ~same
        # the loop sees every record outside a pair and a pair's enter when it may close an
        # enter left open before it (the thread's first record, or after an unpaired enter)
        open_before = np.zeros(len(order), bool)
        open_before[1:] = same & (enter[:-1] >= 0) & ~in_pair[:-1]
        loop = ~in_pair | (pairs & (first | open_before))
        rows = []
        col = {k: c[k][order[loop]].tolist() for k in ("tid", "pid", "t_ns", "seq", "cpu", "ret",
                                                       "a0", "a1", "a2", "a3", "a4", "a5")}
        for j, (e, pair_start) in enumerate(zip(ev[loop].tolist(), pairs[loop].tolist())):
            name = sys_codes[e]
            tid_j, pid, t, seq, cpu = col["tid"][j], col["pid"][j], col["t_ns"][j], col["seq"][j], col["cpu"][j]
            if pair_start:                     # paired below: only close what is open before it
                self._close_lost(tid_j, rows)
                continue
            if name == "sys_enter_exit_group":
                self._close_lost(tid_j, rows)
                self._exit_group.setdefault(pid, (t, seq, tid_j, cpu))
                continue
            if name.startswith("sys_enter_"):
                self._close_lost(tid_j, rows)
                args = (col["a0"][j], col["a1"][j], col["a2"][j], col["a3"][j], col["a4"][j], col["a5"][j])
                self._pending[tid_j] = _Pending(t, seq, pid, tid_j, cpu, name[10:], args)
                continue
            p = self._pending.pop(tid_j, None)
            if p is None or p.name != name[9:]:
                if p is not None:
                    self._pending[tid_j] = p
                    self._close_lost(tid_j, rows)
                self.stats.orphan_exits_dropped += 1
                continue
            rows.append(self._syscall_row(p, ret=col["ret"][j], t_exit=t, unfinished=False, seq_exit=seq))
        start = np.flatnonzero(pairs)
        return rows, self._paired_columns(c, order[start], order[start + 1], enter[start])

    def _paired_columns(self, c, e, x, sysno) -> dict | None:
        """The rows of the calls whose enter is record e and exit record x (as `_syscall_row`)."""
        m = len(e)
        if not m:
            return None
        out = {k: np.full(m, _DEFAULTS[k], dtype=dt) for k, dt in _DTYPES.items()}
        a = [c[f"a{i}"][e] for i in range(6)]
        ret, t_exit = c["ret"][x], c["t_ns"][x]
        out.update(t_ns=t_exit, seq=c["seq"][x].astype(np.float64), pid=c["pid"][e], tid=c["tid"][e],
                   cpu=c["cpu"][e], ret=ret, failed=ret < 0, dur_ns=t_exit - c["t_ns"][e])
        kind_of = np.array([KIND[SYSCALLS[n]] for n in _SYSCALL_NAMES], np.int8)
        out["kind"] = kind_of[sysno]

        def put(col, rows, values):
            out[col][rows] = values[rows] if np.ndim(values) else values
        s32 = [v.astype(np.uint32).view(np.int32) for v in a]
        s64 = [v.view(np.int64) for v in a]
        ok = ret >= 0
        by = {n: sysno == i for i, n in enumerate(_SYSCALL_NAMES)}
        r = by["mmap"]
        put("addr", r, np.where(ok, ret.view(np.uint64), a[0]))
        for col, v in (("len", a[1]), ("prot", s32[2]), ("flags", s64[3]), ("fd", s32[4]), ("pgoff", a[5]),
                       ("req_addr", a[0])):
            put(col, r, v)
        r = by["mremap"]
        for col, v in (("addr", a[0]), ("len", a[1]), ("new_len", a[2]), ("flags", s64[3])):
            put(col, r, v)
        put("new_addr", r, np.where(ok, ret.view(np.uint64), a[4]))
        put("addr", by["brk"], a[0])
        for name in ("mprotect", "madvise", "munmap"):
            put("addr", by[name], a[0])
            put("len", by[name], a[1])
        put("prot", by["mprotect"], s32[2])
        put("advice", by["madvise"], s32[2])
        r = by["process_madvise"]        # (pidfd, iovec, vlen, advice, flags): ranges not visible
        put("advice", r, s32[3])
        put("unfinished", r, True)
        self.stats.process_madvise_other_mm += int(r.sum())
        return out

    def _close_lost(self, tid: int, rows: list) -> None:
        """An open enter on `tid` followed by another syscall lost its exit."""
        p = self._pending.pop(tid, None)
        if p is not None:
            self.stats.lost_exit_syscalls += 1
            rows.append(self._syscall_row(p, ret=0, t_exit=None, unfinished=True))

    def _syscall_row(self, p: _Pending, ret: int, t_exit: int | None, unfinished: bool, seq_exit: int | None = None) -> dict:
        a = p.args
        kind = SYSCALLS[p.name]
        t = t_exit if t_exit is not None else p.t_ns
        row = _row(t, seq_exit if seq_exit is not None else p.seq, p.pid, p.tid, p.cpu, kind)
        row.update(ret=ret, failed=(not unfinished and ret < 0), unfinished=unfinished,
                   dur_ns=(t_exit - p.t_ns) if t_exit is not None else 0)
        if kind == "mmap":
            row.update(addr=ret if (ret >= 0 and not unfinished) else a[0], len=a[1], prot=_s32(a[2]),
                       flags=_s64(a[3]), fd=_s32(a[4]), pgoff=a[5], req_addr=a[0])
        elif kind == "mremap":
            row.update(addr=a[0], len=a[1], new_len=a[2], flags=_s64(a[3]),
                       new_addr=ret if (ret >= 0 and not unfinished) else a[4])
        elif kind == "brk":
            row.update(addr=a[0])
        elif kind == "mprotect":
            row.update(addr=a[0], len=a[1], prot=_s32(a[2]))
        elif kind == "madvise" and p.name == "madvise":
            row.update(addr=a[0], len=a[1], advice=_s32(a[2]))
        elif kind == "madvise":  # process_madvise(pidfd, iovec, vlen, advice, flags): ranges not visible
            row.update(advice=_s32(a[3]), unfinished=True)
            self.stats.process_madvise_other_mm += 1
        else:  # munmap
            row.update(addr=a[0], len=a[1])
        return row

    # ---------------------------------------------------------------- lifecycle
    def _lifecycle(self, c, names, code, rest, text_of) -> list[dict]:
        """fork/clone, exec and exit events from sched tracepoints and perf side-band records."""
        wanted = {i: n for i, n in enumerate(names)
                  if n in ("sched_process_fork", "sched_process_exec", "sched_process_exit", "exit_mmap",
                           "perf_comm", "perf_exit")}
        idx = _select(code, rest, list(wanted)).tolist()
        # sched_process_exit fires before exit_mm() (kernels whose tracepoint has group_dead): a
        # process's own exit_mmap then comes after its thread's exit; before, it came first
        exit_first = bool(self.reader_meta.get("exit_traced_first")) and "sched_process_exit" in names
        rows = []
        ended = {}              # pid -> its exit row of this batch, made at the last sched_process_exit
        for k, i in enumerate(idx):
            name = wanted[int(code[i])]
            pid, tid, t, seq, cpu = (int(c["pid"][i]), int(c["tid"][i]), int(c["t_ns"][i]),
                                     int(c["seq"][i]), int(c["cpu"][i]))
            text = text_of(i)
            if name == "perf_comm":
                if text:
                    self._comm[int(c["a0"][i])] = text
            elif name == "perf_exit":    # perf's EXIT record: after exit_mm(), so after the mm's teardown
                pid, tid = int(c["a0"][i]), int(c["a1"][i])
                if pid in ended and ended[pid]["tid"] == tid:      # (its cpu is the tracepoint's: perf's
                    ended.pop(pid).update(t_ns=t, seq=float(seq))    # side-band records may carry none)
            elif name == "sched_process_fork":
                child = int(c["a0"][i])
                self._gone.discard(child)
                child_group = self._tgid.get(child)
                is_thread = child_group == pid and child != pid
                self._tgid.setdefault(child, pid if is_thread else child)
                group = self._tgid[child]
                self._threads.setdefault(group, set()).add(child)
                if group != pid:
                    self._comm.setdefault(group, text or self._comm.get(pid))
                rows.append(_row(t, seq, pid, tid, cpu, "fork" if group != pid else "clone",
                                 child_pid=child, comm=text))
            elif name == "sched_process_exec":
                path = text or ""
                name = path.rsplit("/", 1)[-1][:15] if path else self._comm.get(pid)  # TASK_COMM_LEN - 1
                self._comm[pid] = name
                self._exited.discard(pid)
                rows.append(_row(t, seq, pid, tid, cpu, "exec", comm=name))
            elif name == "exit_mmap":
                execs = _exec_follows(idx[k + 1:], tid, c["tid"], code, wanted)
                if not execs and tid not in self._gone and exit_first:   # another process's mm: its last reference
                    self.stats.foreign_exit_mmaps += 1
                    self._foreign_teardown(t, seq, cpu, ended, rows)
                    continue
                if not execs:
                    self._has_exit_mmap = True      # a process's own end (not its old mm's, inside exec)
                self._awaiting.pop(pid, None)
                if pid not in self._exited:
                    self._exited.add(pid)
                    rows.append(_row(t, seq, pid, tid, cpu, "exit", comm=self._comm.get(pid)))
                elif pid in ended:      # the mm's teardown just after its last thread's exit: the exit is here
                    ended.pop(pid).update(t_ns=t, seq=float(seq), tid=tid, cpu=cpu)
            else:  # sched_process_exit of one thread
                self._gone.add(tid)
                live = self._threads.setdefault(pid, {tid})
                live.discard(tid)
                if not live and pid not in self._exited:
                    if not self._has_exit_mmap:
                        self._exited.add(pid)
                        rows.append(_row(t, seq, pid, tid, cpu, "exit", comm=text or self._comm.get(pid)))
                        ended[pid] = rows[-1]
                    else:
                        self._awaiting[pid] = (tid, text or self._comm.get(pid))
        return rows

    def _foreign_teardown(self, t: int, seq: int, cpu: int, ended: dict, rows: list) -> None:
        """An exit_mmap in a task that is alive and execs nothing: it dropped the last reference
        to the mm of a process that already ended (a /proc reader, ptrace, a kworker: mmput), so
        it is that process's teardown, never the running one's exit.  The mm is the one of the
        process still waiting for its teardown (whole-host captures; of several, the oldest), or
        of the process whose exit this batch made at sched_process_exit, when it made one only."""
        if self._awaiting:
            pid = next(iter(self._awaiting))
            tid, comm = self._awaiting.pop(pid)
            self._exited.add(pid)
            rows.append(_row(t, seq, pid, tid, cpu, "exit", comm=comm))
        elif len(ended) == 1:
            ended.pop(next(iter(ended))).update(t_ns=t, seq=float(seq), cpu=cpu)


def _exec_follows(later: list, tid: int, tids: np.ndarray, code: np.ndarray, wanted: dict) -> bool:
    """Whether the thread's next lifecycle row among `later` (perf COMM records passed over) is its
    exec: then the exit_mmap before it tore down the old mm inside exec (exec_mmap), which per-task
    captures record, while the exit_mmap at a process's end comes after its sched_process_exit and
    only whole-host captures see it (perf stops following a task there)."""
    for j in later:
        if tids[j] == tid and wanted[int(code[j])] not in ("perf_comm", "perf_exit"):
            return wanted[int(code[j])] == "sched_process_exec"
    return False


def move_exec_before_loader_faults(out: dict) -> dict:
    """Move each `exec` back to the first kernel-mode fault of the run just before it.

    exec_binprm() installs the new mm and loads the ELF image (kernel-mode
    faults in the *new* mm) before trace_sched_process_exec() fires; the
    replayer must start the fresh address space before those faults.  Also
    drops an `exit` of the same thread directly before that run (the old mm
    torn down inside exec_mmap()).  `out` holds one sorted batch as numpy
    columns (see `_merge`); execs are rare, so this is a small loop over them.
    """
    kind, tid, user, t = out["kind"], out["tid"], out["user_mode"], out["t_ns"]
    order = np.arange(len(t))
    drop = []
    new_t = t.copy()
    for e in np.flatnonzero(kind == KIND["exec"]).tolist():
        same = np.flatnonzero(tid[:e] == tid[e])
        j = len(same) - 1
        while j >= 0 and kind[same[j]] == KIND["fault"] and not user[same[j]]:
            j -= 1
        first = same[j + 1] if j + 1 < len(same) else e
        if j >= 0 and kind[same[j]] == KIND["exit"]:
            drop.append(same[j])
        if first != e:
            new_t[e] = t[first]
            order = np.insert(np.delete(order, np.flatnonzero(order == e)), np.flatnonzero(order == first)[0], e)
    if drop:
        order = order[~np.isin(order, drop)]
    moved = {k: v[order] for k, v in out.items() if k not in ("comm_rows", "comm_texts")}
    moved["t_ns"] = new_t[order]
    new_row = np.full(len(t), -1, np.int64)
    new_row[order] = np.arange(len(order))
    rows = new_row[out["comm_rows"]]
    moved["comm_rows"] = rows[rows >= 0]
    moved["comm_texts"] = [x for x, r in zip(out["comm_texts"], rows.tolist()) if r >= 0]
    return moved


# ---------------------------------------------------------------------- helpers
KIND = {k: i for i, k in enumerate(EVENT_KINDS)}  # events.kind as int8 codes while normalizing
_KIND_DICTIONARY = arrow_np.strings(len(EVENT_KINDS), np.arange(len(EVENT_KINDS)), list(EVENT_KINDS))
# What push() and finish() return: the events schema with `kind` dictionary-encoded (int8 codes
# into EVENT_KINDS), as the Parquet writer stores it; `conform` turns it back into strings.
BATCH_SCHEMA = pa.schema([f.with_type(pa.dictionary(pa.int8(), pa.string())) if f.name == "kind" else f
                          for f in EVENTS.schema], metadata=EVENTS.schema.metadata)

_DEFAULTS = {
    "t_ns": 0, "seq": 0.0, "pid": -1, "tid": -1, "cpu": -1, "kind": -1, "addr": 0, "len": 0, "prot": -1,
    "flags": -1, "fd": -1, "pgoff": 0, "advice": -1, "error_code": -1, "ip": 0, "user_mode": False,
    "new_addr": 0, "new_len": 0, "ret": 0, "child_pid": -1, "failed": False, "unfinished": False,
    "dur_ns": 0, "req_addr": 0,
}
_DTYPES = {
    "t_ns": np.int64, "seq": np.float64, "pid": np.int32, "tid": np.int32, "cpu": np.int32, "kind": np.int8,
    "addr": np.uint64, "len": np.uint64, "prot": np.int32, "flags": np.int64, "fd": np.int32,
    "pgoff": np.uint64, "advice": np.int32, "error_code": np.int32, "ip": np.uint64, "user_mode": bool,
    "new_addr": np.uint64, "new_len": np.uint64, "ret": np.int64, "child_pid": np.int32, "failed": bool,
    "unfinished": bool, "dur_ns": np.int64, "req_addr": np.uint64,
}


def _filled(col: pa.ChunkedArray, default: int) -> np.ndarray:
    """A raw column as numpy, with any null (a field the reader could not decode) as `default`."""
    if col.null_count:
        import pyarrow.compute as pc          # here only: its import costs every ingest ~30 ms
        col = pc.fill_null(col, pa.scalar(default, col.type))
    return col.to_numpy(zero_copy_only=False)


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def _s64(v: int) -> int:
    v &= 0xFFFFFFFFFFFFFFFF
    return v - (1 << 64) if v >= 1 << 63 else v


def _low32(v: int) -> int:
    """The low 32 bits of v as a signed int (as merge_faults stores error_code)."""
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _row(t, seq, pid, tid, cpu, kind, comm=None, **kw) -> dict:
    r = dict(_DEFAULTS)
    r.update(t_ns=t, seq=float(seq), pid=pid, tid=tid, cpu=cpu, kind=KIND[kind], comm=comm)
    r.update(kw)
    return r


def _pid_runs(tids: np.ndarray, pids: np.ndarray) -> tuple[list, list]:
    """The first row of every run of equal (tid, pid): the pairs in order of appearance."""
    runs = np.flatnonzero((tids[1:] != tids[:-1]) | (pids[1:] != pids[:-1])) + 1
    return tids[:1].tolist() + tids[runs].tolist(), pids[:1].tolist() + pids[runs].tolist()


def _pid_conflict(pid_of: dict, tids: np.ndarray, pids: np.ndarray) -> bool:
    """Whether a row with a known pid (>= 0) gives one of pid_of's threads another pid."""
    if not pid_of:
        return False
    threads = np.fromiter(pid_of, np.int64, len(pid_of))
    order = np.argsort(threads)
    threads, their_pid = threads[order], np.fromiter(pid_of.values(), np.int64, len(pid_of))[order]
    known = pids >= 0
    tids, pids = tids[known], pids[known]
    at = np.searchsorted(threads, tids).clip(0, len(threads) - 1)
    listed = threads[at] == tids
    return bool((their_pid[at][listed] != pids[listed]).any())


def _rows_of(names, code, rows, name) -> np.ndarray:
    codes = [i for i, n in enumerate(names) if n == name]
    return _select(code, rows, codes) if codes else np.empty(0, np.int64)


def _select(code: np.ndarray, rows: np.ndarray, codes: list) -> np.ndarray:
    """The rows (ascending indices, a subset of `rows`) whose event code is in codes."""
    return rows[_is_code(code[rows], codes)]


def _fault_kinds(names: list) -> np.ndarray:
    """Per event code: is it a fault, and in which mode (`merge_faults`' fault_kind; 0 = not a fault)."""
    kinds = {"page_fault_user": USER_FAULT, "page_fault_kernel": KERNEL_FAULT}
    return np.array([kinds.get(n, NOT_FAULT) for n in names] or [NOT_FAULT], np.int8)


def _is_code(code: np.ndarray, codes: list) -> np.ndarray:
    """code in codes, per row (a lookup table: event codes are small)."""
    if not codes:
        return np.zeros(len(code), bool)
    lut = np.zeros(max(codes) + 1, bool)
    lut[codes] = True
    inside = code <= max(codes)
    return lut[np.where(inside, code, 0)] & inside if not inside.all() else lut[code]


# The columns `merge_faults` writes (its o_* arguments, in order); every other column is constant for faults.
_FAULT_COLUMNS = ("t_ns", "seq", "pid", "tid", "cpu", "kind", "addr", "ip", "error_code", "user_mode")
# A raw batch of no rows, as merge_faults takes it (dtypes as the perf.data reader's).
_NO_RAW = {k: np.empty(0, dt) for k, dt in (("t_ns", np.int64), ("seq", np.int64), ("pid", np.int32),
                                            ("tid", np.int32), ("cpu", np.int32), ("a0", np.uint64),
                                            ("a1", np.uint64), ("a2", np.uint64))}


def _fault_columns(n: int) -> dict:
    """The columns `merge_faults` writes, n rows at their defaults."""
    return {k: np.full(n, _DEFAULTS[k], dtype=_DTYPES[k]) for k in _FAULT_COLUMNS}


def _rows_dict(rows: list[dict], more: dict | None = None) -> dict:
    """The few non-fault rows (and the columns `more`, rows without comm) as full columns,
    sorted by (t_ns, seq); their comm strings as row numbers (`comm_rows`) and texts (`comm_texts`)."""
    out = {k: np.full(0, _DEFAULTS[k], dtype=dt) for k, dt in _DTYPES.items()}
    if rows:
        for k, dt in _DTYPES.items():
            vals = [r[k] for r in rows]
            if dt is np.uint64:
                vals = [v & 0xFFFFFFFFFFFFFFFF for v in vals]
            out[k] = np.array(vals, dtype=dt)
    texts = [r["comm"] for r in rows]
    if more is not None:
        out = {k: np.concatenate([v, more[k]]) for k, v in out.items()}
        texts += [None] * len(more["t_ns"])
    order = np.lexsort((out["seq"], out["t_ns"]))
    out = {k: v[order] for k, v in out.items()}
    texts = [texts[i] for i in order.tolist()]
    out["comm_rows"] = np.array([j for j, x in enumerate(texts) if x is not None], np.int64)
    out["comm_texts"] = [x for x in texts if x is not None]
    return out


_CONSTANTS: dict[str, pa.Array] = {}


def _constant(f: pa.Field, n: int) -> pa.Array:
    """n rows of column f's default, sliced from one cached array (no per-batch allocation)."""
    have = _CONSTANTS.get(f.name)
    if have is None or len(have) < n:
        size = max(n, 1 << 16)
        if f.name == "comm":
            have = pa.nulls(size, pa.string())
        else:
            have = arrow_np.to_arrow(np.full(size, _DEFAULTS[f.name], dtype=_DTYPES[f.name]), f.type)
        _CONSTANTS[f.name] = have
    return have.slice(0, n)


def _empty() -> pa.Table:
    return _to_table({**_fault_columns(0), "comm_rows": np.empty(0, np.int64), "comm_texts": []})


def _empty_parts() -> EventParts:
    return _parts({k: np.empty(0, _DTYPES[k]) for k in events_layout.FAULT_COLUMNS},
                  _rows_dict([]), np.empty(0, np.int64))


def _parts_of_merged(out: dict) -> EventParts:
    """EventParts of one merged batch (`_merge`: its fault rows hold the defaults elsewhere, but
    for the dur_ns of a fault with an end, which keeps it among the others)."""
    fault = out["kind"] == KIND["fault"]
    if "dur_ns" in out:
        fault &= out["dur_ns"] == 0
    fi, oi = np.flatnonzero(fault), np.flatnonzero(~fault)
    faults = {k: out[k][fi] for k in events_layout.FAULT_COLUMNS}
    others = {k: out[k][oi] if k in out else np.full(len(oi), _DEFAULTS[k], dt) for k, dt in _DTYPES.items()}
    others["comm_rows"] = np.searchsorted(oi, out["comm_rows"])     # comm rows are never faults
    others["comm_texts"] = out["comm_texts"]
    return _parts(faults, others, oi.astype(np.int64))


def _parts(faults: dict, others: dict, at: np.ndarray) -> EventParts:
    """EventParts of packed fault columns and the other rows (`_rows_dict`) at rows `at`."""
    table = pa.Table.from_arrays([arrow_np.to_arrow(faults[f.name], f.type) for f in EVENT_FAULTS.schema],
                                 schema=EVENT_FAULTS.schema)
    rest = _to_table(others)
    rest = rest.add_column(0, EVENT_OTHERS.schema.field("row"), arrow_np.to_arrow(at, pa.int64()))
    return EventParts(table, rest)


def _to_table(out: dict) -> pa.Table:
    n = len(out["t_ns"])
    arrays = []
    for f in BATCH_SCHEMA:
        if f.name == "kind":
            arrays.append(arrow_np.dictionary(out["kind"], _KIND_DICTIONARY, pa.int8()))
        elif f.name == "comm":
            rows = out["comm_rows"]
            arrays.append(arrow_np.strings(n, rows, out["comm_texts"]) if len(rows) else _constant(f, n))
        elif f.name in out:
            arrays.append(arrow_np.to_arrow(out[f.name], f.type))
        else:
            arrays.append(_constant(f, n))
    return pa.Table.from_arrays(arrays, schema=BATCH_SCHEMA)
