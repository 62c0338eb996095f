"""`ptreplay census`: the kernel's VmPTE of every process against the page tables its pages need.

No tracing.  For each process (every one in /proc, or those named): /proc/PID/status, maps, the
pagemap scan (pipeline/capture/pagemap.py), then status and maps again.  The row's ``state`` says
whether the process held still (``ok``), moved under the scan (``changed``: kept, not hidden),
exited (``vanished``) or refused its maps to us (``denied``: ptrace_may_access, e.g. another user
namespace's init; its status numbers are kept).  Kernel threads have no mm and get no row (counted in the metadata).

Outputs (schemas.CENSUS, schemas.CENSUS_VMAS), written atomically with schemas.parquet_io:
``census.parquet`` one row per process, and ``census_vmas.parquet`` beside it (the file name
with ``_vmas`` before the suffix) one row per VMA.  The ``ptreplay.census`` key-value metadata
holds the tally (processes, ok, changed, vanished, kernel threads, duration, method).
"""
from __future__ import annotations

import os
import platform
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from ptreplay.schemas import CENSUS, CENSUS_VMAS
from ptreplay.schemas.errors import PipelineError, UsageError
from ptreplay.schemas.parquet_io import check_writable, write_table
from ptreplay.pipeline.capture.pagemap import (F_EXCLUSIVE, F_FILE, F_GUARD, F_HUGETLB, F_PRESENT, F_SWAPPED,
                                               F_THP, F_ZERO, PROC, parse_maps, scan, tables_needed,
                                               vma_tables)
from ptreplay.pipeline.capture.procfs import read_status
from ptreplay.pipeline.capture.record import read_maps
from ptreplay.pipeline.progress import progress

CENSUS_KEY = "ptreplay.census"
# parse_status's size order: VmSize, VmRSS, RssAnon, RssFile, RssShmem, VmPTE
_VMSIZE, _ANON, _FILE, _SHMEM, _VMPTE = 0, 2, 3, 4, 5


class CensusError(PipelineError):
    """A census that cannot be taken as asked (unknown pid, kernel thread, bad output path)."""


@dataclass
class Census:
    """One census: the two tables and the tally written into their metadata."""

    processes: pa.Table
    vmas: pa.Table
    tally: dict = field(default_factory=dict)


def vmas_path(output: Path) -> Path:
    """census.parquet -> census_vmas.parquet (the per-VMA rows beside the per-process ones)."""
    output = Path(output)
    return output.with_name(f"{output.stem}_vmas{output.suffix}")


def all_pids(proc: Path = PROC) -> list[int]:
    return sorted(int(d) for d in os.listdir(proc) if d.isdigit())


def check_pids(pids: list[int], proc: Path = PROC) -> None:
    """Every named pid must be a live process with an address space."""
    for pid in pids:
        st = read_status(pid, proc)
        if st is None:
            raise CensusError(f"census: process {pid} not found (gone, or not visible in {proc})")
        if st[1] is None:
            raise CensusError(f"census: process {pid} ({st[0].decode(errors='replace')}) has no user address "
                              "space (kernel thread, or exited)")


def take_one(pid: int, host: str, release: str, method: str = "auto", proc: Path = PROC):
    """(process row, VMA rows) of one process, or None for a kernel thread / a pid never there."""
    before = read_status(pid, proc)
    if before is None or before[1] is None:
        return None
    comm = before[0].decode(errors="replace")
    row = dict(host=host, kernel_release=release, t_ns=time.clock_gettime_ns(time.CLOCK_MONOTONIC), pid=pid,
               comm=comm, state="vanished")
    sb = before[1]
    try:
        with open(f"{proc}/{pid}/maps", "rb") as f:
            maps = f.read().decode(errors="replace")
        s = scan(pid, parse_maps(maps), method=method, proc=proc) if maps else None
    except (FileNotFoundError, ProcessLookupError):
        return row, []
    except PermissionError:     # ptrace_may_access refused (another user namespace, undumpable): status only
        row.update(state="denied", vmpte_bytes=sb[_VMPTE], vmsize_bytes=sb[_VMSIZE], rss_anon_bytes=sb[_ANON],
                   rss_file_bytes=sb[_FILE], rss_shmem_bytes=sb[_SHMEM])
        return row, []
    if s is None:               # maps empty: the mm was torn down since the status read
        return row, []
    after, maps_after = read_status(pid, proc), read_maps(pid, proc)
    if after is None or after[1] is None:
        return row, []
    t = tables_needed(s)
    sa = after[1]
    held = (sb[_VMPTE] == sa[_VMPTE] and sb[_VMSIZE] == sa[_VMSIZE] and maps == maps_after
            and s.outside_pages == 0 and s.changed_pages == 0)
    occ = t.occupancy[1:].astype(np.int32)
    row.update(
        t_ns=s.t_ns, state="ok" if held else "changed", method=s.method,
        vmpte_bytes=sb[_VMPTE], vmpte_after_bytes=sa[_VMPTE], needed_bytes=t.bytes,
        needed_pte_tables=t.pte, needed_pmd_tables=t.pmd, needed_pud_tables=t.pud,
        waste_bytes=sb[_VMPTE] - t.bytes, pte_entries=int((np.arange(1, 513) * occ).sum()),
        pte_occupancy=occ.tolist(), pfnmap_regions=t.pfnmap_regions, vmsize_bytes=sb[_VMSIZE],
        rss_anon_bytes=sb[_ANON], rss_file_bytes=sb[_FILE], rss_shmem_bytes=sb[_SHMEM],
        **_page_counts(s), vmas=len(s.vmas), outside_pages=s.outside_pages, changed_pages=s.changed_pages,
        scan_ns=s.duration_ns)
    return row, _vma_rows(s, host)


def _page_counts(s) -> dict:
    return dict(present_pages=s.count(F_PRESENT), swapped_pages=s.count(F_SWAPPED, F_GUARD),
                guard_pages=s.count(F_GUARD), file_pages=s.count(F_PRESENT | F_FILE),
                anon_pages=s.count(F_PRESENT, F_FILE), exclusive_pages=s.count(F_PRESENT | F_EXCLUSIVE),
                zero_pages=s.count(F_PRESENT | F_ZERO), thp_pages=s.count(F_PRESENT | F_THP),
                hugetlb_pages=s.count(F_PRESENT | F_HUGETLB))


def _kind(name: str) -> str:
    if name.startswith("/"):
        return "file"
    if not name or name.startswith("[anon"):
        return "anon"
    return "special"


def _vma_rows(s, host: str) -> dict:
    """Column arrays of the process's VMA rows."""
    v, n = s.vmas, len(s.vmas)
    cols = dict(host=[host] * n, t_ns=np.full(n, s.t_ns, np.int64), pid=np.full(n, s.pid, np.int32),
                vma_index=np.arange(n, dtype=np.int32), start=v.start, end=v.end, perms=v.perms,
                offset=v.offset, inode=v.inode, name=v.name, kind=[_kind(x) for x in v.name],
                size_bytes=(v.end - v.start).astype(np.int64))
    cols.update(vma_tables(s))
    return cols


def take(pids: list[int] | None = None, method: str = "auto", proc: Path = PROC) -> Census:
    """The census of `pids` (default: every process), with progress on a terminal."""
    named = pids is not None
    if named:
        check_pids(pids, proc)
    targets = list(pids) if named else all_pids(proc)
    host, release = socket.gethostname(), platform.release()
    rows, vma_cols, kthreads = [], [], 0
    t0 = time.monotonic()
    with progress("census", total=len(targets), unit="processes") as advance:
        for pid in targets:
            got = take_one(pid, host, release, method, proc)
            advance(1)
            if got is None:
                kthreads += 1       # or a pid that was gone before its first read: it never had a row
                continue
            rows.append(got[0])
            if got[1]:
                vma_cols.append(got[1])
    processes = pa.Table.from_pylist(rows, schema=CENSUS.schema)
    vmas = _concat_vmas(vma_cols)
    states = processes.column("state").to_pylist()
    tally = dict(host=host, kernel_release=release, processes=len(rows), ok=states.count("ok"),
                 changed=states.count("changed"), vanished=states.count("vanished"), denied=states.count("denied"),
                 skipped_without_mm=kthreads, named=named, duration_s=round(time.monotonic() - t0, 3),
                 methods=sorted({r.get("method") for r in rows if r.get("method")}))
    return Census(processes, vmas, tally)


def _concat_vmas(parts: list[dict]) -> pa.Table:
    if not parts:
        return CENSUS_VMAS.schema.empty_table()
    arrays = []
    for f in CENSUS_VMAS.schema:
        values = [p[f.name] for p in parts]
        if isinstance(values[0], list):
            arrays.append(pa.array([x for v in values for x in v], f.type))
        else:
            arrays.append(pa.array(np.concatenate(values), f.type))
    return pa.Table.from_arrays(arrays, schema=CENSUS_VMAS.schema)


def check_output(output: Path, force: bool) -> Path:
    """-o must name a .parquet file we may write (and so must its _vmas sibling): checked before
    any scan, so a bad -o costs nothing and leaves nothing."""
    output = Path(output)
    if output.suffix != ".parquet" or output.name == ".parquet":
        raise UsageError(f"census: -o {output}: expected a FILE.parquet name")
    if output.is_dir():
        raise UsageError(f"census: -o {output}: is a directory, expected a FILE.parquet name")
    for p in (output, vmas_path(output)):
        check_writable(p, force)
    parent = output.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and (not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK)):
        raise CensusError(f"census: -o {output}: {parent} is not a writable directory")
    return output


def census_to_file(output: Path, pids: list[int] | None = None, force: bool = False,
                   method: str = "auto", proc: Path = PROC) -> Census:
    """Take the census and write `output` and its _vmas sibling (atomically, --force rules)."""
    output = check_output(output, force)
    c = take(pids, method, proc)
    extra = {CENSUS_KEY: c.tally}
    write_table(c.vmas, vmas_path(output), CENSUS_VMAS, force=force, extra=extra)
    write_table(c.processes, output, CENSUS, force=force, extra=extra)
    return c


def summary_line(c: Census, output: Path | None = None) -> str:
    """'census: 74 processes (72 ok, 2 changed, 0 vanished; 41 without mm skipped), VmPTE 9.1 MiB,
    needed 7.9 MiB, waste 1.2 MiB -> census.parquet'"""
    from ptreplay.schemas.units import human_bytes
    t = c.tally
    col = lambda n: sum(v or 0 for v in c.processes.column(n).to_pylist())  # noqa: E731
    where = f" -> {output}" if output else ""
    return (f"census: {t['processes']} processes ({t['ok']} ok, {t['changed']} changed, {t['vanished']} vanished, "
            f"{t['denied']} denied; "
            f"{t['skipped_without_mm']} without mm skipped) in {t['duration_s']:.2f} s, VmPTE "
            f"{human_bytes(col('vmpte_bytes'))}, needed {human_bytes(col('needed_bytes'))}, waste "
            f"{human_bytes(col('waste_bytes'))}{where}")
