"""Compiled replay kernels: plain numpy arrays and scalars in and out.

No Arrow, pandas, logging or I/O here, so `ptreplay --help` compiles nothing
and every kernel can run as plain Python under NUMBA_DISABLE_JIT=1.

This module is the driver (run_events, finish), the engine's entry points; the engine and
replay.policies read the array layout from replay.layout.  The kernels live in modules by
concept, each importing only modules above it in this list:

``layout``      the state arrays (described there): fields, codes, the hash map
``measure``     what the replay measures: ts, oc and ef rows, peaks, final values
``vma``         each process's VMAs: find, insert, split, merge, mprotect, implicit VMAs
``pagetables``  page tables: alloc/free, PTE entries, zap, free_pgd_range, teardown
``clock``       advance: timers (scan, delayed), timeseries ticks, occupancy snapshots
``faults``      one page fault; GUP population
``syscalls``    munmap, mmap, madvise, mremap, brk, fork
``snapshot``    attach mode: the start state (VMAs, pages, inherited empty tables)
``kernels``     this module: one event at a time or a run of faults at once; the trace end

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

Every model rule cites the kernel function and source file it imitates and points at its
section of docs/MODEL.md (the rule, the kernel version read, how it was verified here).
"""
import numpy as np

from ptreplay.replay.jit import njit
from ptreplay.replay.layout import (EF_PER_EVENT, PS_KNOWN, VF_PROT_KNOWN, VF_READ, VF_WRITE, E_ANON, E_NONE, E_ZERO, G_AFTER_EXIT, G_BEYOND_TOP, G_CUR_KIND,
                                    G_CUR_ROW, G_CUR_T, G_DIRTY, G_FSTOP, G_HCOUNT, G_INIT, G_LIVE_SLOTS, G_NEF,
                                    G_NLIVE, G_NOC, G_NOW, G_NPEND, G_NROWS, G_QHEAD, G_QTAIL, G_SHW, K_BRK,
                                    K_EXEC, K_EXIT, K_FAULT, K_FORK, K_MADVISE, K_MMAP, K_MPROTECT, K_MREMAP,
                                    K_MUNMAP, K_SNAP_BRK, K_SNAP_PAGES, K_SNAP_TABLES, K_SNAP_VMA, G_SNAP_SHORT,
                                    NEED_EFFECTS, NEED_HASH, NEED_NONE, NEED_OCC, NEED_QUEUE, NEED_ROWS,
                                    NEED_SLOTS, NEED_VMAS, PAGE, PMD_SIZE, POL_DELAYED, PR_FAST, PR_POLICY,
                                    PR_SNAP_END, PR_TOP, PS_ALIVE, PS_ANON, PS_ATOMICS, PS_BRK, PS_EMPTY, PS_END,
                                    PS_EVENTS, PS_GEN, PS_LAST, PS_LIVE_AT, PS_LIVE_POS, PS_NVMA, PS_PEND_END,
                                    PS_PEND_START, PS_PMD,
                                    PS_PTE, PS_PUD, PS_START, PS_STARTED, SL_HUGE, SL_KEY, SL_LEVEL, SL_SINCE,
                                    SL_USED, VF_ANON, VF_ANON_VMA, VF_SHARED, ht_get, page_up, tkey)
from ptreplay.replay.measure import (ef_capacity, emit_row, empty_end, flush_pending, ideal_tables_all,
                                     occupancy_snapshot, pend_add, snapshot_final, snapshot_final_with, touch, update_peaks)
from ptreplay.replay.vma import do_mprotect, implicit_vma, vma_find
from ptreplay.replay.pagetables import pte_walk_alloc, refcount_like, teardown
from ptreplay.replay.clock import advance, init_clock, quiet_until, regions_bound, rows_needed, snapshots_due
from ptreplay.replay.faults import do_fault, thp_allowed
from ptreplay.replay.syscalls import do_brk, do_fork, do_madvise, do_mmap, do_mremap, do_munmap
from ptreplay.replay.snapshot import snap_brk, snap_pages, snap_tables, snap_vma


# ----------------------------------------------------------------------------- process lifetime

@njit
def start_proc(ps, pf, g, p, t):
    """First sight of a process (first event, fork child, or attach): a fresh, empty mm.

    See docs/MODEL.md#vmpte-accounting."""
    ps[p, PS_STARTED] = 1
    ps[p, PS_ALIVE] = 1
    ps[p, PS_START] = t
    ps[p, PS_END] = t
    ps[p, PS_LAST] = t
    ps[p, PS_BRK] = -1
    ps[p, PS_KNOWN] = 0
    pend_add(ps, g, p)
    ps[p, PS_PEND_START] = 1
    g[G_NPEND] += 1
    ps[g[G_NLIVE], PS_LIVE_AT] = p  # on the live list (clock.advance's ticks, fire_scan)
    ps[p, PS_LIVE_POS] = g[G_NLIVE]
    g[G_NLIVE] += 1


@njit
def end_proc(ps, g, p, t):
    """Exit: p leaves the live list (the last one takes its place) and gets its end row.

    See docs/MODEL.md#exit."""
    ps[p, PS_ALIVE] = 0
    ps[p, PS_END] = t
    pend_add(ps, g, p)
    ps[p, PS_PEND_END] = 1
    g[G_NPEND] += 1
    last = g[G_NLIVE] - 1
    q = ps[last, PS_LIVE_AT]
    i = ps[p, PS_LIVE_POS]
    ps[i, PS_LIVE_AT] = q
    ps[q, PS_LIVE_POS] = i
    g[G_NLIVE] = last


# ----------------------------------------------------------------------------- generic path

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
    elif k == K_SNAP_PAGES:
        slots = range_tables(addr, addr + ln)
    elif k == K_SNAP_TABLES:
        slots = (ln >> 12) + 3
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
def apply_event(ps, pf, vm, hk, hv, sl, pg, fs, g, dq, prm, k, p, c, t, addr, ln, prot, flags, fd,
                pgoff, advice, ecode, new_addr, new_len, ret):
    """Apply one event to process p's mm.

    See docs/MODEL.md#syscall-results."""
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
            do_fault(ps, vm, hk, hv, sl, pg, fs, g, prm, p, addr, ecode, t)
    elif k == K_MMAP:
        do_mmap(ps, pf, vm, hk, hv, sl, pg, fs, g, dq, prm, p, addr, ln, prot, flags, fd, pgoff, t)
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
            ps[c, PS_KNOWN] = ps[p, PS_KNOWN]
            update_peaks(ps, c)
        elif c >= 0:
            g[G_AFTER_EXIT] += 1
    elif k == K_EXEC:
        teardown(ps, vm, hk, hv, sl, pg, fs, g, prm, p, t)
        ps[p, PS_GEN] += 1
        ps[p, PS_BRK] = -1
        ps[p, PS_KNOWN] = 0     # execve's own mappings are in no event (a snapshot may follow)
    elif k == K_EXIT:
        snapshot_final(ps, vm, hk, hv, sl, g, p)
        update_peaks(ps, p)
        teardown(ps, vm, hk, hv, sl, pg, fs, g, prm, p, t)
        end_proc(ps, g, p, t)
        return
    elif k == K_MPROTECT:
        do_mprotect(vm, ps, p, addr, ln, prot)
    elif k == K_SNAP_VMA:
        snap_vma(ps, pf, vm, hk, hv, sl, pg, fs, g, dq, prm, p, addr, addr + ln, prot, flags, fd, advice, t)
    elif k == K_SNAP_PAGES:
        snap_pages(ps, vm, hk, hv, sl, pg, fs, g, prm, p, addr, addr + ln, flags, t)
    elif k == K_SNAP_TABLES:
        g[G_SNAP_SHORT] += snap_tables(ps, hk, hv, sl, pg, fs, g, dq, prm, p, ln, t)
    elif k == K_SNAP_BRK:
        snap_brk(ps, p, ret)
    # clone changes nothing the model counts.
    update_peaks(ps, p)


# ----------------------------------------------------------------------------- fast path

@njit(inline="always")
def fast_fault_run(i, n, t_a, kind_a, proc_a, addr_a, ec_a, row_a, ps, pf, vm, hk, hv, sl, pg, fs, g, dq, prm):
    """The hot path: consecutive faults in private anonymous VMAs (no THP), or
    outside every known VMA (the implicit VMA do_fault makes), with no clock work due.  Returns the index of the first event it did not
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

    See docs/MODEL.md#fault-anon.
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
        if vi < 0:  # outside every known VMA: do_fault's implicit VMA (anonymous, private), if it has room
            if ps[p, PS_KNOWN] != 0 or ps[p, PS_NVMA] + 4 > vm.shape[1]:
                break   # a known mm: stack growth or SIGSEGV (faults.hole_fault), the generic path
            vi = implicit_vma(vm, ps, g, p, addr)
        vflags = vm[p, vi, 2]
        if (vflags & VF_ANON) == 0 or (vflags & VF_SHARED) != 0:
            break
        if (vflags & VF_PROT_KNOWN) != 0 and (vflags & (VF_READ | VF_WRITE)) != (VF_READ | VF_WRITE):
            break       # a fault access_error may refuse: the generic path
        if ec_a[j] >= 0 and (ec_a[j] & 3) == 1:
            break       # a read protection fault (access_error): the generic path counts it
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
            if e >= 0 and (e & 3) == 1:
                break       # a read protection fault (not the segment's first): the next segment's
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
    An empty table is refilled by the segment's first fault (t_first, row_first).

    See docs/MODEL.md#fault-anon."""
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


# ----------------------------------------------------------------------------- driver

@njit(nogil=True)
def run_events(i, n, t_a, kind_a, proc_a, addr_a, len_a, prot_a, flags_a, fd_a, pgoff_a, adv_a, ec_a,
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
                    flags_a[i], fd_a[i], pgoff_a[i], adv_a[i], ec_a[i], naddr_a[i], nlen_a[i], ret_a[i])
        i += 1
    return i, NEED_NONE, 0


@njit
def finish(ps, pf, sl, g, ts, oc, prm, t_end):
    """Trace end: pending start/end rows, then final state and an end row for
    every process still alive; tables still empty end their empty time at
    t_end; the last occupancy snapshot (PR_SNAP_END).

    See docs/MODEL.md#exit."""
    flush_pending(ps, ts, g)
    ideal = ideal_tables_all(ps, sl, g)  # one walk of the pool for every process alive
    for p in range(ps.shape[0]):
        if ps[p, PS_ALIVE] == 1:
            touch(ps, pf, p, t_end)
            snapshot_final_with(ps, p, ideal[p])
            ps[p, PS_END] = t_end
            emit_row(ps, ts, g, p, t_end)
    for s in range(g[G_SHW]):
        if sl[s, SL_KEY] != -1 and sl[s, SL_LEVEL] == 0:
            empty_end(g, sl, s, t_end, -1)
    if prm[PR_SNAP_END] != 0:
        occupancy_snapshot(sl, g, oc, t_end)

