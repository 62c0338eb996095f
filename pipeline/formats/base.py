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
    """
    columns: dict
    event: np.ndarray
    events: list
    comm: np.ndarray
    comms: list

    def __len__(self) -> int:
        return len(self.event)

    def comm_text(self, i: int):
        code = int(self.comm[i])
        return self.comms[code] if code >= 0 else None


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
