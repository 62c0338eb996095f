"""The start state of a process that was already running when `record -p` attached.

A trace shows what happens from its start; a server has lived for days before that.  Right
after perf starts recording, `take(pid)` reads what the kernel holds for the process:

1. /proc/PID/status (VmPTE, VmSize, RSS): the kernel's own numbers at the snapshot time;
2. /proc/PID/smaps: every VMA (range, protection, shared or private, file and offset, name)
   with its VmFlags (``hg``/``nh``: MADV_HUGEPAGE/NOHUGEPAGE);
3. the present and swapped pages of every VMA, classified as the kernel counts them (anon,
   file or shmem, zero page, swap entry, PMD-mapped THP) by pagemap.scan;
4. /proc/PID/status again: a change in between is counted (pages that moved under the scan).

`to_events` turns it into the leading events of that process (schemas.EVENT_KINDS
``snapshot_*``), stamped with the snapshot time, which `record` writes as snapshot.parquet
(an EVENTS table) and ingest merges with the trace; the replayer rebuilds the address space
from them (replay/snapshot.py, docs/MODEL.md#snapshot).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from ptreplay.pipeline.capture import pagemap
from ptreplay.pipeline.capture.procfs import PROC, read_status
from ptreplay.schemas import (SNAP_ANON, SNAP_CLASSES, SNAP_FILE, SNAP_HUGE_ZERO, SNAP_SWAP, SNAP_THP,
                              SNAP_ZERO, TRUTH, events_from_rows)

USER_TOP = 1 << 63                  # [vsyscall] lives above: not part of the mm (VmSize skips it)
MAP_SHARED, MAP_PRIVATE, MAP_ANONYMOUS, MAP_GROWSDOWN = 0x01, 0x02, 0x20, 0x100
MADV_HUGEPAGE, MADV_NOHUGEPAGE = 14, 15
STATUS_COLUMNS = tuple(TRUTH.schema.names[2:])   # after t_ns, pid: parse_status's order


@dataclass
class Vma:
    """One VMA as /proc/PID/smaps shows it."""

    start: int
    end: int
    perms: str            # "rw-p"
    offset: int
    inode: int
    name: str             # path, [heap], [stack], [anon:...], or ""
    vm_flags: tuple = ()  # smaps VmFlags mnemonics ("rd", "wr", "hg", ...)

    @property
    def prot(self) -> int:
        return (1 if self.perms[0] == "r" else 0) | (2 if self.perms[1] == "w" else 0) | \
            (4 if self.perms[2] == "x" else 0)

    @property
    def shared(self) -> bool:
        return self.perms[3] == "s"

    @property
    def anonymous(self) -> bool:
        """No file behind it (a shared anonymous mapping is shmem: still MAP_ANONYMOUS)."""
        return self.inode == 0 and not self.name.startswith("/")


@dataclass
class StartState:
    """What the kernel held for one process at the snapshot (see the module docstring)."""

    pid: int
    comm: str
    t_ns: int                       # CLOCK_MONOTONIC just before the first read
    t_end_ns: int                   # after the last read
    status: dict                    # STATUS_COLUMNS -> bytes, read first
    status_after: dict              # the same, read last
    vmas: list[Vma]
    runs: np.ndarray                # structured: start (u8), pages (i8), cls (i1): pagemap.scan
    brk: int | None                 # end of [heap], or None without one
    scan: dict = field(default_factory=dict)   # pagemap.scan's own report (method, pages seen, seconds)

    def meta(self) -> dict:
        """The snapshot's summary for record.json / the capture metadata."""
        pages = {c: int(self.runs["pages"][self.runs["cls"] == i].sum()) for i, c in enumerate(SNAP_CLASSES)}
        changed = {k: self.status_after[k] - self.status[k] for k in STATUS_COLUMNS
                   if self.status_after.get(k) != self.status.get(k)}
        return {"pid": self.pid, "comm": self.comm, "t_ns": self.t_ns, "duration_ns": self.t_end_ns - self.t_ns,
                "vmas": len(self.vmas), "pages": pages, "status": self.status,
                "changed_during_snapshot": changed, "scan": self.scan}


def parse_smaps(text: str) -> list[Vma]:
    """VMAs of /proc/PID/smaps (or /proc/PID/maps, which lacks VmFlags) text, below the user top."""
    out = []
    for line in text.splitlines():
        head = line.split(None, 5)
        if len(head) >= 5 and "-" in head[0] and len(head[1]) == 4:
            lo, hi = head[0].split("-")
            start, end = int(lo, 16), int(hi, 16)
            if start < USER_TOP:
                out.append(Vma(start, end, head[1], int(head[2], 16), int(head[4]),
                               head[5].strip() if len(head) > 5 else ""))
        elif line.startswith("VmFlags:") and out:
            out[-1].vm_flags = tuple(line.split()[1:])
    return out


def read_status_dict(pid: int, proc: Path = PROC) -> dict | None:
    """STATUS_COLUMNS of /proc/PID/status in bytes, or None when the process (or its mm) is gone."""
    st = read_status(pid, proc)
    return None if st is None or st[1] is None else dict(zip(STATUS_COLUMNS, st[1]))


def take(pid: int, proc: Path = PROC) -> StartState | None:
    """Snapshot `pid` now (see the module docstring); None when it is gone or has no mm."""
    t0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    status = read_status_dict(pid, proc)
    try:
        smaps = (proc / str(pid) / "smaps").read_text()
        comm = (proc / str(pid) / "comm").read_text().strip()
    except OSError:
        return None
    if status is None:
        return None
    vmas = parse_smaps(smaps)
    maps = "\n".join(f"{v.start:x}-{v.end:x} {v.perms} {v.offset:x} 00:00 {v.inode} {v.name}" for v in vmas)
    try:
        pages = pagemap.scan(pid, maps, proc=proc)
    except ProcessLookupError:
        return None
    runs, skipped = page_runs(pages)
    after = read_status_dict(pid, proc) or status
    t1 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    heap = next((v for v in vmas if v.name == "[heap]"), None)
    report = {"method": pages.method, "duration_ns": pages.duration_ns, "changed_pages": pages.changed_pages,
              "not_modelled_pages": skipped, "tables_needed_bytes": pagemap.tables_needed(pages).bytes}
    return StartState(pid, comm, t0, t1, status, after, vmas, runs, heap.end if heap else None, report)


RUN_DTYPE = np.dtype([("start", "<u8"), ("pages", "<i8"), ("cls", "i1")])


def page_runs(s: "pagemap.PageScan") -> tuple[np.ndarray, dict]:
    """The scan's runs as SNAP_* classes, and the pages the model cannot hold (by reason):
    PMD-mapped file folios (no PTE table on x86-64, docs/MODEL.md D8), hugetlb pages (D13),
    pages in no VMA of the maps read (mapped after it)."""
    start, pages, f, vma = s.run_start, s.run_pages.astype(np.int64), s.run_flags, s.run_vma
    present, thp, file = (f & pagemap.F_PRESENT) != 0, (f & pagemap.F_THP) != 0, (f & pagemap.F_FILE) != 0
    zero, swapped = (f & pagemap.F_ZERO) != 0, (f & pagemap.F_SWAPPED) != 0
    cls = np.full(f.size, -1, np.int8)
    cls[present & ~file] = SNAP_ANON
    cls[present & file] = SNAP_FILE
    cls[present & zero] = SNAP_ZERO
    cls[~present & swapped] = SNAP_SWAP
    cls[present & thp & ~file] = SNAP_THP
    cls[present & thp & ~file & zero] = SNAP_HUGE_ZERO
    bad = {"file_pmd": present & thp & file, "hugetlb": (f & pagemap.F_HUGETLB) != 0, "outside_vma": vma < 0}
    drop = cls < 0
    for m in bad.values():
        drop |= m
    keep = ~drop
    runs = np.empty(int(keep.sum()), RUN_DTYPE)
    runs["start"], runs["pages"], runs["cls"] = start[keep], pages[keep], cls[keep]
    skipped = {k: int(pages[m].sum()) for k, m in bad.items() if m.any()}
    return _pfnmap_as_zero(runs, s), skipped


def _pfnmap_as_zero(runs: np.ndarray, s: "pagemap.PageScan") -> np.ndarray:
    """Present entries of pfn mappings ([vvar]) have no page: no RSS counter moves."""
    pf = s.vmas.pfnmap()
    for lo, hi in zip(s.vmas.start[pf].tolist(), s.vmas.end[pf].tolist()):
        runs["cls"][(runs["start"] >= lo) & (runs["start"] < hi)] = SNAP_ZERO
    return runs


def to_events(state: StartState) -> pa.Table:
    """The snapshot as EVENTS rows at state.t_ns: VMAs, the break, page runs, then the VmPTE row."""
    rows = []
    for v in state.vmas:
        flags = (MAP_SHARED if v.shared else MAP_PRIVATE) | (MAP_ANONYMOUS if v.anonymous else 0)
        flags |= MAP_GROWSDOWN if "gd" in v.vm_flags else 0       # [stack]: faults below it grow it
        advice = MADV_HUGEPAGE if "hg" in v.vm_flags else MADV_NOHUGEPAGE if "nh" in v.vm_flags else -1
        rows.append(dict(kind="snapshot_vma", addr=v.start, len=v.end - v.start, prot=v.prot, flags=flags,
                         fd=-1 if v.anonymous else 0, pgoff=v.offset, advice=advice))
    if state.brk is not None:
        rows.append(dict(kind="snapshot_brk", ret=state.brk))
    for start, pages, cls in state.runs.tolist():
        rows.append(dict(kind="snapshot_pages", addr=start, len=pages * 4096, flags=cls))
    rows.append(dict(kind="snapshot_tables", len=state.status["vmpte_bytes"], comm=state.comm))
    return events_table(rows, state.t_ns, state.pid)


def events_table(rows: list[dict], t_ns: int, pid: int) -> pa.Table:
    """EVENTS rows of one process at one time (the missing columns take their neutral values)."""
    return events_from_rows([{"t_ns": t_ns, "pid": pid, **r} for r in rows])
