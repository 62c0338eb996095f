"""Compiled replay kernels: plain numpy arrays and scalars in and out.

No Arrow, pandas, logging or I/O here, so `ptreplay --help` compiles nothing
and every kernel can run as plain Python under NUMBA_DISABLE_JIT=1.

The state of one policy's replay lives in a handful of arrays that
:mod:`replay.engine` allocates and grows:

``ps``  int64 [proc, PS_*]     per-process counters (one row per pid)
``pf``  float64 [proc]         time integral of VmPTE (bytes x ns)
``vm``  int64 [proc, vma, 3]   each process's VMAs sorted by start: start, end, VF_* flags
``hk``/``hv`` int64 [pow2]     open-addressing hash: table key -> slot (levels 0-2), or
                               refault marker key -> free time (level 3)
``sl``  int64 [slot, SL_*]     page tables (PTE, PMD and PUD) as pool slots
``pg``  int8 [slot * 512]      PTE entries of PTE-level slots: E_NONE / E_ZERO / E_ANON / E_FILE
``fs``  int64 [slot]           stack of free slots
``g``   int64 [G_* | ef rows]  global scalars (clock cursors, counts of invisible effects), then
                               the ef rows: page-table effects per (event, process), N_EF each,
                               sparse, never drained during a replay (an empty table's slot
                               points at its emptier's row).  Not an array of their own: every
                               array argument of a non-inlined call costs ~30 ns (measured),
                               and the effects reach nearly every function
``dq``  int64 [n, 3]           FIFO of PTE tables waiting to be freed (policy delayed)
``ts``  int64 [row, TS_*]      timeseries rows produced so far
``oc``  int64 [row, OC_*]      occupancy snapshot rows (per process and 1 GiB region)

`run_events` stops *before* an event it has no room for and returns a code
(NEED_*) and an amount; the engine grows the arrays and calls it again.

Speed: runs of faults take `fast_fault_run` (one table/VMA lookup per 2 MiB
segment, counters added once per segment, ~3 ns a fault); every other event
takes the generic path (capacity_needed, advance, apply_event: ~0.3-1 us, most
of it numba's reference counting of the array arguments of each call).  Both
leave exactly the same state (tests/test_replay_fast_path.py).  Arguments that
pick a specialization are passed as typed ints (LV_*, POP_*, int64 process
indices), not literals: numba compiles one version per literal value, and the
cold compile of everything must stay well under a minute.
Effects (ef) hook the places that move PS_EMPTY and PS_ALLOC/PS_FREED
(tbl_alloc, tbl_free, pte_set, pte_clear, zap_ptes, fast_fault_commit): O(1)
per table event, never per fault.
Every model rule cites the kernel function it imitates; see
/work/shared/docs/KERNEL.md.
"""
import numpy as np
from ptreplay.replay.jit import njit

# Event kinds (engine maps events.kind strings to these codes).
K_FAULT, K_MMAP, K_MUNMAP, K_MREMAP, K_BRK, K_MPROTECT, K_MADVISE = 0, 1, 2, 3, 4, 5, 6
K_FORK, K_CLONE, K_EXEC, K_EXIT = 7, 8, 9, 10
KIND_CODES = {"fault": 0, "mmap": 1, "munmap": 2, "mremap": 3, "brk": 4, "mprotect": 5,
              "madvise": 6, "fork": 7, "clone": 8, "exec": 9, "exit": 10}

# Policies.
POL_NONE, POL_PT_RECLAIM, POL_REFCOUNT, POL_SCAN, POL_DELAYED, POL_ALL_LEVELS = 0, 1, 2, 3, 4, 5

# prm: policy parameters.
PR_POLICY, PR_TICK, PR_SCAN, PR_HOLD, PR_THP, PR_TOP, PR_FAST, PR_SNAP_EVERY, PR_SNAP_END = range(9)
N_PRM = 9                   # PR_FAST: 1 = batched fast path for faults, 0 = generic path only
#                             PR_SNAP_EVERY: occupancy snapshot at ticks T with (T / tick) % it == 0 (0: none)
#                             PR_SNAP_END: 1 = occupancy snapshot at the trace end (finish)
THP_NEVER, THP_MADVISE, THP_ALWAYS = 0, 1, 2

# ps: per-process fields.
(PS_STARTED, PS_ALIVE, PS_START, PS_END, PS_LAST, PS_NVMA, PS_GEN, PS_BRK, PS_VIRT, PS_ANON,
 PS_FILE, PS_PTE, PS_PMD, PS_PUD, PS_EMPTY, PS_PEAK_VIRT, PS_PEAK_RSS, PS_PEAK_VMPTE,
 PS_FIN_VIRT, PS_FIN_RSS, PS_FIN_VMPTE, PS_FIN_IDEAL, PS_FIN_EMPTY, PS_ALLOC, PS_FREED,
 PS_REFAULTS, PS_SCAN, PS_ATOMICS, PS_EVENTS, PS_PEND_START, PS_PEND_END) = range(31)
N_PS = 31

# sl: slot fields.
SL_KEY, SL_USED, SL_HUGE, SL_SINCE, SL_PROC, SL_LEVEL, SL_SERIAL, SL_IDX, SL_EROW, SL_ESINCE = range(10)
N_SL = 10                   # SL_EROW/SL_ESINCE: PTE table empty since SL_ESINCE, emptied by the event
#                             whose ef row is SL_EROW (-1: not empty); SL_SINCE is the delayed policy's

# g: global scalars.
(G_HCOUNT, G_SHW, G_FSTOP, G_NOW, G_NEXT_TICK, G_NEXT_SCAN, G_DIRTY, G_QHEAD, G_QTAIL, G_NROWS,
 G_INIT, G_NLIVE, G_NPEND, G_OUTSIDE, G_POPULATE, G_SERIAL, G_LIVE_SLOTS, G_AFTER_EXIT,
 G_IMPLICIT, G_BRK_UNKNOWN, G_BEYOND_TOP, G_VMA_ID, G_CUR_ROW, G_CUR_T, G_CUR_KIND, G_NEF, G_NOC,
 G_OVERFLOW) = range(28)
N_G = 28                    # G_CUR_*: the event being applied (input row, time, kind; row -1 inside timers)
#                             G_NEF/G_NOC: ef/oc rows used; G_OVERFLOW: rows that found no room (a bug)

# ts: timeseries row fields.
(TS_PROC, TS_T, TS_VIRT, TS_RSS, TS_ANON, TS_FILE, TS_VMPTE, TS_PTE, TS_PMD, TS_PUD,
 TS_EMPTY) = range(11)
N_TS = 11

# ef rows (in g after the N_G scalars, see ef_at): per-event page-table effects, one row per
# (event, process) with any; append-only: an emptied table's slot keeps its row index until the
# table is refilled or freed.
EF_ROW, EF_PROC, EF_T, EF_KIND, EF_ALLOC, EF_UPPER, EF_EMPTIED, EF_FREED, EF_EMPTY_NS = range(9)
N_EF = 9
EF_PER_EVENT = 4            # ef rows one event may add (its process, a fork child): capacity_needed's margin

# oc: occupancy snapshot rows, one per (process, 1 GiB region with a live PTE table) per snapshot.
OC_PROC, OC_T, OC_REGION, OC_PTE, OC_EMPTY, OC_LIVE, OC_FULL = range(7)
N_OC = 7

# VMA flags.
VF_ANON, VF_SHARED, VF_WRITE, VF_HUGE, VF_NOHUGE = 1, 2, 4, 8, 16
VF_DONTFORK, VF_WIPEONFORK, VF_ANON_VMA, VF_LOCKED, VF_IMPLICIT, VF_HEAP = 32, 64, 128, 256, 512, 1024
VF_READ, VF_EXEC, VF_NORESERVE = 2048, 4096, 8192
VF_PROT = VF_READ | VF_WRITE | VF_EXEC
ORIGIN_SHIFT = 20           # flags bits 20+: id of the mmap a VMA came from (stands for its anon_vma)
VF_LOW = (1 << ORIGIN_SHIFT) - 1

# Table levels as typed (non-literal) ints: numba compiles one specialization
# of a jitted function per distinct literal argument, these share one.
LV_PTE, LV_PMD, LV_PUD = np.int64(0), np.int64(1), np.int64(2)

# populate modes (see populate), typed like the levels.
POP_VMA, POP_READ, POP_WRITE = np.int64(0), np.int64(1), np.int64(2)

# PTE entry kinds.
E_NONE, E_ZERO, E_ANON, E_FILE = 0, 1, 2, 3

# run_events stop codes.
NEED_NONE, NEED_SLOTS, NEED_HASH, NEED_VMAS, NEED_ROWS, NEED_QUEUE, NEED_EFFECTS, NEED_OCC = range(8)

PAGE = 4096
PMD_SIZE = 1 << 21          # one PTE table maps 2 MiB
PUD_SIZE = 1 << 30          # one PMD table maps 1 GiB
P4D_SIZE = 1 << 39          # one PUD table maps 512 GiB
NO_CEILING = 1 << 57        # free_pgd_range's ceiling 0 ("no limit")
REFAULT_NS = 1_000_000_000  # a re-allocation within 1 s of a free is a refault
FAULT_AROUND_PAGES = 16     # fault_around_bytes 64 KiB
MARKER = 3                  # hash level tag of refault markers


# ----------------------------------------------------------------------------- hash map

@njit(inline="always")
def _home(key, mask):
    x = key * np.int64(-7046029254386353131)
    x ^= x >> 29
    return x & mask


@njit(inline="always")
def ht_get(hk, hv, key):
    """Value stored for `key`, or -1."""
    mask = hk.shape[0] - 1
    i = _home(key, mask)
    while True:
        k = hk[i]
        if k == key:
            return hv[i]
        if k == -1:
            return -1
        i = (i + 1) & mask


@njit
def ht_put(hk, hv, g, key, val):
    mask = hk.shape[0] - 1
    i = _home(key, mask)
    while True:
        k = hk[i]
        if k == key:
            hv[i] = val
            return
        if k == -1:
            hk[i] = key
            hv[i] = val
            g[G_HCOUNT] += 1
            return
        i = (i + 1) & mask


@njit
def ht_del(hk, hv, g, key):
    """Linear-probing delete with backward shift (no tombstones)."""
    mask = hk.shape[0] - 1
    i = _home(key, mask)
    while hk[i] != key:
        if hk[i] == -1:
            return
        i = (i + 1) & mask
    j = i
    while True:
        j = (j + 1) & mask
        if hk[j] == -1:
            break
        h = _home(hk[j], mask)
        if i <= j:
            stays = i < h <= j
        else:
            stays = h > i or h <= j
        if stays:
            continue
        hk[i] = hk[j]
        hv[i] = hv[j]
        i = j
    hk[i] = -1
    g[G_HCOUNT] -= 1


@njit
def rehash(hk, hv, new_cap, now_ns):
    """Copy a hash map into one of `new_cap` buckets, dropping markers older than 1 s."""
    nk = np.full(new_cap, -1, np.int64)
    nv = np.zeros(new_cap, np.int64)
    mask = new_cap - 1
    count = 0
    for i in range(hk.shape[0]):
        k = hk[i]
        if k == -1:
            continue
        if (k >> 61) == MARKER and now_ns - hv[i] >= REFAULT_NS:
            continue
        j = _home(k, mask)
        while nk[j] != -1:
            j = (j + 1) & mask
        nk[j] = k
        nv[j] = hv[i]
        count += 1
    return nk, nv, count


@njit(inline="always")
def tkey(level, p, idx):
    """Hash key of the level-`level` table (0 PTE, 1 PMD, 2 PUD) of process p at index idx."""
    return (np.int64(level) << 61) | (np.int64(p) << 35) | idx


@njit
def mkey(p, gen, idx):
    """Hash key of the refault marker of a 2 MiB region (per mm generation)."""
    return (np.int64(MARKER) << 61) | (np.int64(gen & 63) << 55) | (np.int64(p) << 35) | idx


# ----------------------------------------------------------------------------- process state

@njit
def touch(ps, pf, p, t):
    """Accumulate p's VmPTE x time up to t (for the time-weighted mean)."""
    dt = t - ps[p, PS_LAST]
    if dt > 0:
        pf[p] += float((ps[p, PS_PTE] + ps[p, PS_PMD] + ps[p, PS_PUD]) * PAGE) * float(dt)
        ps[p, PS_LAST] = t


@njit
def update_peaks(ps, p):
    virt = ps[p, PS_VIRT]
    rss = (ps[p, PS_ANON] + ps[p, PS_FILE]) * PAGE
    vmpte = (ps[p, PS_PTE] + ps[p, PS_PMD] + ps[p, PS_PUD]) * PAGE
    if virt > ps[p, PS_PEAK_VIRT]:
        ps[p, PS_PEAK_VIRT] = virt
    if rss > ps[p, PS_PEAK_RSS]:
        ps[p, PS_PEAK_RSS] = rss
    if vmpte > ps[p, PS_PEAK_VMPTE]:
        ps[p, PS_PEAK_VMPTE] = vmpte


@njit
def start_proc(ps, pf, g, p, t):
    """First sight of a process (first event, fork child, or attach): a fresh, empty mm."""
    ps[p, PS_STARTED] = 1
    ps[p, PS_ALIVE] = 1
    ps[p, PS_START] = t
    ps[p, PS_END] = t
    ps[p, PS_LAST] = t
    ps[p, PS_BRK] = -1
    ps[p, PS_PEND_START] = 1
    g[G_NPEND] += 1
    g[G_NLIVE] += 1


@njit
def emit_row(ps, ts, g, p, t):
    r = g[G_NROWS]
    ts[r, TS_PROC] = p
    ts[r, TS_T] = t
    ts[r, TS_VIRT] = ps[p, PS_VIRT]
    ts[r, TS_RSS] = (ps[p, PS_ANON] + ps[p, PS_FILE]) * PAGE
    ts[r, TS_ANON] = ps[p, PS_ANON] * PAGE
    ts[r, TS_FILE] = ps[p, PS_FILE] * PAGE
    ts[r, TS_VMPTE] = (ps[p, PS_PTE] + ps[p, PS_PMD] + ps[p, PS_PUD]) * PAGE
    ts[r, TS_PTE] = ps[p, PS_PTE]
    ts[r, TS_PMD] = ps[p, PS_PMD]
    ts[r, TS_PUD] = ps[p, PS_PUD]
    ts[r, TS_EMPTY] = ps[p, PS_EMPTY]
    g[G_NROWS] = r + 1


# ----------------------------------------------------------------------------- VMAs

@njit(inline="always")
def vma_first_after(vm, ps, p, addr):
    """Index of the first VMA whose end is > addr (find_vma; it may not contain addr)."""
    lo = 0
    hi = ps[p, PS_NVMA]
    while lo < hi:
        mid = (lo + hi) >> 1
        if vm[p, mid, 1] <= addr:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(inline="always")
def vma_find(vm, ps, p, addr):
    """Index of the VMA containing addr, or -1 (find_vma + the start check)."""
    i = vma_first_after(vm, ps, p, addr)
    if i < ps[p, PS_NVMA] and vm[p, i, 0] <= addr:
        return i
    return -1


@njit
def vma_insert_at(vm, ps, p, i, start, end, flags):
    n = ps[p, PS_NVMA]
    for j in range(n, i, -1):
        vm[p, j, 0] = vm[p, j - 1, 0]
        vm[p, j, 1] = vm[p, j - 1, 1]
        vm[p, j, 2] = vm[p, j - 1, 2]
    vm[p, i, 0] = start
    vm[p, i, 1] = end
    vm[p, i, 2] = flags
    ps[p, PS_NVMA] = n + 1


@njit
def vma_insert(vm, ps, p, start, end, flags):
    """Add a VMA over a range known to be free (mmap_region); VmSize grows."""
    i = vma_first_after(vm, ps, p, start)
    vma_insert_at(vm, ps, p, i, start, end, flags)
    ps[p, PS_VIRT] += end - start


@njit
def vma_delete_at(vm, ps, p, i):
    n = ps[p, PS_NVMA]
    for j in range(i, n - 1):
        vm[p, j, 0] = vm[p, j + 1, 0]
        vm[p, j, 1] = vm[p, j + 1, 1]
        vm[p, j, 2] = vm[p, j + 1, 2]
    ps[p, PS_NVMA] = n - 1


@njit
def vma_split(vm, ps, p, addr):
    """Split the VMA strictly containing addr in two (__split_vma)."""
    i = vma_find(vm, ps, p, addr)
    if i < 0 or vm[p, i, 0] == addr:
        return
    end = vm[p, i, 1]
    flags = vm[p, i, 2]
    vm[p, i, 1] = addr
    vma_insert_at(vm, ps, p, i + 1, addr, end, flags)


@njit
def vma_set_flags(vm, ps, p, lo, hi, set_bits, clear_bits):
    """madvise_update_vma: split at the range ends, then change the VMAs' flags."""
    vma_split(vm, ps, p, lo)
    vma_split(vm, ps, p, hi)
    i = vma_first_after(vm, ps, p, lo)
    while i < ps[p, PS_NVMA] and vm[p, i, 0] < hi:
        vm[p, i, 2] = (vm[p, i, 2] | set_bits) & ~clear_bits
        i += 1
    vma_merge_around(vm, ps, p, lo, hi)


@njit
def vma_mergeable(f1, f2):
    """Two adjacent VMAs may merge (is_mergeable_vma + is_mergeable_anon_vma):
    private anonymous, same flags, and not two different anon_vmas.  A VMA's
    anon_vma is stood for by the id of the mmap it came from (splits keep it).
    File, shared, heap and implicit VMAs are never merged by the model."""
    if ((f1 ^ f2) & VF_LOW & ~VF_ANON_VMA) != 0:
        return False
    if (f1 & VF_ANON) == 0 or (f1 & (VF_SHARED | VF_IMPLICIT | VF_HEAP)) != 0:
        return False
    both = (f1 & VF_ANON_VMA) != 0 and (f2 & VF_ANON_VMA) != 0
    return not both or (f1 >> ORIGIN_SHIFT) == (f2 >> ORIGIN_SHIFT)


@njit
def vma_merge_around(vm, ps, p, lo, hi):
    """Merge mergeable neighbours among the VMAs touching [lo, hi] (vma_merge_new_range
    after mmap, vma_merge_existing_range after mprotect/madvise flag changes)."""
    i = max(vma_first_after(vm, ps, p, lo) - 1, 0)
    while i + 1 < ps[p, PS_NVMA] and vm[p, i, 0] <= hi:
        f1 = vm[p, i, 2]
        f2 = vm[p, i + 1, 2]
        if vm[p, i, 1] == vm[p, i + 1, 0] and vma_mergeable(f1, f2):
            vm[p, i, 1] = vm[p, i + 1, 1]
            vm[p, i, 2] = f1 if (f1 & VF_ANON_VMA) != 0 else f2
            vma_delete_at(vm, ps, p, i + 1)
        else:
            i += 1


@njit
def do_mprotect(vm, ps, p, addr, length, prot):
    """mprotect_fixup: split at the range ends, set the new protection, merge back."""
    lo = addr & ~(PAGE - 1)
    hi = page_up(addr + length)
    if hi <= lo or prot < 0:
        return
    bits = 0
    if (prot & 1) != 0:
        bits |= VF_READ
    if (prot & 2) != 0:
        bits |= VF_WRITE
    if (prot & 4) != 0:
        bits |= VF_EXEC
    vma_set_flags(vm, ps, p, lo, hi, bits, VF_PROT & ~bits)


@njit
def implicit_vma(vm, ps, g, p, addr):
    """A fault with no known VMA (exec's ELF/stack/vdso, or a pre-trace mapping).

    Treated as anonymous private writable memory: a one-page VMA merged with
    neighbouring implicit VMAs, so its tables are counted and protected by
    free_pgtables' floor/ceiling like the real (unseen) VMA would be.
    """
    g[G_OUTSIDE] += 1
    page = addr & ~(PAGE - 1)
    i = vma_first_after(vm, ps, p, page)  # first VMA after the hole
    prev_ok = i > 0 and vm[p, i - 1, 1] == page and (vm[p, i - 1, 2] & VF_IMPLICIT) != 0
    next_ok = i < ps[p, PS_NVMA] and vm[p, i, 0] == page + PAGE and (vm[p, i, 2] & VF_IMPLICIT) != 0
    ps[p, PS_VIRT] += PAGE
    if prev_ok and next_ok:
        vm[p, i - 1, 1] = vm[p, i, 1]
        vma_delete_at(vm, ps, p, i)
        return i - 1
    if prev_ok:
        vm[p, i - 1, 1] = page + PAGE
        return i - 1
    if next_ok:
        vm[p, i, 0] = page
        return i
    g[G_IMPLICIT] += 1
    vma_insert_at(vm, ps, p, i, page, page + PAGE, VF_ANON | VF_WRITE | VF_IMPLICIT)
    return i


# ----------------------------------------------------------------------------- tables

@njit(inline="always")
def refcount_like(prm):
    pol = prm[PR_POLICY]
    return pol == POL_REFCOUNT or pol == POL_DELAYED or pol == POL_ALL_LEVELS


# ----------------------------------------------------------------------------- effects

@njit
def ef_at(r, col):
    """Index in g of field col of ef row r (the ef rows follow the scalars)."""
    return N_G + r * N_EF + col


@njit
def ef_capacity(g):
    return (g.shape[0] - N_G) // N_EF


@njit
def ef_row(g, p):
    """ef row of the event being applied (g[G_CUR_*]) for process p, appended on
    first use.  The current event's rows are the last ones (a fork may add one
    for the child).  -1 (and G_OVERFLOW counted) without an event or if ef is
    full: capacity_needed keeps EF_PER_EVENT rows free, so that is a bug the
    engine reports."""
    row = g[G_CUR_ROW]
    if row < 0:  # no event being applied (timers only free tables already empty)
        g[G_OVERFLOW] += 1
        return -1
    r = g[G_NEF] - 1
    while r >= 0 and g[ef_at(r, EF_ROW)] == row:
        if g[ef_at(r, EF_PROC)] == p:
            return r
        r -= 1
    r = g[G_NEF]
    if r >= ef_capacity(g):
        g[G_OVERFLOW] += 1
        return -1
    for c in range(N_EF):  # not a slice: a view costs a reference count
        g[ef_at(r, c)] = 0
    g[ef_at(r, EF_ROW)] = row
    g[ef_at(r, EF_PROC)] = p
    g[ef_at(r, EF_T)] = g[G_CUR_T]
    g[ef_at(r, EF_KIND)] = g[G_CUR_KIND]
    g[G_NEF] = r + 1
    return r


@njit
def empty_begin(g, sl, s, t):
    """PTE table s became empty (allocated, or its last entry cleared) in the current event."""
    r = ef_row(g, sl[s, SL_PROC])
    sl[s, SL_EROW] = r
    sl[s, SL_ESINCE] = t
    if r >= 0:
        g[ef_at(r, EF_EMPTIED)] += 1


@njit
def empty_end(g, sl, s, t, cur_row):
    """PTE table s stops being empty at t (refilled or freed): the emptying event's
    row gets the time it stayed empty; emptied and refilled/freed inside one event
    (cur_row, -1 for timers) it was never left empty, so it is not counted."""
    r = sl[s, SL_EROW]
    if r >= 0:
        g[ef_at(r, EF_EMPTY_NS)] += t - sl[s, SL_ESINCE]
        if g[ef_at(r, EF_ROW)] == cur_row:
            g[ef_at(r, EF_EMPTIED)] -= 1
        sl[s, SL_EROW] = -1


# ----------------------------------------------------------------------------- tables

@njit
def tbl_alloc(ps, hk, hv, sl, pg, fs, g, p, level, idx, t):
    """Allocate one table (__pte_alloc / __pmd_alloc / __pud_alloc): VmPTE += 4 KiB."""
    if g[G_FSTOP] > 0:
        g[G_FSTOP] -= 1
        s = fs[g[G_FSTOP]]
    else:
        s = g[G_SHW]
        g[G_SHW] += 1
    key = tkey(level, p, idx)
    g[G_SERIAL] += 1
    g[G_LIVE_SLOTS] += 1
    sl[s, SL_KEY] = key
    sl[s, SL_USED] = 0
    sl[s, SL_HUGE] = 0
    sl[s, SL_SINCE] = -1
    sl[s, SL_PROC] = p
    sl[s, SL_LEVEL] = level
    sl[s, SL_SERIAL] = g[G_SERIAL]
    sl[s, SL_IDX] = idx
    ht_put(hk, hv, g, key, s)
    r = ef_row(g, p)
    if level == 0:
        pg[s * 512:(s + 1) * 512] = 0
        ps[p, PS_PTE] += 1
        ps[p, PS_EMPTY] += 1
        ps[p, PS_ALLOC] += 1
        if r >= 0:
            g[ef_at(r, EF_ALLOC)] += 1
        empty_begin(g, sl, s, t)
        freed_at = ht_get(hk, hv, mkey(p, ps[p, PS_GEN], idx))
        if freed_at >= 0 and t - freed_at < REFAULT_NS:
            ps[p, PS_REFAULTS] += 1
        parent = ht_get(hk, hv, tkey(1, p, idx >> 9))
    elif level == 1:
        ps[p, PS_PMD] += 1
        parent = ht_get(hk, hv, tkey(2, p, idx >> 9))
    else:
        ps[p, PS_PUD] += 1
        parent = -1
    if level != 0 and r >= 0:
        g[ef_at(r, EF_UPPER)] += 1
    if parent >= 0:
        sl[parent, SL_USED] += 1
    return s


@njit
def tbl_free(ps, hk, hv, sl, pg, fs, g, prm, s, t, mark):
    """Free one table (pte_free_tlb / pmd_free_tlb / pud_free_tlb): VmPTE -= 4 KiB.

    Entries still present (only at teardown) are dropped from RSS first.
    `mark` records the free time for refault detection.  The free counts for the
    event being applied, or inside a timer (scan, delayed) for the event that
    left the table empty.
    """
    p = sl[s, SL_PROC]
    level = sl[s, SL_LEVEL]
    idx = sl[s, SL_IDX]
    if level == 0:
        cur = g[G_CUR_ROW]
        if zap_ptes(ps, sl, pg, prm, s, 0, 512) > 0:  # leaves the table empty (counted in PS_EMPTY)
            empty_begin(g, sl, s, t)
        r = ef_row(g, p) if cur >= 0 else sl[s, SL_EROW]
        if r >= 0:
            g[ef_at(r, EF_FREED)] += 1
        empty_end(g, sl, s, t, cur)
        ps[p, PS_EMPTY] -= 1
        ps[p, PS_PTE] -= 1
        ps[p, PS_FREED] += 1
        if mark:
            ht_put(hk, hv, g, mkey(p, ps[p, PS_GEN], idx), t)
        parent = ht_get(hk, hv, tkey(1, p, idx >> 9))
    elif level == 1:
        ps[p, PS_PMD] -= 1
        parent = ht_get(hk, hv, tkey(2, p, idx >> 9))
    else:
        ps[p, PS_PUD] -= 1
        parent = -1
    if parent >= 0:
        sl[parent, SL_USED] -= 1
    ht_del(hk, hv, g, sl[s, SL_KEY])
    sl[s, SL_KEY] = -1
    fs[g[G_FSTOP]] = s
    g[G_FSTOP] += 1
    g[G_LIVE_SLOTS] -= 1


@njit
def prune_parents(ps, hk, hv, sl, pg, fs, g, prm, p, idx, t):
    """Policy all_levels: free the PMD table, then the PUD table, left without children."""
    pmd = ht_get(hk, hv, tkey(1, p, idx >> 9))
    if pmd >= 0 and sl[pmd, SL_USED] == 0:
        tbl_free(ps, hk, hv, sl, pg, fs, g, prm, pmd, t, False)
    pud = ht_get(hk, hv, tkey(2, p, idx >> 18))
    if pud >= 0 and sl[pud, SL_USED] == 0:
        tbl_free(ps, hk, hv, sl, pg, fs, g, prm, pud, t, False)


@njit
def drop_pte_table(ps, hk, hv, sl, pg, fs, g, prm, s, t):
    """Free a PTE table of a live mm (any cause); all_levels then prunes its parents."""
    p = sl[s, SL_PROC]
    idx = sl[s, SL_IDX]
    tbl_free(ps, hk, hv, sl, pg, fs, g, prm, s, t, True)
    if prm[PR_POLICY] == POL_ALL_LEVELS:
        prune_parents(ps, hk, hv, sl, pg, fs, g, prm, p, idx, t)


@njit
def release_empty(ps, hk, hv, sl, pg, fs, g, dq, prm, s, t):
    """Refcount-like policies: a zap left the table without entries.

    refcount/all_levels free it at once (the 2021 series' pte_put reaching 0);
    delayed queues it and frees it after HOLD unless a fault reuses it.
    """
    if prm[PR_POLICY] == POL_DELAYED:
        if sl[s, SL_SINCE] < 0:
            sl[s, SL_SINCE] = t
            q = g[G_QTAIL]
            dq[q, 0] = s
            dq[q, 1] = sl[s, SL_SERIAL]
            dq[q, 2] = t
            g[G_QTAIL] = q + 1
    else:
        drop_pte_table(ps, hk, hv, sl, pg, fs, g, prm, s, t)


@njit
def pte_walk_alloc(ps, hk, hv, sl, pg, fs, g, p, addr, t):
    """PTE table for addr, allocating missing PUD/PMD/PTE tables (__handle_mm_fault)."""
    idx = addr >> 21
    s = ht_get(hk, hv, tkey(0, p, idx))
    if s >= 0:
        return s
    upper_walk_alloc(ps, hk, hv, sl, pg, fs, g, p, addr, t)
    return tbl_alloc(ps, hk, hv, sl, pg, fs, g, p, LV_PTE, idx, t)


@njit
def upper_walk_alloc(ps, hk, hv, sl, pg, fs, g, p, addr, t):
    """PUD and PMD tables for addr (__pud_alloc, __pmd_alloc)."""
    if ht_get(hk, hv, tkey(2, p, addr >> 39)) < 0:
        tbl_alloc(ps, hk, hv, sl, pg, fs, g, p, LV_PUD, addr >> 39, t)
    if ht_get(hk, hv, tkey(1, p, addr >> 30)) < 0:
        tbl_alloc(ps, hk, hv, sl, pg, fs, g, p, LV_PMD, addr >> 30, t)


@njit(inline="always")
def add_entry_rss(ps, p, e):
    if e == E_ANON:
        ps[p, PS_ANON] += 1
    elif e == E_FILE:
        ps[p, PS_FILE] += 1


@njit(inline="always")
def drop_entry_rss(ps, p, e):
    if e == E_ANON:
        ps[p, PS_ANON] -= 1
    elif e == E_FILE:
        ps[p, PS_FILE] -= 1


@njit(inline="always")
def pte_set(ps, sl, pg, g, prm, s, i, e):
    """Install or replace entry i of table s (set_pte_at); RSS follows the page kind."""
    p = sl[s, SL_PROC]
    old = pg[s * 512 + i]
    if old == e:
        return
    if old == E_NONE:
        if sl[s, SL_USED] == 0:
            ps[p, PS_EMPTY] -= 1
            sl[s, SL_SINCE] = -1  # delayed: a refault reuses the table
            empty_end(g, sl, s, g[G_CUR_T], g[G_CUR_ROW])
        sl[s, SL_USED] += 1
        if refcount_like(prm):
            ps[p, PS_ATOMICS] += 2
    else:
        drop_entry_rss(ps, p, old)
    add_entry_rss(ps, p, e)
    pg[s * 512 + i] = e


@njit
def pte_clear(ps, sl, pg, g, prm, s, i):
    """Clear entry i of table s (ptep_get_and_clear in zap_pte_range); returns the old kind."""
    p = sl[s, SL_PROC]
    old = pg[s * 512 + i]
    if old == E_NONE:
        return old
    drop_entry_rss(ps, p, old)
    pg[s * 512 + i] = E_NONE
    sl[s, SL_USED] -= 1
    if sl[s, SL_USED] == 0:
        ps[p, PS_EMPTY] += 1
        empty_begin(g, sl, s, g[G_CUR_T])
    if refcount_like(prm):
        ps[p, PS_ATOMICS] += 2
    return old


@njit
def zap_ptes(ps, sl, pg, prm, s, a, b):
    """Clear entries a..b-1 of PTE table s (the zap_pte_range loop): the same
    effect as pte_clear on each, with the counters moved once at the end.
    Returns the number of entries cleared (the caller marks a table it
    emptied: empty_begin)."""
    ent = pg[s * 512 + a:s * 512 + b]
    cleared = 0
    anon = 0
    file = 0
    for i in range(ent.shape[0]):  # branch-free: LLVM vectorizes it
        e = ent[i]
        cleared += e != E_NONE
        anon += e == E_ANON
        file += e == E_FILE
    if cleared == 0:
        return 0
    ent[:] = E_NONE
    p = sl[s, SL_PROC]
    ps[p, PS_ANON] -= anon
    ps[p, PS_FILE] -= file
    sl[s, SL_USED] -= cleared
    if sl[s, SL_USED] == 0:
        ps[p, PS_EMPTY] += 1
    if refcount_like(prm):
        ps[p, PS_ATOMICS] += 2 * cleared
    return cleared


# ----------------------------------------------------------------------------- faults

@njit
def thp_allowed(prm, vstart, vend, vflags, addr):
    """Anonymous private VMA, THP mode permits it, aligned 2 MiB inside the VMA
    (thp_vma_allowable_order + do_huge_pmd_anonymous_page's range check)."""
    mode = prm[PR_THP]
    if mode == THP_NEVER:
        return False
    if (vflags & VF_ANON) == 0 or (vflags & VF_SHARED) != 0 or (vflags & VF_NOHUGE) != 0:
        return False
    if mode == THP_MADVISE and (vflags & VF_HUGE) == 0:
        return False
    h = addr & ~(PMD_SIZE - 1)
    return h >= vstart and h + PMD_SIZE <= vend


@njit
def fault_around(ps, sl, pg, g, prm, s, addr, vstart, vend):
    """do_fault_around: map up to 16 page-cache pages around a file read fault.

    Window start = max(16-aligned index, VMA start), end = start + 16, clamped
    to the PTE table and the VMA end (assumes the pages are in the page cache).
    """
    pte_off = (addr >> 12) & 511
    vma_off = (addr - vstart) >> 12
    vma_pages = (vend - vstart) >> 12
    from_pte = max(pte_off & ~(FAULT_AROUND_PAGES - 1), pte_off - min(pte_off, vma_off))
    to_pte = min(from_pte + FAULT_AROUND_PAGES, 512, pte_off + vma_pages - vma_off)
    for i in range(from_pte, to_pte):
        if pg[s * 512 + i] == E_NONE:
            pte_set(ps, sl, pg, g, prm, s, i, E_FILE)


@njit
def do_fault(ps, vm, hk, hv, sl, pg, fs, g, prm, p, addr, write, t):
    """One page fault on a user address (handle_mm_fault).

    Missing tables are allocated on the way down.  Anonymous: read -> shared
    zero page (do_anonymous_page), write -> new page, write on the zero page
    -> new page (do_wp_page).  THP: a PMD leaf plus a deposited PTE table
    (do_huge_pmd_anonymous_page; read -> huge zero page).  File read ->
    fault-around; private file write -> anonymous COW page (do_cow_fault);
    shared write -> one file page (do_shared_fault); shmem -> one page.
    """
    vi = vma_find(vm, ps, p, addr)
    if vi < 0:
        vi = implicit_vma(vm, ps, g, p, addr)
    vstart = vm[p, vi, 0]
    vend = vm[p, vi, 1]
    vflags = vm[p, vi, 2]
    anon = (vflags & VF_ANON) != 0
    shared = (vflags & VF_SHARED) != 0
    idx = addr >> 21
    s = ht_get(hk, hv, tkey(0, p, idx))
    if s < 0 and thp_allowed(prm, vstart, vend, vflags, addr):
        upper_walk_alloc(ps, hk, hv, sl, pg, fs, g, p, addr, t)
        s = tbl_alloc(ps, hk, hv, sl, pg, fs, g, p, LV_PTE, idx, t)
        e = E_ANON if write else E_ZERO
        for i in range(512):
            pte_set(ps, sl, pg, g, prm, s, i, e)
        sl[s, SL_HUGE] = 1
        vm[p, vi, 2] = vflags | VF_ANON_VMA
        return
    if s < 0:
        s = pte_walk_alloc(ps, hk, hv, sl, pg, fs, g, p, addr, t)
    i = (addr >> 12) & 511
    old = pg[s * 512 + i]
    if old == E_NONE:
        if anon and not shared:
            e = E_ANON if write else E_ZERO
        elif anon or (write and shared):
            e = E_FILE
        elif write:
            e = E_ANON
        else:
            fault_around(ps, sl, pg, g, prm, s, addr, vstart, vend)
            return
    elif write and (old == E_ZERO or (old == E_FILE and not shared)):
        sl[s, SL_HUGE] = 0  # a write on the huge zero page splits it (?)
        e = E_ANON
    else:
        return
    pte_set(ps, sl, pg, g, prm, s, i, e)
    if e == E_ANON:
        vm[p, vi, 2] = vflags | VF_ANON_VMA


@njit
def populate(ps, vm, hk, hv, sl, pg, fs, g, prm, p, lo, hi, mode, t):
    """GUP population (populate_vma_page_range / faultin_page), invisible to
    the page-fault tracepoints: fault every page of [lo, hi) in each VMA.

    mode 0: write if the VMA is private and writable (MAP_POPULATE, mlock);
    1: read (MADV_POPULATE_READ); 2: write (MADV_POPULATE_WRITE).
    """
    g[G_POPULATE] += 1
    a = lo
    while a < hi:
        vi = vma_find(vm, ps, p, a)
        if vi < 0:
            j = vma_first_after(vm, ps, p, a)
            if j >= ps[p, PS_NVMA] or vm[p, j, 0] >= hi:
                return
            a = vm[p, j, 0]
            continue
        vflags = vm[p, vi, 2]
        if mode == 0:
            write = (vflags & VF_WRITE) != 0 and (vflags & VF_SHARED) == 0
        else:
            write = mode == 2
        end = min(hi, vm[p, vi, 1])
        while a < end:
            do_fault(ps, vm, hk, hv, sl, pg, fs, g, prm, p, a, write, t)
            a += PAGE


# ----------------------------------------------------------------------------- zap and free

@njit
def tables_in_range(ps, hk, hv, sl, g, p, level, first, last):
    """Slots of p's level tables with index in [first, last], ascending by index.

    Probes the hash per index when the range is small, else scans the pool.
    """
    n = last - first + 1
    if n <= 0:
        return np.empty(0, np.int64)
    if n <= 2 * g[G_LIVE_SLOTS] + 64:
        out = np.empty(n, np.int64)
        m = 0
        for idx in range(first, last + 1):
            s = ht_get(hk, hv, tkey(level, p, idx))
            if s >= 0:
                out[m] = s
                m += 1
        return out[:m]
    keys = np.empty(g[G_LIVE_SLOTS] + 1, np.int64)
    out = np.empty(g[G_LIVE_SLOTS] + 1, np.int64)
    m = 0
    for s in range(g[G_SHW]):
        if sl[s, SL_KEY] != -1 and sl[s, SL_PROC] == p and sl[s, SL_LEVEL] == level:
            idx = sl[s, SL_IDX]
            if first <= idx <= last:
                keys[m] = idx
                out[m] = s
                m += 1
    order = np.argsort(keys[:m])
    return out[:m][order]


@njit
def zap_range(ps, hk, hv, sl, pg, fs, g, dq, prm, p, lo, hi, reclaim_pt, refcount_free, t):
    """Clear the PTEs of [lo, hi) inside one VMA (zap_pmd_range / zap_pte_range).

    A THP fully covered is zapped whole and its deposited table freed under
    every policy (zap_huge_pmd); partly covered it is split first
    (__split_huge_pmd).  reclaim_pt (upstream PT_RECLAIM, MADV_DONTNEED only):
    free a table when this VMA-clipped zap covers its whole 2 MiB
    (reclaim_pt_is_enabled).  refcount_free: refcount-like policies free (or
    queue) any table the zap leaves empty.
    """
    if hi <= lo:
        return
    slots = tables_in_range(ps, hk, hv, sl, g, p, LV_PTE, lo >> 21, (hi - 1) >> 21)
    for s in slots:
        rs = sl[s, SL_IDX] << 21
        a = max(lo, rs)
        b = min(hi, rs + PMD_SIZE)
        full = a == rs and b == rs + PMD_SIZE
        i0 = (a - rs) >> 12
        i1 = (b - rs + PAGE - 1) >> 12
        if sl[s, SL_HUGE] == 1:
            if full:
                if zap_ptes(ps, sl, pg, prm, s, i0, i1) > 0:  # all 512
                    empty_begin(g, sl, s, t)
                drop_pte_table(ps, hk, hv, sl, pg, fs, g, prm, s, t)
                continue
            sl[s, SL_HUGE] = 0
        if zap_ptes(ps, sl, pg, prm, s, i0, i1) > 0 and sl[s, SL_USED] == 0:
            empty_begin(g, sl, s, t)
        if sl[s, SL_USED] == 0:
            if reclaim_pt and full:
                drop_pte_table(ps, hk, hv, sl, pg, fs, g, prm, s, t)
            elif refcount_free and refcount_like(prm):
                release_empty(ps, hk, hv, sl, pg, fs, g, dq, prm, s, t)


@njit
def free_pgd_range(ps, hk, hv, sl, pg, fs, g, prm, p, addr, end, floor, ceiling, t):
    """free_pgd_range: free page tables of [addr, end) that no VMA outside
    [floor, ceiling) can still use.

    PTE tables: the first 2 MiB slot is skipped when it starts below floor,
    the last when ceiling falls inside it.  A PMD table (1 GiB) goes when its
    whole 1 GiB lies inside [floor, ceiling) (free_pmd_range), a PUD table
    (512 GiB) likewise (free_pud_range).
    """
    addr = addr & ~(PMD_SIZE - 1)
    if addr < floor:
        addr += PMD_SIZE
    ceiling_pmd = ceiling & ~(PMD_SIZE - 1)
    if ceiling_pmd == 0:
        return
    if end - 1 > ceiling_pmd - 1:
        end -= PMD_SIZE
    if addr > end - 1:
        return
    for s in tables_in_range(ps, hk, hv, sl, g, p, LV_PTE, addr >> 21, (end - 1) >> 21):
        drop_pte_table(ps, hk, hv, sl, pg, fs, g, prm, s, t)
    # free_pmd_range's tail, once per 1 GiB piece of [addr, end) with a PMD table
    for s in tables_in_range(ps, hk, hv, sl, g, p, LV_PMD, addr >> 30, (end - 1) >> 30):
        g0 = sl[s, SL_IDX] << 30
        if upper_free_ok(max(addr, g0), min(end, g0 + PUD_SIZE), floor, ceiling, PUD_SIZE):
            free_pmd_table(ps, hk, hv, sl, pg, fs, g, prm, s, t)
    for s in tables_in_range(ps, hk, hv, sl, g, p, LV_PUD, addr >> 39, (end - 1) >> 39):
        g0 = sl[s, SL_IDX] << 39
        if upper_free_ok(max(addr, g0), min(end, g0 + P4D_SIZE), floor, ceiling, P4D_SIZE):
            free_pud_table(ps, hk, hv, sl, pg, fs, g, prm, s, t)


@njit
def upper_free_ok(start, end, floor, ceiling, size):
    """The floor/ceiling test at the end of free_pmd_range / free_pud_range."""
    start = start & ~(size - 1)
    if start < floor:
        return False
    c = ceiling & ~(size - 1)
    if c == 0:
        return False
    return not (end - 1 > c - 1)


@njit
def free_pmd_table(ps, hk, hv, sl, pg, fs, g, prm, s, t):
    """Free a PMD table and any PTE table still under it (none when the model
    matches the kernel's invariants)."""
    if sl[s, SL_USED] > 0:
        p = sl[s, SL_PROC]
        i0 = sl[s, SL_IDX] << 9
        for c in tables_in_range(ps, hk, hv, sl, g, p, LV_PTE, i0, i0 + 511):
            tbl_free(ps, hk, hv, sl, pg, fs, g, prm, c, t, True)
    tbl_free(ps, hk, hv, sl, pg, fs, g, prm, s, t, False)


@njit
def free_pud_table(ps, hk, hv, sl, pg, fs, g, prm, s, t):
    """Free a PUD table and any PMD tables still under it."""
    if sl[s, SL_USED] > 0:
        p = sl[s, SL_PROC]
        i0 = sl[s, SL_IDX] << 9
        for c in tables_in_range(ps, hk, hv, sl, g, p, LV_PMD, i0, i0 + 511):
            free_pmd_table(ps, hk, hv, sl, pg, fs, g, prm, c, t)
    tbl_free(ps, hk, hv, sl, pg, fs, g, prm, s, t, False)


@njit
def do_munmap(ps, pf, vm, hk, hv, sl, pg, fs, g, dq, prm, p, lo, hi, t):
    """munmap / the unmap half of MAP_FIXED, mremap and brk shrink
    (do_vmi_munmap -> vms_clear_ptes: unmap_vmas then free_pgtables).

    floor = end of the surviving previous VMA, ceiling = start of the surviving
    next VMA; removed VMAs less than 2 MiB apart share one free_pgd_range.
    """
    if hi <= lo:
        return
    vma_split(vm, ps, p, lo)
    vma_split(vm, ps, p, hi)
    a = vma_first_after(vm, ps, p, lo)
    b = a
    while b < ps[p, PS_NVMA] and vm[p, b, 0] < hi:
        b += 1
    if a == b:
        return
    floor = vm[p, a - 1, 1] if a > 0 else 0
    ceiling = vm[p, b, 0] if b < ps[p, PS_NVMA] else NO_CEILING
    m = b - a
    starts = np.empty(m, np.int64)
    ends = np.empty(m, np.int64)
    for k in range(m):
        starts[k] = vm[p, a + k, 0]
        ends[k] = vm[p, a + k, 1]
    for k in range(m):
        vma_delete_at(vm, ps, p, a)
        ps[p, PS_VIRT] -= ends[k] - starts[k]
    for k in range(m):
        zap_range(ps, hk, hv, sl, pg, fs, g, dq, prm, p, starts[k], ends[k], False, True, t)
    k = 0
    while k < m:
        start = starts[k]
        while k + 1 < m and starts[k + 1] <= ends[k] + PMD_SIZE:
            k += 1
        nxt = starts[k + 1] if k + 1 < m else ceiling
        free_pgd_range(ps, hk, hv, sl, pg, fs, g, prm, p, start, ends[k], floor, nxt, t)
        k += 1


@njit
def teardown(ps, vm, hk, hv, sl, pg, fs, g, prm, p, t):
    """exit_mmap: zap everything, free every table (no refault markers)."""
    for s in range(g[G_SHW]):
        if sl[s, SL_KEY] != -1 and sl[s, SL_PROC] == p:
            tbl_free(ps, hk, hv, sl, pg, fs, g, prm, s, t, False)
    ps[p, PS_NVMA] = 0
    ps[p, PS_VIRT] = 0


@njit
def ideal_tables(sl, g, p):
    """Tables needed to map p's present pages: distinct 2 MiB regions with a
    present entry, plus their distinct 1 GiB (PMD) and 512 GiB (PUD) tables."""
    n = 0
    idxs = np.empty(g[G_LIVE_SLOTS] + 1, np.int64)
    for s in range(g[G_SHW]):
        if sl[s, SL_KEY] != -1 and sl[s, SL_PROC] == p and sl[s, SL_LEVEL] == 0 and sl[s, SL_USED] > 0:
            idxs[n] = sl[s, SL_IDX]
            n += 1
    if n == 0:
        return 0
    r = idxs[:n]
    return n + np.unique(r >> 9).shape[0] + np.unique(r >> 18).shape[0]


@njit
def snapshot_final(ps, sl, g, p):
    ps[p, PS_FIN_VIRT] = ps[p, PS_VIRT]
    ps[p, PS_FIN_RSS] = (ps[p, PS_ANON] + ps[p, PS_FILE]) * PAGE
    ps[p, PS_FIN_VMPTE] = (ps[p, PS_PTE] + ps[p, PS_PMD] + ps[p, PS_PUD]) * PAGE
    ps[p, PS_FIN_IDEAL] = ideal_tables(sl, g, p) * PAGE
    ps[p, PS_FIN_EMPTY] = ps[p, PS_EMPTY]


# ----------------------------------------------------------------------------- syscalls

@njit
def page_up(x):
    return (x + PAGE - 1) & ~(PAGE - 1)


@njit
def do_mmap(ps, pf, vm, hk, hv, sl, pg, fs, g, dq, prm, p, addr, length, prot, flags, fd, t):
    """mmap at its result address (mmap_region): replace what was there
    (MAP_FIXED), add the VMA, then populate for MAP_POPULATE / MAP_LOCKED."""
    lo = addr & ~(PAGE - 1)
    hi = min(page_up(addr + length), prm[PR_TOP])
    if hi <= lo:
        return
    do_munmap(ps, pf, vm, hk, hv, sl, pg, fs, g, dq, prm, p, lo, hi, t)
    vflags = 0
    if fd < 0 or (flags & 0x20) != 0:
        vflags |= VF_ANON
    if (flags & 0x01) != 0:
        vflags |= VF_SHARED
    if prot >= 0:
        vflags |= (VF_READ if (prot & 1) != 0 else 0) | (VF_WRITE if (prot & 2) != 0 else 0) | \
            (VF_EXEC if (prot & 4) != 0 else 0)
    if (flags & 0x2000) != 0:
        vflags |= VF_LOCKED
    if (flags & 0x4000) != 0:
        vflags |= VF_NORESERVE
    g[G_VMA_ID] += 1
    vflags |= g[G_VMA_ID] << ORIGIN_SHIFT
    vma_insert(vm, ps, p, lo, hi, vflags)
    vma_merge_around(vm, ps, p, lo, hi)
    if (flags & (0x8000 | 0x2000)) != 0 and prot > 0:
        populate(ps, vm, hk, hv, sl, pg, fs, g, prm, p, lo, hi, POP_VMA, t)


@njit
def madvise_flag_bits(advice):
    """(set, clear) VMA flag bits of the flag-only advices (madvise_vma_behavior's
    new_flags): DONTFORK/DOFORK, HUGEPAGE/NOHUGEPAGE, WIPEONFORK/KEEPONFORK."""
    set_bits = np.int64(0)
    clear_bits = np.int64(0)
    if advice == 10:
        set_bits = VF_DONTFORK
    elif advice == 11:
        clear_bits = VF_DONTFORK
    elif advice == 14:
        set_bits = VF_HUGE
        clear_bits = VF_NOHUGE
    elif advice == 15:
        set_bits = VF_NOHUGE
        clear_bits = VF_HUGE
    elif advice == 18:
        set_bits = VF_WIPEONFORK
    elif advice == 19:
        clear_bits = VF_WIPEONFORK
    return set_bits, clear_bits


@njit
def do_madvise(ps, pf, vm, hk, hv, sl, pg, fs, g, dq, prm, p, addr, length, advice, t):
    """madvise_vma_behavior per advice (see KERNEL.md sections 4, 5, 8)."""
    lo = addr & ~(PAGE - 1)
    hi = min(page_up(addr + length), prm[PR_TOP])
    if hi <= lo:
        return
    if advice == 4 or advice == 24 or advice == 9:  # DONTNEED, DONTNEED_LOCKED, REMOVE
        reclaim = advice != 9 and prm[PR_POLICY] == POL_PT_RECLAIM
        i = vma_first_after(vm, ps, p, lo)
        while i < ps[p, PS_NVMA] and vm[p, i, 0] < hi:
            a = max(lo, vm[p, i, 0])
            b = min(hi, vm[p, i, 1])
            zap_range(ps, hk, hv, sl, pg, fs, g, dq, prm, p, a, b, reclaim, True, t)
            i += 1
    elif advice in (10, 11, 14, 15, 18, 19):
        set_bits, clear_bits = madvise_flag_bits(advice)
        vma_set_flags(vm, ps, p, lo, hi, set_bits, clear_bits)
    elif advice == 22:
        populate(ps, vm, hk, hv, sl, pg, fs, g, prm, p, lo, hi, POP_READ, t)
    elif advice == 23:
        populate(ps, vm, hk, hv, sl, pg, fs, g, prm, p, lo, hi, POP_WRITE, t)
    # MADV_FREE (8) and the rest: no change to tables or RSS.


@njit
def move_page_tables(ps, hk, hv, sl, pg, fs, g, dq, prm, p, old, new, length, t):
    """move_page_tables: per extent, move the whole PTE table when the extent
    is an aligned 2 MiB and the destination has no table (move_normal_pmd /
    move_huge_pmd); otherwise allocate the destination table and move the
    PTEs one by one (move_ptes), leaving the source table (empty) behind."""
    o = old
    n = new
    end = old + length
    while o < end:
        ext = min(((o >> 21) + 1) * PMD_SIZE - o, end - o, ((n >> 21) + 1) * PMD_SIZE - n)
        s = ht_get(hk, hv, tkey(0, p, o >> 21))
        if s >= 0:
            upper_walk_alloc(ps, hk, hv, sl, pg, fs, g, p, n, t)
            d = ht_get(hk, hv, tkey(0, p, n >> 21))
            if ext == PMD_SIZE and d < 0:
                rekey_pte_table(ps, hk, hv, sl, pg, fs, g, prm, s, n >> 21, t)
            else:
                sl[s, SL_HUGE] = 0
                if d < 0:
                    d = tbl_alloc(ps, hk, hv, sl, pg, fs, g, p, LV_PTE, n >> 21, t)
                i0 = (o >> 12) & 511
                j0 = (n >> 12) & 511
                for k in range(ext >> 12):
                    e = pte_clear(ps, sl, pg, g, prm, s, i0 + k)
                    if e != E_NONE:
                        pte_set(ps, sl, pg, g, prm, d, j0 + k, e)
                if refcount_like(prm):
                    if sl[s, SL_USED] == 0:
                        release_empty(ps, hk, hv, sl, pg, fs, g, dq, prm, s, t)
                    if sl[d, SL_USED] == 0:
                        release_empty(ps, hk, hv, sl, pg, fs, g, dq, prm, d, t)
        o += ext
        n += ext


@njit
def rekey_pte_table(ps, hk, hv, sl, pg, fs, g, prm, s, new_idx, t):
    """A whole-table move: same table, new PMD entry (no VmPTE change)."""
    p = sl[s, SL_PROC]
    old_idx = sl[s, SL_IDX]
    ht_del(hk, hv, g, sl[s, SL_KEY])
    src_pmd = ht_get(hk, hv, tkey(1, p, old_idx >> 9))
    if src_pmd >= 0:
        sl[src_pmd, SL_USED] -= 1
    key = tkey(0, p, new_idx)
    sl[s, SL_KEY] = key
    sl[s, SL_IDX] = new_idx
    ht_put(hk, hv, g, key, s)
    dst_pmd = ht_get(hk, hv, tkey(1, p, new_idx >> 9))
    if dst_pmd >= 0:
        sl[dst_pmd, SL_USED] += 1
    if prm[PR_POLICY] == POL_ALL_LEVELS:
        prune_parents(ps, hk, hv, sl, pg, fs, g, prm, p, old_idx, t)


@njit
def do_mremap(ps, pf, vm, hk, hv, sl, pg, fs, g, dq, prm, p, old, old_len, new_len, flags, new, t):
    """mremap: shrink unmaps the tail; grow in place extends the VMA; a move
    unmaps the target (MREMAP_FIXED), moves the page tables, adds the new VMA,
    then unmaps the old range unless MREMAP_DONTUNMAP (move_vma)."""
    old = old & ~(PAGE - 1)
    old_len = page_up(old_len)
    new_len = page_up(new_len)
    top = prm[PR_TOP]
    if new == old:
        if new_len < old_len:
            do_munmap(ps, pf, vm, hk, hv, sl, pg, fs, g, dq, prm, p, old + new_len, old + old_len, t)
        elif new_len > old_len:
            vi = vma_find(vm, ps, p, old + old_len - 1)
            flags_v = vm[p, vi, 2] if vi >= 0 else VF_ANON | VF_WRITE
            do_munmap(ps, pf, vm, hk, hv, sl, pg, fs, g, dq, prm, p, old + old_len, min(old + new_len, top), t)
            if vi >= 0 and vm[p, vi, 1] == old + old_len:
                vm[p, vi, 1] = min(old + new_len, top)
                ps[p, PS_VIRT] += min(old + new_len, top) - (old + old_len)
            else:
                vma_insert(vm, ps, p, old + old_len, min(old + new_len, top), flags_v)
        return
    if new_len < old_len:
        do_munmap(ps, pf, vm, hk, hv, sl, pg, fs, g, dq, prm, p, old + new_len, old + old_len, t)
        old_len = new_len
    vi = vma_find(vm, ps, p, old)
    vflags = vm[p, vi, 2] if vi >= 0 else VF_ANON | VF_WRITE
    new_end = min(new + new_len, top)
    do_munmap(ps, pf, vm, hk, hv, sl, pg, fs, g, dq, prm, p, new, new_end, t)
    move_page_tables(ps, hk, hv, sl, pg, fs, g, dq, prm, p, old, new, min(old_len, new_end - new), t)
    vma_insert(vm, ps, p, new, new_end, vflags & ~VF_IMPLICIT)
    if (flags & 4) == 0:
        do_munmap(ps, pf, vm, hk, hv, sl, pg, fs, g, dq, prm, p, old, old + old_len, t)


@njit
def do_brk(ps, pf, vm, hk, hv, sl, pg, fs, g, dq, prm, p, req, ret, t):
    """brk: grow extends the heap VMA (do_brk_flags), shrink unmaps the tail.
    brk(0) and the first call of an attached process only learn the break."""
    cur = ps[p, PS_BRK]
    if req == 0 or cur < 0:
        if cur < 0 and req != 0:
            g[G_BRK_UNKNOWN] += 1
        ps[p, PS_BRK] = ret
        return
    old_end = page_up(cur)
    new_end = page_up(ret)
    if new_end > old_end:
        do_munmap(ps, pf, vm, hk, hv, sl, pg, fs, g, dq, prm, p, old_end, new_end, t)
        i = vma_find(vm, ps, p, old_end - 1)
        if i >= 0 and vm[p, i, 1] == old_end and (vm[p, i, 2] & VF_HEAP) != 0:
            vm[p, i, 1] = new_end
            ps[p, PS_VIRT] += new_end - old_end
        else:
            vma_insert(vm, ps, p, old_end, new_end, VF_ANON | VF_WRITE | VF_HEAP)
    elif new_end < old_end:
        do_munmap(ps, pf, vm, hk, hv, sl, pg, fs, g, dq, prm, p, new_end, old_end, t)
    ps[p, PS_BRK] = ret


@njit
def do_fork(ps, pf, vm, hk, hv, sl, pg, fs, g, prm, p, c, t):
    """dup_mmap + copy_page_range: the child gets the parent's VMAs (not
    MADV_DONTFORK; WIPEONFORK without anon_vma); tables are copied only for
    VMAs with an anon_vma (vma_needs_copy), one child table for every parent
    table in the VMA's range (copy_pmd_range allocates even for empty ones)."""
    n = ps[p, PS_NVMA]
    for i in range(n):
        f = vm[p, i, 2]
        if (f & VF_DONTFORK) != 0:
            continue
        cf = f & ~VF_LOCKED
        if (f & VF_WIPEONFORK) != 0:
            cf &= ~VF_ANON_VMA
        vma_insert(vm, ps, c, vm[p, i, 0], vm[p, i, 1], cf)
    for i in range(n):
        f = vm[p, i, 2]
        if (f & (VF_DONTFORK | VF_WIPEONFORK)) != 0 or (f & VF_ANON_VMA) == 0:
            continue
        vs = vm[p, i, 0]
        ve = vm[p, i, 1]
        for s in tables_in_range(ps, hk, hv, sl, g, p, LV_PUD, vs >> 39, (ve - 1) >> 39):
            if ht_get(hk, hv, tkey(2, c, sl[s, SL_IDX])) < 0:
                tbl_alloc(ps, hk, hv, sl, pg, fs, g, c, LV_PUD, sl[s, SL_IDX], t)
        for s in tables_in_range(ps, hk, hv, sl, g, p, LV_PMD, vs >> 30, (ve - 1) >> 30):
            if ht_get(hk, hv, tkey(1, c, sl[s, SL_IDX])) < 0:
                tbl_alloc(ps, hk, hv, sl, pg, fs, g, c, LV_PMD, sl[s, SL_IDX], t)
        for s in tables_in_range(ps, hk, hv, sl, g, p, LV_PTE, vs >> 21, (ve - 1) >> 21):
            idx = sl[s, SL_IDX]
            d = ht_get(hk, hv, tkey(0, c, idx))
            if d < 0:
                d = tbl_alloc(ps, hk, hv, sl, pg, fs, g, c, LV_PTE, idx, t)
            rs = idx << 21
            a = (max(vs, rs) - rs) >> 12
            b = (min(ve, rs + PMD_SIZE) - rs) >> 12
            for k in range(a, b):
                e = pg[s * 512 + k]
                if e != E_NONE:
                    pte_set(ps, sl, pg, g, prm, d, k, e)
            sl[d, SL_HUGE] = sl[s, SL_HUGE]


# ----------------------------------------------------------------------------- clock

@njit
def fire_scan(ps, pf, hk, hv, sl, pg, fs, g, prm, x):
    """Policy scan: a periodic walk frees every empty PTE table (512 entries
    examined per live table).  A scan with no event since the last one finds
    nothing to free and only adds the entries it examines."""
    if g[G_DIRTY] == 0:
        for p in range(ps.shape[0]):
            if ps[p, PS_ALIVE] == 1:
                ps[p, PS_SCAN] += 512 * ps[p, PS_PTE]
        return
    g[G_DIRTY] = 0
    for s in range(g[G_SHW]):
        if sl[s, SL_KEY] != -1 and sl[s, SL_LEVEL] == 0:
            p = sl[s, SL_PROC]
            ps[p, PS_SCAN] += 512
            if sl[s, SL_USED] == 0:
                touch(ps, pf, p, x)
                drop_pte_table(ps, hk, hv, sl, pg, fs, g, prm, s, x)


@njit
def fire_delayed(ps, pf, hk, hv, sl, pg, fs, g, dq, prm, x):
    """Policy delayed: free the queue head if it stayed empty for HOLD."""
    q = g[G_QHEAD]
    s = dq[q, 0]
    g[G_QHEAD] = q + 1
    if sl[s, SL_KEY] != -1 and sl[s, SL_SERIAL] == dq[q, 1] and sl[s, SL_SINCE] == dq[q, 2] \
            and sl[s, SL_USED] == 0:
        touch(ps, pf, sl[s, SL_PROC], x)
        drop_pte_table(ps, hk, hv, sl, pg, fs, g, prm, s, x)


@njit
def flush_pending(ps, ts, g):
    """Start and end rows of processes that began or ended at the previous instant."""
    if g[G_NPEND] == 0:
        return
    for p in range(ps.shape[0]):
        if ps[p, PS_PEND_START] == 1:
            emit_row(ps, ts, g, p, ps[p, PS_START])
            ps[p, PS_PEND_START] = 0
        if ps[p, PS_PEND_END] == 1:
            emit_row(ps, ts, g, p, ps[p, PS_END])
            ps[p, PS_PEND_END] = 0
    g[G_NPEND] = 0


@njit
def occupancy_snapshot(sl, g, oc, t):
    """One occupancy row per (process, 1 GiB region) with a live PTE table, at t.

    Walks the slot pool once (O(pool high-water), no hash lookups): regions are
    summed over runs of consecutive slots of one region (slots are mostly
    allocated in address order), and only if runs repeat a region are they
    sorted and merged.  Rows come out sorted by process, then region.
    Rows without room are dropped and counted in G_OVERFLOW (the engine
    reserves one row per live PMD table, which bounds the regions).
    """
    cap = g[G_LIVE_SLOTS] + 1
    key = np.empty(cap, np.int64)
    acc = np.empty((cap, 4), np.int64)
    m = -1
    for s in range(g[G_SHW]):
        if sl[s, SL_KEY] == -1 or sl[s, SL_LEVEL] != 0:
            continue
        k = (sl[s, SL_PROC] << 27) | (sl[s, SL_IDX] >> 9)  # la57: a region index has at most 26 bits
        if m < 0 or key[m] != k:
            m += 1
            key[m] = k
            acc[m, :] = 0
        u = sl[s, SL_USED]
        acc[m, 0] += 1
        acc[m, 1] += u == 0
        acc[m, 2] += u
        acc[m, 3] += u == 512
    m += 1
    if m == 0:
        return
    ordered = True
    for i in range(1, m):
        if key[i] <= key[i - 1]:
            ordered = False
            break
    if not ordered:
        order = np.argsort(key[:m], kind="mergesort")
        key = key[:m][order]
        acc = acc[:m][order]
        w = 0
        for i in range(1, m):
            if key[i] == key[w]:
                acc[w, :] += acc[i, :]
            else:
                w += 1
                key[w] = key[i]
                acc[w, :] = acc[i, :]
        m = w + 1
    for i in range(m):
        r = g[G_NOC]
        if r >= oc.shape[0]:
            g[G_OVERFLOW] += 1
            continue
        oc[r, OC_PROC] = key[i] >> 27
        oc[r, OC_T] = t
        oc[r, OC_REGION] = (key[i] & ((1 << 27) - 1)) << 30
        oc[r, OC_PTE] = acc[i, 0]
        oc[r, OC_EMPTY] = acc[i, 1]
        oc[r, OC_LIVE] = acc[i, 2]
        oc[r, OC_FULL] = acc[i, 3]
        g[G_NOC] = r + 1


@njit
def snapshots_due(g, prm, t):
    """Occupancy snapshots `advance(t)` will take (snapshot ticks T < t not yet passed)."""
    every = prm[PR_SNAP_EVERY]
    if every == 0 or g[G_INIT] == 0 or t <= g[G_NOW] or g[G_NEXT_TICK] >= t:
        return 0
    step = every * prm[PR_TICK]
    first = (g[G_NEXT_TICK] + step - 1) // step * step
    if first >= t:
        return 0
    return (t - 1 - first) // step + 1


@njit
def regions_bound(ps):
    """Upper bound of the occupancy rows of one snapshot: live PMD tables (every
    live PTE table has its PMD table, and a region is one PMD table's span)."""
    n = 1
    for p in range(ps.shape[0]):
        n += ps[p, PS_PMD]
    return n


@njit
def advance(ps, pf, hk, hv, sl, pg, fs, g, dq, ts, oc, prm, t):
    """Move the clock to t (> now): timers at X <= t fire before events at X;
    timeseries ticks at T < t are emitted after every event at T (with an
    occupancy snapshot at every PR_SNAP_EVERY-th tick).  Timer frees are no
    event's: G_CUR_ROW is -1 until the next event is applied."""
    g[G_CUR_ROW] = -1
    flush_pending(ps, ts, g)
    pol = prm[PR_POLICY]
    big = np.int64(1) << 62
    while True:
        xt = big
        if pol == POL_SCAN:
            xt = g[G_NEXT_SCAN]
        elif pol == POL_DELAYED and g[G_QHEAD] < g[G_QTAIL]:
            xt = dq[g[G_QHEAD], 2] + prm[PR_HOLD]
        xk = g[G_NEXT_TICK]
        if xt <= xk and xt <= t:
            if pol == POL_SCAN:
                fire_scan(ps, pf, hk, hv, sl, pg, fs, g, prm, xt)
                g[G_NEXT_SCAN] += prm[PR_SCAN]
            else:
                fire_delayed(ps, pf, hk, hv, sl, pg, fs, g, dq, prm, xt)
        elif xk < t:
            for p in range(ps.shape[0]):
                if ps[p, PS_ALIVE] == 1 and ps[p, PS_START] < xk:
                    emit_row(ps, ts, g, p, xk)
            if prm[PR_SNAP_EVERY] > 0 and (xk // prm[PR_TICK]) % prm[PR_SNAP_EVERY] == 0:
                occupancy_snapshot(sl, g, oc, xk)
            g[G_NEXT_TICK] += prm[PR_TICK]
        else:
            break
    g[G_NOW] = t


@njit
def rows_needed(ps, g, prm, t):
    """Timeseries rows `advance(t)` may emit."""
    n = g[G_NPEND]
    if g[G_INIT] == 1 and t > g[G_NOW] and g[G_NEXT_TICK] < t:
        n += ((t - 1 - g[G_NEXT_TICK]) // prm[PR_TICK] + 1) * g[G_NLIVE]
    return n


# ----------------------------------------------------------------------------- driver

@njit
def range_tables(lo, hi):
    """Upper bound of the tables a populate/move over [lo, hi) may allocate."""
    if hi <= lo:
        return 3
    return ((hi - 1) >> 21) - (lo >> 21) + ((hi - 1) >> 30) - (lo >> 30) + ((hi - 1) >> 39) - (lo >> 39) + 6


@njit
def capacity_needed(ps, vm, sl, fs, g, dq, ts, hk, prm, oc_cap, k, p, c, addr, ln, flags, advice, new_addr,
                    new_len, t):
    """(code, amount) of the first array too small for the next event, or (0, 0).
    oc_cap: rows of oc (an int: each array argument of a call costs ~30 ns)."""
    need_rows = rows_needed(ps, g, prm, t) + 2
    if g[G_NROWS] + need_rows > ts.shape[0]:
        return NEED_ROWS, need_rows
    if g[G_NEF] + EF_PER_EVENT > ef_capacity(g):
        return NEED_EFFECTS, g[G_NEF] + EF_PER_EVENT
    snaps = snapshots_due(g, prm, t)
    if snaps > 0:
        need_oc = snaps * regions_bound(ps)
        if g[G_NOC] + need_oc > oc_cap:
            return NEED_OCC, need_oc
    slots = 3
    if k == K_FORK:
        slots = ps[p, PS_PTE] + ps[p, PS_PMD] + ps[p, PS_PUD] + 3
    elif k == K_MMAP and (flags & (0x8000 | 0x2000)) != 0:
        slots = range_tables(addr, addr + ln)
    elif k == K_MADVISE and (advice == 22 or advice == 23):
        slots = range_tables(addr, addr + ln)
    elif k == K_MREMAP:
        slots = range_tables(new_addr, new_addr + max(ln, new_len))
    free_slots = g[G_FSTOP] + sl.shape[0] - g[G_SHW]
    if slots > free_slots:
        return NEED_SLOTS, slots - free_slots
    if 2 * (g[G_HCOUNT] + g[G_LIVE_SLOTS] + 2 * slots) > hk.shape[0]:
        return NEED_HASH, g[G_HCOUNT] + g[G_LIVE_SLOTS] + 2 * slots
    nv = ps[p, PS_NVMA] + 4
    if k == K_FORK:
        nv = max(nv, ps[c, PS_NVMA] + ps[p, PS_NVMA] + 4)
    if nv > vm.shape[1]:
        return NEED_VMAS, nv
    if prm[PR_POLICY] == POL_DELAYED:
        qn = g[G_LIVE_SLOTS] + 2 * slots + 8
        if g[G_QTAIL] + qn > dq.shape[0]:
            h = g[G_QHEAD]
            m = g[G_QTAIL] - h
            for q in range(m):
                dq[q, 0] = dq[h + q, 0]
                dq[q, 1] = dq[h + q, 1]
                dq[q, 2] = dq[h + q, 2]
            g[G_QHEAD] = 0
            g[G_QTAIL] = m
            if m + qn > dq.shape[0]:
                return NEED_QUEUE, m + qn
    return NEED_NONE, 0


@njit
def init_clock(g, prm, t):
    g[G_INIT] = 1
    g[G_NOW] = t
    g[G_NEXT_TICK] = (t // prm[PR_TICK] + 1) * prm[PR_TICK]
    if prm[PR_SCAN] > 0:
        g[G_NEXT_SCAN] = (t // prm[PR_SCAN] + 1) * prm[PR_SCAN]


@njit
def apply_event(ps, pf, vm, hk, hv, sl, pg, fs, g, dq, prm, k, p, c, t, addr, ln, prot, flags, fd,
                advice, ecode, new_addr, new_len, ret):
    """Apply one event to process p's mm."""
    if ps[p, PS_STARTED] == 0:
        start_proc(ps, pf, g, p, t)
    elif ps[p, PS_ALIVE] == 0:
        g[G_AFTER_EXIT] += 1
        return
    touch(ps, pf, p, t)
    g[G_DIRTY] = 1
    ps[p, PS_EVENTS] += 1
    if k == K_FAULT:
        if addr < 0 or addr >= prm[PR_TOP]:
            g[G_BEYOND_TOP] += 1
        else:
            do_fault(ps, vm, hk, hv, sl, pg, fs, g, prm, p, addr, ecode >= 0 and (ecode & 2) != 0, t)
    elif k == K_MMAP:
        do_mmap(ps, pf, vm, hk, hv, sl, pg, fs, g, dq, prm, p, addr, ln, prot, flags, fd, t)
    elif k == K_MUNMAP:
        lo = addr & ~(PAGE - 1)
        do_munmap(ps, pf, vm, hk, hv, sl, pg, fs, g, dq, prm, p, lo, min(page_up(addr + ln), prm[PR_TOP]), t)
    elif k == K_MREMAP:
        do_mremap(ps, pf, vm, hk, hv, sl, pg, fs, g, dq, prm, p, addr, ln, new_len, flags, new_addr, t)
    elif k == K_BRK:
        do_brk(ps, pf, vm, hk, hv, sl, pg, fs, g, dq, prm, p, addr, ret, t)
    elif k == K_MADVISE:
        do_madvise(ps, pf, vm, hk, hv, sl, pg, fs, g, dq, prm, p, addr, ln, advice, t)
    elif k == K_FORK:
        if c >= 0 and ps[c, PS_STARTED] == 0:
            start_proc(ps, pf, g, c, t)
            ps[c, PS_EVENTS] += 1
            do_fork(ps, pf, vm, hk, hv, sl, pg, fs, g, prm, p, c, t)
            update_peaks(ps, c)
        elif c >= 0:
            g[G_AFTER_EXIT] += 1
    elif k == K_EXEC:
        teardown(ps, vm, hk, hv, sl, pg, fs, g, prm, p, t)
        ps[p, PS_GEN] += 1
        ps[p, PS_BRK] = -1
    elif k == K_EXIT:
        snapshot_final(ps, sl, g, p)
        update_peaks(ps, p)
        teardown(ps, vm, hk, hv, sl, pg, fs, g, prm, p, t)
        ps[p, PS_ALIVE] = 0
        ps[p, PS_END] = t
        ps[p, PS_PEND_END] = 1
        g[G_NPEND] += 1
        g[G_NLIVE] -= 1
        return
    elif k == K_MPROTECT:
        do_mprotect(vm, ps, p, addr, ln, prot)
    # clone changes nothing the model counts.
    update_peaks(ps, p)


@njit(inline="always")
def quiet_until(g, dq, prm):
    """Latest time the clock may move to while `advance` would only set G_NOW:
    no pending start/end row, no tick row due (rows are emitted for ticks < t),
    no scan or delayed free due (timers at X <= t fire).  Faults at or before
    it need no clock work.  Fast faults change none of its inputs."""
    if g[G_NPEND] != 0:
        return g[G_NOW]
    h = g[G_NEXT_TICK]
    pol = prm[PR_POLICY]
    if pol == POL_SCAN:
        h = min(h, g[G_NEXT_SCAN] - 1)
    elif pol == POL_DELAYED and g[G_QHEAD] < g[G_QTAIL]:
        h = min(h, dq[g[G_QHEAD], 2] + prm[PR_HOLD] - 1)
    return max(h, g[G_NOW])


@njit(inline="always")
def fast_fault_run(i, n, t_a, kind_a, proc_a, addr_a, ec_a, row_a, ps, pf, vm, hk, hv, sl, pg, fs, g, dq, prm):
    """The hot path: consecutive faults in private anonymous VMAs (no THP),
    with no clock work due.  Returns the index of the first event it did not
    handle (i when the generic path must take it).

    Same effect as apply_event -> do_fault for each of them
    (do_anonymous_page: zero page on read, new page on write; do_wp_page: a
    write on the zero page gets a new page), applied per segment of one
    process, one PTE table and one VMA: the table and the VMA are looked up
    once per segment, and the counters pte_set would move per entry are
    added once at its end.  A missing PTE table (and its PMD/PUD) is allocated
    as do_fault does, after the same touch, when the pool and the hash have
    room for three tables (else the generic path grows them first).  Later
    faults of the segment allocate nothing and VmPTE does not move, so the
    VmPTE time integral needs no further touch; RSS only grows, so the peaks
    are taken at the end of a segment.  Page-table effects (ef) happen only at
    a segment's first fault: the allocation, or the refill of an empty table.
    """
    if g[G_INIT] == 0:
        return i
    horizon = quiet_until(g, dq, prm)
    top = prm[PR_TOP]
    refc = refcount_like(prm)
    j = i
    while j < n:
        p = np.int64(proc_a[j])
        addr = addr_a[j]
        if kind_a[j] != K_FAULT or t_a[j] > horizon or addr < 0 or addr >= top:
            break
        if ps[p, PS_STARTED] == 0 or ps[p, PS_ALIVE] == 0:
            break
        s = ht_get(hk, hv, tkey(0, p, addr >> 21))
        if s >= 0 and sl[s, SL_HUGE] != 0:
            break
        vi = vma_find(vm, ps, p, addr)
        if vi < 0:
            break
        vflags = vm[p, vi, 2]
        if (vflags & VF_ANON) == 0 or (vflags & VF_SHARED) != 0:
            break
        if s < 0:
            # first fault in this 2 MiB: apply_event's touch, then do_fault's pte_walk_alloc
            if thp_allowed(prm, vm[p, vi, 0], vm[p, vi, 1], vflags, addr) or not room_for_walk(sl, g, hk):
                break
            touch(ps, pf, p, t_a[j])
            g[G_CUR_ROW] = row_a[j]
            g[G_CUR_T] = t_a[j]
            g[G_CUR_KIND] = K_FAULT
            s = pte_walk_alloc(ps, hk, hv, sl, pg, fs, g, p, addr, t_a[j])
        tlo = (addr >> 21) << 21
        lo = max(vm[p, vi, 0], tlo)
        hi = min(vm[p, vi, 1], tlo + PMD_SIZE, top)
        base = s * 512
        j0 = j
        added = 0
        new_anon = 0
        while j < n:
            a = addr_a[j]
            if kind_a[j] != K_FAULT or proc_a[j] != p or a < lo or a >= hi or t_a[j] > horizon:
                break
            e = ec_a[j]
            x = base + ((a >> 12) & 511)
            old = pg[x]
            if e >= 0 and (e & 2) != 0:
                if old == E_NONE:
                    added += 1
                    new_anon += 1
                    pg[x] = E_ANON
                elif old == E_ZERO:
                    new_anon += 1
                    pg[x] = E_ANON
            elif old == E_NONE:
                added += 1
                pg[x] = E_ZERO
            j += 1
        fast_fault_commit(ps, vm, sl, g, p, vi, vflags, s, added, new_anon, refc, j - j0, t_a[j0], row_a[j0],
                          t_a[j - 1])
    return j


@njit(inline="always")
def room_for_walk(sl, g, hk):
    """capacity_needed's slot, hash and effects tests for a fault (3 tables at most)."""
    return g[G_FSTOP] + sl.shape[0] - g[G_SHW] >= 3 and 2 * (g[G_HCOUNT] + g[G_LIVE_SLOTS] + 6) <= hk.shape[0] \
        and g[G_NEF] + EF_PER_EVENT <= ef_capacity(g)


@njit(inline="always")
def fast_fault_commit(ps, vm, sl, g, p, vi, vflags, s, added, new_anon, refc, nev, t_first, row_first, t_last):
    """The counters of one fast segment, as pte_set / apply_event would have left them.
    An empty table is refilled by the segment's first fault (t_first, row_first)."""
    if added > 0:
        if sl[s, SL_USED] == 0:
            ps[p, PS_EMPTY] -= 1
            sl[s, SL_SINCE] = -1  # delayed: a refault reuses the table
            empty_end(g, sl, s, t_first, row_first)
        sl[s, SL_USED] += added
        if refc:
            ps[p, PS_ATOMICS] += 2 * added
    if new_anon > 0:
        ps[p, PS_ANON] += new_anon
        vm[p, vi, 2] = vflags | VF_ANON_VMA
    ps[p, PS_EVENTS] += nev
    if t_last > g[G_NOW]:
        g[G_NOW] = t_last
    g[G_DIRTY] = 1
    update_peaks(ps, p)


@njit(nogil=True)
def run_events(i, n, t_a, kind_a, proc_a, addr_a, len_a, prot_a, flags_a, fd_a, adv_a, ec_a,
               naddr_a, nlen_a, ret_a, child_a, row_a, prm, ps, pf, vm, hk, hv, sl, pg, fs, g, dq, ts, oc):
    """Replay events i..n-1.  Returns (next index, NEED_* code, amount).
    row_a: each event's row in the events input (ef's EF_ROW).

    Runs of faults go through fast_fault_run (prm[PR_FAST] = 1), everything
    else, one event at a time, through capacity_needed, advance and
    apply_event.  Releases the GIL: the engine runs policies in threads."""
    fast = prm[PR_FAST] != 0
    while i < n:
        if fast and kind_a[i] == K_FAULT:
            j = fast_fault_run(i, n, t_a, kind_a, proc_a, addr_a, ec_a, row_a, ps, pf, vm, hk, hv, sl, pg, fs, g,
                               dq, prm)
            if j > i:
                i = j
                continue
        t = t_a[i]
        k = kind_a[i]
        p = np.int64(proc_a[i])  # int64 like sl[s, SL_PROC]: one specialization of the callees
        c = np.int64(child_a[i])
        code, amount = capacity_needed(ps, vm, sl, fs, g, dq, ts, hk, prm, oc.shape[0], k, p, c,
                                       addr_a[i], len_a[i], flags_a[i], adv_a[i], naddr_a[i], nlen_a[i], t)
        if code != NEED_NONE:
            return i, code, amount
        if g[G_INIT] == 0:
            init_clock(g, prm, t)
        elif t > g[G_NOW]:
            if t <= quiet_until(g, dq, prm):  # nothing due: advance would only set G_NOW
                g[G_NOW] = t
            else:
                advance(ps, pf, hk, hv, sl, pg, fs, g, dq, ts, oc, prm, t)
        g[G_CUR_ROW] = row_a[i]
        g[G_CUR_T] = t
        g[G_CUR_KIND] = k
        apply_event(ps, pf, vm, hk, hv, sl, pg, fs, g, dq, prm, k, p, c, t, addr_a[i], len_a[i], prot_a[i],
                    flags_a[i], fd_a[i], adv_a[i], ec_a[i], naddr_a[i], nlen_a[i], ret_a[i])
        i += 1
    return i, NEED_NONE, 0


@njit
def finish(ps, pf, sl, g, ts, oc, prm, t_end):
    """Trace end: pending start/end rows, then final state and an end row for
    every process still alive; tables still empty end their empty time at
    t_end; the last occupancy snapshot (PR_SNAP_END)."""
    flush_pending(ps, ts, g)
    for p in range(ps.shape[0]):
        if ps[p, PS_ALIVE] == 1:
            touch(ps, pf, p, t_end)
            snapshot_final(ps, sl, g, p)
            ps[p, PS_END] = t_end
            emit_row(ps, ts, g, p, t_end)
    for s in range(g[G_SHW]):
        if sl[s, SL_KEY] != -1 and sl[s, SL_LEVEL] == 0:
            empty_end(g, sl, s, t_end, -1)
    if prm[PR_SNAP_END] != 0:
        occupancy_snapshot(sl, g, oc, t_end)
