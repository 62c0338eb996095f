"""The clock: an event at t moves it there (advance), firing on the way the timers (policy
scan's periodic scan, policy delayed's queued frees) and the timeseries ticks (a row per live
process that changed since its latest row, or per live process with PR_TS_TICKS; an occupancy
snapshot every PR_SNAP_EVERY-th tick).  Also what advance(t) will emit
(rows_needed, snapshots_due, regions_bound: for capacity_needed) and until when it would only
set G_NOW (quiet_until).
"""
import numpy as np

from ptreplay.replay.jit import njit
from ptreplay.replay.layout import (G_CUR_ROW, G_DIRTY, G_INIT, G_LIVE_SLOTS, G_NEXT_SCAN, G_NEXT_TICK, G_NLIVE,
                                    G_NOW, G_NPEND, G_QHEAD, G_QTAIL, G_SHW, POL_DELAYED, POL_SCAN, PR_HOLD, PR_POLICY, PR_SCAN,
                                    PR_SNAP_EVERY, PR_TICK, PR_TS_TICKS, PS_LIVE_AT, PS_PMD, PS_PTE, PS_SCAN,
                                    PS_START, SL_KEY, SL_LEVEL, SL_PROC, SL_SERIAL, SL_SINCE, SL_USED)
from ptreplay.replay.measure import emit_row, flush_pending, occupancy_snapshot, row_changed, touch
from ptreplay.replay.pagetables import drop_pte_table


# ----------------------------------------------------------------------------- timers and ticks

@njit
def fire_scan(ps, pf, hk, hv, sl, pg, fs, g, prm, x):
    """Policy scan: a periodic walk frees every empty PTE table (512 entries
    examined per live table).  A scan with no event since the last one finds
    nothing to free and only adds the entries it examines.

    See docs/MODEL.md#policy-scan."""
    if g[G_DIRTY] == 0:
        for i in range(g[G_NLIVE]):
            p = ps[i, PS_LIVE_AT]
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
    """Policy delayed: free the queue head if it stayed empty for HOLD.

    See docs/MODEL.md#policy-delayed."""
    q = g[G_QHEAD]
    s = dq[q, 0]
    g[G_QHEAD] = q + 1
    if sl[s, SL_KEY] != -1 and sl[s, SL_SERIAL] == dq[q, 1] and sl[s, SL_SINCE] == dq[q, 2] \
            and sl[s, SL_USED] == 0:
        touch(ps, pf, sl[s, SL_PROC], x)
        drop_pte_table(ps, hk, hv, sl, pg, fs, g, prm, s, x)


@njit
def advance(ps, pf, hk, hv, sl, pg, fs, g, dq, ts, oc, prm, t):
    """Move the clock to t (> now): timers at X <= t fire before events at X;
    timeseries ticks at T < t are emitted after every event at T (a row for each
    live process whose values changed since its latest row, or for each with
    PR_TS_TICKS; an occupancy snapshot at every PR_SNAP_EVERY-th tick).  Timer frees are no
    event's: G_CUR_ROW is -1 until the next event is applied.

    See docs/MODEL.md#policy-delayed."""
    g[G_CUR_ROW] = -1
    flush_pending(ps, ts, g)
    if g[G_NLIVE] == 0 and g[G_LIVE_SLOTS] == 0:
        skip_idle(g, dq, prm, t)
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
            every = prm[PR_TS_TICKS] != 0
            for i in range(g[G_NLIVE]):  # the live list: O(live processes), not O(processes seen)
                p = ps[i, PS_LIVE_AT]
                if ps[p, PS_START] < xk and (every or row_changed(ps, p)):
                    emit_row(ps, ts, g, p, xk)
            if prm[PR_SNAP_EVERY] > 0 and (xk // prm[PR_TICK]) % prm[PR_SNAP_EVERY] == 0:
                occupancy_snapshot(sl, g, oc, xk)
            g[G_NEXT_TICK] += prm[PR_TICK]
        else:
            break
    g[G_NOW] = t


@njit
def skip_idle(g, dq, prm, t):
    """No process and no table: every tick and timer before t would do nothing (no row, no
    snapshot row, no table to scan or free), so move their cursors past t at once instead
    of one tick at a time (a gap of days at --interval 10ms is 10^7 ticks per day)."""
    tick = prm[PR_TICK]
    if g[G_NEXT_TICK] < t:
        g[G_NEXT_TICK] += (t - g[G_NEXT_TICK] + tick - 1) // tick * tick
    if prm[PR_POLICY] == POL_SCAN and g[G_NEXT_SCAN] <= t:
        g[G_NEXT_SCAN] += ((t - g[G_NEXT_SCAN]) // prm[PR_SCAN] + 1) * prm[PR_SCAN]
    while g[G_QHEAD] < g[G_QTAIL] and dq[g[G_QHEAD], 2] + prm[PR_HOLD] <= t:
        g[G_QHEAD] += 1


# ----------------------------------------------------------------------------- what advance will do

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
def rows_needed(ps, g, prm, t):
    """Timeseries rows `advance(t)` may emit."""
    n = g[G_NPEND]
    if g[G_INIT] == 1 and t > g[G_NOW] and g[G_NEXT_TICK] < t:
        n += ((t - 1 - g[G_NEXT_TICK]) // prm[PR_TICK] + 1) * g[G_NLIVE]
    return n


@njit
def init_clock(g, prm, t):
    """See docs/MODEL.md#policy-scan."""
    g[G_INIT] = 1
    g[G_NOW] = t
    g[G_NEXT_TICK] = (t // prm[PR_TICK] + 1) * prm[PR_TICK]
    if prm[PR_SCAN] > 0:
        g[G_NEXT_SCAN] = (t // prm[PR_SCAN] + 1) * prm[PR_SCAN]


@njit(inline="always")
def quiet_until(g, dq, prm):
    """Latest time the clock may move to while `advance` would only set G_NOW:
    no pending start/end row, no tick row due (rows are emitted for ticks < t),
    no scan or delayed free due (timers at X <= t fire).  Faults at or before
    it need no clock work.  Fast faults change none of its inputs.

    See docs/MODEL.md#policy-delayed."""
    if g[G_NPEND] != 0:
        return g[G_NOW]
    h = g[G_NEXT_TICK]
    pol = prm[PR_POLICY]
    if pol == POL_SCAN:
        h = min(h, g[G_NEXT_SCAN] - 1)
    elif pol == POL_DELAYED and g[G_QHEAD] < g[G_QTAIL]:
        h = min(h, dq[g[G_QHEAD], 2] + prm[PR_HOLD] - 1)
    return max(h, g[G_NOW])
