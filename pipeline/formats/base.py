"""The reader interface: what every capture reader returns, and how files are opened.

A reader turns one capture file into batches of *raw* records (the RAW schema
below: tracepoint name, per-thread identity, up to six integer arguments) and
a dict of capture metadata.  `pipeline.events.normalize` then pairs syscalls,
fixes process ids and turns raw records into the `events` artifact,
identically for every format.  Readers import this module only; the registry
that picks a reader (`pipeline.formats.detect`) imports the readers.

Reader interface (each reader module defines)::

    NAME: str                         # 'perf.data', 'perf-script', 'ftrace', 'trace-cmd'
    def sniff(head: bytes) -> bool    # True if the first bytes look like this format
    def read(path, opener) -> Capture # opener(path) -> binary file object (handles .gz/.xz/.zst)

Raw record fields
-----------------
``event`` is the tracepoint name without its system (``page_fault_user``,
``sys_enter_mmap``, ``sys_exit_madvise``, ``sched_process_fork``,
``exit_mmap`` ...) or one of perf's side-band records ``perf_fork``,
``perf_exit``, ``perf_comm``.  Arguments by event:

==========================  ===============================================
page_fault_user/kernel      a0=address a1=ip a2=error_code
sys_enter_<name>            a0..a5 = the syscall's arguments in order
sys_exit_<name>             ret = return value (signed)
sched_process_fork          a0=child tid, comm=child comm
sched_process_exec          a0=pid, a1=old_pid, comm=filename
sched_process_exit          comm=comm
exit_mmap                   (none)
count_memcg_events          a0=item (enum vm_event_item), a1=val (memcg; THP fault ends)
perf_fork / perf_exit       a0=pid a1=tid a2=ppid a3=ptid (perf FORK/EXIT records)
perf_comm                   a0=pid a1=tid a2=1 if exec, comm=new comm
==========================  ===============================================
"""
from __future__ import annotations

import bz2
import gzip
import lzma
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa

RAW = pa.schema([
    ("t_ns", pa.int64()),
    ("pid", pa.int32()),      # thread-group id, -1 if the format does not say
    ("tid", pa.int32()),
    ("cpu", pa.int32()),      # -1 if unknown
    ("event", pa.string()),
    ("a0", pa.uint64()), ("a1", pa.uint64()), ("a2", pa.uint64()),
    ("a3", pa.uint64()), ("a4", pa.uint64()), ("a5", pa.uint64()),
    ("ret", pa.int64()),
    ("comm", pa.string()),    # nullable
    ("seq", pa.int64()),      # position in the file (stable tie-break for equal times)
])


FAULT_EVENTS = ("page_fault_user", "page_fault_kernel")   # RAW `event` of the page-fault tracepoints
# normalize's fault_kind per event code (fault_merge's kernels): no fault, a user-mode or a kernel-mode fault
NOT_FAULT, USER_FAULT, KERNEL_FAULT = 0, 1, 2


# The page-fault rows as the perf.data reader gives them apart when asked (`RawColumns.faults`):
# normalize's events/2 fault columns (schemas EVENT_FAULTS) and the record's seq.  addr, ip and
# error_code are the fault's a0, a1 and a2 (its low 32 bits, signed); user_mode: page_fault_user.
FAULT_ROWS = {"t_ns": np.int64, "pid": np.int32, "tid": np.int32, "cpu": np.int32, "addr": np.uint64,
              "ip": np.uint64, "error_code": np.int32, "user_mode": np.bool_, "seq": np.int64}


@dataclass
class RawColumns:
    """RAW rows as numpy columns, before Arrow: the perf.data reader's fast hand-off to normalize.

    `columns` holds t_ns, pid, tid, cpu, a0..a5, ret and seq (the RAW dtypes);
    `event` indexes `events` (the names) and `comm` indexes `comms` (-1: null).
    Building the RAW `event` strings for millions of rows, only for normalize to
    dictionary-encode them again, cost more than decoding them.  In the rows of
    FAULT_EVENTS, a3..a5, ret and comm are undefined (not written: a fault has no
    such field and normalize reads only its a0..a2; the perf.data reader's RAW tables
    hold their defaults as ever).

    `faults` (when the reader was asked to split): the page-fault rows apart, in the columns of
    FAULT_ROWS; `columns`, `event` and `comm` then hold the other rows.  Both parts are sorted
    by (t_ns, seq); `merged()` gives the same rows as one RawColumns.
    """
    columns: dict
    event: np.ndarray
    events: list
    comm: np.ndarray
    comms: list
    faults: dict | None = None

    def __len__(self) -> int:
        return len(self.event) + (len(self.faults["seq"]) if self.faults is not None else 0)

    def comm_text(self, i: int):
        code = int(self.comm[i])
        return self.comms[code] if code >= 0 else None

    def last_t(self) -> int | None:
        """The largest t_ns (None for no rows)."""
        ends = [int(p["t_ns"][-1]) for p in (self.columns, self.faults) if p is not None and len(p["t_ns"])]
        return max(ends) if ends else None

    def merged(self) -> "RawColumns":
        """The same rows as one RawColumns in (t_ns, seq) order (self when not split): the fault
        rows in RAW form (a0..a2 = addr, ip, error_code as its low 32 bits; a3..a5, ret 0; comm null)."""
        return self if self.faults is None else self.between(None, None)

    def between(self, lo: int | None, hi: int | None) -> "RawColumns":
        """The rows with lo <= t_ns <= hi (None: no bound), as one RawColumns in (t_ns, seq) order."""
        def span(t):
            a = 0 if lo is None else int(np.searchsorted(t, lo, side="left"))
            b = len(t) if hi is None else int(np.searchsorted(t, hi, side="right"))
            return slice(a, max(a, b))
        o = span(self.columns["t_ns"])
        if self.faults is None:
            return RawColumns({k: v[o] for k, v in self.columns.items()}, self.event[o], list(self.events),
                              self.comm[o], list(self.comms))
        fs = span(self.faults["t_ns"])
        f = {k: v[fs] for k, v in self.faults.items()}
        nf, no = len(f["seq"]), o.stop - o.start
        at = rank(self.columns["t_ns"][o], self.columns["seq"][o], f["t_ns"], f["seq"]) + np.arange(no)
        mine = np.ones(nf + no, bool)
        mine[at] = False                                  # the fault rows' places
        events = list(self.events)
        codes = np.array([name_code(events, n) for n in FAULT_EVENTS], np.int32)
        fault_cols = {"t_ns": f["t_ns"], "pid": f["pid"], "tid": f["tid"], "cpu": f["cpu"], "seq": f["seq"],
                      "a0": f["addr"], "a1": f["ip"], "a2": f["error_code"].astype(np.uint32).astype(np.uint64)}
        cols = {}
        for k, v in self.columns.items():
            out = np.zeros(nf + no, v.dtype)
            out[at] = v[o]
            if k in fault_cols:
                out[mine] = fault_cols[k]
            cols[k] = out
        event = np.empty(nf + no, self.event.dtype)
        event[at] = self.event[o]
        event[mine] = codes[np.where(f["user_mode"], 0, 1)]
        comm = np.full(nf + no, -1, self.comm.dtype)
        comm[at] = self.comm[o]
        return RawColumns(cols, event, events, comm, list(self.comms))


def rank(t: np.ndarray, seq: np.ndarray, in_t: np.ndarray, in_seq: np.ndarray) -> np.ndarray:
    """For each row (t[k], seq[k]): how many rows of (in_t, in_seq) (sorted by (t, seq)) come
    before it in (t, seq) order (equal keys: none of in's)."""
    a = np.searchsorted(in_t, t, side="left")
    b = np.searchsorted(in_t, t, side="right")
    for k in np.flatnonzero(b > a).tolist():       # equal times (rare): by seq
        a[k] += int(np.searchsorted(in_seq[a[k]:b[k]], seq[k], side="left"))
    return a.astype(np.int64)


def name_code(names: list, name) -> int:
    """The code of `name` in a list of interned names (event or comm), appended if new."""
    if name not in names:
        names.append(name)
    return names.index(name)


@dataclass
class Capture:
    """What a reader returns: raw record batches (lazy) plus metadata.

    `meta` may be completed while `batches` is consumed (lost-event counts are
    known only at the end), so read it after exhausting the iterator.
    """
    batches: Iterator[pa.Table]             # or RawColumns, when the reader was asked for them
    meta: dict = field(default_factory=dict)


def open_binary(path: Path):
    """Open `path` for reading, transparently decompressing gzip, xz, bzip2 and zstd (by magic)."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(6)
    if head.startswith(b"\x1f\x8b"):
        return gzip.open(path, "rb")
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.open(path, "rb")
    if head.startswith(b"BZh"):
        return bz2.open(path, "rb")
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        import zstandard
        return zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), read_across_frames=True, closefd=True)
    return open(path, "rb")


Opener = Callable[[Path], object]
