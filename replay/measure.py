"""What the replay measures, kept in the state arrays for the engine's outputs.

Per process (ps, pf): the VmPTE time integral (touch), the peaks, the final values and the
ideal table count (snapshot_final); timeseries rows (ts: emit_row, flush_pending); occupancy
snapshot rows (oc: occupancy_snapshot); page-table effects (the ef rows in g: ef_row,
empty_begin, empty_end).

Effects (ef) hook the places that move PS_EMPTY and PS_ALLOC/PS_FREED
(tbl_alloc, tbl_free, pte_set, pte_clear, zap_ptes, fast_fault_commit): O(1)
per table event, never per fault.
"""
import numpy as np

from ptreplay.replay.jit import njit
from ptreplay.replay.layout import (INHERIT_FLOOR_IDX, EF_EMPTIED, EF_EMPTY_NS, EF_KIND, EF_PROC, EF_ROW, EF_T, G_CUR_KIND, G_CUR_ROW,
                                    G_CUR_T, G_LIVE_SLOTS, G_NEF, G_NOC, G_NPEND, G_NPENDP, G_NROWS, G_OVERFLOW, G_SHW, N_EF,
                                    N_G, OC_EMPTY, OC_FULL, OC_LIVE, OC_PROC, OC_PTE, OC_REGION, OC_T, PAGE,
                                    PS_ANON, PS_EMPTY, PS_END, PS_FILE, PS_FIN_EMPTY, PS_FIN_IDEAL, PS_FIN_RSS,
                                    PS_FIN_VIRT, PS_FIN_VMPTE, PS_LAST, PS_NVMA, PS_PEAK_RSS, PS_PEAK_VIRT, PS_PEAK_VMPTE,
                                    PS_PEND_AT, PS_PEND_END, PS_PEND_START, PS_PMD, PS_PTE, PS_PUD, PS_ROW_ANON,
                                    PS_ROW_EMPTY, PS_ROW_FILE, PS_ROW_PMD, PS_ROW_PTE, PS_ROW_PUD, PS_ROW_VIRT,
                                    PS_START, PS_VIRT, SL_EROW,
                                    SL_ESINCE, SL_IDX, SL_KEY, SL_LEVEL, SL_PROC, SL_USED, TS_ANON, TS_EMPTY,
                                    TS_FILE, TS_PMD, TS_PROC, TS_PTE, TS_PUD, TS_RSS, TS_T, TS_VIRT, TS_VMPTE, ht_get, tkey)


# ----------------------------------------------------------------------------- per-process statistics

@njit
def touch(ps, pf, p, t):
    """Accumulate p's VmPTE x time up to t (for the time-weighted mean).

    See docs/MODEL.md#vmpte-accounting."""
    dt = t - ps[p, PS_LAST]
    if dt > 0:
        pf[p] += float((ps[p, PS_PTE] + ps[p, PS_PMD] + ps[p, PS_PUD]) * PAGE) * float(dt)
        ps[p, PS_LAST] = t


@njit
def update_peaks(ps, p):
    """See docs/MODEL.md#vmpte-accounting."""
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
def ideal_tables(sl, g, p):
    """Tables needed to map p's present pages: distinct 2 MiB regions with a
    present entry, plus their distinct 1 GiB (PMD) and 512 GiB (PUD) tables.

    See docs/MODEL.md#model-metrics."""
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
def ideal_tables_all(ps, sl, g):
    """ideal_tables of every process at once, from one walk of the slot pool (the trace end:
    O(slots log slots), not O(processes x slots)).

    See docs/MODEL.md#model-metrics."""
    out = np.zeros(ps.shape[0], np.int64)
    keys = np.empty(g[G_LIVE_SLOTS] + 1, np.int64)
    n = 0
    for s in range(g[G_SHW]):
        if sl[s, SL_KEY] != -1 and sl[s, SL_LEVEL] == 0 and sl[s, SL_USED] > 0:
            keys[n] = (sl[s, SL_PROC] << 40) | sl[s, SL_IDX]  # a PTE table index has at most 36 bits
            n += 1
    k = np.sort(keys[:n])
    low = (np.int64(1) << 40) - 1
    for i in range(n):
        p = k[i] >> 40
        idx = k[i] & low
        first = i == 0 or (k[i - 1] >> 40) != p
        prev = k[i - 1] & low if i > 0 else 0
        out[p] += 1
        if first or (prev >> 9) != (idx >> 9):
            out[p] += 1
        if first or (prev >> 18) != (idx >> 18):
            out[p] += 1
    return out


@njit
def snapshot_final(ps, vm, hk, hv, sl, g, p):
    """See docs/MODEL.md#exit."""
    ideal = ideal_tables_by_vma(ps, vm, hk, hv, sl, g, p)
    if ideal < 0:
        ideal = ideal_tables(sl, g, p)
    snapshot_final_with(ps, p, ideal)


@njit
def ideal_tables_by_vma(ps, vm, hk, hv, sl, g, p):
    """ideal_tables(sl, g, p) from p's own PTE tables, looked up in the hash over the 2 MiB
    regions its VMAs span (present entries lie in VMAs), instead of a walk of the whole pool:
    an exit costs O(p's regions), not O(every process's tables).  -1 (use ideal_tables) when
    the spans hold more regions than the pool has slots, or when the lookups did not find all
    of p's PS_PTE tables (an empty table left outside every VMA: the result would be the same,
    the walk is the proof).

    See docs/MODEL.md#model-metrics."""
    budget = g[G_SHW]
    n_vma = ps[p, PS_NVMA]
    last = np.int64(-1)
    regions = 0
    for i in range(n_vma):
        lo = max(vm[p, i, 0] >> 21, last + 1)
        hi = (vm[p, i, 1] - 1) >> 21
        if hi >= lo:
            regions += hi - lo + 1
            last = hi
        if regions > budget:
            return -1
    found = 0
    n = 0
    prev = np.int64(-1)
    last = np.int64(-1)
    for i in range(n_vma):
        lo = max(vm[p, i, 0] >> 21, last + 1)
        hi = (vm[p, i, 1] - 1) >> 21
        for idx in range(lo, hi + 1):
            s = ht_get(hk, hv, tkey(0, p, idx))
            if s < 0:
                continue
            found += 1
            if sl[s, SL_USED] > 0:
                n += 1
                if prev < 0 or (prev >> 9) != (idx >> 9):
                    n += 1
                if prev < 0 or (prev >> 18) != (idx >> 18):
                    n += 1
                prev = idx
        last = max(last, hi)
    if found != ps[p, PS_PTE]:
        return -1
    return n


@njit
def snapshot_final_with(ps, p, ideal):
    """snapshot_final with p's ideal table count already known (ideal_tables_all).

    See docs/MODEL.md#exit."""
    ps[p, PS_FIN_VIRT] = ps[p, PS_VIRT]
    ps[p, PS_FIN_RSS] = (ps[p, PS_ANON] + ps[p, PS_FILE]) * PAGE
    ps[p, PS_FIN_VMPTE] = (ps[p, PS_PTE] + ps[p, PS_PMD] + ps[p, PS_PUD]) * PAGE
    ps[p, PS_FIN_IDEAL] = ideal * PAGE
    ps[p, PS_FIN_EMPTY] = ps[p, PS_EMPTY]


# ----------------------------------------------------------------------------- timeseries rows

@njit
def emit_row(ps, ts, g, p, t):
    """p's timeseries row at t; its values are kept as p's latest row (PS_ROW_*, row_changed).

    See docs/MODEL.md#timeseries-rows."""
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
    ps[p, PS_ROW_VIRT] = ps[p, PS_VIRT]
    ps[p, PS_ROW_ANON] = ps[p, PS_ANON]
    ps[p, PS_ROW_FILE] = ps[p, PS_FILE]
    ps[p, PS_ROW_PTE] = ps[p, PS_PTE]
    ps[p, PS_ROW_PMD] = ps[p, PS_PMD]
    ps[p, PS_ROW_PUD] = ps[p, PS_PUD]
    ps[p, PS_ROW_EMPTY] = ps[p, PS_EMPTY]
    g[G_NROWS] = r + 1


@njit(inline="always")
def row_changed(ps, p):
    """p's values differ from its latest timeseries row (every field of a row derives from these).

    See docs/MODEL.md#timeseries-rows."""
    return (ps[p, PS_VIRT] != ps[p, PS_ROW_VIRT] or ps[p, PS_ANON] != ps[p, PS_ROW_ANON]
            or ps[p, PS_FILE] != ps[p, PS_ROW_FILE] or ps[p, PS_PTE] != ps[p, PS_ROW_PTE]
            or ps[p, PS_PMD] != ps[p, PS_ROW_PMD] or ps[p, PS_PUD] != ps[p, PS_ROW_PUD]
            or ps[p, PS_EMPTY] != ps[p, PS_ROW_EMPTY])


@njit
def pend_add(ps, g, p):
    """p gets a start or end row at the next flush_pending: on the pending list, once (call it
    before setting PS_PEND_START/PS_PEND_END)."""
    if ps[p, PS_PEND_START] == 0 and ps[p, PS_PEND_END] == 0:
        ps[g[G_NPENDP], PS_PEND_AT] = p
        g[G_NPENDP] += 1


@njit
def flush_pending(ps, ts, g):
    """Start and end rows of processes that began or ended at the previous instant
    (the pending list: O(processes due), not O(processes))."""
    if g[G_NPEND] == 0:
        return
    for i in range(g[G_NPENDP]):
        p = ps[i, PS_PEND_AT]
        if ps[p, PS_PEND_START] == 1:
            emit_row(ps, ts, g, p, ps[p, PS_START])
            ps[p, PS_PEND_START] = 0
        if ps[p, PS_PEND_END] == 1:
            emit_row(ps, ts, g, p, ps[p, PS_END])
            ps[p, PS_PEND_END] = 0
    g[G_NPEND] = 0
    g[G_NPENDP] = 0


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
    engine reports.

    See docs/MODEL.md#model-metrics."""
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
    """PTE table s became empty (allocated, or its last entry cleared) in the current event.

    See docs/MODEL.md#model-metrics."""
    r = ef_row(g, sl[s, SL_PROC])
    sl[s, SL_EROW] = r
    sl[s, SL_ESINCE] = t
    if r >= 0:
        g[ef_at(r, EF_EMPTIED)] += 1


@njit
def empty_end(g, sl, s, t, cur_row):
    """PTE table s stops being empty at t (refilled or freed): the emptying event's
    row gets the time it stayed empty; emptied and refilled/freed inside one event
    (cur_row, -1 for timers) it was never left empty, so it is not counted.

    See docs/MODEL.md#model-metrics."""
    r = sl[s, SL_EROW]
    if r >= 0:
        g[ef_at(r, EF_EMPTY_NS)] += t - sl[s, SL_ESINCE]
        if g[ef_at(r, EF_ROW)] == cur_row:
            g[ef_at(r, EF_EMPTIED)] -= 1
        sl[s, SL_EROW] = -1


# ----------------------------------------------------------------------------- occupancy

@njit
def occupancy_snapshot(sl, g, oc, t):
    """One occupancy row per (process, 1 GiB region) with a live PTE table, at t.

    Walks the slot pool once (O(pool high-water), no hash lookups): regions are
    summed over runs of consecutive slots of one region (slots are mostly
    allocated in address order), and only if runs repeat a region are they
    sorted and merged.  Rows come out sorted by process, then region.
    Rows without room are dropped and counted in G_OVERFLOW (the engine
    reserves one row per live PMD table, which bounds the regions).

    See docs/MODEL.md#model-metrics.
    """
    cap = g[G_LIVE_SLOTS] + 1
    key = np.empty(cap, np.int64)
    acc = np.empty((cap, 4), np.int64)
    m = -1
    for s in range(g[G_SHW]):
        if sl[s, SL_KEY] == -1 or sl[s, SL_LEVEL] != 0 or sl[s, SL_IDX] >= INHERIT_FLOOR_IDX:
            continue    # (inherited empty tables have no address: no region to show them in)
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
