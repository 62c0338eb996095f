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
    steps = defaultdict(dict)
    for r in res.timeseries.to_pylist():
        steps[(r["pid"], r["t_ns"])][r["policy"]] = r["vmpte_bytes"]
    for v in steps.values():
        assert v["none"] >= v["refcount"] >= v["all_levels"]
