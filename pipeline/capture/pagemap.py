"""The one pagemap reader: which pages of a process are present or swapped, per VMA, and the
page tables they need.

API (stable; `record` calls it for the attach-mode start snapshot, `census` for its rows)::

    vmas = parse_maps(maps_text)                 # Vmas: numpy start/end + perms, offset, inode, name
    s = scan(pid, vmas=None, method="auto")      # PageScan: runs of pages with the same flags
    s.run_start, s.run_pages, s.run_flags, s.run_vma     # uint64 addr, uint64 count, uint8 F_*, int32
    s.pages(F_PRESENT)                           # addresses (uint64) of every page with the flag
    t = tables_needed(s)                         # TableCounts: pte, pmd, pud, bytes, occupancy[0..512]
    per_vma = vma_tables(s)                      # per-VMA page counts and table shares (numpy columns)

A run is a maximal range of 4 KiB pages inside one VMA with the same flags: ``F_PRESENT``,
``F_SWAPPED`` (a swap-type PTE: swapped out, migrating, or a marker: guard regions also carry
``F_GUARD``), ``F_FILE`` (pagemap bit 61: file page or shared anonymous/shmem), ``F_EXCLUSIVE``
(bit 56: mapped by this process only), ``F_ZERO`` (the shared zero page, 4 KiB or huge), ``F_THP``
(a PMD-mapped transparent huge page: no PTE entry of its own) and ``F_HUGETLB`` (a hugetlb page).
``run_vma`` is -1 for pages in no VMA of `vmas` (the process mapped them after its maps were read:
counted in ``PageScan.outside_pages``).

Two ways to read, same result (tests compare them):

- ``pagemap_scan``: the PAGEMAP_SCAN ioctl on /proc/PID/pagemap (Linux 6.7+,
  include/uapi/linux/fs.h; `do_pagemap_scan` in fs/proc/task_mmu.c).  The kernel walks the page
  tables and returns only ranges whose pages are present or swapped, so the cost follows the
  populated tables, not VIRT: holes with no PMD/PTE table are skipped by `pagemap_scan_pte_hole`.
  Its categories have no "exclusive" bit, so the present runs are then read from pagemap itself
  (8 bytes a present page) for bit 56.
- ``pagemap_read``: pread of /proc/PID/pagemap in chunks of 2^18 entries over every VMA (cost
  follows VIRT: 2 MiB of entries per GiB).  Used when the ioctl is missing (ENOTTY, EINVAL).
  PMD-mapped THPs are found from /proc/kpageflags (THP + COMPOUND_HEAD on a 2 MiB-aligned PFN
  with 512 contiguous present PFNs behind it); a PTE-mapped PMD-sized folio looks the same, which
  changes the table count only for file folios.  The shared zero page is the PFN of KPF_ZERO_PAGE.

What pagemap cannot show: PTEs of VM_PFNMAP mappings ([vvar], [vvar_vclock], device mmaps) --
`walk_page_test` skips those VMAs in both paths; :func:`tables_needed` counts the 2 MiB regions
only such mappings overlap (``TableCounts.pfnmap_regions``).  Hugetlb pages are taken at the
default huge page size (Hugepagesize); shared hugetlb PMDs are not modelled.
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PROC = Path("/proc")
PAGE_SHIFT = 12
PTE_SHIFT, PMD_SHIFT, PUD_SHIFT = 21, 30, 39     # spans of one PTE, PMD, PUD table: 2 MiB, 1 GiB, 512 GiB
ENTRIES = 512
USER_ADDR_LIMIT = 1 << 63                        # the kernel half ([vsyscall]) is not in the mm's tables
CHUNK_PAGES = 1 << 18                            # pagemap_read: entries per pread (2 MiB of u64)

# Our flags (run_flags, uint8).
F_PRESENT, F_SWAPPED, F_FILE, F_EXCLUSIVE, F_THP, F_ZERO, F_GUARD, F_HUGETLB = (1 << i for i in range(8))
FLAG_NAMES = {F_PRESENT: "present", F_SWAPPED: "swapped", F_FILE: "file", F_EXCLUSIVE: "exclusive",
              F_THP: "thp", F_ZERO: "zero", F_GUARD: "guard", F_HUGETLB: "hugetlb"}

# include/uapi/linux/fs.h
PAGE_IS_FILE, PAGE_IS_PRESENT, PAGE_IS_SWAPPED, PAGE_IS_PFNZERO, PAGE_IS_HUGE = 1 << 2, 1 << 3, 1 << 4, 1 << 5, 1 << 6
PAGE_IS_GUARD = 1 << 8
# pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst; PM_* in fs/proc/task_mmu.c)
PM_PFN_MASK = (1 << 55) - 1
PM_EXCLUSIVE, PM_GUARD, PM_FILE, PM_SWAP, PM_PRESENT = 1 << 56, 1 << 58, 1 << 61, 1 << 62, 1 << 63
# /proc/kpageflags bits (include/uapi/linux/kernel-page-flags.h)
KPF_COMPOUND_HEAD, KPF_THP, KPF_ZERO_PAGE = 1 << 15, 1 << 22, 1 << 24


class PageRegion(ctypes.Structure):
    """struct page_region (include/uapi/linux/fs.h)."""
    _fields_ = [("start", ctypes.c_uint64), ("end", ctypes.c_uint64), ("categories", ctypes.c_uint64)]


class PmScanArg(ctypes.Structure):
    """struct pm_scan_arg (include/uapi/linux/fs.h)."""
    _fields_ = [(n, ctypes.c_uint64) for n in (
        "size", "flags", "start", "end", "walk_end", "vec", "vec_len", "max_pages",
        "category_inverted", "category_mask", "category_anyof_mask", "return_mask")]


def _iowr(kind: str, nr: int, size: int) -> int:
    return (3 << 30) | (size << 16) | (ord(kind) << 8) | nr    # _IOC(_IOC_READ|_IOC_WRITE, ...)


PAGEMAP_SCAN = _iowr("f", 16, ctypes.sizeof(PmScanArg))
SCAN_VEC_LEN = 4096                              # page_regions per ioctl call (96 KiB buffer)


class PagemapUnavailable(OSError):
    """The PAGEMAP_SCAN ioctl is not there (kernel < 6.7: ENOTTY, or EINVAL)."""


# ----------------------------------------------------------------------------- VMAs

@dataclass
class Vmas:
    """The VMAs of /proc/PID/maps, in address order (the kernel half left out)."""

    start: np.ndarray                  # uint64 bytes (address)
    end: np.ndarray                    # uint64 bytes (address), exclusive
    perms: list[str]
    offset: np.ndarray                 # uint64 bytes: file offset
    dev: list[str]
    inode: np.ndarray                  # uint64
    name: list[str]                    # path, [heap], [stack], [vdso], ... or '' (anonymous)

    def __len__(self) -> int:
        return len(self.name)

    def pfnmap(self) -> np.ndarray:
        """VMAs known to be VM_PFNMAP (pagemap cannot see their PTEs): the vDSO data pages."""
        return np.array([n in ("[vvar]", "[vvar_vclock]") for n in self.name], bool)


def parse_maps(text: str) -> Vmas:
    """Vmas of /proc/PID/maps text ("start-end perms offset dev inode [name]" lines)."""
    start, end, perms, offset, dev, inode, name = [], [], [], [], [], [], []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 5:
            continue
        lo, _, hi = parts[0].partition("-")
        s, e = int(lo, 16), int(hi, 16)
        if s >= USER_ADDR_LIMIT:
            continue
        start.append(s), end.append(e), perms.append(parts[1]), offset.append(int(parts[2], 16))
        dev.append(parts[3]), inode.append(int(parts[4])), name.append(parts[5].strip() if len(parts) > 5 else "")
    u = lambda v: np.array(v, np.uint64)  # noqa: E731
    return Vmas(u(start), u(end), perms, u(offset), dev, u(inode), name)


def _hugetlb_vmas(vmas: Vmas, mounts: list[str]) -> np.ndarray:
    """VMAs backed by hugetlbfs: MAP_HUGETLB (/anon_hugepage) or a file below a hugetlbfs mount."""
    return np.array([n.startswith("/anon_hugepage") or any(n.startswith(m.rstrip("/") + "/") for m in mounts)
                     for n in vmas.name], bool)


def _hugetlbfs_mounts(proc: Path = PROC) -> list[str]:
    try:
        lines = (proc / "self" / "mounts").read_text().splitlines()
    except OSError:
        return []
    return [p[1] for p in (line.split() for line in lines) if len(p) > 2 and p[2] == "hugetlbfs"]


# ----------------------------------------------------------------------------- the scan

@dataclass
class PageScan:
    """Pages of one process seen by one scan (see the module docstring for the flags)."""

    pid: int
    vmas: Vmas
    run_start: np.ndarray              # uint64 bytes (address) of the run's first page
    run_pages: np.ndarray              # uint64 count of 4 KiB pages
    run_flags: np.ndarray              # uint8 F_* bits
    run_vma: np.ndarray                # int32 index into vmas, -1 outside every VMA
    method: str                        # "pagemap_scan" or "pagemap_read"
    t_ns: int                          # CLOCK_MONOTONIC when the scan started
    duration_ns: int
    changed_pages: int = 0             # present in the ioctl's answer, gone when bit 56 was read
    hugetlb_vma: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    @property
    def outside_pages(self) -> int:
        return int(self.run_pages[self.run_vma < 0].sum())

    def count(self, flag: int, without: int = 0) -> int:
        """Pages with every bit of `flag` and none of `without`."""
        m = ((self.run_flags & flag) == flag) & ((self.run_flags & without) == 0)
        return int(self.run_pages[m].sum())

    def pages(self, flag: int = F_PRESENT) -> np.ndarray:
        """Address (uint64) of every page with `flag`, ascending."""
        m = (self.run_flags & flag) == flag
        return expand_runs(self.run_start[m], self.run_pages[m])


def expand_runs(start: np.ndarray, pages: np.ndarray) -> np.ndarray:
    """Every page address of runs (start, pages)."""
    pages = pages.astype(np.int64)
    total = int(pages.sum())
    if total == 0:
        return np.empty(0, np.uint64)
    first = np.repeat(start.astype(np.uint64), pages)
    within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(pages) - pages, pages)
    return first + (within.astype(np.uint64) << np.uint64(PAGE_SHIFT))


def scan(pid: int, vmas: Vmas | str | None = None, method: str = "auto", proc: Path = PROC) -> PageScan:
    """Scan `pid`'s pages (`vmas`: parsed or raw maps text; default: read /proc/PID/maps now).

    `method`: "auto" (the ioctl, else the chunked read), "pagemap_scan" or "pagemap_read".
    Raises ProcessLookupError when the process is gone or has no address space left, and
    PagemapUnavailable when "pagemap_scan" is asked of a kernel without it.
    """
    if vmas is None:
        try:
            vmas = (proc / str(pid) / "maps").read_text()
        except (FileNotFoundError, ProcessLookupError):
            raise ProcessLookupError(pid) from None
    if isinstance(vmas, str):
        vmas = parse_maps(vmas)
    t0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    try:
        fd = os.open(f"{proc}/{pid}/pagemap", os.O_RDONLY)
    except (FileNotFoundError, ProcessLookupError):
        raise ProcessLookupError(pid) from None
    try:
        hugetlb = _hugetlb_vmas(vmas, _hugetlbfs_mounts(proc))
        runs, changed, used = None, 0, method
        if method in ("auto", "pagemap_scan"):
            try:
                runs, changed = _scan_ioctl(fd, vmas, hugetlb)
                used = "pagemap_scan"
            except PagemapUnavailable:
                if method == "pagemap_scan":
                    raise
        if runs is None:
            runs, used = _scan_read(fd, vmas, hugetlb, proc), "pagemap_read"
    finally:
        os.close(fd)
    start, pages, flags = runs
    order = np.argsort(start, kind="stable")
    start, pages, flags = start[order], pages[order], flags[order]
    # joined runs may cross a VMA boundary again (pages on both sides of it): cut them there
    start, pages, flags = _split_at(*_merge(start, pages, flags), _cuts(vmas))
    run_vma = _vma_of(vmas, start)
    return PageScan(pid, vmas, start, pages, flags, run_vma, used, t0,
                    time.clock_gettime_ns(time.CLOCK_MONOTONIC) - t0, changed, hugetlb)


def _cuts(vmas: Vmas) -> np.ndarray:
    """Every VMA start and end, sorted: where no run may continue."""
    return np.unique(np.concatenate([vmas.start, vmas.end]))


def _vma_of(vmas: Vmas, addr: np.ndarray) -> np.ndarray:
    i = np.searchsorted(vmas.start, addr, side="right").astype(np.int64) - 1
    ok = (i >= 0) & (addr < vmas.end[np.maximum(i, 0)]) if len(vmas) else np.zeros(addr.size, bool)
    return np.where(ok, i, -1).astype(np.int32)


def _merge(start, pages, flags):
    """Join adjacent runs with the same flags (the ioctl's answer is cut per call and per VMA)."""
    if start.size < 2:
        return start, pages, flags
    end = start + (pages << np.uint64(PAGE_SHIFT))
    joins = (start[1:] == end[:-1]) & (flags[1:] == flags[:-1])
    head = np.concatenate([[True], ~joins])
    group = np.cumsum(head) - 1
    return start[head], np.bincount(group, weights=pages.astype(np.float64)).astype(np.uint64), flags[head]


def _split_at(start, pages, flags, cuts: np.ndarray):
    """Cut runs at the addresses `cuts` (VMA boundaries), so no run straddles two VMAs."""
    if start.size == 0 or cuts.size == 0:
        return start, pages, flags
    end = start + (pages << np.uint64(PAGE_SHIFT))
    lo = np.searchsorted(cuts, start, side="right")
    hi = np.searchsorted(cuts, end, side="left")
    n = (hi - lo + 1).astype(np.int64)
    if (n == 1).all():
        return start, pages, flags
    idx = np.repeat(np.arange(start.size), n)
    k = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    cut_i = lo[idx] + k
    s = np.where(k == 0, start[idx], cuts[np.minimum(cut_i - 1, cuts.size - 1)])
    e = np.where(cut_i < hi[idx], cuts[np.minimum(cut_i, cuts.size - 1)], end[idx])
    return s, (e - s) >> np.uint64(PAGE_SHIFT), flags[idx]


def _from_categories(cat: np.ndarray, hugetlb_at: np.ndarray) -> np.ndarray:
    f = np.zeros(cat.size, np.uint8)
    f |= np.where(cat & PAGE_IS_PRESENT, F_PRESENT, 0).astype(np.uint8)
    f |= np.where(cat & PAGE_IS_SWAPPED, F_SWAPPED, 0).astype(np.uint8)
    f |= np.where(cat & PAGE_IS_FILE, F_FILE, 0).astype(np.uint8)
    f |= np.where(cat & PAGE_IS_PFNZERO, F_ZERO, 0).astype(np.uint8)
    f |= np.where(cat & PAGE_IS_GUARD, F_GUARD, 0).astype(np.uint8)
    huge = (cat & PAGE_IS_HUGE) != 0
    f |= np.where(huge & hugetlb_at, F_HUGETLB, 0).astype(np.uint8)
    f |= np.where(huge & ~hugetlb_at, F_THP, 0).astype(np.uint8)
    return f


def _scan_ioctl(fd: int, vmas: Vmas, hugetlb: np.ndarray):
    """PAGEMAP_SCAN over [first VMA start, last VMA end): ranges of present or swapped pages."""
    if len(vmas) == 0:
        e = np.empty(0, np.uint64)
        return (e, e, np.empty(0, np.uint8)), 0
    vec = (PageRegion * SCAN_VEC_LEN)()
    arg = PmScanArg(size=ctypes.sizeof(PmScanArg), vec=ctypes.addressof(vec), vec_len=SCAN_VEC_LEN,
                    category_anyof_mask=PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
                    return_mask=PAGE_IS_PRESENT | PAGE_IS_SWAPPED | PAGE_IS_FILE | PAGE_IS_PFNZERO
                    | PAGE_IS_HUGE | PAGE_IS_GUARD)
    pos, stop = int(vmas.start[0]), int(vmas.end[-1])
    chunks = []
    while pos < stop:
        arg.start, arg.end, arg.vec_len, arg.walk_end = pos, stop, SCAN_VEC_LEN, 0
        try:
            n = fcntl.ioctl(fd, PAGEMAP_SCAN, arg)
        except OSError as e:
            if e.errno in (errno.ENOTTY, errno.EINVAL, errno.EOPNOTSUPP):
                raise PagemapUnavailable(e.errno, "PAGEMAP_SCAN unavailable") from None
            if e.errno in (errno.ESRCH, errno.ENOENT):
                raise ProcessLookupError(e.errno, "gone") from None
            raise
        if n:
            chunks.append(np.frombuffer(vec, np.uint64, count=3 * n).reshape(n, 3).copy())
        # Done unless the vector is full.  walk_end is not to be trusted after the kernel refilled
        # its bounce buffer (512 regions) inside one call: do_pagemap_scan leaves it where the
        # first refill stopped (measured on 6.18: 615 regions returned, walk_end at the 512th).
        if n < SCAN_VEC_LEN:
            break
        nxt = max(int(arg.walk_end), int(chunks[-1][-1, 1]))
        if nxt <= pos:
            break
        pos = nxt
    a = np.concatenate(chunks) if chunks else np.empty((0, 3), np.uint64)
    a = _drop_overlaps(a)
    start, pages = a[:, 0], (a[:, 1] - a[:, 0]) >> np.uint64(PAGE_SHIFT)
    cat = a[:, 2]
    start, pages, cat = _split_at(start, pages, cat, _cuts(vmas))
    vi = _vma_of(vmas, start)
    flags = _from_categories(cat, np.where(vi >= 0, hugetlb[np.maximum(vi, 0)], False))
    return _add_exclusive(fd, start, pages, flags)


def _drop_overlaps(a: np.ndarray) -> np.ndarray:
    """Regions (start, end, categories) sorted, each clipped to start after the ones before it."""
    if a.shape[0] < 2:
        return a
    a = a[np.argsort(a[:, 0], kind="stable")]
    prev_end = np.concatenate([[np.uint64(0)], np.maximum.accumulate(a[:-1, 1])])
    a[:, 0] = np.maximum(a[:, 0], prev_end)
    return a[a[:, 0] < a[:, 1]]


def _add_exclusive(fd: int, start, pages, flags):
    """Read pagemap bit 56 (PM_MMAP_EXCLUSIVE) of the present runs only; split runs where it changes.

    Reads are joined over gaps of < 64 pages (a few bytes more instead of a syscall a run).
    Pages no longer present by now are counted as changed and keep the ioctl's flags."""
    present = np.flatnonzero(flags & F_PRESENT)
    if present.size == 0:
        return (start, pages, flags), 0
    ps = (start[present] >> np.uint64(PAGE_SHIFT)).astype(np.int64)
    pn = pages[present].astype(np.int64)
    pe = ps + pn
    head = np.concatenate([[True], ps[1:] - pe[:-1] >= 64])
    group = np.cumsum(head) - 1
    g_lo = ps[head]
    g_hi = np.maximum.reduceat(pe, np.flatnonzero(head))
    parts, block, cur = [], None, -1
    for m in range(ps.size):                  # runs in address order, so groups come in order
        g = int(group[m])
        if g != cur:
            cur = g
            block = np.frombuffer(_pread_all(fd, int(g_hi[g] - g_lo[g]) * 8, int(g_lo[g]) * 8), "<u8")
        a = int(ps[m] - g_lo[g])
        seg = block[a:a + int(pn[m])]
        if seg.size < pn[m]:                  # read short: the mapping went away meanwhile
            seg = np.concatenate([seg, np.zeros(int(pn[m]) - seg.size, np.uint64)])
        parts.append(seg)
    entries = np.concatenate(parts)
    changed = int(np.count_nonzero((entries & np.uint64(PM_PRESENT)) == 0))
    excl = (entries & np.uint64(PM_EXCLUSIVE)) != 0
    # per page flags of the present runs, then back to runs
    page_flags = np.repeat(flags[present], pn.astype(np.int64)) | np.where(excl, F_EXCLUSIVE, 0).astype(np.uint8)
    page_addr = expand_runs(start[present], pn)
    other = np.flatnonzero((flags & F_PRESENT) == 0)
    s = np.concatenate([start[other], page_addr])
    p = np.concatenate([pages[other], np.ones(page_addr.size, np.uint64)])
    f = np.concatenate([flags[other], page_flags])
    order = np.argsort(s, kind="stable")
    return _merge(s[order], p[order], f[order]), changed


def _pread_all(fd: int, size: int, offset: int) -> bytes:
    out = []
    while size > 0:
        try:
            b = os.pread(fd, min(size, CHUNK_PAGES * 8), offset)
        except OSError:            # the process exited meanwhile: what was read is all there is
            break
        if not b:
            break
        out.append(b)
        size -= len(b)
        offset += len(b)
    return b"".join(out)


def _scan_read(fd: int, vmas: Vmas, hugetlb: np.ndarray, proc: Path):
    """pread pagemap over every VMA in chunks; runs from the entries' bits."""
    starts, pages, flags = [], [], []
    kpf = _KpageFlags(proc)
    try:
        for i in range(len(vmas)):
            lo, hi = int(vmas.start[i]) >> PAGE_SHIFT, int(vmas.end[i]) >> PAGE_SHIFT
            for base in range(lo, hi, CHUNK_PAGES):
                n = min(CHUNK_PAGES, hi - base)
                e = np.frombuffer(_pread_all(fd, n * 8, base * 8), "<u8")
                if e.size == 0:
                    break
                f = _entry_flags(e, base, kpf, bool(hugetlb[i]))
                nz = np.flatnonzero(f)
                if nz.size == 0:
                    continue
                # runs of equal flags among consecutive pages
                brk = np.concatenate([[True], (np.diff(nz) != 1) | (f[nz[1:]] != f[nz[:-1]])])
                heads = nz[brk]
                lens = np.diff(np.concatenate([np.flatnonzero(brk), [nz.size]]))
                starts.append((np.uint64(base) + heads.astype(np.uint64)) << np.uint64(PAGE_SHIFT))
                pages.append(lens.astype(np.uint64))
                flags.append(f[heads])
    finally:
        kpf.close()
    if not starts:
        e = np.empty(0, np.uint64)
        return e, e, np.empty(0, np.uint8)
    return np.concatenate(starts), np.concatenate(pages), np.concatenate(flags)


class _KpageFlags:
    """/proc/kpageflags, read a u64 per PFN on demand (root only; PFNs read 0 otherwise)."""

    def __init__(self, proc: Path):
        try:
            self.fd = os.open(f"{proc}/kpageflags", os.O_RDONLY)
        except OSError:
            self.fd = -1

    def get(self, pfns: np.ndarray) -> np.ndarray:
        out = np.zeros(pfns.size, np.uint64)
        if self.fd < 0:
            return out
        for i, pfn in enumerate(pfns.tolist()):
            b = os.pread(self.fd, 8, pfn * 8) if pfn else b""
            if len(b) == 8:
                out[i] = int.from_bytes(b, "little")
        return out

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)


_ZERO_PFN: list[int] = []


def _entry_flags(e: np.ndarray, base: int, kpf: _KpageFlags, hugetlb: bool) -> np.ndarray:
    """F_* of each pagemap entry of one chunk starting at virtual page `base`."""
    present = (e & np.uint64(PM_PRESENT)) != 0
    f = np.where(present, F_PRESENT, 0).astype(np.uint8)
    f |= np.where(e & np.uint64(PM_SWAP), F_SWAPPED, 0).astype(np.uint8)
    f |= np.where(e & np.uint64(PM_FILE), F_FILE, 0).astype(np.uint8)
    f |= np.where(e & np.uint64(PM_GUARD), F_GUARD, 0).astype(np.uint8)
    f |= np.where(present & ((e & np.uint64(PM_EXCLUSIVE)) != 0), F_EXCLUSIVE, 0).astype(np.uint8)
    pfn = np.where(present, e & np.uint64(PM_PFN_MASK), 0)
    if hugetlb:
        f[present] |= F_HUGETLB
        return f
    # the zero page: learn its PFN once from kpageflags (KPF_ZERO_PAGE) among this chunk's PFNs
    cand = np.unique(pfn[present & ((e & np.uint64(PM_FILE | PM_EXCLUSIVE)) == 0)])
    if cand.size and not _ZERO_PFN and cand.size <= 4096:
        hit = cand[(kpf.get(cand) & np.uint64(KPF_ZERO_PAGE)) != 0]
        if hit.size:
            _ZERO_PFN.append(int(hit[0]))
    if _ZERO_PFN:
        f |= np.where(present & (pfn == np.uint64(_ZERO_PFN[0])), F_ZERO, 0).astype(np.uint8)
    # PMD-mapped THP: a 2 MiB-aligned virtual block, all present, PFNs contiguous from an aligned head
    first = (-base) % ENTRIES
    nblk = (e.size - first) // ENTRIES
    if nblk > 0:
        blk = pfn[first:first + nblk * ENTRIES].reshape(nblk, ENTRIES)
        allp = present[first:first + nblk * ENTRIES].reshape(nblk, ENTRIES).all(axis=1)
        contiguous = (np.diff(blk.astype(np.int64), axis=1) == 1).all(axis=1)
        cand = np.flatnonzero(allp & contiguous & (blk[:, 0] % ENTRIES == 0) & (blk[:, 0] != 0))
        if cand.size:
            kf = kpf.get(blk[cand, 0])
            head = np.uint64(KPF_THP | KPF_COMPOUND_HEAD)
            for b, k in zip(cand.tolist(), kf.tolist()):
                if k & int(head) != int(head):
                    continue
                block = f[first + b * ENTRIES:first + (b + 1) * ENTRIES]
                block |= F_THP
                if k & KPF_ZERO_PAGE:     # the huge zero page: pagemap_pmd_range marks it PM_FILE (not anon)
                    block &= ~np.uint8(F_FILE)
                    block |= F_ZERO
    return f


# ----------------------------------------------------------------------------- tables

@dataclass
class TableCounts:
    """Page tables a scan's pages need at minimum, as the kernel holds them."""

    pte: int
    pmd: int
    pud: int
    occupancy: np.ndarray              # int64[513]: PTE tables by entries in use (a THP's deposit: 512)
    pfnmap_regions: int = 0            # 2 MiB regions only VM_PFNMAP mappings overlap (their PTEs unseen)

    @property
    def bytes(self) -> int:
        return 4096 * (self.pte + self.pmd + self.pud)


def _pieces(s: PageScan):
    """Runs cut at 2 MiB boundaries: (region index, entries in that region, flags, vma) per piece."""
    start = s.run_start.astype(np.uint64)
    end = start + (s.run_pages.astype(np.uint64) << np.uint64(PAGE_SHIFT))
    r0 = (start >> np.uint64(PTE_SHIFT)).astype(np.int64)
    r1 = ((end - np.uint64(1)) >> np.uint64(PTE_SHIFT)).astype(np.int64) if start.size else r0
    n = r1 - r0 + 1
    idx = np.repeat(np.arange(start.size), n)
    region = np.repeat(r0, n) + (np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n))
    lo = np.maximum(start[idx], region.astype(np.uint64) << np.uint64(PTE_SHIFT))
    hi = np.minimum(end[idx], (region.astype(np.uint64) + np.uint64(1)) << np.uint64(PTE_SHIFT))
    entries = ((hi - lo) >> np.uint64(PAGE_SHIFT)).astype(np.int64)
    return region, entries, s.run_flags[idx], s.run_vma[idx]


def _needs_pte(flags: np.ndarray) -> np.ndarray:
    """A piece needs a PTE table unless it is hugetlb or a file/shmem PMD mapping: an anonymous
    PMD-mapped THP (and the huge zero page) keeps its deposited table, counted in nr_ptes
    (`__do_huge_pmd_anonymous_page`, `set_huge_zero_folio`: pgtable_trans_huge_deposit +
    mm_inc_nr_ptes, mm/huge_memory.c); `do_set_pmd` (mm/memory.c) deposits only where
    arch_needs_pgtable_deposit(), never on x86-64."""
    hugetlb = (flags & F_HUGETLB) != 0
    file_pmd = ((flags & F_THP) != 0) & ((flags & F_FILE) != 0)
    return ~hugetlb & ~file_pmd


def tables_needed(s: PageScan) -> TableCounts:
    """One PTE table per 2 MiB region holding a present or swapped 4 KiB-mapped page (or an
    anonymous THP's deposit), one PMD table per 1 GiB with any page, one PUD table per 512 GiB
    (docs/MODEL.md vmpte-accounting), and the PTE tables' occupancy histogram."""
    region, entries, flags, _ = _pieces(s)
    pte_mask = _needs_pte(flags)
    thp = (flags & F_THP) != 0
    entries = np.where(thp, ENTRIES, entries)
    occ = np.zeros(ENTRIES + 1, np.int64)
    if pte_mask.any():
        regs, inv = np.unique(region[pte_mask], return_inverse=True)
        used = np.minimum(np.bincount(inv, weights=entries[pte_mask]).astype(np.int64), ENTRIES)
        occ += np.bincount(used, minlength=ENTRIES + 1)[:ENTRIES + 1]
        pte = int(regs.size)
    else:
        pte = 0
    pmd = int(np.unique(region >> (PMD_SHIFT - PTE_SHIFT)).size)
    pud = int(np.unique(region >> (PUD_SHIFT - PTE_SHIFT)).size)
    return TableCounts(pte, pmd, pud, occ, _pfnmap_regions(s, np.unique(region)))


def _regions_of(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Every 2 MiB region index overlapped by [start, end) ranges."""
    if start.size == 0:
        return np.empty(0, np.int64)
    r0 = (start >> np.uint64(PTE_SHIFT)).astype(np.int64)
    r1 = ((end - np.uint64(1)) >> np.uint64(PTE_SHIFT)).astype(np.int64)
    n = r1 - r0 + 1
    return np.repeat(r0, n) + (np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n))


def _span(start: np.ndarray, end: np.ndarray, seen: np.ndarray):
    """Per range: 2 MiB regions it overlaps, and those of them not in `seen` (sorted region ids).
    Arithmetic, not a list of regions: a reserved 128 TiB VMA costs nothing."""
    if start.size == 0:
        z = np.zeros(0, np.int64)
        return z, z
    r0 = (start >> np.uint64(PTE_SHIFT)).astype(np.int64)
    r1 = ((end - np.uint64(1)) >> np.uint64(PTE_SHIFT)).astype(np.int64)
    spanned = r1 - r0 + 1
    hit = np.searchsorted(seen, r1, side="right") - np.searchsorted(seen, r0, side="left")
    return spanned, spanned - hit


def _pfnmap_regions(s: PageScan, seen: np.ndarray) -> int:
    pf = s.vmas.pfnmap()
    if not pf.any():
        return 0
    cand = np.unique(_regions_of(s.vmas.start[pf], s.vmas.end[pf]))   # [vvar]: a few pages
    return int(np.setdiff1d(cand, seen).size)


def vma_tables(s: PageScan) -> dict[str, np.ndarray]:
    """Per VMA (index i of s.vmas): page counts by flag, and its share of the tables.

    ``pte_tables``: PTE tables needed whose first page lies in this VMA (they sum to the
    process's); ``pte_entries``: entries used in those tables; ``pte_regions``: 2 MiB regions
    the VMA overlaps; ``pagefree_regions``: those holding no page of the process at all, the
    only places an empty table of this VMA can be (the kernel does not say where its empty
    tables are: the process's waste lies in these regions, or in the upper levels)."""
    nv = len(s.vmas)
    inside = s.run_vma >= 0
    vi, pg, fl = s.run_vma[inside], s.run_pages[inside].astype(np.int64), s.run_flags[inside]

    def count(flag, without=0):
        m = ((fl & flag) == flag) & ((fl & without) == 0)
        return np.bincount(vi[m], weights=pg[m], minlength=nv).astype(np.int64)

    out = {
        "present_pages": count(F_PRESENT), "swapped_pages": count(F_SWAPPED, F_GUARD),
        "guard_pages": count(F_GUARD), "file_pages": count(F_PRESENT | F_FILE),
        "anon_pages": count(F_PRESENT, F_FILE), "exclusive_pages": count(F_PRESENT | F_EXCLUSIVE),
        "zero_pages": count(F_PRESENT | F_ZERO), "thp_pages": count(F_PRESENT | F_THP),
        "hugetlb_pages": count(F_PRESENT | F_HUGETLB),
    }
    region, entries, flags, pvma = _pieces(s)
    keep = _needs_pte(flags) & (pvma >= 0)
    entries = np.where((flags & F_THP) != 0, ENTRIES, entries)
    r, e, v = region[keep], entries[keep], pvma[keep]
    tables = np.zeros(nv, np.int64)
    used = np.zeros(nv, np.int64)
    if r.size:
        regs, first, inv = np.unique(r, return_index=True, return_inverse=True)   # pieces are address-ordered
        owner = v[first]
        tables = np.bincount(owner, minlength=nv).astype(np.int64)
        per_region = np.minimum(np.bincount(inv, weights=e).astype(np.int64), ENTRIES)
        used = np.bincount(owner, weights=per_region, minlength=nv).astype(np.int64)
    spanned, free = _span(s.vmas.start, s.vmas.end, np.unique(region))
    out.update(pte_tables=tables, pte_entries=used, pte_regions=spanned, pagefree_regions=free)
    return out
