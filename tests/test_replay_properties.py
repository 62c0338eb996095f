"""Property tests on random SYNTHETIC event streams: compiled engine == the
simple reference replayer, plus the invariants every policy must keep."""
from __future__ import annotations

from collections import defaultdict

from hypothesis import HealthCheck, given, settings, strategies as st

from ptreplay.replay import synth
from ptreplay.replay.engine import ReplayOptions, replay
from test_replay import check_reference

ALL = "none,pt_reclaim,refcount,scan:5ms,delayed:3ms,all_levels"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 60), thp=st.sampled_from(["never", "madvise", "always"]))
def test_engine_matches_reference_and_invariants(seed, n, thp):
    table = synth.random_stream(seed, n, pids=(100, 101, 102))
    res = replay(table, ReplayOptions(policies=ALL, thp=thp, interval_ns=2_000_000))
    check_reference(table, res, thp, interval_ns=2_000_000)
    for r in res.summary.to_pylist():
        assert r["pte_tables_freed"] <= r["pte_tables_allocated"]
        assert r["final_vmpte_bytes"] >= r["ideal_pte_bytes"]
        assert r["peak_vmpte_bytes"] >= r["final_vmpte_bytes"]
    rows = defaultdict(list)  # (pid, policy) -> [(t_ns, vmpte)]: a step function (rows where values change)
    for r in res.timeseries.to_pylist():
        rows[(r["pid"], r["policy"])].append((r["t_ns"], r["vmpte_bytes"]))
    for pid in {p for p, _ in rows}:
        times = sorted({t for (p, _), steps in rows.items() if p == pid for t, _ in steps})
        for t in times:
            v = {pol: at(rows[(pid, pol)], t) for pol in ("none", "refcount", "all_levels")}
            assert v["none"] >= v["refcount"] >= v["all_levels"], (pid, t, v)


def at(steps, t):
    """The value of a step function [(t_ns, value)] at t (its latest step at or before t)."""
    v = 0
    for ts, x in steps:
        if ts > t:
            break
        v = x
    return v
