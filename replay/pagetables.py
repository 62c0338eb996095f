"""Page tables as pool slots (sl, pg, fs) found through the hash map (hk/hv).

Allocation and free of PTE, PMD and PUD tables (with refault markers and the policies'
frees of an emptied table: refcount, delayed, all_levels), PTE entries and the RSS they
count, the zap of a range (zap_pmd_range / zap_pte_range, with pt_reclaim), free_pgd_range
with its floor and ceiling, and exit_mmap's teardown.
"""
import numpy as np

from ptreplay.replay.jit import njit
from ptreplay.replay.layout import (EF_ALLOC, EF_FREED, EF_UPPER, E_ANON, E_FILE, E_NONE, G_CUR_ROW, G_CUR_T,
                                    G_FSTOP, G_LIVE_SLOTS, G_QTAIL, G_SERIAL, G_SHW, LV_PMD, LV_PTE, LV_PUD,
                                    P4D_SIZE, PAGE, PMD_SIZE, POL_ALL_LEVELS, POL_DELAYED, POL_REFCOUNT, PR_POLICY,
                                    PS_ALLOC, PS_ANON, PS_ATOMICS, PS_EMPTY, PS_FILE, PS_FREED, PS_GEN, PS_NVMA,
                                    PS_PMD, PS_PTE, PS_PUD, PS_REFAULTS, PS_VIRT, PUD_SIZE, REFAULT_NS, SL_EROW,
                                    SL_HUGE, SL_IDX, SL_KEY, SL_LEVEL, SL_PROC, SL_SERIAL, SL_SINCE, SL_USED,
                                    ht_del, ht_get, ht_put, mkey, tkey)
from ptreplay.replay.measure import ef_at, ef_row, empty_begin, empty_end


# ----------------------------------------------------------------------------- policy

@njit(inline="always")
def refcount_like(prm):
    """See docs/MODEL.md#policy-refcount."""
    pol = prm[PR_POLICY]
    return pol == POL_REFCOUNT or pol == POL_DELAYED or pol == POL_ALL_LEVELS


# ----------------------------------------------------------------------------- tables

@njit
def tbl_alloc(ps, hk, hv, sl, pg, fs, g, p, level, idx, t):
    """Allocate one table (__pte_alloc / __pmd_alloc / __pud_alloc): VmPTE += 4 KiB.

    See docs/MODEL.md#fault-walk-alloc."""
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

    See docs/MODEL.md#vmpte-accounting.
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
    """Policy all_levels: free the PMD table, then the PUD table, left without children.

    See docs/MODEL.md#policy-all-levels."""
    pmd = ht_get(hk, hv, tkey(1, p, idx >> 9))
    if pmd >= 0 and sl[pmd, SL_USED] == 0:
        tbl_free(ps, hk, hv, sl, pg, fs, g, prm, pmd, t, False)
    pud = ht_get(hk, hv, tkey(2, p, idx >> 18))
    if pud >= 0 and sl[pud, SL_USED] == 0:
        tbl_free(ps, hk, hv, sl, pg, fs, g, prm, pud, t, False)


@njit
def drop_pte_table(ps, hk, hv, sl, pg, fs, g, prm, s, t):
    """Free a PTE table of a live mm (any cause); all_levels then prunes its parents.

    See docs/MODEL.md#free-pgtables."""
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

    See docs/MODEL.md#policy-refcount.
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
    """PTE table for addr, allocating missing PUD/PMD/PTE tables (__handle_mm_fault).

    See docs/MODEL.md#fault-walk-alloc."""
    idx = addr >> 21
    s = ht_get(hk, hv, tkey(0, p, idx))
    if s >= 0:
        return s
    upper_walk_alloc(ps, hk, hv, sl, pg, fs, g, p, addr, t)
    return tbl_alloc(ps, hk, hv, sl, pg, fs, g, p, LV_PTE, idx, t)


@njit
def upper_walk_alloc(ps, hk, hv, sl, pg, fs, g, p, addr, t):
    """PUD and PMD tables for addr (__pud_alloc, __pmd_alloc).

    See docs/MODEL.md#fault-walk-alloc."""
    if ht_get(hk, hv, tkey(2, p, addr >> 39)) < 0:
        tbl_alloc(ps, hk, hv, sl, pg, fs, g, p, LV_PUD, addr >> 39, t)
    if ht_get(hk, hv, tkey(1, p, addr >> 30)) < 0:
        tbl_alloc(ps, hk, hv, sl, pg, fs, g, p, LV_PMD, addr >> 30, t)


@njit(inline="always")
def add_entry_rss(ps, p, e):
    """See docs/MODEL.md#rss-counters."""
    if e == E_ANON:
        ps[p, PS_ANON] += 1
    elif e == E_FILE:
        ps[p, PS_FILE] += 1


@njit(inline="always")
def drop_entry_rss(ps, p, e):
    """See docs/MODEL.md#rss-counters."""
    if e == E_ANON:
        ps[p, PS_ANON] -= 1
    elif e == E_FILE:
        ps[p, PS_FILE] -= 1


@njit(inline="always")
def pte_set(ps, sl, pg, g, prm, s, i, e):
    """Install or replace entry i of table s (set_pte_at); RSS follows the page kind.

    See docs/MODEL.md#rss-counters."""
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
    """Clear entry i of table s (ptep_get_and_clear in zap_pte_range); returns the old kind.

    See docs/MODEL.md#rss-counters."""
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
    emptied: empty_begin).

    See docs/MODEL.md#zap-pte-range."""
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


# ----------------------------------------------------------------------------- zap and free

@njit
def tables_in_range(ps, hk, hv, sl, g, p, level, first, last):
    """Slots of p's level tables with index in [first, last], ascending by index.

    Probes the hash per index when the range is small, else scans the pool.

    See docs/MODEL.md#zap-pte-range.
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

    See docs/MODEL.md#pt-reclaim-zap.
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

    See docs/MODEL.md#free-pgtables.
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
    """The floor/ceiling test at the end of free_pmd_range / free_pud_range.

    See docs/MODEL.md#free-pgtables."""
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
    matches the kernel's invariants).

    See docs/MODEL.md#free-pgtables."""
    if sl[s, SL_USED] > 0:
        p = sl[s, SL_PROC]
        i0 = sl[s, SL_IDX] << 9
        for c in tables_in_range(ps, hk, hv, sl, g, p, LV_PTE, i0, i0 + 511):
            tbl_free(ps, hk, hv, sl, pg, fs, g, prm, c, t, True)
    tbl_free(ps, hk, hv, sl, pg, fs, g, prm, s, t, False)


@njit
def free_pud_table(ps, hk, hv, sl, pg, fs, g, prm, s, t):
    """Free a PUD table and any PMD tables still under it.

    See docs/MODEL.md#free-pgtables."""
    if sl[s, SL_USED] > 0:
        p = sl[s, SL_PROC]
        i0 = sl[s, SL_IDX] << 9
        for c in tables_in_range(ps, hk, hv, sl, g, p, LV_PMD, i0, i0 + 511):
            free_pmd_table(ps, hk, hv, sl, pg, fs, g, prm, c, t)
    tbl_free(ps, hk, hv, sl, pg, fs, g, prm, s, t, False)


@njit
def teardown(ps, vm, hk, hv, sl, pg, fs, g, prm, p, t):
    """exit_mmap: zap everything, free every table (no refault markers).

    See docs/MODEL.md#exit."""
    for s in own_tables(ps, vm, hk, hv, sl, g, p):
        if sl[s, SL_KEY] != -1 and sl[s, SL_PROC] == p:
            tbl_free(ps, hk, hv, sl, pg, fs, g, prm, s, t, False)
    ps[p, PS_NVMA] = 0
    ps[p, PS_VIRT] = 0


@njit
def own_tables(ps, vm, hk, hv, sl, g, p):
    """Slots of all of p's tables: looked up in the hash over the regions its VMAs span (PTE,
    then PMD, then PUD tables) when that is cheaper than a walk of the pool and finds all
    PS_PTE + PS_PMD + PS_PUD of them (an empty table may outlive its VMA); else the pool walk
    (slot order).  An exit then costs O(p's regions), not O(every process's tables); the order
    of the frees changes no count.

    See docs/MODEL.md#exit."""
    want = ps[p, PS_PTE] + ps[p, PS_PMD] + ps[p, PS_PUD]
    out = np.empty(want, np.int64)
    m = 0
    budget = g[G_SHW] // 4 + 64  # a hash probe costs a few slot visits of the walk
    for level in range(3):
        shift = 21 + 9 * level
        last = np.int64(-1)
        for i in range(ps[p, PS_NVMA]):
            lo = max(vm[p, i, 0] >> shift, last + 1)
            hi = (vm[p, i, 1] - 1) >> shift
            if hi < lo:
                continue
            budget -= hi - lo + 1
            if budget < 0:
                m = -1
                break
            for idx in range(lo, hi + 1):
                s = ht_get(hk, hv, tkey(level, p, idx))
                if s >= 0:
                    if m < want:
                        out[m] = s
                    m += 1
            last = hi
        if m < 0:
            break
    if m == want:
        return out
    out = np.empty(g[G_LIVE_SLOTS], np.int64)
    m = 0
    for s in range(g[G_SHW]):
        if sl[s, SL_KEY] != -1 and sl[s, SL_PROC] == p:
            out[m] = s
            m += 1
    return out[:m]
