"""A deliberately simple, slow replayer: the oracle for replay.kernels.

Dicts and sets, one event at a time, the same rules as the compiled kernels
(see replay/kernels.py and the kernel modules it lists for the kernel function
each rule imitates).  Used
only by the tests on small streams.

Effects: every PTE table remembers (as `emptier`) the effects row of the event
that left it empty, and when (`empty_since`); allocation, freeing and the
first/last entry of a table update the rows as they happen.  Occupancy: the
snapshot ticks are found by enumerating ticks (not by the engine's formula),
and a snapshot groups the live tables by 1 GiB region.  It also integrates
each process's empty-table count over time, an attribution-free total that
the effects' empty_table_ns must add up to.
"""
from __future__ import annotations

from dataclasses import dataclass, field

PAGE, PMD, PUD, P4D = 4096, 1 << 21, 1 << 30, 1 << 39
NO_CEILING = 1 << 57
NONE, ZERO, ANON, FILE = 0, 1, 2, 3
ANON_F, SHARED, WRITE, HUGE, NOHUGE = 1, 2, 4, 8, 16
DONTFORK, WIPEONFORK, ANON_VMA, LOCKED, IMPLICIT, HEAP = 32, 64, 128, 256, 512, 1024
READ, EXEC, NORESERVE = 2048, 4096, 8192
MOVED = 16384  # moved by mremap: vm_pgoff no longer contiguous with unmoved neighbours
GROWSDOWN, PROT_KNOWN = 32768, 65536
ORIGIN = 20  # flags bits 20+: the id of the mmap a VMA came from (stands for its anon_vma)


@dataclass
class Table:
    entries: dict = field(default_factory=dict)  # page index 0..511 -> kind
    huge: bool = False
    since: int = -1
    serial: int = 0
    emptier: tuple | None = None  # effects key (event_row, pid) of the event that left it empty
    empty_since: int = 0


@dataclass
class Proc:
    pid: int = 0
    started: bool = False
    alive: bool = False
    start: int = 0
    end: int = 0
    last: int = 0
    gen: int = 0
    brk: int = -1
    vmas: list = field(default_factory=list)   # [start, end, flags, file key, pgoff base], sorted
    pte: dict = field(default_factory=dict)    # 2 MiB index -> Table
    pmd: set = field(default_factory=set)      # 1 GiB indexes
    pud: set = field(default_factory=set)      # 512 GiB indexes
    markers: dict = field(default_factory=dict)  # (gen, 2 MiB index) -> free time
    integral: float = 0.0
    empty_integral: int = 0  # ns x empty PTE tables
    stats: dict = field(default_factory=lambda: dict(peak_virt=0, peak_rss=0, peak_vmpte=0, alloc=0, freed=0,
                                                     refaults=0, scan=0, atomics=0, events=0))
    final: dict = field(default_factory=dict)
    pend_start: bool = False
    pend_end: bool = False

    def virt(self):
        return sum(e - s for s, e, *_ in self.vmas)

    def rss_pages(self, kind):
        return sum(1 for t in self.pte.values() for e in t.entries.values() if e == kind)

    def vmpte(self):
        return (len(self.pte) + len(self.pmd) + len(self.pud)) * PAGE

    def empty(self):
        return sum(1 for t in self.pte.values() if not t.entries)

    def ideal(self):
        used = [i for i, t in self.pte.items() if t.entries]
        if not used:
            return 0
        return (len(used) + len({i >> 9 for i in used}) + len({i >> 18 for i in used})) * PAGE

    def row(self, t):
        anon, file = self.rss_pages(ANON) * PAGE, self.rss_pages(FILE) * PAGE
        return dict(t_ns=t, virt_bytes=self.virt(), rss_bytes=anon + file, rss_anon_bytes=anon,
                    rss_file_bytes=file, vmpte_bytes=self.vmpte(), pte_tables=len(self.pte),
                    pmd_tables=len(self.pmd), pud_tables=len(self.pud), empty_pte_tables=self.empty())


class Reference:
    """Replay event dicts (EVENTS columns) under one policy name."""

    def __init__(self, policy="none", thp="madvise", interval_ns=10_000_000, scan_ns=1_000_000_000,
                 hold_ns=100_000_000, top=1 << 47, snap_ticks=(), snap_end=False, ts_ticks=False,
                 thp_ends=False):
        self.thp_ends = thp_ends  # True: the trace marks THP faults' ends (dur_ns > 0); a write without one fell back
        self.ts_ticks = ts_ticks  # True: a tick row for every live process; False: only if changed
        self.last_row: dict = {}  # pid -> values of its latest row (without t_ns)
        self.policy, self.thp, self.interval, self.scan_ns, self.hold, self.top = \
            policy, thp, interval_ns, scan_ns, hold_ns, top
        self.snap_ticks, self.snap_end = set(snap_ticks), snap_end
        self.effects: dict = {}   # (event_row, pid) -> counts, in order of first effect
        self.occupancy: list[dict] = []
        self.cur = None           # (event_row, t_ns, kind) of the event being applied; None in timers
        self.procs: dict[int, Proc] = {}
        self.rows: list[dict] = []
        self.now = None
        self.next_tick = self.next_scan = 0
        self.queue: list = []     # (proc, idx, serial, since)
        self.serial = 0
        self.dirty = True
        self.vma_ids = 0

    # ---------------------------------------------------------------- helpers
    def refcount_like(self):
        return self.policy in ("refcount", "delayed", "all_levels")

    # ---------------------------------------------------------------- effects
    def effect(self, pid, key=None):
        """Counts of the current event for pid (or of the row `key`)."""
        if key is None:
            row, t, kind = self.cur
            key = (row, pid)
            self.effects.setdefault(key, dict(pid=pid, event_row=row, t_ns=t, kind=kind, pte_tables_allocated=0,
                                              upper_tables_allocated=0, pte_tables_emptied=0, pte_tables_freed=0,
                                              empty_table_ns=0))
        return self.effects[key]

    def becomes_empty(self, pid, tb, t):
        self.effect(pid)["pte_tables_emptied"] += 1
        tb.emptier, tb.empty_since = (self.cur[0], pid), t

    def stops_empty(self, tb, t):
        if tb.emptier is None:
            return
        eff = self.effect(None, tb.emptier)
        eff["empty_table_ns"] += t - tb.empty_since
        if self.cur is not None and self.cur[0] == tb.emptier[0]:
            eff["pte_tables_emptied"] -= 1  # emptied and refilled/freed by one event: not left behind
        tb.emptier = None

    def table_freed(self, pid, tb, t):
        key = tb.emptier if self.cur is None else None  # timers: the event that left it empty
        self.effect(pid, key)["pte_tables_freed"] += 1
        self.stops_empty(tb, t)

    def add_upper(self, pid, pr, level_set, index):
        if index not in level_set:
            level_set.add(index)
            self.effect(pid)["upper_tables_allocated"] += 1

    def set_entry(self, pr, idx, i, kind):
        t = pr.pte[idx]
        old = t.entries.get(i, NONE)
        if old == kind:
            return
        if old == NONE:
            t.since = -1
            if not t.entries:
                self.stops_empty(t, self.cur[1])
            if self.refcount_like():
                pr.stats["atomics"] += 2
        t.entries[i] = kind

    def clear_entry(self, pr, idx, i):
        t = pr.pte[idx]
        old = t.entries.pop(i, NONE)
        if old != NONE and self.refcount_like():
            pr.stats["atomics"] += 2
        if old != NONE and not t.entries:
            self.becomes_empty(pr.pid, t, self.cur[1])
        return old

    def alloc_pte(self, pr, idx, t):
        self.add_upper(pr.pid, pr, pr.pud, idx >> 18)
        self.add_upper(pr.pid, pr, pr.pmd, idx >> 9)
        if idx not in pr.pte:
            self.serial += 1
            pr.pte[idx] = Table(serial=self.serial)
            pr.stats["alloc"] += 1
            self.effect(pr.pid)["pte_tables_allocated"] += 1
            self.becomes_empty(pr.pid, pr.pte[idx], t)
            ft = pr.markers.get((pr.gen, idx))
            if ft is not None and t - ft < 1_000_000_000:
                pr.stats["refaults"] += 1
        return pr.pte[idx]

    def free_pte(self, pr, idx, t, mark=True):
        tb = pr.pte.pop(idx)
        if tb.entries and self.refcount_like():
            pr.stats["atomics"] += 2 * len(tb.entries)
        pr.stats["freed"] += 1
        self.table_freed(pr.pid, tb, t)
        if mark:
            pr.markers[(pr.gen, idx)] = t
        if self.policy == "all_levels":
            if not any((i >> 9) == (idx >> 9) for i in pr.pte):
                pr.pmd.discard(idx >> 9)
            if not any((i >> 9) == (idx >> 18) for i in pr.pmd):
                pr.pud.discard(idx >> 18)

    def release_empty(self, pr, pid, idx, t):
        if self.policy == "delayed":
            tb = pr.pte[idx]
            if tb.since < 0:
                tb.since = t
                self.queue.append((pid, tb, tb.serial, t))
        else:
            self.free_pte(pr, idx, t)

    def find_vma(self, pr, addr):
        for v in pr.vmas:
            if v[0] <= addr < v[1]:
                return v
        return None

    def split(self, pr, addr):
        for k, v in enumerate(pr.vmas):
            if v[0] < addr < v[1]:
                pr.vmas.insert(k + 1, [addr, v[1], v[2], v[3], v[4]])
                v[1] = addr
                return

    def insert_vma(self, pr, s, e, f, file=0, base=0):
        """A VMA [s, e) with flags f, file key (0 none, fd + 1, -id of a shared anonymous
        mmap) and pgoff base (vm_pgoff - s >> 12, pages)."""
        pr.vmas.append([s, e, f, file, base])
        pr.vmas.sort()

    # ---------------------------------------------------------------- faults
    def implicit(self, pr, addr):
        self.counts_outside += 1
        page = addr & ~(PAGE - 1)
        prev = next((v for v in pr.vmas if v[1] == page and v[2] & IMPLICIT), None)
        nxt = next((v for v in pr.vmas if v[0] == page + PAGE and v[2] & IMPLICIT), None)
        if prev and nxt:
            prev[1] = nxt[1]
            pr.vmas.remove(nxt)
            return prev
        if prev:
            prev[1] = page + PAGE
            return prev
        if nxt:
            nxt[0] = page
            return nxt
        v = [page, page + PAGE, ANON_F | WRITE | IMPLICIT]
        self.insert_vma(pr, *v)
        return next(x for x in pr.vmas if x[0] == page)

    def thp_ok(self, v, addr):
        if self.thp == "never" or not v[2] & ANON_F or v[2] & SHARED or v[2] & NOHUGE:
            return False
        if self.thp == "madvise" and not v[2] & HUGE:
            return False
        h = addr & ~(PMD - 1)
        return v[0] <= h and h + PMD <= v[1]

    @staticmethod
    def access_error(f, ecode):
        """arch/x86/mm/fault.c access_error, where both the error code and the protection are known."""
        if ecode < 0 or not f & PROT_KNOWN:
            return False
        if ecode & 2:
            return not f & WRITE
        return bool(ecode & 1) or not f & (READ | WRITE | EXEC)

    def fault(self, pr, addr, ecode, t, ended=True):
        v = self.find_vma(pr, addr) or self.implicit(pr, addr)
        if self.access_error(v[2], ecode):
            self.counts_refused += 1
            return
        write = ecode >= 0 and bool(ecode & 2)
        idx = addr >> 21
        anon, shared = bool(v[2] & ANON_F), bool(v[2] & SHARED)
        fell_back = write and self.thp_ends and not ended   # VM_FAULT_FALLBACK: a 4 KiB page
        if idx not in pr.pte and self.thp_ok(v, addr) and not fell_back:
            tb = self.alloc_pte(pr, idx, t)
            for i in range(512):
                self.set_entry(pr, idx, i, ANON if write else ZERO)
            tb.huge = True
            v[2] |= ANON_VMA
            return
        tb = self.alloc_pte(pr, idx, t)
        i = (addr >> 12) & 511
        old = tb.entries.get(i, NONE)
        if old == NONE:
            if anon and not shared:
                self.set_entry(pr, idx, i, ANON if write else ZERO)
                if write:
                    v[2] |= ANON_VMA
            elif anon or (write and shared):
                self.set_entry(pr, idx, i, FILE)
            elif write:
                self.set_entry(pr, idx, i, ANON)
                v[2] |= ANON_VMA
            else:  # fault-around
                vma_off = (addr - v[0]) >> 12
                lo = max(i & ~15, i - min(i, vma_off))
                hi = min(lo + 16, 512, i + ((v[1] - v[0]) >> 12) - vma_off)
                for j in range(lo, hi):
                    if tb.entries.get(j, NONE) == NONE:
                        self.set_entry(pr, idx, j, FILE)
        elif write and old == ZERO and tb.huge and not fell_back:
            for j in range(512):   # do_huge_zero_wp_pmd: a huge page where the huge zero page was
                self.set_entry(pr, idx, j, ANON)
            v[2] |= ANON_VMA
        elif write and (old == ZERO or (old == FILE and not shared)):
            tb.huge = False
            self.set_entry(pr, idx, i, ANON)
            v[2] |= ANON_VMA

    def populate(self, pr, lo, hi, mode, t):
        self.counts_populate += 1
        for a in range(lo, hi, PAGE):
            v = self.find_vma(pr, a)
            if v is None:
                continue
            write = (bool(v[2] & WRITE) and not v[2] & SHARED) if mode == 0 else mode == 2
            self.fault(pr, a, 2 if write else -1, t)

    # ---------------------------------------------------------------- zap / free
    def zap(self, pr, pid, lo, hi, reclaim, refcount_free, t):
        for idx in sorted(i for i in list(pr.pte) if (lo >> 21) <= i <= ((hi - 1) >> 21)):
            if idx not in pr.pte:
                continue
            tb = pr.pte[idx]
            rs = idx << 21
            a, b = max(lo, rs), min(hi, rs + PMD)
            full = a == rs and b == rs + PMD
            if tb.huge:
                if full:
                    for i in range(512):
                        self.clear_entry(pr, idx, i)
                    self.free_pte(pr, idx, t)
                    continue
                tb.huge = False
            for i in range((a - rs) >> 12, (b - rs) >> 12):
                self.clear_entry(pr, idx, i)
            if not tb.entries:
                if reclaim and full:
                    self.free_pte(pr, idx, t)
                elif refcount_free and self.refcount_like():
                    self.release_empty(pr, pid, idx, t)

    def free_pgd_range(self, pr, addr, end, floor, ceiling, t):
        addr &= ~(PMD - 1)
        if addr < floor:
            addr += PMD
        c = ceiling & ~(PMD - 1)
        if c == 0:
            return
        if end - 1 > c - 1:
            end -= PMD
        if addr > end - 1:
            return
        for idx in [i for i in pr.pte if (addr >> 21) <= i <= ((end - 1) >> 21)]:
            if idx in pr.pte:
                self.free_pte(pr, idx, t)

        def ok(start, e, size):
            start &= ~(size - 1)
            cc = ceiling & ~(size - 1)
            return start >= floor and cc != 0 and not (e - 1 > cc - 1)

        for g in sorted(i for i in pr.pmd if (addr >> 30) <= i <= ((end - 1) >> 30)):
            g0 = g << 30
            if ok(max(addr, g0), min(end, g0 + PUD), PUD):
                self.free_pmd(pr, g, t)
        for g in sorted(i for i in pr.pud if (addr >> 39) <= i <= ((end - 1) >> 39)):
            g0 = g << 39
            if ok(max(addr, g0), min(end, g0 + P4D), P4D):
                for m in [i for i in pr.pmd if (i >> 9) == g]:
                    self.free_pmd(pr, m, t)
                pr.pud.discard(g)

    def free_pmd(self, pr, g, t):
        for idx in [i for i in pr.pte if (i >> 9) == g]:
            tb = pr.pte.pop(idx)
            if tb.entries and self.refcount_like():
                pr.stats["atomics"] += 2 * len(tb.entries)
            pr.stats["freed"] += 1
            self.table_freed(pr.pid, tb, t)
            pr.markers[(pr.gen, idx)] = t
        pr.pmd.discard(g)

    def munmap(self, pr, pid, lo, hi, t):
        if hi <= lo:
            return
        self.split(pr, lo)
        self.split(pr, hi)
        removed = [v for v in pr.vmas if lo <= v[0] and v[1] <= hi]
        if not removed:
            return
        before = [v for v in pr.vmas if v[1] <= removed[0][0]]
        after = [v for v in pr.vmas if v[0] >= removed[-1][1]]
        floor = before[-1][1] if before else 0
        ceiling = after[0][0] if after else NO_CEILING
        for v in removed:
            pr.vmas.remove(v)
        for v in removed:
            self.zap(pr, pid, v[0], v[1], False, True, t)
        k = 0
        while k < len(removed):
            start = removed[k][0]
            while k + 1 < len(removed) and removed[k + 1][0] <= removed[k][1] + PMD:
                k += 1
            nxt = removed[k + 1][0] if k + 1 < len(removed) else ceiling
            self.free_pgd_range(pr, start, removed[k][1], floor, nxt, t)
            k += 1

    def teardown(self, pr):
        for tb in pr.pte.values():
            if tb.entries and self.refcount_like():
                pr.stats["atomics"] += 2 * len(tb.entries)
            self.table_freed(pr.pid, tb, self.cur[1])
        pr.stats["freed"] += len(pr.pte)
        pr.pte.clear()
        pr.pmd.clear()
        pr.pud.clear()
        pr.vmas.clear()

    # ---------------------------------------------------------------- syscalls
    def mmap(self, pr, pid, e, t):
        lo = e["addr"] & ~(PAGE - 1)
        hi = min((e["addr"] + e["len"] + PAGE - 1) & ~(PAGE - 1), self.top)
        if hi <= lo:
            return
        self.munmap(pr, pid, lo, hi, t)
        f = 0
        if e["fd"] < 0 or e["flags"] & 0x20:
            f |= ANON_F
        if e["flags"] & 1:
            f |= SHARED
        if e["prot"] >= 0:
            f |= self.prot_bits(e["prot"]) | PROT_KNOWN
        if e["flags"] & 0x100:
            f |= GROWSDOWN
        if e["flags"] & 0x2000:
            f |= LOCKED
        if e["flags"] & 0x4000:
            f |= NORESERVE
        self.vma_ids += 1
        if e["fd"] >= 0 and not e["flags"] & 0x20:
            file, base = e["fd"] + 1, (e["pgoff"] >> 12) - (lo >> 12)
        elif e["flags"] & 1:
            file, base = -self.vma_ids, -(lo >> 12)
        else:
            file, base = 0, 0
        self.insert_vma(pr, lo, hi, f | self.vma_ids << ORIGIN, file, base)
        self.merge(pr, lo, hi)
        if e["flags"] & (0x8000 | 0x2000) and e["prot"] > 0:
            self.populate(pr, lo, hi, 0, t)

    def set_flags(self, pr, lo, hi, on, off):
        """Only VMAs whose flags change are split and changed (mprotect_fixup, madvise_update_vma)."""
        changing = [(max(lo, v[0]), min(hi, v[1])) for v in pr.vmas
                    if v[1] > lo and v[0] < hi and (v[2] | on) & ~off != v[2]]
        for a, b in changing:
            self.split(pr, a)
            self.split(pr, b)
            v = self.find_vma(pr, a)
            v[2] = (v[2] | on) & ~off
        if changing:
            self.merge(pr, lo, hi)

    @staticmethod
    def prot_bits(prot):
        return (READ if prot & 1 else 0) | (WRITE if prot & 2 else 0) | (EXEC if prot & 4 else 0)

    @staticmethod
    def mergeable(a, b):
        low = (1 << ORIGIN) - 1
        if a[1] != b[0] or (a[2] ^ b[2]) & low & ~ANON_VMA:
            return False
        if a[2] & (IMPLICIT | HEAP) or a[3] != b[3]:
            return False
        if a[3]:  # a file or shared anonymous mapping: contiguous pgoff
            if a[4] != b[4]:
                return False
        elif not a[2] & ANON_F or a[2] & SHARED:
            return False
        elif a[2] & MOVED and a[2] >> ORIGIN != b[2] >> ORIGIN:
            return False
        return not (a[2] & ANON_VMA and b[2] & ANON_VMA) or a[2] >> ORIGIN == b[2] >> ORIGIN

    def merge(self, pr, lo, hi):
        """Merge mergeable adjacent pairs among the VMAs touching [lo, hi]."""
        k = next((j for j, v in enumerate(pr.vmas) if v[1] > lo), len(pr.vmas))
        k = max(k - 1, 0)
        while k + 1 < len(pr.vmas) and pr.vmas[k][0] <= hi:
            a, b = pr.vmas[k], pr.vmas[k + 1]
            if self.mergeable(a, b):
                a[2] = a[2] if a[2] & ANON_VMA else b[2]
                a[1] = b[1]
                del pr.vmas[k + 1]
            else:
                k += 1

    def mprotect(self, pr, e):
        lo = e["addr"] & ~(PAGE - 1)
        hi = (e["addr"] + e["len"] + PAGE - 1) & ~(PAGE - 1)
        if hi > lo and e["prot"] >= 0:
            bits = self.prot_bits(e["prot"]) | PROT_KNOWN
            self.set_flags(pr, lo, hi, bits, (READ | WRITE | EXEC) & ~bits)

    def madvise(self, pr, pid, e, t):
        lo = e["addr"] & ~(PAGE - 1)
        hi = min((e["addr"] + e["len"] + PAGE - 1) & ~(PAGE - 1), self.top)
        adv = e["advice"]
        if hi <= lo:
            return
        if adv in (4, 24, 9):
            for v in [v for v in pr.vmas if v[1] > lo and v[0] < hi]:
                self.zap(pr, pid, max(lo, v[0]), min(hi, v[1]), adv != 9 and self.policy == "pt_reclaim", True, t)
        flags = {10: (DONTFORK, 0), 11: (0, DONTFORK), 14: (HUGE, NOHUGE), 15: (NOHUGE, HUGE),
                 18: (WIPEONFORK, 0), 19: (0, WIPEONFORK)}
        if adv in flags:
            self.set_flags(pr, lo, hi, *flags[adv])
        if adv in (22, 23):
            self.populate(pr, lo, hi, 1 if adv == 22 else 2, t)

    def move_tables(self, pr, pid, old, new, length, t):
        o, n, end = old, new, old + length
        while o < end:
            ext = min(((o >> 21) + 1) * PMD - o, end - o, ((n >> 21) + 1) * PMD - n)
            si, di = o >> 21, n >> 21
            if si in pr.pte:
                self.add_upper(pid, pr, pr.pud, n >> 39)
                self.add_upper(pid, pr, pr.pmd, n >> 30)
                if ext == PMD and di not in pr.pte:
                    pr.pte[di] = pr.pte.pop(si)
                    if self.policy == "all_levels":
                        if not any((i >> 9) == (si >> 9) for i in pr.pte):
                            pr.pmd.discard(si >> 9)
                        if not any((i >> 9) == (si >> 18) for i in pr.pmd):
                            pr.pud.discard(si >> 18)
                else:
                    src = pr.pte[si]
                    src.huge = False
                    self.alloc_pte(pr, di, t)
                    i0, j0 = (o >> 12) & 511, (n >> 12) & 511
                    for k in range(ext >> 12):
                        e = self.clear_entry(pr, si, i0 + k)
                        if e != NONE:
                            self.set_entry(pr, di, j0 + k, e)
                    if self.refcount_like():
                        if not src.entries:
                            self.release_empty(pr, pid, si, t)
                        if di in pr.pte and not pr.pte[di].entries:
                            self.release_empty(pr, pid, di, t)
            o += ext
            n += ext

    def mremap(self, pr, pid, e, t):
        old = e["addr"] & ~(PAGE - 1)
        old_len = (e["len"] + PAGE - 1) & ~(PAGE - 1)
        new_len = (e["new_len"] + PAGE - 1) & ~(PAGE - 1)
        new = e["new_addr"]
        if new == old:
            if new_len < old_len:
                self.munmap(pr, pid, old + new_len, old + old_len, t)
            elif new_len > old_len:
                v = self.find_vma(pr, old + old_len - 1)
                f, file, base = (v[2], v[3], v[4]) if v else (ANON_F | WRITE, 0, 0)
                new_end = min(old + new_len, self.top)
                self.munmap(pr, pid, old + old_len, new_end, t)
                if v is not None and v[1] == old + old_len:
                    v[1] = new_end
                else:
                    self.insert_vma(pr, old + old_len, new_end, f, file, base)
            return
        if new_len < old_len:
            self.munmap(pr, pid, old + new_len, old + old_len, t)
            old_len = new_len
        v = self.find_vma(pr, old)
        f, file, base = (v[2], v[3], v[4]) if v else (ANON_F | WRITE, 0, 0)
        whole = v is not None and v[0] == old and v[1] == old + old_len
        new_end = min(new + new_len, self.top)
        self.munmap(pr, pid, new, new_end, t)
        self.move_tables(pr, pid, old, new, min(old_len, new_end - new), t)
        nf = f & ~IMPLICIT
        if file:  # copy_vma: the pages keep their file offsets
            base += (old >> 12) - (new >> 12)
        elif f & ANON_VMA:  # copy_vma keeps vm_pgoff of a faulted VMA; a never-faulted one takes the new address
            self.vma_ids += 1
            nf = (nf & ((1 << ORIGIN) - 1)) | MOVED | self.vma_ids << ORIGIN
        elif f & ANON_F:
            nf &= ~MOVED
        self.insert_vma(pr, new, new_end, nf, file, base)
        self.merge(pr, new, new_end)
        if not e["flags"] & 4:
            self.munmap(pr, pid, old, old + old_len, t)
        elif whole and (v := self.find_vma(pr, old)) is not None:
            # MREMAP_DONTUNMAP of a whole VMA: dontunmap_complete unlinks its anon_vma
            self.vma_ids += 1
            v[2] = (v[2] & ((1 << ORIGIN) - 1) & ~ANON_VMA) | self.vma_ids << ORIGIN

    def brk(self, pr, pid, e, t):
        req, ret = e["addr"], e["ret"]
        if req == 0 or pr.brk < 0:
            pr.brk = ret
            return
        old_end = (pr.brk + PAGE - 1) & ~(PAGE - 1)
        new_end = (ret + PAGE - 1) & ~(PAGE - 1)
        if new_end > old_end:
            self.munmap(pr, pid, old_end, new_end, t)
            v = self.find_vma(pr, old_end - 1)
            if v is not None and v[1] == old_end and v[2] & HEAP:
                v[1] = new_end
            else:
                self.insert_vma(pr, old_end, new_end, ANON_F | WRITE | HEAP)
        elif new_end < old_end:
            self.munmap(pr, pid, new_end, old_end, t)
        pr.brk = ret

    def fork(self, pr, child, t):
        child.brk = pr.brk  # dup_mm copies mm->brk
        for s, e, f, file, base in list(pr.vmas):
            if f & DONTFORK:
                continue
            cf = f & ~LOCKED
            if f & WIPEONFORK:
                cf &= ~ANON_VMA
            self.insert_vma(child, s, e, cf, file, base)
        for vs, ve, f, _, _ in list(pr.vmas):
            if f & (DONTFORK | WIPEONFORK) or not f & ANON_VMA:
                continue
            for i in sorted(i for i in pr.pud if (vs >> 39) <= i <= ((ve - 1) >> 39)):
                self.add_upper(child.pid, child, child.pud, i)
            for i in sorted(i for i in pr.pmd if (vs >> 30) <= i <= ((ve - 1) >> 30)):
                self.add_upper(child.pid, child, child.pmd, i)
            for idx in sorted(i for i in pr.pte if (vs >> 21) <= i <= ((ve - 1) >> 21)):
                src = pr.pte[idx]
                dst = self.alloc_pte(child, idx, t)
                rs = idx << 21
                for k in range((max(vs, rs) - rs) >> 12, (min(ve, rs + PMD) - rs) >> 12):
                    if src.entries.get(k, NONE) != NONE:
                        self.set_entry(child, idx, k, src.entries[k])
                dst.huge = src.huge

    # ---------------------------------------------------------------- clock
    def touch(self, pr, t):
        if t > pr.last:
            pr.integral += float(pr.vmpte()) * float(t - pr.last)
            pr.empty_integral += pr.empty() * (t - pr.last)
            pr.last = t

    def emit(self, pid, pr, t):
        self.rows.append(dict(pid=pid, **pr.row(t)))
        self.last_row[pid] = {k: v for k, v in self.rows[-1].items() if k != "t_ns"}

    def changed(self, pid, pr):
        """The process's values differ from its latest row's."""
        return {k: v for k, v in pr.row(0).items() if k != "t_ns"} != {k: v for k, v in self.last_row[pid].items()
                                                                          if k != "pid"}

    def flush_pending(self):
        for pid, pr in self.procs.items():
            if pr.pend_start:
                self.emit(pid, pr, pr.start)
                pr.pend_start = False
            if pr.pend_end:
                self.emit(pid, pr, pr.end)
                pr.pend_end = False

    def occupancy_snapshot(self, t):
        """Occupancy rows at t: per process and 1 GiB region with a live PTE table."""
        for pid, pr in sorted(self.procs.items()):
            regions: dict = {}
            for idx, tb in pr.pte.items():
                regions.setdefault(idx >> 9, []).append(len(tb.entries))
            for g, used in sorted(regions.items()):
                self.occupancy.append(dict(pid=pid, t_ns=t, region_start=g << 30, pte_tables=len(used),
                                           empty_pte_tables=used.count(0), live_entries=sum(used),
                                           full_pte_tables=used.count(512)))

    def advance(self, t):
        self.cur = None
        self.flush_pending()
        big = 1 << 62
        while True:
            xt = big
            if self.policy == "scan":
                xt = self.next_scan
            elif self.policy == "delayed" and self.queue:
                xt = self.queue[0][3] + self.hold
            if xt <= self.next_tick and xt <= t:
                if self.policy == "scan":
                    for pid, pr in self.procs.items():
                        if not pr.alive:
                            continue
                        pr.stats["scan"] += 512 * len(pr.pte)
                        if self.dirty:
                            for idx in [i for i, tb in pr.pte.items() if not tb.entries]:
                                self.touch(pr, xt)
                                self.free_pte(pr, idx, xt)
                    self.dirty = False
                    self.next_scan += self.scan_ns
                else:
                    pid, tb, serial, since = self.queue.pop(0)
                    pr = self.procs[pid]
                    idx = next((i for i, x in pr.pte.items() if x is tb), None)
                    if idx is not None and tb.serial == serial and tb.since == since and not tb.entries:
                        self.touch(pr, xt)
                        self.free_pte(pr, idx, xt)
            elif self.next_tick < t:
                for pid, pr in self.procs.items():
                    if pr.alive and pr.start < self.next_tick and (self.ts_ticks or self.changed(pid, pr)):
                        self.emit(pid, pr, self.next_tick)
                if self.next_tick in self.snap_ticks:
                    self.occupancy_snapshot(self.next_tick)
                self.next_tick += self.interval
            else:
                break
        self.now = t

    def start(self, pid, t):
        pr = self.procs.setdefault(pid, Proc(pid=pid))
        pr.started = pr.alive = pr.pend_start = True
        pr.start = pr.end = pr.last = t
        return pr

    def peaks(self, pr):
        s = pr.stats
        s["peak_virt"] = max(s["peak_virt"], pr.virt())
        s["peak_rss"] = max(s["peak_rss"], (pr.rss_pages(ANON) + pr.rss_pages(FILE)) * PAGE)
        s["peak_vmpte"] = max(s["peak_vmpte"], pr.vmpte())

    def snapshot_final(self, pr):
        pr.final = dict(virt=pr.virt(), rss=(pr.rss_pages(ANON) + pr.rss_pages(FILE)) * PAGE, vmpte=pr.vmpte(),
                        ideal=pr.ideal(), empty=pr.empty())

    # ---------------------------------------------------------------- driver
    counts_outside = 0
    counts_populate = 0
    counts_refused = 0

    def apply(self, e, row=0):
        """One event dict (EVENTS columns, not failed, not a skipped unfinished row); row: its input row."""
        t, pid, kind = e["t_ns"], e["pid"], e["kind"]
        if self.now is None:
            self.now = t
            self.next_tick = (t // self.interval + 1) * self.interval
            self.next_scan = (t // self.scan_ns + 1) * self.scan_ns
        elif t > self.now:
            self.advance(t)
        self.cur = (row, t, kind)
        pr = self.procs.get(pid)
        if pr is None or not pr.started:
            pr = self.start(pid, t)
        elif not pr.alive:
            return
        self.touch(pr, t)
        self.dirty = True
        pr.stats["events"] += 1
        if kind == "fault":
            if e["addr"] < self.top:
                self.fault(pr, e["addr"], e["error_code"], t, ended=e["dur_ns"] > 0)
        elif kind == "mmap":
            self.mmap(pr, pid, e, t)
        elif kind == "munmap":
            lo = e["addr"] & ~(PAGE - 1)
            self.munmap(pr, pid, lo, min((e["addr"] + e["len"] + PAGE - 1) & ~(PAGE - 1), self.top), t)
        elif kind == "mremap":
            self.mremap(pr, pid, e, t)
        elif kind == "brk":
            self.brk(pr, pid, e, t)
        elif kind == "madvise":
            self.madvise(pr, pid, e, t)
        elif kind == "mprotect":
            self.mprotect(pr, e)
        elif kind == "fork":
            c = e["child_pid"]
            if c not in self.procs:
                child = self.start(c, t)
                child.stats["events"] += 1
                self.fork(pr, child, t)
                self.peaks(child)
        elif kind == "exec":
            self.teardown(pr)
            pr.gen += 1
            pr.brk = -1
        elif kind == "exit":
            self.snapshot_final(pr)
            self.peaks(pr)
            self.teardown(pr)
            pr.alive = False
            pr.end = t
            pr.pend_end = True
            return
        self.peaks(pr)

    def finish(self, t_end):
        self.t_end = t_end
        self.flush_pending()
        for pid, pr in self.procs.items():
            if pr.alive:
                self.touch(pr, t_end)
                self.snapshot_final(pr)
                pr.end = t_end
                self.emit(pid, pr, t_end)
        self.cur = None
        for pr in self.procs.values():
            for tb in pr.pte.values():
                self.stops_empty(tb, t_end)
        if self.snap_end:
            self.occupancy_snapshot(t_end)

    def effect_rows(self):
        """Effects rows with any count, sorted by (event_row, pid)."""
        keep = [r for r in self.effects.values() if r["pte_tables_allocated"] or r["upper_tables_allocated"]
                or r["pte_tables_emptied"] or r["pte_tables_freed"]]
        return sorted(keep, key=lambda r: (r["event_row"], r["pid"]))

    def summary(self):
        out = {}
        for pid, pr in self.procs.items():
            s = pr.stats
            dur = pr.end - pr.start
            out[pid] = dict(start_ns=pr.start, end_ns=pr.end, final_virt_bytes=pr.final["virt"],
                            final_rss_bytes=pr.final["rss"], final_vmpte_bytes=pr.final["vmpte"],
                            peak_virt_bytes=s["peak_virt"], peak_rss_bytes=s["peak_rss"],
                            peak_vmpte_bytes=s["peak_vmpte"],
                            mean_vmpte_bytes=pr.integral / dur if dur > 0 else float(pr.final["vmpte"]),
                            ideal_pte_bytes=pr.final["ideal"], empty_pte_tables_final=pr.final["empty"],
                            pte_tables_allocated=s["alloc"], pte_tables_freed=s["freed"], refaults=s["refaults"],
                            scan_entries=s["scan"], extra_atomics=s["atomics"], events=s["events"])
        return out


def snapshot_ticks(rows, interval_ns, snapshots):
    """(tick times, end?) of the occupancy snapshots, by brute force: every k-th
    timeseries tick (T / interval a multiple of k) for the smallest k leaving at
    most snapshots - 1 of the ticks before the last event, plus the trace end."""
    times = [e["t_ns"] for e in rows]
    if not times or snapshots <= 0:
        return [], False
    if snapshots == 1:
        return [], True
    ticks = range((min(times) // interval_ns + 1) * interval_ns, max(times), interval_ns)
    k = 1
    while sum(1 for t in ticks if (t // interval_ns) % k == 0) > snapshots - 1:
        k += 1
    return [t for t in ticks if (t // interval_ns) % k == 0], True


def replay_reference(table, policy="none", occupancy_snapshots=0, **kw) -> Reference:
    """Replay an EVENTS Arrow table; the finished Reference (rows, summary(), effect_rows(), occupancy)."""
    rows = table.to_pylist()
    ticks, end = snapshot_ticks(rows, kw.get("interval_ns", 10_000_000), occupancy_snapshots)
    ref = Reference(policy, snap_ticks=ticks, snap_end=end, **kw)
    last = None
    for i, e in enumerate(rows):
        if e["failed"] or (e["unfinished"] and e["kind"] in ("mmap", "mremap", "brk")):
            last = e["t_ns"]
            continue
        ref.apply(e, i)
        last = e["t_ns"]
    ref.finish(last if last is not None else 0)
    return ref


def run_reference(table, policy="none", **kw):
    """Replay an EVENTS Arrow table; returns (timeseries rows sorted, summary by pid)."""
    ref = replay_reference(table, policy, **kw)
    ts = sorted(ref.rows, key=lambda r: (r["pid"], r["t_ns"]))
    return ts, ref.summary()
