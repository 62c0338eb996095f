"""The replay's effects (per-event page-table changes) and occupancy (per 1 GiB
region snapshots) outputs.

Checked against tests/reference_replay.py (rows equal, every policy, fast and
generic path) on hand-built and Hypothesis SYNTHETIC streams, against
attribution-free totals (summary counts, the timeseries, the reference's
integral of empty tables over time), and on two real captures in data/.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from conftest import DATA
from ptreplay.pipeline.events.ingest import ingest
from ptreplay.pipeline.warehouse import connect, execute
from reference_replay import replay_reference, snapshot_ticks
from ptreplay.replay import synth
from ptreplay.replay.engine import ReplayOptions, replay, replay_to_dir, snapshot_every
from ptreplay.replay.policies import parse_policy
from ptreplay.schemas import ARTIFACTS, EFFECTS, OCCUPANCY, describe
from ptreplay.schemas import EVENTS
from ptreplay.schemas.parquet_io import read_table
from test_replay import B, GB, KB4, MB, ev, fault, madv, mmap, seed_rows, touch_range
from test_replay_fast_path import interleaved_rows
from test_replay_properties import ALL as ALL_FAST_TIMERS

ALL = "none,pt_reclaim,refcount,scan:1s,delayed:100ms,all_levels"
COUNTS = ("pte_tables_allocated", "upper_tables_allocated", "pte_tables_emptied", "pte_tables_freed")


def rows_of(table: pa.Table, spec: str) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("trace_id", "policy")}
            for r in table.to_pylist() if r["policy"] == spec]


def check_outputs(table, res, thp, interval_ns=10_000_000, snapshots=120):
    """Engine effects/occupancy == the reference's, plus the attribution-free totals."""
    specs = sorted(set(res.summary.column("policy").to_pylist()) | set(res.effects.column("policy").to_pylist()))
    for spec in specs:
        p = parse_policy(spec)
        kw = {"scan_ns": p.arg_ns} if p.name == "scan" else {"hold_ns": p.arg_ns} if p.name == "delayed" else {}
        ref = replay_reference(table, p.name, occupancy_snapshots=snapshots, thp=thp, interval_ns=interval_ns, **kw)
        got = sorted(rows_of(res.effects, spec), key=lambda r: (r["event_row"], r["pid"]))
        assert got == ref.effect_rows(), f"effects differ for {spec}"
        occ = sorted(rows_of(res.occupancy, spec), key=lambda r: (r["pid"], r["t_ns"], r["region_start"]))
        assert occ == sorted(ref.occupancy, key=lambda r: (r["pid"], r["t_ns"], r["region_start"])), \
            f"occupancy differs for {spec}"
        check_totals(res, spec, ref, snapshots, _last_applied(table))


def check_totals(res, spec, ref, snapshots, last_applied):
    """Effects add up to the summary's counts and to the time-integral of empty
    tables; occupancy agrees with the timeseries at every snapshot time."""
    eff = defaultdict(lambda: defaultdict(int))
    for r in rows_of(res.effects, spec):
        for k in COUNTS + ("empty_table_ns",):
            eff[r["pid"]][k] += r[k]
        assert r["empty_table_ns"] >= 0 and all(r[k] >= 0 for k in COUNTS)
        assert any(r[k] for k in COUNTS)
    for s in rows_of(res.summary, spec):
        e = eff[s["pid"]]
        assert e["pte_tables_allocated"] == s["pte_tables_allocated"], (spec, s["pid"])
        assert e["pte_tables_freed"] == s["pte_tables_freed"], (spec, s["pid"])
        assert e["empty_table_ns"] == ref.procs[s["pid"]].empty_integral, (spec, s["pid"])
    occ = defaultdict(lambda: [0, 0])
    times = set()
    for r in rows_of(res.occupancy, spec):
        occ[(r["pid"], r["t_ns"])][0] += r["pte_tables"]
        occ[(r["pid"], r["t_ns"])][1] += r["empty_pte_tables"]
        times.add(r["t_ns"])
        assert 0 <= r["empty_pte_tables"] <= r["pte_tables"] and 0 <= r["full_pte_tables"] <= r["pte_tables"]
        assert r["live_entries"] <= 512 * r["pte_tables"] and r["region_start"] % GB == 0
    assert len(times) <= snapshots
    # a planned tick is taken once the clock moves past it: by an applied event after it (a tick at
    # or after the last applied one, before dropped rows only, never comes), and the trace end
    snap_times = {t for t in ref.snap_ticks if t < last_applied} | ({ref.t_end} if ref.snap_end else set())
    # a tick's snapshot, like its timeseries rows, covers the processes started before it: one whose
    # first applied event is at the tick itself has its first row there and no occupancy yet
    # (hypothesis seed 16406: a failed madvise, then the first fault exactly on a tick)
    ts = rows_of(res.timeseries, spec)
    started = {}
    for r in ts:
        started[r["pid"]] = min(started.get(r["pid"], r["t_ns"]), r["t_ns"])
    for r in ts:
        if r["t_ns"] in snap_times and (r["t_ns"] > started[r["pid"]] or r["t_ns"] == ref.t_end):
            # PTE-level part of VmPTE = vmpte - (PMD + PUD tables)
            n, empty = occ.get((r["pid"], r["t_ns"]), (0, 0))
            assert n * KB4 == r["vmpte_bytes"] - KB4 * (r["pmd_tables"] + r["pud_tables"]), (spec, r)
            assert empty == r["empty_pte_tables"], (spec, r)


def _last_applied(table) -> int:
    """t_ns of the last row the replay applies (failed calls and unfinished mmap/mremap/brk are not)."""
    rows = [e for e in table.to_pylist()
            if not e["failed"] and not (e["unfinished"] and e["kind"] in ("mmap", "mremap", "brk"))]
    return max((e["t_ns"] for e in rows), default=-1)


def run(table, policies=ALL, thp="never", snapshots=120, **kw):
    """Replay on both paths; outputs equal, and equal to the reference."""
    res = {}
    for fast in (True, False):
        res[fast] = replay(table, ReplayOptions(policies=policies, thp=thp, fast_path=fast,
                                                occupancy_snapshots=snapshots, **kw), capture=synth.capture_meta("t"))
    assert res[True].effects.equals(res[False].effects)
    assert res[True].occupancy.equals(res[False].occupancy)
    check_outputs(table, res[True], thp, kw.get("interval_ns", 10_000_000), snapshots)
    return res[True]


def effects_by_policy(res, row):
    """{policy: effects row of input row `row`} (pid 100)."""
    return {r["policy"]: r for r in res.effects.to_pylist() if r["event_row"] == row and r["pid"] == 100}


# ----------------------------------------------------------------------------- effects, by hand

def test_seed_2m_zap_empties_or_frees_per_policy():
    rows = seed_rows(1)  # mmap, 512 faults, one 2 MiB DONTNEED (t = 1 ms + 1 us per row)
    res = run(ev(rows + [dict(kind="clone", child_pid=5, t_ns=1_500_000_000)]))
    first = effects_by_policy(res, 1)
    assert {p: (r["pte_tables_allocated"], r["upper_tables_allocated"]) for p, r in first.items()} == \
        {p: (1, 2) for p in ALL.split(",")}
    zap = effects_by_policy(res, 513)
    t_zap, t_end = 1_000_000 + 513 * 1000, 1_500_000_000
    got = {p: (r["pte_tables_emptied"], r["pte_tables_freed"], r["empty_table_ns"]) for p, r in zap.items()}
    assert got == {
        "none": (1, 0, t_end - t_zap),                    # left empty until the trace end
        "pt_reclaim": (0, 1, 0), "refcount": (0, 1, 0), "all_levels": (0, 1, 0),  # freed at once
        "scan:1s": (1, 1, 1_000_000_000 - t_zap),         # freed by the scan at 1 s
        "delayed:100ms": (1, 1, 100_000_000),             # freed after the hold
    }
    assert zap["none"]["kind"] == "madvise" and zap["none"]["t_ns"] == t_zap


def test_two_half_zaps_under_pt_reclaim_the_second_empties():
    res = run(ev(seed_rows(2)), policies="none,pt_reclaim,refcount")
    assert effects_by_policy(res, 513) == {}   # first half: the table still has entries
    second = effects_by_policy(res, 514)
    assert {p: (r["pte_tables_emptied"], r["pte_tables_freed"]) for p, r in second.items()} == \
        {"none": (1, 0), "pt_reclaim": (1, 0), "refcount": (0, 1)}


def test_refault_within_the_hold_reuses_the_emptied_table():
    t_zap = 1_000_000 + 513 * 1000
    rows = seed_rows(1) + [fault(B, t_ns=t_zap + 50_000_000)]
    res = run(ev(rows), policies="delayed:100ms,refcount")
    zap = effects_by_policy(res, 513)
    assert (zap["delayed:100ms"]["pte_tables_emptied"], zap["delayed:100ms"]["pte_tables_freed"],
            zap["delayed:100ms"]["empty_table_ns"]) == (1, 0, 50_000_000)
    refault = effects_by_policy(res, 514)
    assert "delayed:100ms" not in refault                       # reused: nothing allocated
    assert refault["refcount"]["pte_tables_allocated"] == 1     # refcount freed it: a new table


def test_munmap_frees_inner_tables_and_empties_the_shared_edge_ones():
    """KERNEL.md section 3's example: munmap(X) frees 2 tables and leaves the 2 edge tables
    (shared with A and C) empty under `none`; refcount frees those too."""
    rows = [mmap(B, MB), mmap(B + MB, 6 * MB), mmap(B + 7 * MB, MB)]
    rows += [fault(B + MB + i * 2 * MB) for i in range(3)] + [fault(B + 7 * MB - KB4)]
    rows += [dict(kind="munmap", addr=B + MB, len=6 * MB)]
    res = run(ev(rows), policies="none,refcount")
    unmap = effects_by_policy(res, len(rows) - 1)
    assert (unmap["none"]["pte_tables_freed"], unmap["none"]["pte_tables_emptied"]) == (2, 2)
    assert (unmap["refcount"]["pte_tables_freed"], unmap["refcount"]["pte_tables_emptied"]) == (4, 0)


def test_fork_child_row_counts_the_copied_empty_table():
    rows = [mmap(B, 4 * MB)] + touch_range(B, 4 * KB4) + [madv(B, 4 * KB4), dict(kind="fork", child_pid=101)]
    res = run(ev(rows), policies="none")
    (child,) = [r for r in res.effects.to_pylist() if r["kind"] == "fork"]
    assert child["pid"] == 101 and child["event_row"] == len(rows) - 1
    assert (child["pte_tables_allocated"], child["upper_tables_allocated"], child["pte_tables_emptied"]) == (1, 2, 1)


def test_thp_split_and_exit():
    rows = [mmap(B, 4 * MB), madv(B, 4 * MB, 14), fault(B + 5 * KB4), madv(B, 2 * MB), dict(kind="exit")]
    res = run(ev(rows), policies=ALL, thp="always")
    for r in effects_by_policy(res, 3).values():   # whole-2 MiB zap of a THP: freed under every policy
        assert (r["pte_tables_emptied"], r["pte_tables_freed"]) == (0, 1)
    res = run(ev(rows[:3] + [madv(B, MB), dict(kind="exit")]), policies=ALL, thp="always")
    assert effects_by_policy(res, 3) == {}         # split, half still mapped
    assert all(r["pte_tables_freed"] == 1 for r in effects_by_policy(res, 4).values())  # exit


def test_mremap_within_one_table_is_not_an_emptying():
    rows = [mmap(B, 2 * MB)] + touch_range(B, 4 * KB4)
    rows.append(dict(kind="mremap", addr=B, len=4 * KB4, new_len=4 * KB4, flags=3, new_addr=B + 64 * KB4,
                     ret=B + 64 * KB4))
    res = run(ev(rows), policies=ALL)
    assert effects_by_policy(res, len(rows) - 1) == {}


def test_empty_and_one_event_inputs():
    res = replay(ev([]), ReplayOptions(policies="all"))
    assert res.effects.num_rows == 0 and res.occupancy.num_rows == 0
    assert res.effects.schema.equals(EFFECTS.schema) and res.occupancy.schema.equals(OCCUPANCY.schema)
    res = run(ev([fault(B)]))
    assert res.effects.num_rows == 6 and res.occupancy.column("pte_tables").to_pylist() == [1] * 6


# ----------------------------------------------------------------------------- occupancy, by hand

def test_occupancy_regions_entries_and_full_tables():
    rows = [mmap(B, 3 * GB)] + touch_range(B, 2 * MB) + touch_range(B + 2 * MB, 3 * KB4)
    rows += [fault(B + 4 * MB, write=False), madv(B + 4 * MB, KB4), fault(B + 2 * GB + 5 * MB)]
    res = run(ev(rows), policies="none", snapshots=1)
    got = [(r["region_start"], r["pte_tables"], r["empty_pte_tables"], r["live_entries"], r["full_pte_tables"])
           for r in res.occupancy.to_pylist()]
    assert got == [(B, 3, 1, 515, 1), (B + 2 * GB, 1, 0, 1, 0)]
    assert set(res.occupancy.column("t_ns").to_pylist()) == {res.summary.column("end_ns")[0].as_py()}


def test_snapshots_thin_the_ticks_and_end_at_the_trace_end():
    rows = [mmap(B, 4 * MB, t_ns=5_000_000)] + [fault(B + i * KB4, t_ns=(i + 1) * 10_000_000 + 7)
                                                for i in range(40)]
    table = ev(rows)
    for n in (0, 1, 2, 3, 7, 120):
        res = run(table, policies="none", snapshots=n)
        times = sorted(set(res.occupancy.column("t_ns").to_pylist()))
        assert len(times) <= n
        if n:
            assert times[-1] == rows[-1]["t_ns"]
            gaps = {b - a for a, b in zip(times[:-1], times[1:-1])}
            assert len(gaps) <= 1 and all(t % 10_000_000 == 0 for t in times[:-1])
    assert len(set(run(table, policies="none", snapshots=7).occupancy.column("t_ns").to_pylist())) == 7


@pytest.mark.parametrize("first", [0, 1, 9_999_999, 10_000_000, 123_456_789])
def test_snapshot_every_is_the_smallest_stride(first):
    for span in (0, 1, 10_000_000, 10_000_001, 95_000_000, 1_000_000_000):
        for n in (0, 1, 2, 3, 10, 120):
            k, end = snapshot_every(first, first + span, 10_000_000, n)
            ticks, ref_end = snapshot_ticks([{"t_ns": first}, {"t_ns": first + span}], 10_000_000, n)
            assert end == ref_end
            got = [t for t in range((first // 10_000_000 + 1) * 10_000_000, first + span, 10_000_000)
                   if k and (t // 10_000_000) % k == 0]
            assert got == ticks, (first, span, n, k)


# ----------------------------------------------------------------------------- random streams

@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 60), thp=st.sampled_from(["never", "madvise", "always"]),
       snapshots=st.sampled_from([0, 1, 3, 120]))
@example(seed=16406, n=3, thp="never", snapshots=3)       # a process's first event exactly on a tick
def test_random_streams_match_reference_both_paths(seed, n, thp, snapshots):
    table = synth.random_stream(seed, n, pids=(100, 101, 102))
    run(table, policies=ALL_FAST_TIMERS, thp=thp, snapshots=snapshots, interval_ns=2_000_000)


def test_interleaved_processes_with_short_timers_both_paths():
    rows = interleaved_rows(600, 0.03)
    for thp in ("never", "always"):
        run(ev(rows), policies="none,pt_reclaim,refcount,scan:30us,delayed:5us,delayed:40us,all_levels",
            thp=thp, interval_ns=20_000, snapshots=50)


def test_seed_loop_fast_path_with_timers_inside_runs():
    for split in (1, 2):
        run(synth.seed_loop(1, 40, split), policies="none,pt_reclaim,refcount,scan:20us,delayed:10us,all_levels",
            interval_ns=50_000, snapshots=30)


def test_growth_of_the_effects_array():
    """More effect rows than the initial capacity (4096; too many events for the reference):
    rows keep their identity when ef grows, both paths agree, the totals hold."""
    table = synth.seed_loop(20, 2500, 1)
    res = {fast: replay(table, ReplayOptions(policies="none,delayed:3ms", fast_path=fast, occupancy_snapshots=5))
           for fast in (True, False)}
    assert res[True].effects.equals(res[False].effects) and res[True].occupancy.equals(res[False].occupancy)
    none = rows_of(res[True].effects, "none")
    assert len(none) == 2 * 2500 + 1 and sum(r["pte_tables_emptied"] for r in none) == 2500
    assert none[-1]["kind"] == "exit" and none[-1]["pte_tables_freed"] == 2500
    t_exit = table.column("t_ns")[-1].as_py()
    assert all(r["empty_table_ns"] == t_exit - r["t_ns"] for r in none if r["kind"] == "madvise")
    delayed = rows_of(res[True].effects, "delayed:3ms")
    assert sum(r["pte_tables_freed"] for r in delayed) == 2500
    for r in delayed:
        if r["kind"] == "madvise":  # freed after the hold, or by the exit when it comes first
            held = r["t_ns"] + 3_000_000 <= t_exit
            assert (r["pte_tables_freed"], r["empty_table_ns"]) == ((1, 3_000_000) if held else (0, t_exit - r["t_ns"]))


# ----------------------------------------------------------------------------- real captures

@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    out = tmp_path_factory.mktemp("captures")
    return lambda name: ingest([DATA / name], out / f"{name}.events.parquet", force=True)


def dontneed_rows(events_path: Path) -> set[int]:
    ev_table = read_table(events_path, EVENTS, columns=["kind", "advice", "failed"])
    mask = pc.and_(pc.and_(pc.equal(ev_table["kind"], "madvise"), pc.equal(ev_table["advice"], 4)),
                   pc.invert(ev_table["failed"]))
    return set(np.flatnonzero(mask.to_numpy(zero_copy_only=False)).tolist())


def test_real_seed_2m_each_dontneed_empties_one_table_under_none(ingested):
    events = ingested("seed-2m")
    res = replay(events, ReplayOptions(policies="none,pt_reclaim"))
    dontneed = dontneed_rows(events)
    assert len(dontneed) == 1500
    eff = {p: [r for r in rows_of(res.effects, p)] for p in ("none", "pt_reclaim")}
    by_row = {p: {r["event_row"]: r for r in rows} for p, rows in eff.items()}
    assert all(by_row["none"][i]["pte_tables_emptied"] == 1 for i in dontneed)
    assert all(by_row["pt_reclaim"][i]["pte_tables_freed"] == 1 and by_row["pt_reclaim"][i]["pte_tables_emptied"] == 0
               for i in dontneed)
    assert sum(r["pte_tables_emptied"] for r in eff["pt_reclaim"]) == 0
    emptied_none = sum(r["pte_tables_emptied"] for r in eff["none"])
    final = {r["policy"]: r["final_vmpte_bytes"] for r in res.summary.to_pylist()}
    # the tables DONTNEED emptied are never refilled in this capture: all still there at exit
    left = sum(by_row["none"][i]["pte_tables_emptied"] for i in dontneed)
    assert emptied_none == left == len(dontneed)
    assert emptied_none * KB4 == final["none"] - final["pt_reclaim"]
    end = {r["pid"]: r["end_ns"] for r in rows_of(res.summary, "none")}
    for i in dontneed:  # each stayed empty from its madvise to the exit
        r = by_row["none"][i]
        assert r["empty_table_ns"] == end[r["pid"]] - r["t_ns"]


def test_real_seed_1m_halves_second_half_empties_under_pt_reclaim(ingested):
    events = ingested("seed-1m-halves")
    res = replay(events, ReplayOptions(policies="none,pt_reclaim"))
    dontneed = sorted(dontneed_rows(events))
    assert len(dontneed) == 3000
    pt = {r["event_row"]: r for r in rows_of(res.effects, "pt_reclaim")}
    first_halves, second_halves = dontneed[0::2], dontneed[1::2]
    assert all(i not in pt for i in first_halves)
    assert all((pt[i]["pte_tables_emptied"], pt[i]["pte_tables_freed"]) == (1, 0) for i in second_halves)
    final = {r["policy"]: r["final_vmpte_bytes"] for r in res.summary.to_pylist()}
    assert final["pt_reclaim"] == final["none"]


@pytest.mark.parametrize("name", ["seed-2m", "jemalloc-churn", "threads-zap", "mixed-vma"])
def test_real_captures_totals(ingested, name):
    """Summary counts and the final timeseries rows agree with the effects and the last snapshot."""
    events = ingested(name)
    res = replay(events, ReplayOptions(policies="all", occupancy_snapshots=40))
    assert len(set(res.occupancy.column("t_ns").to_pylist())) <= 40
    for spec in set(res.summary.column("policy").to_pylist()):
        eff = defaultdict(lambda: defaultdict(int))
        for r in rows_of(res.effects, spec):
            for k in COUNTS:
                eff[r["pid"]][k] += r[k]
        for s in rows_of(res.summary, spec):
            assert eff[s["pid"]]["pte_tables_allocated"] == s["pte_tables_allocated"]
            assert eff[s["pid"]]["pte_tables_freed"] == s["pte_tables_freed"]
        last = {}
        for r in rows_of(res.timeseries, spec):
            last[r["pid"]] = r
        t_end = max(r["t_ns"] for r in last.values())
        occ = defaultdict(int)
        for r in rows_of(res.occupancy, spec):
            if r["t_ns"] == t_end:
                occ[r["pid"]] += r["pte_tables"]
        for pid, r in last.items():
            assert occ[pid] * KB4 == r["vmpte_bytes"] - KB4 * (r["pmd_tables"] + r["pud_tables"]), (spec, pid)


# ----------------------------------------------------------------------------- files, views, schema

def test_replay_to_dir_writes_effects_and_occupancy_and_views_read_them(tmp_path):
    events = tmp_path / "seed.events.parquet"
    seed = synth.seed_loop(1, 4, 1)
    pq.write_table(seed.slice(0, seed.num_rows - 1), events)  # no exit: the tables are still there at the end
    tree = tmp_path / "tree"
    for tid in ("a", "b"):
        out = replay_to_dir(events, tree / f"trace_id={tid}", ReplayOptions(policies="none,pt_reclaim"))
        assert (out / "effects.parquet").exists() and (out / "occupancy.parquet").exists()
        meta = pq.read_schema(out / "effects.parquet").metadata
        assert meta[b"ptreplay.schema"] == b"effects/1"
    one = connect(tree / "trace_id=a")
    n_a = execute(one, "SELECT count(*) AS n FROM effects").to_pylist()[0]["n"]
    assert n_a == pq.read_table(tree / "trace_id=a" / "effects.parquet").num_rows > 0
    con = connect(tree)
    r = execute(con, "SELECT policy, sum(pte_tables_emptied) AS e FROM effects GROUP BY policy ORDER BY policy")
    assert r.to_pylist() == [{"policy": "none", "e": 8}, {"policy": "pt_reclaim", "e": 0}]
    o = execute(con, "SELECT count(DISTINCT t_ns) AS n, min(region_start) AS r FROM occupancy").to_pylist()[0]
    assert o["n"] >= 1 and o["r"] % GB == 0
    empty = connect(events)  # a path without effects/occupancy files: empty views
    assert execute(empty, "SELECT count(*) AS n FROM occupancy").to_pylist() == [{"n": 0}]


def test_schema_registry_lists_the_new_artifacts():
    assert ARTIFACTS["effects"] is EFFECTS and ARTIFACTS["occupancy"] is OCCUPANCY
    text = describe(EFFECTS)
    assert "empty_table_ns" in text and "ns" in text
    assert [f.name for f in OCCUPANCY.schema][-5:] == ["region_start", "pte_tables", "empty_pte_tables",
                                                       "live_entries", "full_pte_tables"]
