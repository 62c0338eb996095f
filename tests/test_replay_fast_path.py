"""The batched fast path for faults (kernels.fast_fault_run) must leave exactly
the state the generic per-event path (apply_event -> do_fault) leaves: same
timeseries, same summary (floats included), same counts.  Streams are SYNTHETIC."""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from ptreplay.replay import synth
from ptreplay.replay.engine import ReplayOptions, replay

ALL = "none,pt_reclaim,refcount,scan:5ms,delayed:3ms,all_levels"
B = 1 << 39
MB = 1 << 20


def same(table, **kw):
    fast = replay(table, ReplayOptions(fast_path=True, **kw), capture=synth.capture_meta("t"))
    slow = replay(table, ReplayOptions(fast_path=False, **kw), capture=synth.capture_meta("t"))
    assert fast.timeseries.equals(slow.timeseries)
    assert fast.summary.equals(slow.summary)
    assert fast.effects.equals(slow.effects) and fast.occupancy.equals(slow.occupancy)
    assert fast.metadata["counts"] == slow.metadata["counts"]
    return fast


def test_seed_loop_with_timers_inside_fault_runs():
    # 1 us per event: ticks every 50 events, scans every 20, delayed holds of 10 events
    for split in (1, 2, 3):
        res = same(synth.seed_loop(1, 40, split), policies="none,pt_reclaim,refcount,scan:20us,delayed:10us,all_levels",
                   interval_ns=50_000, thp="never")
        assert res.summary.num_rows == 6


def interleaved_rows(steps: int, p_madvise: float, seed: int = 7) -> list[dict]:
    """Two processes (a fork) faulting reads and writes into anonymous and file mappings,
    now and then zapping a 2 MiB region: a stream that interleaves processes and tables."""
    rng = np.random.default_rng(seed)
    rows = [dict(kind="mmap", addr=B, len=8 * MB, prot=3, flags=0x22, fd=-1, ret=B),
            dict(kind="madvise", addr=B + 4 * MB, len=4 * MB, advice=14),
            dict(kind="mmap", addr=B + 16 * MB, len=4 * MB, prot=1, flags=0x02, fd=3, ret=B + 16 * MB),
            dict(kind="fork", child_pid=101)]
    t = 1_000_000
    for _ in range(steps):
        t += int(rng.integers(0, 3)) * 700
        pid = int(rng.choice([100, 101]))
        base = B + int(rng.choice([0, 2, 4, 6, 16])) * MB
        rows.append(dict(t_ns=t, pid=pid, kind="fault", addr=base + int(rng.integers(0, 64)) * 4096,
                         error_code=int(rng.choice([4, 6, 6, 7, 5, -1]))))
        if rng.random() < p_madvise:
            rows.append(dict(t_ns=t, pid=pid, kind="madvise", addr=base, len=2 * MB, advice=4))
    for i, r in enumerate(rows[:4]):
        r["t_ns"] = 1_000_000 - 4 + i
    rows.append(dict(t_ns=t + 1, kind="exit"))
    return rows


def test_interleaved_processes_reads_writes_thp():
    rows = interleaved_rows(3000, 0.01)
    table = synth.events_table(rows)
    for thp in ("never", "madvise", "always"):
        same(table, policies=ALL, thp=thp, interval_ns=200_000)
        # timers much shorter than the stream: scans, delayed frees and ticks between fault runs
        same(table, policies="refcount,scan:30us,delayed:5us,delayed:40us,all_levels", thp=thp, interval_ns=20_000)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 80), thp=st.sampled_from(["never", "madvise", "always"]))
def test_random_streams(seed, n, thp):
    same(synth.random_stream(seed, n, pids=(100, 101, 102)), policies=ALL, thp=thp, interval_ns=2_000_000)
