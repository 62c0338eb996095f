"""events/2 (faults in a narrow Parquet table, the other rows beside them) against events/1.

The oracle for the fault rows is `perf script` on the same capture (as in test_perfdata); the
whole table is compared value for value with events/1 written from the same rows by the
events/1 writer (and by the events/1 ingest path: Normalizer.push, StreamWriter).
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ptreplay.pipeline.events.ingest import ingest, read_events
from ptreplay.pipeline.warehouse import connect
from ptreplay.replay.engine import ReplayOptions, replay
from ptreplay.schemas import (EVENT_DEFAULTS, EVENT_FAULTS, EVENT_OTHERS, EVENTS, OTHERS_KEY, SCHEMA_KEY, conform,
                              events_from_rows)
from ptreplay.schemas.errors import SchemaError
from ptreplay.schemas.events_layout import JOINED, EventParts, join, split
from ptreplay.schemas.parquet_io import EventsWriter, StreamWriter, read_capture, read_table, write_table

HERE = Path(__file__).parent
REPO = HERE.parent
SEED = REPO / "data" / "seed-2m"
SEED_Z = HERE / "data" / "perf" / "seed_z.data"


def _v1(table: pa.Table, path: Path, capture: dict) -> Path:
    """`table` written by the events/1 writer."""
    write_table(table, path, EVENTS, capture=capture)
    assert pq.read_metadata(path).metadata[SCHEMA_KEY] == b"events/1"
    return path


@pytest.fixture(scope="module")
def seed(tmp_path_factory):
    """seed-2m ingested (events/2) and the same events written as events/1."""
    d = tmp_path_factory.mktemp("layout")
    v2 = ingest([SEED], d / "v2" / "events.parquet")
    v1 = _v1(read_table(v2, EVENTS), d / "v1" / "events.parquet", read_capture(v2))
    return v2, v1


def test_ingest_writes_events2_with_faults_narrow(seed):
    v2, _ = seed
    meta = pq.read_metadata(v2).metadata
    assert meta[SCHEMA_KEY] == b"events/2" and OTHERS_KEY in meta
    faults = pq.read_table(v2)
    assert faults.schema.names == EVENT_FAULTS.schema.names
    events = read_table(v2, EVENTS)
    assert faults.num_rows == events.column("kind").to_pylist().count("fault") > 0.99 * events.num_rows


def test_events2_matches_the_events1_ingest_path_value_for_value(tmp_path, seed):
    """The events/1 ingest (Normalizer.push, one wide table per batch, StreamWriter(EVENTS))
    gives the same rows and capture metadata as the events/2 ingest of the same capture."""
    v2, _ = seed
    it, meta = read_events(SEED, parts=False)
    old = tmp_path / "old.parquet"
    with StreamWriter(old, EVENTS) as w:
        for batch in it:
            w.write(batch)
        w.set_capture(meta)
    assert pq.read_metadata(old).metadata[SCHEMA_KEY] == b"events/1"
    a, b = read_table(v2, EVENTS), read_table(old, EVENTS)
    assert a.schema == b.schema and a.equals(b)
    assert read_capture(v2) == read_capture(old)


def test_events1_files_stay_readable_everywhere(tmp_path, seed):
    """read_table, replay and the warehouse give the same from an events/1 file as from events/2."""
    v2, v1 = seed
    assert read_table(v1, EVENTS).equals(read_table(v2, EVENTS))
    opts = ReplayOptions(policies=["none", "pt_reclaim"], interval_ns=10_000_000)
    r1, r2 = replay(v1, opts), replay(v2, opts)
    for name in ("summary", "timeseries", "effects", "occupancy"):
        assert getattr(r1, name).equals(getattr(r2, name)), name
    order = "ORDER BY t_ns, kind, tid, addr, len, ret"
    q1 = connect(v1).sql(f"SELECT * EXCLUDE (trace_id) FROM events {order}").fetchall()
    q2 = connect(v2).sql(f"SELECT * EXCLUDE (trace_id) FROM events {order}").fetchall()
    assert q1 == q2 and len(q1) == read_table(v2, EVENTS).num_rows
    both = connect(v1.parent.parent)             # v1/events.parquet and v2/events.parquet together
    assert both.sql("SELECT count(*) FROM events").fetchall() == [(2 * len(q1),)]


def test_fault_rows_match_perf_script(tmp_path, perf_oracle):
    """The narrow table, read with plain pyarrow, against `perf script` (the independent oracle)."""
    v2 = ingest([SEED_Z], tmp_path / "e.parquet")
    faults = pq.read_table(v2).to_pylist()
    out = subprocess.run([perf_oracle, "script", "-F", "pid,tid,cpu,time,event,trace", "--ns", "-i", str(SEED_Z)],
                         capture_output=True, text=True, check=True).stdout
    line = re.compile(r"^\s*(\d+)/(\d+)\s+\[(\d+)\]\s+(\d+)\.(\d{9}):\s+exceptions:page_fault_(user|kernel):\s+"
                      r"address=(\S+)\s+ip=(\S+)\s+error_code=(\S+)")
    want = []
    for m in filter(None, map(line.match, out.splitlines())):
        pid, tid, cpu, sec, ns, mode, addr, ip, err = m.groups()
        if int(addr, 16) >= 1 << 47:
            continue                              # kernel addresses: dropped by normalize
        want.append(dict(t_ns=int(sec) * 10**9 + int(ns), pid=int(pid), tid=int(tid), cpu=int(cpu),
                         addr=int(addr, 16), ip=int(ip, 16) if ip.startswith("0x") else None,
                         error_code=int(err, 16), user_mode=mode == "user"))
    got = sorted(faults, key=lambda r: (r["t_ns"], r["tid"], r["addr"]))
    want.sort(key=lambda r: (r["t_ns"], r["tid"], r["addr"]))
    assert len(got) == len(want) > 1000
    for g, w in zip(got, want):
        if w["ip"] is None:                       # a kernel-mode fault's ip printed as a symbol
            w["ip"] = g["ip"]
        assert g == w


def _random_events(rng, n: int) -> pa.Table:
    """Events with faults (some with a column set that no narrow row can hold) among other rows."""
    kinds = ["fault"] * 8 + ["mmap", "madvise", "fork", "exit"]
    rows, t = [], 0
    for _ in range(n):
        t += int(rng.integers(0, 3))
        kind = kinds[int(rng.integers(len(kinds)))]
        r = dict(kind=kind, t_ns=t, pid=int(rng.integers(1, 4)), tid=int(rng.integers(1, 9)),
                 cpu=int(rng.integers(-1, 2)), addr=int(rng.integers(0, 1 << 47)))
        if kind == "fault":
            r.update(ip=int(rng.integers(0, 1 << 40)), error_code=int(rng.integers(0, 32)),
                     user_mode=bool(rng.integers(2)))
            if rng.random() < 0.05:
                r["len"] = 4096                   # not a narrow fault: kept among the others
        else:
            r.update(len=int(rng.integers(1, 1 << 30)), ret=int(rng.integers(-12, 1 << 40)),
                     comm=["a", "bb", None][int(rng.integers(3))], advice=int(rng.integers(-1, 20)))
        rows.append(r)
    return events_from_rows(rows)


@pytest.mark.parametrize("seed_", range(6))
def test_split_and_join_are_inverse(seed_):
    rng = np.random.default_rng(seed_)
    table = _random_events(rng, int(rng.integers(0, 400)))
    parts = split(table)
    assert parts.num_rows == table.num_rows
    for batch_rows in (1, 7, 64, 1 << 18):
        faults = parts.faults.to_batches(max_chunksize=batch_rows)
        joined = pa.Table.from_batches(list(join(None, parts.others, 0, batch_rows, iter(faults))), schema=JOINED)
        assert conform(joined, EVENTS).equals(table)


@pytest.mark.parametrize("seed_", range(4))
def test_cut_parts_at_a_time_are_the_table_cut_there(seed_):
    """EventParts.cut (ingest: the events after a start snapshot's time go on as parts): both
    halves, joined, are the rows of the events table up to that time and after it."""
    rng = np.random.default_rng(seed_)
    table = _random_events(rng, int(rng.integers(50, 400)))
    parts = split(table)
    t = table.column("t_ns").to_numpy()
    for at in (-1, int(t[len(t) // 3]), int(t[-1]), int(t[-1]) + 1):
        first, rest = parts.cut(at)
        k = int(np.searchsorted(t, at, side="right"))
        assert first.num_rows == k and rest.num_rows == len(t) - k
        for half, want in ((first, table.slice(0, k)), (rest, table.slice(k))):
            assert conform(half.to_table(), EVENTS).equals(want)


def test_others_only_and_faults_only(tmp_path):
    for rows in ([dict(kind="mmap", t_ns=5, pid=1, len=10)],
                 [dict(kind="fault", t_ns=i, pid=1, addr=4096 * i, error_code=6, user_mode=True) for i in range(5)],
                 []):
        table = events_from_rows(rows) if rows else EVENTS.schema.empty_table()
        p = tmp_path / f"e{len(rows)}.parquet"
        with EventsWriter(p) as w:
            w.write(table)
        assert pq.read_metadata(p).metadata[SCHEMA_KEY] == b"events/2"
        assert read_table(p, EVENTS).equals(table)


def test_events2_is_conformed_on_read(tmp_path, seed):
    v2, _ = seed
    meta = pq.read_metadata(v2).metadata
    faults = pq.read_table(v2)
    bad = tmp_path / "bad.parquet"
    pq.write_table(faults.drop_columns(["ip"]).replace_schema_metadata(meta), bad)
    with pytest.raises(SchemaError, match="missing column.*ip"):
        read_table(bad, EVENTS)
    lost = tmp_path / "lost.parquet"
    pq.write_table(faults.replace_schema_metadata({k: v for k, v in meta.items() if k != OTHERS_KEY}), lost)
    with pytest.raises(SchemaError, match="without its ptreplay.events_other"):
        read_table(lost, EVENTS)
    with pytest.raises(SchemaError):
        replay(lost, ReplayOptions(policies=["none"]))


def test_schema_command_shows_both_layouts():
    out = subprocess.run([sys.executable, "-m", "ptreplay", "schema", "events"], capture_output=True, text=True,
                         check=True).stdout
    assert out.startswith("events/1") and "stored as events/2" in out and OTHERS_KEY.decode() in out
    for name in EVENT_FAULTS.schema.names + ["row"]:
        assert re.search(rf"^  {name}\s", out, re.M), name
    assert EVENT_OTHERS.schema.names[1:] == EVENTS.schema.names
    assert set(EVENT_DEFAULTS) == set(EVENTS.schema.names) - {"t_ns", "pid", "tid", "kind"}
    assert isinstance(split(EVENTS.schema.empty_table()), EventParts)


def test_nulls_in_the_fault_table_are_refused(tmp_path, seed):
    v2, _ = seed
    meta = pq.read_metadata(v2).metadata
    faults = pq.read_table(v2).slice(0, 100)
    ip = pa.array([None] + faults.column("ip").to_pylist()[1:], pa.uint64())
    bad = tmp_path / "nulls.parquet"
    pq.write_table(faults.set_column(faults.schema.get_field_index("ip"), "ip", ip).replace_schema_metadata(meta), bad)
    with pytest.raises(SchemaError, match="ip has 1 nulls"):
        read_table(bad, EVENTS)


def test_time_range_counts_the_other_rows(tmp_path):
    """replay's time range (snapshot spacing) of an events/2 file spans its other rows too."""
    from ptreplay.replay.engine import _time_range
    rows = [dict(kind="mmap", t_ns=10, pid=1, len=8192, addr=1 << 30, ret=1 << 30),
            dict(kind="fault", t_ns=20, pid=1, addr=1 << 30, error_code=6, user_mode=True),
            dict(kind="munmap", t_ns=90, pid=1, addr=1 << 30, len=8192)]
    p = tmp_path / "e.parquet"
    with EventsWriter(p) as w:
        w.write(events_from_rows(rows))
    assert _time_range(p) == (10, 90) == _time_range(_v1(read_table(p, EVENTS), tmp_path / "v1.parquet", {}))
