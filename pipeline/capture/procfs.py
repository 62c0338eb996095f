"""/proc readers shared by record, the start snapshot and census: small, allocation-light,
None when the process is gone."""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

PROC = Path("/proc")

_STATUS_FIELDS = re.compile(rb"^(VmSize|VmRSS|RssAnon|RssFile|RssShmem|VmPTE):\s+(\d+) kB", re.M)
_ORDER = (b"VmSize", b"VmRSS", b"RssAnon", b"RssFile", b"RssShmem", b"VmPTE")


def parse_status(data: bytes) -> tuple[bytes, tuple[int, ...] | None]:
    """(Name, sizes in bytes in TRUTH column order) from /proc/PID/status text.

    Sizes are None when there is no VmPTE line: a zombie, a kernel thread, or
    a task whose mm is already gone.
    """
    nl = data.find(b"\n")
    name = data[data.find(b":") + 1:nl].strip()
    kb = dict(_STATUS_FIELDS.findall(data))
    if b"VmPTE" not in kb:
        return name, None
    return name, tuple(int(kb.get(k, 0)) * 1024 for k in _ORDER)


def read_file(path: str) -> bytes | None:
    """The whole file, or None when it cannot be opened or read (the process is gone)."""
    return read_file_timed(path)[0]


def read_file_timed(path: str) -> tuple[bytes | None, int]:
    """read_file() and when the kernel produced it: the middle of the first read(2), on
    CLOCK_MONOTONIC.  /proc/PID/status is made whole by that read (its counters are read in
    it); a stamp taken after the open, reads and close runs ~10 us late, which is the time a
    fast loop takes to fault or zap 2 MiB."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None, time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    try:
        t0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        b = os.read(fd, 65536)
        t = (t0 + time.clock_gettime_ns(time.CLOCK_MONOTONIC)) // 2
        chunks = [b]
        while b:
            b = os.read(fd, 65536)
            chunks.append(b)
        return b"".join(chunks), t
    except OSError:
        return None, time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    finally:
        os.close(fd)


def read_status(pid: int, proc: Path = PROC):
    """parse_status() of /proc/PID/status, or None when the pid does not exist."""
    data = read_file(f"{proc}/{pid}/status")
    return None if data is None else parse_status(data)
