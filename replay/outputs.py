"""The replay's output tables, built from the policies' final kernel states (replay.engine's
PolicyState: ps/pf, the drained ts/oc rows, the ef rows) and the pid mapping (engine._Procs):
timeseries, summary, effects, occupancy (schemas TIMESERIES, SUMMARY, EFFECTS, OCCUPANCY), and
the replay metadata.  Arrow here; no kernel runs.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from ptreplay.replay import layout as L
from ptreplay.schemas import EFFECTS, OCCUPANCY, SUMMARY, TIMESERIES

KIND_NAMES = sorted(L.KIND_CODES, key=L.KIND_CODES.get)
INVISIBLE_NOTE = ("Not visible to the traced events and not modelled: GUP population other than "
                  "MAP_POPULATE/MAP_LOCKED/MADV_POPULATE_* (O_DIRECT, process_vm_*, mlock), khugepaged and "
                  "MADV_COLLAPSE, reclaim and swap-out, NUMA hinting, userfaultfd ioctls, truncate or "
                  "MADV_REMOVE from other processes, page-cache contents (fault-around assumes cached pages), "
                  "merging of heap VMAs, the 1 GiB whole-PMD-table move of mremap.")


def _keys(trace_id: str, st, pids: np.ndarray, proc: np.ndarray) -> dict:
    """trace_id, policy and pid columns of output rows (`proc`: the kernels' process indices)."""
    n = len(proc)
    return {"trace_id": pa.repeat(pa.scalar(trace_id, pa.string()), n),
            "policy": pa.repeat(pa.scalar(st.policy.spec, pa.string()), n),
            "pid": pids[proc] if n else np.zeros(0, np.int32)}


def _sorted_rows(states, rows_of, width: int, proc_col: int, key_cols, pids: np.ndarray, presorted=False):
    """Every policy's kernel rows (`rows_of(st)`: int64 [row, width]) in one array sorted by pid,
    policy spec, then `key_cols`, ties in kernel order (numpy's stable sorts: Table.sort_by's
    order, without sorting or taking string columns); also each row's index in `states`.
    `presorted`: each policy's rows of one process already come in `key_cols` order (occupancy
    snapshots: by time, then region), so one stable sort on (pid, policy) suffices."""
    parts = [rows_of(st) for st in states]
    rows = np.concatenate(parts) if parts else np.zeros((0, width), np.int64)
    which = np.repeat(np.arange(len(states), dtype=np.int32), [len(r) for r in parts])
    if len(rows):
        specs = sorted(st.policy.spec for st in states)
        rank_of = np.array([specs.index(st.policy.spec) for st in states], np.int64)
        if presorted:
            pid_rank = np.empty(len(pids), np.int64)
            pid_rank[np.argsort(pids, kind="stable")] = np.arange(len(pids))
            order = np.argsort(pid_rank[rows[:, proc_col]] * len(states) + rank_of[which], kind="stable")
            rows, which = rows[order], which[order]
            if _ascending([pids[rows[:, proc_col]], rank_of[which]] + [rows[:, c] for c in key_cols]):
                return rows, which
            # not in kernel order after all: the full sort below (ties keep their order: stable)
        keys = [pids[rows[:, proc_col]], rank_of[which]] + [rows[:, c] for c in key_cols]
        order = np.lexsort(keys[::-1])
        rows, which = rows[order], which[order]
    return rows, which


def _ascending(cols) -> bool:
    """The rows of `cols` (most significant first) are in ascending order, ties allowed."""
    less = np.zeros(max(len(cols[0]) - 1, 0), bool)
    equal = np.ones_like(less)
    for c in cols:
        less |= equal & (c[:-1] < c[1:])
        equal &= c[:-1] == c[1:]
    return bool((less | equal).all())


def _sorted_keys(trace_id: str, states, pids: np.ndarray, proc: np.ndarray, which: np.ndarray) -> dict:
    """_keys for rows of several policies (`which`: each row's index in `states`)."""
    specs = pa.array([st.policy.spec for st in states], pa.string())
    return {"trace_id": pa.repeat(pa.scalar(trace_id, pa.string()), len(proc)),
            "policy": pa.DictionaryArray.from_arrays(pa.array(which), specs).cast(pa.string()),
            "pid": pids[proc] if len(proc) else np.zeros(0, np.int32)}


def timeseries_table(states, procs, trace_id: str) -> pa.Table:
    """TIMESERIES rows of every policy, sorted by pid, policy, t_ns."""
    pids = np.asarray(procs.pids, np.int32)
    rows, which = _sorted_rows(states, lambda st: np.concatenate(st.rows) if st.rows else
                               np.zeros((0, L.N_TS), np.int64), L.N_TS, L.TS_PROC, [L.TS_T], pids)
    return pa.table({
        **_sorted_keys(trace_id, states, pids, rows[:, L.TS_PROC], which),
        "t_ns": rows[:, L.TS_T],
        "virt_bytes": rows[:, L.TS_VIRT], "rss_bytes": rows[:, L.TS_RSS],
        "rss_anon_bytes": rows[:, L.TS_ANON], "rss_file_bytes": rows[:, L.TS_FILE],
        "vmpte_bytes": rows[:, L.TS_VMPTE], "pte_tables": rows[:, L.TS_PTE], "pmd_tables": rows[:, L.TS_PMD],
        "pud_tables": rows[:, L.TS_PUD], "empty_pte_tables": rows[:, L.TS_EMPTY],
    }, schema=TIMESERIES.schema)


def effects_table(states, procs, trace_id: str) -> pa.Table:
    """EFFECTS rows of every policy: the kernels' ef rows whose counts are not all 0
    (e.g. an mremap moving entries within one table empties and refills it)."""
    parts = []
    pids = np.asarray(procs.pids, np.int32)
    kinds = pa.array(KIND_NAMES, pa.string())
    for st in states:
        e = st.effects()
        e = e[(e[:, [L.EF_ALLOC, L.EF_UPPER, L.EF_EMPTIED, L.EF_FREED]] != 0).any(axis=1)]
        parts.append(pa.table({
            **_keys(trace_id, st, pids, e[:, L.EF_PROC]),
            "event_row": e[:, L.EF_ROW], "t_ns": e[:, L.EF_T],
            "kind": kinds.take(pa.array(e[:, L.EF_KIND])),
            "pte_tables_allocated": e[:, L.EF_ALLOC].astype(np.int32),
            "upper_tables_allocated": e[:, L.EF_UPPER].astype(np.int32),
            "pte_tables_emptied": e[:, L.EF_EMPTIED].astype(np.int32),
            "pte_tables_freed": e[:, L.EF_FREED].astype(np.int32),
            "empty_table_ns": e[:, L.EF_EMPTY_NS],
        }, schema=EFFECTS.schema))
    return pa.concat_tables(parts) if parts else EFFECTS.schema.empty_table()


def occupancy_table(states, procs, trace_id: str) -> pa.Table:
    """OCCUPANCY rows of every policy, sorted by pid, policy, t_ns, region."""
    pids = np.asarray(procs.pids, np.int32)
    o, which = _sorted_rows(states, lambda st: np.concatenate(st.oc_rows) if st.oc_rows else
                            np.zeros((0, L.N_OC), np.int64), L.N_OC, L.OC_PROC, [L.OC_T, L.OC_REGION], pids,
                            presorted=True)
    return pa.table({
        **_sorted_keys(trace_id, states, pids, o[:, L.OC_PROC], which),
        "t_ns": o[:, L.OC_T], "region_start": o[:, L.OC_REGION].astype(np.uint64),
        "pte_tables": o[:, L.OC_PTE].astype(np.int32), "empty_pte_tables": o[:, L.OC_EMPTY].astype(np.int32),
        "live_entries": o[:, L.OC_LIVE], "full_pte_tables": o[:, L.OC_FULL].astype(np.int32),
    }, schema=OCCUPANCY.schema)


def summary_table(states, none_state, procs, trace_id: str, lost: int) -> pa.Table:
    """SUMMARY rows: per policy (in `states` order), every process that started, in index order."""
    n = len(procs.pids)
    pids = np.asarray(procs.pids, np.int32)
    comms = np.array([procs.comm.get(pid) or "" for pid in procs.pids], dtype=object)
    base_all = none_state.ps[:n, L.PS_FIN_VMPTE]
    parts = []
    for st in states:
        ps = st.ps[:n]
        idx = np.flatnonzero(ps[:, L.PS_STARTED] != 0)
        q = ps[idx]

        def c(field):
            return q[:, field]

        start, end, fin, base = c(L.PS_START), c(L.PS_END), c(L.PS_FIN_VMPTE), base_all[idx]
        span = end - start
        mean = np.where(span > 0, st.pf[idx] / np.where(span > 0, span, 1).astype(np.float64), fin.astype(np.float64))
        saved = base - fin
        pct = np.zeros(len(idx), np.float64)
        np.divide(100.0 * saved.astype(np.float64), base.astype(np.float64), out=pct, where=base != 0)
        keys = _keys(trace_id, st, pids, idx)
        parts.append(pa.table({
            "trace_id": keys["trace_id"], "pid": keys["pid"], "comm": pa.array(comms[idx], pa.string()),
            "policy": keys["policy"], "start_ns": start, "end_ns": end,
            "final_virt_bytes": c(L.PS_FIN_VIRT), "final_rss_bytes": c(L.PS_FIN_RSS), "final_vmpte_bytes": fin,
            "peak_virt_bytes": c(L.PS_PEAK_VIRT), "peak_rss_bytes": c(L.PS_PEAK_RSS),
            "peak_vmpte_bytes": c(L.PS_PEAK_VMPTE), "mean_vmpte_bytes": mean,
            "ideal_pte_bytes": c(L.PS_FIN_IDEAL), "empty_pte_tables_final": c(L.PS_FIN_EMPTY),
            "inherited_empty_tables": c(L.PS_INHERITED),
            "pte_tables_allocated": c(L.PS_ALLOC), "pte_tables_freed": c(L.PS_FREED),
            "refaults": c(L.PS_REFAULTS), "scan_entries": c(L.PS_SCAN), "extra_atomics": c(L.PS_ATOMICS),
            "vmpte_saved_bytes": saved, "vmpte_saved_pct": pct, "events": c(L.PS_EVENTS),
            "lost_events": np.full(len(idx), lost, np.int64),
        }, schema=SUMMARY.schema))
    if not parts or not sum(p.num_rows for p in parts):
        return SUMMARY.schema.empty_table()
    return pa.concat_tables(parts)


def metadata(opts, wanted, thp, interval, la57, counts, states, convert_s, trace_id, capture) -> dict:
    g = states[0].g
    return {
        "trace_id": trace_id,
        "options": {"policies": [p.spec for p in wanted], "thp": thp, "interval_ns": interval, "la57": la57,
                    "occupancy_snapshots": int(opts.occupancy_snapshots), "timeseries": opts.timeseries},
        "policies_run": [p.policy.spec for p in states],
        "events_in": counts.events_in, "start_ns": counts.first_t, "end_ns": counts.last_t,
        "counts": {
            "failed_skipped": counts.failed_skipped,
            "unfinished_skipped_mmap_mremap_brk": counts.unfinished_skipped,
            "unfinished_applied": counts.unfinished_applied,
            "faults_outside_known_vmas": int(g[L.G_OUTSIDE]),
            "faults_refused": int(g[L.G_SEGV]),
            "implicit_vmas_created": int(g[L.G_IMPLICIT]),
            "populate_modelled": int(g[L.G_POPULATE]),
            "events_after_exit_ignored": int(g[L.G_AFTER_EXIT]),
            "brk_with_unknown_start": int(g[L.G_BRK_UNKNOWN]),
            "faults_beyond_user_top": int(g[L.G_BEYOND_TOP]),
            "syscalls_beyond_user_top_dropped": counts.beyond_top_dropped,
            "values_above_2_62_clamped": counts.values_clamped,
            "forks_after_child_events": counts.forks_after_child_events,
            "madvise_not_modelled": dict(sorted(counts.madvise_not_modelled.items())),
            "snapshot_tables_short": int(g[L.G_SNAP_SHORT]),
        },
        "kernel_seconds": {st.policy.spec: round(st.kernel_s, 6) for st in states},
        "convert_seconds": round(convert_s, 6),
        "synthetic": bool(capture.get("synthetic", False)),
        "note": INVISIBLE_NOTE,
    }
