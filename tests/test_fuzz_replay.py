"""Replay campaign: schema-valid but hostile events tables never crash or exhaust the replayer.

Each case starts from the events of a real bundled capture and makes it hostile the ways a
corrupt or strange trace can be while still matching the `events` schema: extreme times
(2^63-1, 0, reversed, gaps), extreme lengths and addresses (0, unaligned, above the user top,
2^64-1), random kinds and arguments (unknown madvise advice, mremap to anywhere, fork of an
existing pid, exit twice), thousands of pids, faults outside any VMA, and tiny timeseries
intervals.  Every case must end in a result or a PipelineError (the CLI's one-line error),
within a time limit, using a bounded amount of memory (the child process's peak RSS above its
start, Arrow's pool and numba included, read from /proc/self/status VmHWM after resetting it),
and a result must hold no negative VIRT, RES or VmPTE.

`PTREPLAY_FUZZ_REPLAY_CASES=5000 pytest tests/test_fuzz_replay.py -s` runs a longer campaign.
"""
from __future__ import annotations

import os
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from conftest import in_child
from ptreplay.pipeline.events.ingest import ingest
from ptreplay.replay.engine import ReplayOptions, replay
from ptreplay.schemas import EVENT_KINDS, EVENTS, conform
from ptreplay.schemas.parquet_io import read_table

DATA = Path(__file__).resolve().parent.parent / "data"
CASES = int(os.environ.get("PTREPLAY_FUZZ_REPLAY_CASES", "500"))
SECONDS_PER_CASE = 30
MAX_EXTRA_RSS = 1536 << 20  # peak RSS above the child's start
SEED = 20261203
U64 = (1 << 64) - 1
I63 = (1 << 63) - 1
TOP = 1 << 47
BASES = ["mixed-vma", "threads-zap", "jemalloc-churn"]


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bases")
    out = []
    for name in BASES:
        path = ingest([DATA / name], tmp / f"{name}.parquet")
        table = read_table(path, EVENTS)
        out.append(table.slice(0, min(len(table), 12_000)).combine_chunks())
    replay(out[0].slice(0, 1000), ReplayOptions(policies="all"))  # compile once, before forking
    return out


def _column(t: pa.Table, name: str) -> np.ndarray:
    return t.column(name).to_numpy(zero_copy_only=False).copy()


def _set(t: pa.Table, name: str, values) -> pa.Table:
    i = t.schema.get_field_index(name)
    return t.set_column(i, t.schema.field(i), pa.array(values, t.schema.field(i).type))


def _sorted(t: pa.Table) -> pa.Table:
    return t.take(pc.sort_indices(t, [("t_ns", "ascending")]))


def _rows(rng: random.Random, n: int, k: int) -> list[int]:
    return [rng.randrange(n) for _ in range(k)] if n else []


def hostile(table: pa.Table, rng: random.Random) -> tuple[str, pa.Table, int]:
    """One mutation of `table`: (its name, the table, the timeseries interval to replay with)."""
    n = len(table)
    interval = 10_000_000
    how = rng.choice(["t_max", "t_zero", "t_reverse", "t_same", "t_gap", "tiny_interval", "len_extreme",
                      "addr_extreme", "random_kinds", "many_pids", "outside_faults", "madvise_advice",
                      "mremap_anywhere", "fork_chaos", "exit_twice", "truncate_kinds", "combo"])
    hows = [rng.choice(["t_max", "len_extreme", "addr_extreme", "random_kinds", "many_pids",
                        "outside_faults", "madvise_advice", "mremap_anywhere", "fork_chaos"])
            for _ in range(3)] if how == "combo" else [how]
    for h in hows:
        if h == "t_max":
            t = _column(table, "t_ns")
            t[_rows(rng, n, rng.choice([1, 1, 3]))] = I63 - rng.randrange(1000)
            table = _sorted(_set(table, "t_ns", t))
        elif h == "t_zero":
            t = _column(table, "t_ns")
            t[_rows(rng, n, rng.randrange(1, 50))] = rng.choice([0, -1, -(1 << 62), -I63 - 1])
            table = _sorted(_set(table, "t_ns", t))
        elif h == "t_reverse":  # unsorted: refused with the row named
            table = table.take(pa.array(np.arange(n)[::-1].copy()))
        elif h == "t_same":  # every event at one instant
            table = _set(table, "t_ns", np.full(n, rng.choice([0, 1 << 40, I63]), np.int64))
        elif h == "t_gap":
            t = _column(table, "t_ns")
            cut = rng.randrange(n)
            t[cut:] += rng.choice([100 * 10**9, 10**15, 1 << 60])
            table = _set(table, "t_ns", t)
        elif h == "tiny_interval":
            t = _column(table, "t_ns")
            t[n // 2:] += 100 * 10**9
            table = _set(table, "t_ns", t)
            interval = rng.choice([1, 7, 1000])
        elif h in ("len_extreme", "addr_extreme"):
            col = "len" if h == "len_extreme" else rng.choice(["addr", "new_addr", "req_addr"])
            v = _column(table, col).astype(np.uint64)
            choices = [0, 1, 4095, U64, 1 << 63, 1 << 62, TOP, TOP - 4096, TOP + (1 << 30), U64 - 4095]
            for r in _rows(rng, n, rng.randrange(1, 200)):
                v[r] = rng.choice(choices)
            table = _set(table, col, v)
        elif h == "random_kinds":
            kinds = table.column("kind").to_pylist()
            for r in _rows(rng, n, rng.randrange(1, 500)):
                kinds[r] = rng.choice(EVENT_KINDS)
            table = _set(table, "kind", kinds)
        elif h == "many_pids":
            npids = rng.choice([1000, 3000, 5000])
            pids = np.array([rng.randrange(1, npids + 1) for _ in range(n)], np.int32)
            table = _set(table, "pid", pids)
            table = _set(table, "tid", pids)
        elif h == "outside_faults":
            addr = _column(table, "addr").astype(np.uint64)
            kind = table.column("kind").to_pylist()
            for r in range(n):
                if kind[r] == "fault" and rng.random() < 0.5:
                    addr[r] = rng.randrange(0, TOP) & ~4095
            table = _set(table, "addr", addr)
        elif h == "madvise_advice":
            kind = table.column("kind").to_pylist()
            adv = _column(table, "advice")
            for r in range(n):
                if kind[r] == "madvise":
                    adv[r] = rng.choice([-1, 0, 4, 8, 9, 14, 15, 20, 21, 22, 23, 25, 102, 103, 9999, -(1 << 31)])
            table = _set(table, "advice", adv)
        elif h == "mremap_anywhere":
            kind = table.column("kind").to_pylist()
            for col in ("new_addr", "new_len", "ret"):
                v = _column(table, col)
                for r in range(n):
                    if kind[r] == "mremap" or (col == "new_addr" and kind[r] == "mmap" and rng.random() < 0.1):
                        big = rng.choice([TOP - 4096, TOP + 4096, 1 << 56, U64 - 4095, 0])
                        v[r] = big if col != "ret" else (big & I63 if rng.random() < 0.8 else -22)
                table = _set(table, col, v)
        elif h == "fork_chaos":
            kind = table.column("kind").to_pylist()
            child = _column(table, "child_pid")
            pids = _column(table, "pid")
            for r in _rows(rng, n, rng.randrange(1, 30)):
                kind[r] = rng.choice(["fork", "clone"])
                child[r] = rng.choice([int(pids[r]), int(pids[rng.randrange(n)]), -1, 0, rng.randrange(1 << 31)])
            table = _set(table, "kind", kind)
            table = _set(table, "child_pid", child)
        elif h == "exit_twice":
            kind = table.column("kind").to_pylist()
            for r in _rows(rng, n, rng.randrange(1, 20)):
                kind[r] = rng.choice(["exit", "exec"])
            table = _set(table, "kind", kind)
        elif h == "truncate_kinds":
            table = table.filter(pc.is_in(table.column("kind"), pa.array(rng.sample(EVENT_KINDS, 3))))
    return "+".join(hows), conform(table, EVENTS), interval


def _check(result) -> str | None:
    """A problem with a successful result, or None."""
    ts, summary = result.timeseries, result.summary
    for t, cols in ((ts, ("virt_bytes", "rss_bytes", "vmpte_bytes", "pte_tables")),
                    (summary, ("final_virt_bytes", "final_rss_bytes", "final_vmpte_bytes", "peak_vmpte_bytes"))):
        for c in cols:
            if len(t) and pc.min(t.column(c)).as_py() < 0:
                return f"negative {c}"
    return None


def test_hostile_events_replay_campaign(bases):
    rng = random.Random(SEED)
    tally, failures = Counter(), []
    for case in range(CASES):
        name, table, interval = hostile(rng.choice(bases), rng)
        opts = ReplayOptions(policies="all", interval_ns=interval, threads=1)

        def run():
            res = replay(table, opts)
            return _check(res)

        (status, detail), extra = in_child(run, SECONDS_PER_CASE)
        tally[status] += 1
        if status == "crash" or (status == "ok" and detail) or extra > MAX_EXTRA_RSS:
            failures.append(f"case {case} {name}: {status} {detail} (+{extra >> 20} MiB)")
        if status == "error":
            assert "\n" not in detail, detail
    print(f"\nreplay fuzz: {CASES} cases: {dict(tally)}")
    assert failures == [], "\n".join(failures[:20])
