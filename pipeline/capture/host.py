"""`ptreplay record -a --duration S`: every process on the host.

    perf record -a (every CPU) on record.py's tracepoints, timed by `sleep S`
      + HostSampler: /proc/PID/status of every user process, adaptive (below)
      + as soon as perf records: the start state (start_state.take) of every user process
        already running, smallest VmPTE first, with a progress bar on a terminal; then
        --duration more seconds of trace (perf is stopped with SIGINT)
    -> the record directory of `-p`: perf.data, truth.parquet, snapshot.parquet (the snapshot
       rows of every process), and record.json ``host``: what was excluded, filtered,
       snapshotted, vanished or changed under its snapshot, and what the sampler achieved.

Which processes are replayed is decided at ingest (events/host_gate.py) from record.json:
a process running when perf started is replayed from its snapshot on; one born during the
capture from its fork by a replayed process, or from its exec (a fresh mm, as in launch
mode).  Kernel threads (no VmPTE in status: no mm) are skipped; ptreplay's own processes
(this recorder, perf, perf's timing `sleep`) are excluded and named.  The filters restrict
both: ``--comm`` (names as in /proc/PID/comm) and ``--min-vmpte`` (VmPTE at the listing for
running processes, the largest sampled VmPTE for those born later).

Truth costs CPU on a host with hundreds of processes, so the sampler adapts: a process whose
status did not change since its last read is read half as often (down to MAX_INTERVAL_NS),
one that changed goes back to the base interval (an exec changes everything: a process --comm
leaves out is read on the same schedule, its rows not kept), kernel threads are looked at once
a second, /proc is listed for newborns
every 8 base intervals (at least every 50 ms), and the base interval doubles whenever
the sampler thread's CPU time exceeds SAMPLER_CPU_BUDGET of one CPU (halves again below a
quarter of it).  record.json ``host.sampler`` states the budget, the share used and the
rates achieved.
"""
from __future__ import annotations

import heapq
import json
import os
import shlex
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from ptreplay.pipeline.capture import record as rec
from ptreplay.pipeline.capture import start_state
from ptreplay.pipeline.capture.machine import machine_info
from ptreplay.pipeline.capture.procfs import PROC, parse_status, read_file, read_file_timed, read_status
from ptreplay.pipeline.capture.start_state import StartState
from ptreplay.pipeline.progress import note, progress, warn
from ptreplay.schemas import CAPTURE, TRUTH
from ptreplay.schemas.errors import RecordError

MIN_INTERVAL_NS = 1_000_000          # the base interval never goes below --interval-ms (default 1 ms)
MAX_INTERVAL_NS = 256_000_000        # an idle process is read at least every 256 ms
LIST_EVERY = 8                       # /proc is listed (newborns found) every LIST_EVERY base intervals,
LIST_MAX_NS = 50_000_000             # but at least every 50 ms
IDLE_INTERVAL_NS = 1_000_000_000     # no mm (kernel threads): read once a second
SAMPLER_CPU_BUDGET = 0.05            # share of one CPU the sampler thread may use
BUDGET_WINDOW_NS = 200_000_000       # the share is measured over windows this long
SNAPSHOT_ALLOWANCE_S = rec.HOST_SNAPSHOT_ALLOWANCE_S   # perf's timing `sleep` lasts --duration + this; we
                                     # stop perf (SIGINT) --duration after the snapshot ends
SNAPSHOT_PASSES = 3                  # the listing pass, then passes over the processes born meanwhile
SNAPSHOT_WORKERS = 2                 # snapshots in flight at once (smaps and PAGEMAP_SCAN release the GIL)


@dataclass(frozen=True)
class HostFilters:
    """Which processes a host recording keeps (empty: all)."""

    comm: tuple = ()
    min_vmpte_bytes: int = 0

    def name_ok(self, name: str) -> bool:
        return not self.comm or name in self.comm

    def vmpte_ok(self, vmpte_bytes: int) -> bool:
        return vmpte_bytes >= self.min_vmpte_bytes

    def as_dict(self) -> dict:
        return {"comm": list(self.comm), "min_vmpte_bytes": self.min_vmpte_bytes}


def check_filters(comm, min_vmpte_bytes: int) -> HostFilters:
    """The filters as given on the command line, refused in one line when they cannot match."""
    names = tuple(n for n in (comm or ()) if n)
    for n in names:
        if len(n.encode()) > 15 or "/" in n:
            raise RecordError(f"--comm {n!r}: expected a process name as in /proc/PID/comm "
                              "(at most 15 bytes, no '/')")
    if min_vmpte_bytes < 0:
        raise RecordError(f"--min-vmpte {min_vmpte_bytes}: expected a size of 0 or more")
    return HostFilters(names, int(min_vmpte_bytes))


def list_processes(proc: Path = PROC) -> tuple[list[tuple[int, str, tuple]], int]:
    """(pid, name, status sizes) of every user process now, and how many kernel threads were skipped."""
    users, kernel = [], 0
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        data = read_file(f"{proc}/{entry}/status")
        if data is None:
            continue
        name, sizes = parse_status(data)
        if sizes is None:
            kernel += 1
        else:
            users.append((int(entry), name.decode(errors="replace"), sizes))
    return users, kernel


class HostSampler(threading.Thread):
    """Reads /proc/PID/status of every user process at an adaptive rate (module docstring).

    Rows are stamped with CLOCK_MONOTONIC right after each read, as record.Sampler's.
    Processes in `exclude` (ptreplay's own) are never kept; with a --comm filter only
    processes of those names are.
    """

    def __init__(self, exclude: set[int], base_ns: int, filters: HostFilters, proc: Path = PROC):
        super().__init__(name="ptreplay-host-sampler", daemon=True)
        self.exclude, self.filters, self.proc = set(exclude), filters, proc
        self.min_base_ns = self.base_ns = max(MIN_INTERVAL_NS, base_ns)
        self.rows: list[tuple] = []
        self.maps_start: dict[int, str] = {}    # record.write_outputs' maps/: not kept host-wide
        self.maps_end: dict[int, str] = {}
        self._heap: list[tuple[int, int]] = []
        self._interval: dict[int, int] = {}
        self._last: dict[int, tuple] = {}
        self._halt = threading.Event()
        self.reads = self.ticks = self.budget_raises = 0
        self.t_first = self.t_last = 0
        self.cpu_ns = 0
        self.base_max_ns = self.base_ns

    def stop(self) -> None:
        self._halt.set()

    def exclude_pids(self, pids) -> None:
        self.exclude.update(pids)

    def run(self) -> None:
        cpu0 = time.thread_time_ns()
        self.t_first = win_t = next_list = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        win_cpu = cpu0
        while not self._halt.is_set():
            now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            if now >= next_list:
                self._discover(now)
                next_list = now + min(LIST_EVERY * self.base_ns, LIST_MAX_NS)
            self._read_due(now)
            self.ticks += 1
            now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            if now - win_t >= BUDGET_WINDOW_NS:
                cpu = time.thread_time_ns()
                self._adapt((cpu - win_cpu) / (now - win_t))
                win_t, win_cpu = now, cpu
            due = min(self._heap[0][0] if self._heap else next_list, next_list)
            if due > now:
                self._halt.wait((due - now) / 1e9)
        self._discover(time.clock_gettime_ns(time.CLOCK_MONOTONIC))
        self._read_due(1 << 62)            # one last look at everyone after the recorder stopped
        self.t_last = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        self.cpu_ns = time.thread_time_ns() - cpu0

    def _adapt(self, share: float) -> None:
        if share > SAMPLER_CPU_BUDGET and self.base_ns < MAX_INTERVAL_NS:
            self.base_ns = min(self.base_ns * 2, MAX_INTERVAL_NS)
            self.budget_raises += 1
        elif share < SAMPLER_CPU_BUDGET / 4 and self.base_ns > self.min_base_ns:
            self.base_ns = max(self.base_ns // 2, self.min_base_ns)
        self.base_max_ns = max(self.base_max_ns, self.base_ns)

    def _discover(self, now: int) -> None:
        try:
            entries = os.listdir(self.proc)
        except OSError:
            return
        for e in entries:
            if e.isdigit():
                pid = int(e)
                if pid not in self._interval and pid not in self.exclude:
                    self._interval[pid] = self.base_ns
                    heapq.heappush(self._heap, (now, pid))

    def _read_due(self, now: int) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, pid = heapq.heappop(heap)
            if pid in self.exclude:
                continue
            data, t = read_file_timed(f"{self.proc}/{pid}/status")
            self.reads += 1
            if data is None:              # gone: forget it (a reused pid is found again by _discover)
                self._interval.pop(pid, None)
                self._last.pop(pid, None)
                continue
            name, sizes = parse_status(data)
            wanted = sizes is not None and self.filters.name_ok(name.decode(errors="replace"))
            if wanted:
                self.rows.append((t, pid) + sizes)
            interval = self._interval.get(pid, self.base_ns)
            if sizes is None:       # a kernel thread (or a zombie): no mm to sample
                interval = IDLE_INTERVAL_NS
            elif sizes != self._last.get(pid):
                interval = self.base_ns
            else:
                interval = min(interval * 2, MAX_INTERVAL_NS)
            self._interval[pid], self._last[pid] = interval, sizes
            if now < 1 << 62:
                heapq.heappush(heap, (t + interval, pid))

    def add_row(self, t_ns: int, pid: int, sizes: tuple) -> None:
        self.rows.append((t_ns, pid) + tuple(sizes))

    def clip(self, t_ns: int) -> None:
        """Drop the samples after `t_ns`: the host lives on after perf stops."""
        self.rows = [r for r in self.rows if r[0] <= t_ns]

    def pids(self) -> list[int]:
        return sorted({r[1] for r in self.rows if r[1] not in self.exclude})

    def truth_table(self) -> pa.Table:
        rows = sorted((r for r in self.rows if r[1] not in self.exclude), key=lambda r: r[0])
        cols = list(zip(*rows)) if rows else [()] * 8
        arrays = [pa.array(cols[0], pa.int64()), pa.array(cols[1], pa.int32())]
        arrays += [pa.array(c, pa.int64()) for c in cols[2:]]
        return pa.Table.from_arrays(arrays, names=TRUTH.schema.names)

    def meta(self) -> dict:
        """The rates achieved, for record.json ``host.sampler``."""
        span_s = max(self.t_last - self.t_first, 1) / 1e9
        per = {}
        for r in self.rows:
            if r[1] not in self.exclude:
                per[r[1]] = per.get(r[1], 0) + 1
        hz = np.array(sorted(per.values()), float) / span_s if per else np.zeros(1)
        return {"mode": "adaptive", "cpu_budget_share": SAMPLER_CPU_BUDGET,
                "cpu_share": round(self.cpu_ns / 1e9 / span_s, 4), "cpu_s": round(self.cpu_ns / 1e9, 3),
                "base_interval_ms": {"min": self.min_base_ns / 1e6, "max_reached": self.base_max_ns / 1e6,
                                     "final": self.base_ns / 1e6},
                "max_interval_ms": MAX_INTERVAL_NS / 1e6, "budget_raises": self.budget_raises,
                "status_reads": self.reads, "reads_per_s": round(self.reads / span_s, 1),
                "processes_sampled": len(per), "truth_rows": sum(per.values()),
                "per_process_hz": {"min": round(float(hz.min()), 1), "median": round(float(np.median(hz)), 1),
                                   "max": round(float(hz.max()), 1)}}


@dataclass
class HostSnapshot:
    """The start states of the processes running when perf started, and what became of the rest."""

    states: list[StartState] = field(default_factory=list)
    listed: list[int] = field(default_factory=list)       # user processes at the listing
    born: list[int] = field(default_factory=list)         # user processes born during the first passes
    unreadable: list[int] = field(default_factory=list)   # alive, but smaps or pagemap refused
    kernel_threads: int = 0
    filtered: dict = field(default_factory=dict)          # pid -> "comm" | "min_vmpte"
    vanished: list[int] = field(default_factory=list)     # exited before their turn
    not_taken: list[int] = field(default_factory=list)    # perf stopped (or Ctrl-C) before their turn
    t_ns: int = 0
    t_end_ns: int = 0

    def meta(self) -> dict:
        durations = np.array([s.t_end_ns - s.t_ns for s in self.states], float) / 1e6
        changed = {s.pid: sorted(s.meta()["changed_during_snapshot"]) for s in self.states}
        changed = {p: c for p, c in changed.items() if c}
        return {
            "t_ns": self.t_ns, "t_end_ns": self.t_end_ns, "duration_s": round((self.t_end_ns - self.t_ns) / 1e9, 3),
            "listed": len(self.listed), "born_during": len(self.born), "kernel_threads_skipped": self.kernel_threads,
            "taken": len(self.states), "filtered": len(self.filtered), "vanished": len(self.vanished),
            "unreadable": len(self.unreadable),
            "not_taken": len(self.not_taken), "changed": len(changed),
            "per_process_ms": {"median": round(float(np.median(durations)), 3) if len(durations) else 0,
                               "max": round(float(durations.max()), 3) if len(durations) else 0},
            "listed_pids": self.listed, "filtered_pids": {str(p): w for p, w in self.filtered.items()},
            "born_pids": self.born, "vanished_pids": self.vanished, "not_taken_pids": self.not_taken,
            "unreadable_pids": self.unreadable,
            "changed_pids": {str(p): c for p, c in changed.items()},
            "processes": {str(s.pid): {"comm": s.comm, "t_ns": s.t_ns, "duration_ns": s.t_end_ns - s.t_ns,
                                       "vmpte_bytes": s.status["vmpte_bytes"]} for s in self.states},
        }


def snapshot_host(filters: HostFilters, exclude: set[int], sampler: HostSampler, until_ns: int,
                  stop: threading.Event, proc: Path = PROC) -> HostSnapshot:
    """Every user process's start state now, smallest VmPTE first (the many small ones, shells that
    fork, are in before they fork or exit), SNAPSHOT_WORKERS at a time; then, up to SNAPSHOT_PASSES - 1 more times,
    the processes born while the previous pass ran (a child forked before its parent's snapshot
    starts from a copy the trace does not know: its own snapshot is its start).  A process not
    started by `until_ns` or after `stop` is counted as not taken."""
    snap = HostSnapshot(t_ns=time.clock_gettime_ns(time.CLOCK_MONOTONIC))
    users, snap.kernel_threads = list_processes(proc)
    seen = set(exclude)
    for n in range(SNAPSHOT_PASSES):
        users = [u for u in users if u[0] not in seen]
        if not users:
            break
        seen.update(u[0] for u in users)
        (snap.listed if n == 0 else snap.born).extend(sorted(u[0] for u in users))
        # processes born meanwhile are young: --min-vmpte is judged on their sampled peak at ingest
        _snapshot_pass(snap, users, filters if n == 0 else HostFilters(filters.comm), sampler, until_ns, stop,
                       proc)
        users, _ = list_processes(proc)
    snap.t_end_ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    return snap


def _snapshot_pass(snap: HostSnapshot, users: list, filters: HostFilters, sampler: HostSampler, until_ns: int,
                   stop: threading.Event, proc: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor
    todo = []
    for pid, name, sizes in users:
        if not filters.name_ok(name):
            snap.filtered[pid] = "comm"
        elif not filters.vmpte_ok(sizes[-1]):
            snap.filtered[pid] = "min_vmpte"
        else:
            todo.append((sizes[-1], pid))
    todo.sort()     # smallest first: the cost follows the populated tables (~VmPTE), and shortest-first
    #                 leaves the least time for processes to fork or exit before their snapshot

    def one(pid: int):
        if stop.is_set() or time.clock_gettime_ns(time.CLOCK_MONOTONIC) >= until_ns:
            return pid, "late"
        state = start_state.take(pid, proc)
        if state is None:       # exited, or its smaps/pagemap refused (another user namespace's init)
            st = read_status(pid, proc)
            return pid, "unreadable" if st is not None and st[1] is not None else None
        return pid, state

    with progress(f"snapshot of {len(todo)} processes", total=len(todo), unit="processes") as advance, \
            ThreadPoolExecutor(SNAPSHOT_WORKERS, thread_name_prefix="ptreplay-snapshot") as pool:
        for pid, state in pool.map(one, [pid for _, pid in todo]):
            if state == "late":
                snap.not_taken.append(pid)
            elif state == "unreadable":
                snap.unreadable.append(pid)
            elif state is None:
                snap.vanished.append(pid)
            else:
                snap.states.append(state)
                sampler.add_row(state.t_ns, pid, tuple(state.status[c] for c in start_state.STATUS_COLUMNS))
            advance(1)


@dataclass
class _HostOutcome:
    perf_rc: int = 0
    end_ns: int = 0
    interrupted: bool = False
    forwarded: bool = False
    recording_ns: int | None = None
    stopped_ns: int | None = None
    excluded: dict = field(default_factory=dict)      # pid -> why
    snapshot: HostSnapshot | None = None


def _supervise(proc: subprocess.Popen, opts, filters: HostFilters, stop: threading.Event,
               sampler: HostSampler, perf_file: Path, start_ns: int, o: _HostOutcome) -> None:
    """Wait for perf to record, snapshot the host, record --duration more, stop perf (SIGINT, also
    on a stop request); the sampler stops last and its truth is clipped at perf's stop."""
    duration_ns = int(opts.duration_s * 1e9)
    end_at = start_ns + duration_ns + SNAPSHOT_ALLOWANCE_S * 1_000_000_000   # perf's sleep ends then anyway
    forwarded_at = None
    try:
        while proc.poll() is None and o.recording_ns is None and not stop.is_set():
            if rec.perf_is_recording(proc.pid):
                o.recording_ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            else:
                time.sleep(0.002)
        for c in rec.children(proc.pid):                  # perf's timing sleep (and perf-exec)
            o.excluded[c] = "perf's timing sleep"
        sampler.exclude_pids(o.excluded)
        if o.recording_ns is not None:
            o.snapshot = snapshot_host(filters, set(o.excluded), sampler, end_at - 1_000_000_000, stop)
            end_at = o.snapshot.t_end_ns + duration_ns
        with rec.status_line() as show:
            while proc.poll() is None:
                now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
                # perf stops when we SIGINT it (its sleep only ends at the safety net): that is the
                # end of the trace (/proc/PID/task/*/children may miss a child: no polling on it)
                if forwarded_at is None and (stop.is_set() or now >= end_at):
                    o.interrupted = stop.is_set()
                    proc.send_signal(signal.SIGINT)
                    forwarded_at = o.stopped_ns = now
                elif forwarded_at is not None and now - forwarded_at > rec.PERF_STOP_TIMEOUT_S * 1e9:
                    proc.kill()
                show(f"recording the host {(now - start_ns) / 1e9:6.1f} s   perf.data "
                     f"{rec.perf_file_size(perf_file) / 1e6:7.1f} MB   truth samples {len(sampler.rows):,}")
                time.sleep(0.005)
    finally:
        o.perf_rc = proc.wait()
        o.end_ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        sampler.stop()
        sampler.join()
    o.forwarded = forwarded_at is not None
    sampler.clip(o.stopped_ns or o.end_ns)


def _perf_dies_with_us() -> None:
    """In perf's child before exec: SIGINT perf if the recorder dies (perf finalizes its file and
    stops tracing the host; its timing sleep would otherwise run on for minutes)."""
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGINT)     # PR_SET_PDEATHSIG


def record_host(opts) -> Path:
    """`record -a`: every process on the host for `opts.duration_s` (see the module docstring)."""
    if opts.duration_s is None or opts.duration_s <= 0:
        raise RecordError("record -a needs --duration SECONDS (more than 0)")
    filters = check_filters(opts.comm, opts.min_vmpte_bytes)
    rec.check_privileges(os.geteuid())
    perf = rec.find_perf()
    tracepoints = rec.check_tracepoints(rec.find_tracefs())
    out = rec.prepare_out_dir(opts.out_dir, opts.force)
    perf_file = out / "perf.data"
    argv = rec.perf_argv(perf, tracepoints, perf_file, opts)
    machine = machine_info(perf)
    stop = threading.Event()
    start_ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    o = _HostOutcome(excluded={os.getpid(): "ptreplay record (this process, its sampler thread)"})
    with rec.stop_on_signals(stop):
        try:
            proc = subprocess.Popen(argv, preexec_fn=_perf_dies_with_us)
        except OSError as e:
            raise RecordError(f"cannot start {perf}: {e.strerror}") from None
        o.excluded[proc.pid] = "perf record"
        sampler = HostSampler(set(o.excluded), int(opts.interval_ms * 1e6), filters)
        sampler.start()
        _supervise(proc, opts, filters, stop, sampler, perf_file, start_ns, o)
    if rec.perf_file_size(perf_file) == 0:
        raise RecordError(f"perf record exited with status {o.perf_rc} and wrote no {perf_file}; "
                          "see its message above")
    command = ["ptreplay", "record", "-a", "--duration", f"{opts.duration_s:g}"]
    command += ["--comm", ",".join(filters.comm)] if filters.comm else []
    command += ["--min-vmpte", str(filters.min_vmpte_bytes)] if filters.min_vmpte_bytes else []
    capture = dict(trace_id=out.resolve().name, clock="CLOCK_MONOTONIC", command_line=shlex.join(command),
                   source_format="perf.data", lost_events=0, lost_samples=0, synthetic=False,
                   start_ns=start_ns, end_ns=o.end_ns, **machine)
    capture = {name: capture[name] for name in CAPTURE.schema.names}
    snap = o.snapshot or HostSnapshot()
    rec.write_outputs(out, capture, sampler, snap.states)
    info = {
        "perf_argv": argv, "perf_exit_status": o.perf_rc, "interrupted": o.interrupted, "root_pid": None,
        "pids": sampler.pids(), "truth_rows": len(sampler.rows), "sampler_interval_ms": opts.interval_ms,
        "perf_recording_seen_ns": o.recording_ns, "perf_stop_seen_ns": o.stopped_ns, "tracepoints": tracepoints,
        "fault_ends": rec.fault_ends_info(tracepoints), "snapshot": None,
        "host": {"filters": filters.as_dict(), "excluded": {str(p): w for p, w in sorted(o.excluded.items())},
                 "snapshot": snap.meta(), "sampler": sampler.meta()},
    }
    (out / "record.json").write_text(json.dumps(info, indent=2) + "\n")
    _say(out, o, snap, sampler)
    return out


def _say(out: Path, o: _HostOutcome, snap: HostSnapshot, sampler: HostSampler) -> None:
    """One line on how the host recording went (and warnings for what it could not cover)."""
    m = sampler.meta()
    note(f"record -a: {len(snap.states)} processes snapshotted in {(snap.t_end_ns - snap.t_ns) / 1e9:.2f} s "
             f"({len(snap.vanished)} exited first, {len(snap.unreadable)} unreadable, {len(snap.filtered)} filtered, "
             f"{snap.kernel_threads} kernel "
             f"threads skipped, {len(o.excluded)} of ptreplay's own excluded); truth: {m['processes_sampled']} "
             f"processes, {m['reads_per_s']:.0f} reads/s, sampler CPU {100 * m['cpu_share']:.1f}% of one CPU")
    if snap.not_taken:
        warn(f"record -a: {len(snap.not_taken)} processes not snapshotted before perf stopped "
             "(their events are dropped at ingest; a longer --duration covers them)")
    if o.interrupted:
        warn(f"interrupted: capture kept, covering {(o.end_ns - o.recording_ns if o.recording_ns else 0) / 1e9:.1f} s")
    elif o.perf_rc != 0 and not (o.forwarded and o.perf_rc in (-signal.SIGINT, -signal.SIGTERM)):
        # (perf SIGTERMs its timing sleep when we stop it, and may end with that status)
        warn(f"perf exited with status {o.perf_rc}: capture kept in {out}")
