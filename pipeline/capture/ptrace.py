"""ptrace stops: a command launched stopped right after its execve (perf switched on while it
waits), and a running process frozen while its start state is read (`record -p --freeze`).

`record -- CMD` starts CMD itself with PTRACE_TRACEME, so the kernel stops it
with SIGTRAP once execve has built the new address space (``load_elf_binary``,
``setup_arg_pages``: the binary's and the loader's segments, the stack with the
argument pages, vdso, vvar) and before its first instruction.  perf then
attaches with ``-p`` and its events disabled (``-D -1``); ``enable`` on its
control fifo switches them on and perf answers ``ack``.  The start state read
now (capture/start_state.py) is exact: nothing runs while it is taken.  Then
the tracer detaches and CMD runs, every event of it in the trace.

The earlier launch (perf forks and execs CMD itself) cannot see what execve
maps: no tracepoint fires for it, so VIRT was a constant 300-450 kB low and
exec's pages and tables were missing.  It is kept as the fallback where
ptrace is refused (seccomp, Yama ptrace_scope 3).

`frozen(pid)` seizes every thread of a running process and interrupts it
(PTRACE_SEIZE + PTRACE_INTERRUPT: no signal reaches the process, its parent
sees nothing), so a start snapshot sees one instant instead of tens of ms of
a server changing under the scan; the threads run again when it ends.
"""
from __future__ import annotations

import ctypes
import errno
import os
import select
import signal
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from ptreplay.schemas.errors import RecordError

PTRACE_TRACEME = 0
PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
WALL = 0x40000000             # __WALL: wait for any tracee, thread or not
ACK_TIMEOUT_S = 30.0          # perf answers `enable` within a second here; this is a safety net

_libc = ctypes.CDLL(None, use_errno=True)


class PtraceRefused(Exception):
    """PTRACE_TRACEME failed in the child: launch the old way."""


def _traceme() -> None:          # runs in the forked child, before execve
    if _libc.ptrace(PTRACE_TRACEME, 0, None, None) != 0:
        raise PtraceRefused(os.strerror(ctypes.get_errno()))


def spawn_stopped(command: list[str]) -> subprocess.Popen:
    """Start `command` and return once the kernel stopped it after its execve.

    The calling thread becomes its tracer and must be the one to `detach` it.
    """
    try:
        proc = subprocess.Popen(command, preexec_fn=_traceme)
    except subprocess.SubprocessError as e:
        raise PtraceRefused(str(e)) from None
    except OSError as e:
        raise RecordError(f"cannot start {command[0]}: {e.strerror}") from None
    _, status = os.waitpid(proc.pid, os.WUNTRACED)
    if not os.WIFSTOPPED(status) or os.WSTOPSIG(status) != signal.SIGTRAP:
        proc.returncode = os.waitstatus_to_exitcode(status) if not os.WIFSTOPPED(status) else None
        raise RecordError(f"{command[0]} did not stop at its exec (wait status {status:#x})")
    return proc


def detach(pid: int) -> None:
    """Let the stopped command run (the exec's SIGTRAP is dropped, not delivered)."""
    if _libc.ptrace(PTRACE_DETACH, pid, None, None) != 0:
        raise RecordError(f"cannot let pid {pid} run: ptrace detach failed: "
                          f"{os.strerror(ctypes.get_errno())}")


def _ptrace(request: int, tid: int) -> int:
    return _libc.ptrace(request, tid, None, None)


@contextmanager
def frozen(pid: int):
    """Every thread of `pid` stopped (seized and interrupted) for the duration of the block.

    Threads born while seizing are caught by listing /proc/PID/task until no new
    one appears.  Yields the number of threads frozen; a thread that exits meanwhile
    is skipped.  Raises PtraceRefused when the first seize is refused.
    """
    seized: list[int] = []
    try:
        while True:
            new = [t for t in _tasks(pid) if t not in seized]
            if not new:
                break
            for tid in new:
                if _ptrace(PTRACE_SEIZE, tid) != 0:
                    err = ctypes.get_errno()
                    if err == errno.ESRCH:        # exited meanwhile
                        continue
                    if not seized:
                        raise PtraceRefused(os.strerror(err))
                    raise RecordError(f"cannot freeze thread {tid} of pid {pid}: {os.strerror(err)}")
                seized.append(tid)
                if _ptrace(PTRACE_INTERRUPT, tid) == 0:
                    _wait_stop(tid)
        yield len(seized)
    finally:
        for tid in seized:
            _ptrace(PTRACE_DETACH, tid)


def _tasks(pid: int) -> list[int]:
    try:
        return sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
    except FileNotFoundError:
        return []


def _wait_stop(tid: int) -> None:
    """Wait for the interrupted thread's stop (or its exit)."""
    try:
        os.waitpid(tid, WALL)
    except ChildProcessError:
        pass


class PerfControl:
    """perf record's control fifos (``--control fifo:CTL,ACK``) in a private temp directory."""

    def __init__(self):
        self._dir = Path(tempfile.mkdtemp(prefix="ptreplay-perfctl-"))
        self.ctl, self.ack = self._dir / "ctl", self._dir / "ack"
        os.mkfifo(self.ctl, 0o600)
        os.mkfifo(self.ack, 0o600)
        # O_RDWR on a fifo never blocks; our ack end is open before perf opens its write end.
        self._ctl_fd = os.open(self.ctl, os.O_RDWR)
        self._ack_fd = os.open(self.ack, os.O_RDONLY | os.O_NONBLOCK)

    def argv(self) -> list[str]:
        return ["-D", "-1", "--control", f"fifo:{self.ctl},{self.ack}"]

    def enable(self, perf: subprocess.Popen) -> int:
        """Switch perf's events on; return CLOCK_MONOTONIC when perf acknowledged it."""
        self._send(b"enable\n")
        self._wait_ack(perf, ACK_TIMEOUT_S, "enabled its events")
        return time.clock_gettime_ns(time.CLOCK_MONOTONIC)

    def disable(self, perf: subprocess.Popen) -> bool:
        """Switch perf's events off; True once perf acknowledged it (waited for briefly: a
        perf that does not answer is stopped by SIGINT all the same)."""
        self._send(b"disable\n")
        try:
            self._wait_ack(perf, 2.0, "disabled its events")
        except RecordError:
            return False
        return True

    def _send(self, word: bytes) -> None:
        os.write(self._ctl_fd, word)

    def _wait_ack(self, perf: subprocess.Popen, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        got = b""
        while b"ack" not in got:
            if perf.poll() is not None:
                raise RecordError(f"perf record exited with status {perf.returncode} before it "
                                  f"{what}; see its message above")
            if time.monotonic() > deadline:
                raise RecordError(f"perf record had not {what} after {timeout_s:g} s")
            ready, _, _ = select.select([self._ack_fd], [], [], 0.05)
            data = b""
            if ready:
                try:
                    data = os.read(self._ack_fd, 64)
                except BlockingIOError:
                    pass
            if not data:
                time.sleep(0.005)   # no writer yet: a fifo without one reads as end of file
            got += data

    def close(self) -> None:
        for fd in (self._ctl_fd, self._ack_fd):
            os.close(fd)
        for f in (self.ctl, self.ack):
            f.unlink(missing_ok=True)
        self._dir.rmdir()
