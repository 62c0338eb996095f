"""`ptreplay record`: capture a workload with perf, plus the kernel's own truth.

One recording directory holds everything the rest of the pipeline needs:

==================  ==========================================================
``perf.data``       perf record of every tracepoint the replayer uses
                    (faults, mm syscalls, fork/exec/exit), CLOCK_MONOTONIC, zstd
``truth.parquet``   /proc/PID/status of every traced process, sampled ~1 kHz
                    on the same clock (TRUTH schema): what the replay must match
``maps/``           PID.start.txt and PID.end.txt: /proc/PID/maps at first sight
                    and the last successful read before the process died
``snapshot.parquet`` ``-p`` only: the target's start state as soon as perf records
                    (an EVENTS table of ``snapshot_*`` rows: VMAs from smaps, page
                    runs from pagemap, the kernel's VmPTE; see capture/start_state.py):
                    the state the trace did not see; record.json ``snapshot`` says
                    when it was taken, how long it took and what changed under it
``capture.parquet`` one CAPTURE row (host, kernel, THP, PT_RECLAIM, clock ...),
``capture.json``    the same dict, human readable
``command.txt``     the exact command line that was traced
``record.json``     how the recording went: perf argv and exit status, root
                    pid, pids sampled, achieved sampler rate; ``-a`` (every process on
                    the host, capture/host.py): ``host``, what was snapshotted, excluded,
                    filtered, and the adaptive sampler's rate and CPU share
==================  ==========================================================

Why a /proc sampler: perf sees events, not VmPTE.  The sampled VmPTE is the
oracle the replayer's `none`/`pt_reclaim` policies are checked against.

The checks that can refuse a recording are small functions taking paths and
values, so tests can trigger each refusal without changing the machine.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from ptreplay.schemas.errors import RecordError
from ptreplay.pipeline.capture.machine import machine_info, vm_event_item
from ptreplay.pipeline.capture.procfs import PROC, parse_status, read_file, read_file_timed, read_status
from ptreplay.schemas.parquet_io import (foreign_files, mark_of, output_dir, remove_output,
                                         write_table)
from ptreplay.pipeline.progress import interactive, note, warn
from ptreplay.pipeline.capture import ptrace, start_state
from ptreplay.pipeline.capture.start_state import StartState
from ptreplay.schemas import CAPTURE, EVENTS, TRUTH

# Tracepoints, as perf names them.  A missing REQUIRED one refuses the
# recording (the replay would be wrong); a missing OPTIONAL one is skipped.
REQUIRED_TRACEPOINTS = (
    "exceptions:page_fault_user",
    "exceptions:page_fault_kernel",
    "syscalls:sys_enter_mmap", "syscalls:sys_exit_mmap",
    "syscalls:sys_enter_munmap", "syscalls:sys_exit_munmap",
    "syscalls:sys_enter_madvise", "syscalls:sys_exit_madvise",
)
OPTIONAL_TRACEPOINTS = (
    "syscalls:sys_enter_mremap", "syscalls:sys_exit_mremap",
    "syscalls:sys_enter_brk", "syscalls:sys_exit_brk",
    "syscalls:sys_enter_mprotect", "syscalls:sys_exit_mprotect",
    "syscalls:sys_enter_process_madvise", "syscalls:sys_exit_process_madvise",
    "syscalls:sys_enter_exit_group",
    "sched:sched_process_fork", "sched:sched_process_exec", "sched:sched_process_exit",
    "task:task_newtask",   # clone_flags: tells a CLONE_VM child (vfork, threads) from a fork
    "mmap:exit_mmap",
)

# The end of a fault that installs a huge page.  page_fault_user fires at a fault's entry; a THP
# fault then zeroes 2 MiB (tens of us to ms) and only map_anon_folio_pmd (mm/huge_memory.c) makes
# it visible: it sets the PMD, adds 512 to RssAnon and counts THP_FAULT_ALLOC to the mm's memcg
# (count_memcg_event_mm), where this tracepoint fires.  Recorded with a filter on that counter's
# item (machine.vm_event_item), so nothing else of it is traced; ingest stamps the fault with its
# end (pipeline/events/fault_ends.py).  Without it (no memcg, no such counter) THP faults take
# effect at their entry, as before.
FAULT_END_TRACEPOINT = "memcg:count_memcg_events"
FAULT_END_COUNTER = "thp_fault_alloc"

TRACEFS_CANDIDATES = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))
PARANOID_PATH = Path("/proc/sys/kernel/perf_event_paranoid")

# Files a previous `record` leaves in its directory; --force removes these only.
OUTPUT_NAMES = ("perf.data", "perf.data.old", "truth.parquet", "capture.parquet", "capture.json",
                "command.txt", "record.json", "snapshot.parquet", "pagemap.parquet", "maps")

MAPS_INTERVAL_NS = 10_000_000        # re-read /proc/PID/maps every 10 ms to keep the "end" copy fresh
PERF_STOP_TIMEOUT_S = 20.0           # after forwarding SIGINT, wait this long before killing perf
PERF_EXEC_NAME = b"perf-exec"        # perf's forked child before it execs the command
HOST_SNAPSHOT_ALLOWANCE_S = 300      # record -a: perf's timing sleep lasts --duration + this (a safety net)
USER_ADDR_LIMIT = 1 << 63            # x86-64 kernel half starts here (vsyscall page lives above)


@dataclass
class RecordOptions:
    """What `ptreplay record` was asked to do (see pipeline/cli.py)."""

    out_dir: Path
    command: list[str] | None = None
    pid: int | None = None
    duration_s: float | None = None
    interval_ms: float = 1.0
    force: bool = False
    mmap_pages: str = "16M"
    callgraph: bool = False
    threads: bool = False      # perf record --threads: perf.data is a directory, one data file per CPU
    freeze: bool = False       # -p: stop the target's threads while its start state is read
    all_processes: bool = False   # -a: every process on the host (capture/host.py)
    comm: tuple = ()              # -a --comm: only processes with one of these names
    min_vmpte_bytes: int = 0      # -a --min-vmpte: only processes whose VmPTE reaches this


# ---------------------------------------------------------------------------
# Checks: each raises RecordError with one line, or returns what it found.

def check_privileges(euid: int, paranoid_path: Path = PARANOID_PATH) -> None:
    """Root may always record; anyone else needs perf_event_paranoid == -1.

    Raw tracepoint samples (PERF_SAMPLE_RAW) are refused to unprivileged users
    unless kernel.perf_event_paranoid is -1 (kernel: perf_trace_event_perm).
    """
    if euid == 0:
        return
    try:
        paranoid = int(paranoid_path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        raise RecordError(f"not root (euid {euid}) and {paranoid_path} is unreadable: run as root") from None
    if paranoid > -1:
        raise RecordError(f"not root (euid {euid}) and kernel.perf_event_paranoid is {paranoid}: "
                          "raw tracepoint samples need root or perf_event_paranoid=-1")


def find_perf(path: str | None = None) -> str:
    """Absolute path of `perf` on PATH (or on `path`)."""
    perf = shutil.which("perf", path=path if path is not None else os.environ.get("PATH", ""))
    if not perf:
        raise RecordError("perf not found on PATH: install it (Debian: apt-get install linux-perf)")
    return perf


def find_tracefs(env: dict | None = None, euid: int | None = None, candidates=None, mount=None) -> Path:
    """The tracefs mount (PTREPLAY_TRACEFS overrides; tests point it at a fake tree).

    A fresh machine has tracefs unmounted: root mounts it at the first candidate
    (saying so in one line); anyone else is refused with the exact command.
    """
    env = os.environ if env is None else env
    override = env.get("PTREPLAY_TRACEFS")
    candidates = [Path(override)] if override else list(candidates or TRACEFS_CANDIDATES)
    for c in candidates:
        if (c / "events").is_dir():
            return c
    command = f"mount -t tracefs nodev {candidates[0]}"
    if (os.geteuid() if euid is None else euid) == 0 and not override:
        (mount or _mount_tracefs)(candidates[0])
        if (candidates[0] / "events").is_dir():
            note(f"record: tracefs was not mounted: mounted it ({command})")
            return candidates[0]
        raise RecordError(f"tracefs not found at {candidates[0]} and `{command}` failed")
    raise RecordError(f"tracefs not found at {candidates[0]}: as root, run `{command}`")


def _mount_tracefs(where: Path) -> None:
    subprocess.run(["mount", "-t", "tracefs", "nodev", str(where)], capture_output=True)


def check_tracepoints(tracefs: Path, required=REQUIRED_TRACEPOINTS, optional=OPTIONAL_TRACEPOINTS) -> list[str]:
    """The tracepoints to record: all required ones (else refuse) plus the optional ones present."""
    def present(name: str) -> bool:
        system, _, event = name.partition(":")
        return (tracefs / "events" / system / event).is_dir()

    missing = [t for t in required if not present(t)]
    if missing:
        raise RecordError(f"required tracepoint(s) unavailable in {tracefs}/events: {', '.join(missing)}")
    ends = [FAULT_END_TRACEPOINT] if present(FAULT_END_TRACEPOINT) and fault_end_item() is not None else []
    return list(required) + [t for t in optional if present(t)] + ends


def fault_end_item() -> int | None:
    """The `item` of THP_FAULT_ALLOC in FAULT_END_TRACEPOINT on this kernel (None: not counted)."""
    return vm_event_item(FAULT_END_COUNTER)


def fault_ends_info(tracepoints: list[str]) -> dict | None:
    """record.json `fault_ends`: what marks a fault's end in this recording (None: nothing)."""
    if FAULT_END_TRACEPOINT not in tracepoints:
        return None
    return {"tracepoint": FAULT_END_TRACEPOINT, "counter": FAULT_END_COUNTER, "item": fault_end_item()}


def check_pid(pid: int, proc: Path = PROC) -> None:
    """The target must be alive and have a user address space."""
    status = read_status(pid, proc)
    if status is None:
        raise RecordError(f"process {pid} not found (gone, or not visible in {proc})")
    if status[1] is None:
        raise RecordError(f"process {pid} has no user address space (kernel thread, or exited)")


def check_command(command: list[str], path: str | None = None) -> None:
    """The command must be an executable perf can exec (else perf records an empty trace)."""
    if not shutil.which(command[0], path=path if path is not None else os.environ.get("PATH", "")):
        raise RecordError(f"command not found or not executable: {command[0]}")


def prepare_out_dir(out_dir: Path, force: bool) -> Path:
    """Create `out_dir`; refuse a non-empty one unless --force, then clear a previous record's
    outputs (OUTPUT_NAMES) and nothing else.  They are cleared only when ptreplay wrote them: the
    Parquet files by their mark, the rest because the directory holds our capture.parquet (a
    record directory); a user's perf.data, say, in any other directory is refused."""
    out_dir = Path(out_dir)
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not force:
            raise RecordError(f"{out_dir}: directory is not empty (use --force to record over it)")
        ours = (mark_of(out_dir / "capture.parquet") or "").startswith(f"{CAPTURE.name}/")
        present = [out_dir / n for n in OUTPUT_NAMES if (out_dir / n).exists() or (out_dir / n).is_symlink()]
        foreign = [] if ours else [p.name for p in present if foreign_files(p, limit=1)]
        if foreign:
            raise RecordError(f"{out_dir}: is a directory holding files ptreplay did not write "
                              f"({', '.join(foreign)}: no capture.parquet of ptreplay's beside them); "
                              f"not replaced (choose another -o)")
        for p in present:
            remove_output(p)
    return output_dir(out_dir)


# ---------------------------------------------------------------------------
# /proc readers: small, allocation-light, None when the process is gone (status: procfs.py).

def children(pid: int, proc: Path = PROC) -> list[int]:
    """Direct children of every thread of `pid` (/proc/PID/task/TID/children)."""
    try:
        tids = os.listdir(f"{proc}/{pid}/task")
    except OSError:
        return []
    out = []
    for tid in tids:
        data = read_file(f"{proc}/{pid}/task/{tid}/children")
        if data:
            out.extend(int(x) for x in data.split())
    return out


def read_maps(pid: int, proc: Path = PROC) -> str | None:
    """/proc/PID/maps text, or None when gone or empty (the mm is already torn down)."""
    data = read_file(f"{proc}/{pid}/maps")
    return data.decode(errors="replace") if data else None


# ---------------------------------------------------------------------------
# The sampler.

class Sampler(threading.Thread):
    """Reads /proc/PID/status of a process tree every `interval_ns`, in a thread.

    The tree is `top` (when `include_top`) and all its descendants, found each
    tick through /proc/PID/task/*/children.  Processes once seen stay tracked
    even if reparented; a pid is dropped for good when its status loses VmPTE
    (it exited).  While a child is still perf's pre-exec fork (`perf-exec`) it
    is not sampled: its address space is perf's, which the trace never sees.

    Each row is stamped with CLOCK_MONOTONIC taken right after the read, so an
    event the read already reflects always has an earlier perf timestamp.
    """

    def __init__(self, top: int, include_top: bool, interval_ns: int, proc: Path = PROC):
        super().__init__(name="ptreplay-sampler", daemon=True)
        self.top, self.include_top, self.interval_ns, self.proc = top, include_top, interval_ns, proc
        self.rows: list[tuple] = []
        self.first_pid: int | None = None    # the first process sampled: the command (or -p target)
        self.maps_start: dict[int, str] = {}
        self.maps_end: dict[int, str] = {}
        self._maps_t: dict[int, int] = {}
        self._tracked: list[int] = [top] if include_top else []
        self._done: set[int] = set()
        self._halt = threading.Event()
        self.ticks = 0
        self.t_first = self.t_last = 0
        self.max_gap_ns = 0

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        next_t = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        while not self._halt.is_set():
            self.tick()
            next_t += self.interval_ns
            now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            if next_t > now:
                time.sleep((next_t - now) / 1e9)
            else:
                next_t = now        # fell behind: do not burst to catch up
        self.tick()                 # one last look after the recorder stopped

    def _discover(self) -> list[int]:
        """Alive tracked pids plus any new descendants (breadth first, this tick)."""
        known = set(self._tracked)
        queue = [self.top] + [p for p in self._tracked if p not in self._done and p != self.top]
        while queue:
            p = queue.pop()
            for c in children(p, self.proc):
                if c not in known:
                    known.add(c)
                    self._tracked.append(c)
                    queue.append(c)
        return [p for p in self._tracked if p not in self._done]

    def tick(self) -> None:
        now = 0
        for pid in self._discover():
            data, now = read_file_timed(f"{self.proc}/{pid}/status")
            if data is None:
                self._done.add(pid)
                continue
            name, sizes = parse_status(data)
            if sizes is None:
                self._done.add(pid)
                continue
            if name == PERF_EXEC_NAME:
                continue
            self.rows.append((now, pid) + sizes)
            if self.first_pid is None:
                self.first_pid = pid
            if now - self._maps_t.get(pid, 0) >= MAPS_INTERVAL_NS:
                self._maps_t[pid] = now
                maps = read_maps(pid, self.proc)
                if maps:
                    self.maps_start.setdefault(pid, maps)
                    self.maps_end[pid] = maps
        now = now or time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        if self.ticks:
            self.max_gap_ns = max(self.max_gap_ns, now - self.t_last)
        else:
            self.t_first = now
        self.t_last = now
        self.ticks += 1

    def rate_hz(self) -> float:
        """Achieved ticks per second over the sampler's life."""
        span = self.t_last - self.t_first
        return (self.ticks - 1) / span * 1e9 if span > 0 else 0.0

    def pids(self) -> list[int]:
        return sorted({r[1] for r in self.rows})

    def clip(self, t_ns: int) -> None:
        """Drop the samples after `t_ns`: an attached process lives on after the trace stops,
        and what it does then is in no event (the -p recording's end)."""
        self.rows = [r for r in self.rows if r[0] <= t_ns]

    def add_row(self, t_ns: int, pid: int, sizes: tuple) -> None:
        """A status read taken elsewhere (the -p start snapshot's), kept in time order."""
        self.rows.append((t_ns, pid) + tuple(sizes))

    def truth_table(self) -> pa.Table:
        rows = sorted(self.rows, key=lambda r: r[0])
        cols = list(zip(*rows)) if rows else [()] * 8
        names = TRUTH.schema.names
        arrays = [pa.array(cols[0], pa.int64()), pa.array(cols[1], pa.int32())]
        arrays += [pa.array(c, pa.int64()) for c in cols[2:]]
        return pa.Table.from_arrays(arrays, names=names)


# ---------------------------------------------------------------------------
# Recording.

def callgraph_term(tracepoint: str) -> str:
    """perf's per-event call-graph term for `record --call-graph` (attribution).

    Faults are most of a capture: a frame-pointer chain (a few ips) is cheap and
    its first ip is the faulting instruction.  Syscall exits (the event rows of
    mmap/munmap/madvise/...) get the user registers and 8 KiB of user stack, for
    DWARF unwinding: their first frame is a libc wrapper without a frame pointer,
    whose caller a frame-pointer chain would skip.  Syscall enters and sched
    events get none.
    """
    if tracepoint.startswith("exceptions:page_fault"):
        return "/call-graph=fp/"
    if tracepoint.startswith("syscalls:sys_exit_"):
        return "/call-graph=dwarf,stack-size=8192/"
    return "/call-graph=no/"


def perf_argv(perf: str, tracepoints: list[str], out_file: Path, opts: RecordOptions,
              target: int | None = None, control_argv: tuple = ()) -> list[str]:
    """perf record command line: CLOCK_MONOTONIC, zstd, large buffers, inherit (default).

    `target`: the pid perf attaches to (-p, or the command stopped at its exec), with its events
    off until `enable` on the control fifo (`control_argv`); otherwise perf launches the command.
    """
    argv = [perf, "record", "-k", "CLOCK_MONOTONIC", "-z", "-m", str(opts.mmap_pages)]
    for t in tracepoints:
        argv += ["-e", t + callgraph_term(t) if opts.callgraph else t]
        if t == FAULT_END_TRACEPOINT:
            argv += ["--filter", f"item == {fault_end_item()}"]
    if opts.callgraph:
        argv += ["--buildid-mmap"]       # MMAP2 records carry build ids: symbols are checked
    if opts.threads:
        argv += ["--threads"]
    argv += ["-o", str(out_file)]
    if opts.all_processes:
        # -a: every CPU, so every process.  The recorder stops perf --duration after the host's
        # snapshot ends (capture/host.py); the `sleep` (excluded) is only a safety net.
        argv += ["-a", "--", shutil.which("sleep") or "sleep", f"{opts.duration_s + HOST_SNAPSHOT_ALLOWANCE_S:g}"]
    elif target is not None:
        argv += ["-p", str(target), *control_argv]
    else:
        argv += ["--", *opts.command]
    return argv


def pid_cmdline(pid: int) -> list[str]:
    data = read_file(f"{PROC}/{pid}/cmdline") or b""
    return [a.decode(errors="replace") for a in data.split(b"\0") if a]


@contextmanager
def status_line():
    """Yield show(text): a rich status line on a terminal, nothing when piped."""
    if not interactive():
        yield lambda text: None
        return
    from rich.console import Console
    with Console(stderr=True).status("ptreplay record: starting") as st:
        yield st.update


@contextmanager
def stop_on_signals(stop: threading.Event):
    """SIGINT/SIGTERM set `stop` instead of killing us, so the capture gets finished."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = lambda signum, frame: stop.set()  # noqa: E731
    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def alive(pid: int) -> bool:
    st = read_status(pid)
    return st is not None and st[1] is not None


def perf_is_recording(perf_pid: int) -> int | None:
    """perf's command's pid once perf has exec'd it (perf enables the events just before that
    exec), else None.  /proc/PID/task/TID/children may miss a child while the list changes, so a
    None here does not mean perf stopped: watch the pid returned (alive()) for that."""
    for c in children(perf_pid):
        st = read_status(c)
        if st is not None and st[0] != PERF_EXEC_NAME:
            return c
    return None


@dataclass
class _Outcome:
    """How a perf run ended, and the start snapshot (-p, or the command at its exec)."""

    perf_rc: int = 0
    end_ns: int = 0
    interrupted: bool = False     # SIGINT/SIGTERM asked us to stop
    forwarded: bool = False       # we sent perf SIGINT (interrupt, target gone, duration over)
    start: StartState | None = None   # the start state: -p target, or the command stopped at exec
    started: bool = False             # the snapshot was attempted
    recording_ns: int | None = None   # when perf acknowledged `enable`: the trace starts
    stopped_ns: int | None = None     # -p: when we sent perf `disable` (or saw the target gone)
    command_rc: int | None = None     # the command's exit status, when we launched it ourselves
    frozen: dict | None = None        # -p --freeze: threads stopped during the snapshot, for how long


def _supervise(proc: subprocess.Popen, opts: RecordOptions, stop: threading.Event, sampler: Sampler,
               perf_file: Path, start_ns: int, o: _Outcome, command: subprocess.Popen | None,
               control) -> None:
    """Wait for perf while showing progress; stop it (SIGINT) when the recording is over.

    Over means: -p, the duration since perf enabled its events has passed (perf
    gets `disable` first, so the trace ends at a known instant; the server lives
    on) or the target is gone; a launched `command` exited; or SIGINT/SIGTERM
    asked us to stop (the command gets SIGTERM).
    """
    attach = opts.pid is not None
    until = o.recording_ns + int(opts.duration_s * 1e9) if attach else None
    forwarded_at = None
    try:
        with status_line() as show:
            while proc.poll() is None:
                now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
                if forwarded_at is None:
                    if attach and now >= until:
                        o.stopped_ns = _end_attach(proc, control, opts.pid, sampler)
                    elif attach and not alive(opts.pid):
                        o.stopped_ns = now
                    command_done = command is not None and command.poll() is not None
                    if stop.is_set() or o.stopped_ns is not None or command_done:
                        o.interrupted = stop.is_set()
                        if command is not None and not command_done:
                            command.send_signal(signal.SIGTERM)
                        proc.send_signal(signal.SIGINT)
                        forwarded_at = now
                        o.stopped_ns = o.stopped_ns or now
                elif now - forwarded_at > PERF_STOP_TIMEOUT_S * 1e9:
                    proc.kill()
                size = perf_file_size(perf_file)
                show(f"recording {(now - start_ns) / 1e9:6.1f} s   perf.data {size / 1e6:7.1f} MB   "
                     f"truth samples {len(sampler.rows):,}")
                time.sleep(0.005 if attach or command is not None else 0.05)
    finally:
        o.perf_rc = proc.wait()
        o.end_ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        if command is not None:
            if command.poll() is None:      # perf ended on its own: the command is no longer traced
                command.send_signal(signal.SIGTERM)
            o.command_rc = command.wait()
        sampler.stop()
        sampler.join()
    o.forwarded = forwarded_at is not None
    if attach:
        sampler.clip(o.stopped_ns or o.end_ns)


def _end_attach(proc: subprocess.Popen, control, pid: int, sampler: Sampler) -> int:
    """-p duration over: read the target's status a last time, then switch perf's events off.

    That read is the truth's last row and its time the trace's end (record.json
    `trace_end_ns`; ingest drops the events after it): the kernel's last numbers and
    the model's final state then describe the same instant while the server goes on.
    """
    st = read_status(pid)          # (name, sizes in TRUTH order), as the sampler reads it
    t = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    if st is not None and st[1] is not None:
        sampler.add_row(t, pid, st[1])
    control.disable(proc)
    return t


def perf_file_size(perf_file: Path) -> int:
    """Bytes perf wrote so far: the file, or the files of a --threads directory (0 if none)."""
    try:
        if perf_file.is_dir():
            return sum(f.stat().st_size for f in perf_file.iterdir() if f.is_file())
        return perf_file.stat().st_size
    except FileNotFoundError:      # not written yet, or renamed under us (perf.data.old)
        return 0


def _snapshot(o: _Outcome, pid: int, sampler: Sampler, freeze: bool = False) -> None:
    """The target's start state now (capture/start_state.py); its first /proc/PID/status read
    also becomes a truth row, the kernel's numbers at the instant the replay starts from.
    `freeze`: every thread of the target is stopped while it is read (capture/ptrace.py)."""
    o.started = True
    if freeze:
        t0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        try:
            with ptrace.frozen(pid) as threads:
                o.start = start_state.take(pid)
            o.frozen = {"threads": threads, "duration_ns": time.clock_gettime_ns(time.CLOCK_MONOTONIC) - t0}
        except ptrace.PtraceRefused as e:
            note(f"--freeze: ptrace refused ({e}); the start state is read while pid {pid} runs")
            o.start = start_state.take(pid)
    else:
        o.start = start_state.take(pid)
    if o.start is not None:
        st = o.start.status
        sampler.add_row(o.start.t_ns, pid, tuple(st[c] for c in start_state.STATUS_COLUMNS))


def _launch_stopped(command: list[str]) -> subprocess.Popen | None:
    """The command stopped after its exec (capture/ptrace.py), or None where ptrace is refused."""
    try:
        return ptrace.spawn_stopped(command)
    except ptrace.PtraceRefused as e:
        note(f"ptrace refused ({e}): perf launches the command, and what its exec maps is not in the trace")
        return None


def _start_perf(argv: list[str], opts: RecordOptions, launched: subprocess.Popen | None, control,
                o: _Outcome, sampler: Sampler) -> subprocess.Popen:
    """Start perf; where it attaches (-p, or the command stopped at its exec), switch its events
    on, read the start state (the -p target frozen with --freeze; the command still waiting at
    its exec), then let a launched command run.  On any failure the stopped command is killed."""
    try:
        try:
            proc = subprocess.Popen(argv)
        except OSError as e:
            raise RecordError(f"cannot start {argv[0]}: {e.strerror}") from None
        if control is not None:
            try:
                o.recording_ns = control.enable(proc)
                if launched is not None:
                    _snapshot(o, launched.pid, sampler)
                    ptrace.detach(launched.pid)
                else:
                    _snapshot(o, opts.pid, sampler, opts.freeze)
            except BaseException:
                proc.kill()
                proc.wait()
                raise
        return proc
    except BaseException:
        if launched is not None:
            launched.kill()
            launched.wait()
        raise


def record(opts: RecordOptions) -> Path:
    """Record `opts.command` (or attach to `opts.pid`) into `opts.out_dir`; return the directory.

    perf writes the events; a sampler thread writes the truth.  The command is
    started stopped at its exec, so its start state is read before it runs; a
    -p target's is read as soon as perf records (capture/ptrace.py, start_state.py).
    SIGINT/SIGTERM stop the recording: the command gets SIGTERM, perf SIGINT (it
    finalizes perf.data), and the truth and metadata files are written all the
    same.  A failing command keeps its capture and prints a warning.  A recording
    that fails leaves no directory it created.
    """
    if not opts.command and opts.pid is None:
        raise RecordError("nothing to record: give a command or -p PID")
    check_privileges(os.geteuid())
    perf = find_perf()
    tracepoints = check_tracepoints(find_tracefs())
    if opts.pid is not None:
        check_pid(opts.pid)
    else:
        check_command(opts.command)
    created = not Path(opts.out_dir).exists()
    out = prepare_out_dir(opts.out_dir, opts.force)
    try:
        return _record_into(out, opts, perf, tracepoints)
    except BaseException:
        if created:
            _remove_new_dir(out)
        raise


def _remove_new_dir(out: Path) -> None:
    """A recording that failed before it finished leaves no directory it made itself
    (only our own outputs are removed; anything else keeps the directory)."""
    for name in OUTPUT_NAMES:
        if (out / name).exists() or (out / name).is_symlink():
            remove_output(out / name)
    try:
        out.rmdir()
    except OSError:
        pass


def _record_into(out: Path, opts: RecordOptions, perf: str, tracepoints: list[str]) -> Path:
    """record() once the checks passed and `out` is ready."""
    command = list(opts.command) if opts.command else pid_cmdline(opts.pid)
    perf_file = out / "perf.data"
    machine = machine_info(perf)

    stop = threading.Event()
    start_ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    o = _Outcome()
    with stop_on_signals(stop):
        launched = _launch_stopped(command) if opts.pid is None else None
        target = opts.pid if opts.pid is not None else launched.pid if launched else None
        control = ptrace.PerfControl() if target is not None else None
        try:
            argv = perf_argv(perf, tracepoints, perf_file, opts, target, tuple(control.argv()) if control else ())
            sampler = Sampler(target if target is not None else 0, include_top=target is not None,
                              interval_ns=max(1, int(opts.interval_ms * 1e6)))
            proc = _start_perf(argv, opts, launched, control, o, sampler)
            if target is None:
                sampler.top = proc.pid          # perf launches the command: its child is the top
            sampler.start()
            _supervise(proc, opts, stop, sampler, perf_file, start_ns, o, launched, control)
        finally:
            if control is not None:
                control.close()
        if o.interrupted and opts.pid is None:
            for pid in sampler.pids():       # the command got SIGTERM; stop any grandchildren too
                if alive(pid):
                    os.kill(pid, signal.SIGTERM)

    if perf_file_size(perf_file) == 0:
        raise RecordError(f"perf record exited with status {o.perf_rc} and wrote no {perf_file}; "
                          "see its message above")
    capture = dict(
        trace_id=out.resolve().name, clock="CLOCK_MONOTONIC", command_line=shlex.join(command),
        source_format="perf.data", lost_events=0, lost_samples=0, synthetic=False,
        start_ns=start_ns, end_ns=o.end_ns, **machine)
    capture = {name: capture[name] for name in CAPTURE.schema.names}
    write_outputs(out, capture, sampler, o.start)
    info = {
        "perf_argv": argv, "perf_exit_status": o.perf_rc, "interrupted": o.interrupted,
        "launch": "attach" if opts.pid is not None else "exec_stop" if launched else "perf",
        "command_exit_status": o.command_rc,
        "root_pid": target if target is not None else sampler.first_pid,
        "pids": sampler.pids(), "truth_rows": len(sampler.rows),
        "sampler_interval_ms": opts.interval_ms, "sampler_rate_hz": round(sampler.rate_hz(), 1),
        "sampler_max_gap_ms": round(sampler.max_gap_ns / 1e6, 3),
        "perf_enabled_ns": o.recording_ns,
        "snapshot": None if o.start is None else {**o.start.meta(), "perf_recording_seen_ns": o.recording_ns,
                                                  "frozen": o.frozen},
        "perf_stop_seen_ns": o.stopped_ns,
        "trace_end_ns": o.stopped_ns if opts.pid is not None else None,
        "tracepoints": tracepoints,
        "fault_ends": fault_ends_info(tracepoints),
    }
    (out / "record.json").write_text(json.dumps(info, indent=2) + "\n")
    _warn_outcome(o, opts, start_ns, out)
    if not sampler.rows:
        warn("no /proc samples were taken (the process exited too fast?): truth.parquet is empty")
    return out


def _warn_outcome(o: _Outcome, opts: RecordOptions, start_ns: int, out: Path) -> None:
    """One warning for an interrupted recording or a failing command (or perf)."""
    if o.interrupted:
        warn(f"interrupted: capture kept, covering {(o.end_ns - start_ns) / 1e9:.1f} s")
    elif o.command_rc is not None:
        if o.command_rc != 0:
            warn(f"command exited with status {o.command_rc}: capture kept in {out}")
    elif o.perf_rc != 0 and not (o.forwarded and o.perf_rc == -signal.SIGINT):
        what = "command" if opts.pid is None else "perf"
        warn(f"{what} exited with status {o.perf_rc}: capture kept in {out}")


def write_outputs(out: Path, capture: dict, sampler: Sampler, start: StartState | list | None) -> None:
    """truth/capture Parquet (atomic), capture.json, command.txt, maps/, snapshot.parquet (the start
    state of one process, or of every process of a host recording: a list)."""
    write_table(sampler.truth_table(), out / "truth.parquet", TRUTH, capture=capture)
    write_table(pa.Table.from_pylist([capture], schema=CAPTURE.schema), out / "capture.parquet", CAPTURE,
                capture=capture)
    (out / "capture.json").write_text(json.dumps(capture, indent=2) + "\n")
    (out / "command.txt").write_text(capture["command_line"] + "\n")
    maps_dir = out / "maps"
    maps_dir.mkdir(exist_ok=True)
    for pid, text in sampler.maps_start.items():
        (maps_dir / f"{pid}.start.txt").write_text(text)
    for pid, text in sampler.maps_end.items():
        (maps_dir / f"{pid}.end.txt").write_text(text)
    starts = start if isinstance(start, list) else [] if start is None else [start]
    if starts:
        table = pa.concat_tables([start_state.to_events(s) for s in starts])
        write_table(table, out / "snapshot.parquet", EVENTS, capture=capture)
