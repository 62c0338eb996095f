"""The perf.data reader's page faults apart (`read(split=True)`, RawColumns.faults) and what
normalize does with them: the slow reference is the reader's unsplit path (every row in one
RawColumns, itself checked against `perf script` in test_perfdata.py) and normalize's merged
path, which must give the same events."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ptreplay.pipeline.events import normalize
from ptreplay.pipeline.events.ingest import ingest
from ptreplay.pipeline.formats.base import FAULT_EVENTS, RawColumns, rank
from ptreplay.pipeline.formats.perf import reader as perfdata
from ptreplay.schemas import EVENTS
from ptreplay.schemas.parquet_io import read_capture, read_table

HERE = Path(__file__).parent
REPO = HERE.parent
PERF = sorted((HERE / "data" / "perf").glob("*.data"))
BUNDLED = sorted(REPO.glob("data/*/perf.data"))


def _rows(path: Path, split: bool) -> dict:
    """Every row the reader gives, merged, with what normalize reads of a fault row (a0..a2's low
    32 bits; a3..a5, ret and comm are undefined for faults: left out)."""
    cap = perfdata.read(path, columns=True, split=split)
    parts = []
    for b in cap.batches:
        m = b.merged()
        names = np.array(list(m.events) + [""])
        c = m.columns
        fault = np.isin(names[m.event], FAULT_EVENTS)
        part = {k: c[k].copy() for k in ("t_ns", "pid", "tid", "cpu", "a0", "a1", "seq")}
        part["a2"] = c["a2"] & np.uint64(0xFFFFFFFF)
        part["event"] = names[m.event]
        for k in ("a3", "a4", "a5", "ret"):
            part[k] = np.where(fault, 0, c[k])
        part["comm"] = np.array([None if fault[i] else m.comm_text(i) for i in range(len(m.event))], object)
        parts.append(part)
    rows = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}
    return rows, cap.meta["events_by_name"]


@pytest.mark.parametrize("path", PERF + BUNDLED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_split_rows_merge_to_the_rows_of_the_unsplit_reader(path):
    """Fault rows apart and merged back: the same rows, in the same order, counted the same."""
    from ptreplay.schemas.errors import TraceFormatError
    try:
        want, want_counts = _rows(path, split=False)
    except TraceFormatError as e:             # the fixtures of bad captures fail the same way
        with pytest.raises(TraceFormatError) as got:
            _rows(path, split=True)
        assert str(got.value) == str(e)
        return
    got, got_counts = _rows(path, split=True)
    assert got_counts == want_counts
    assert set(got) == set(want)
    for k in want:
        assert len(got[k]) == len(want[k]) and (got[k] == want[k]).all(), (path, k)


@pytest.mark.parametrize("name", ["seed_z.data", "mt_z.data", "seed_pipez.data", "seed_plain.data"])
def test_split_rows_are_the_same_at_any_chunk_boundary(monkeypatch, name):
    """The decoder walks decompressed chunks itself, cut where the bytes end: chunks cut
    anywhere, round marks among them, pipe mode's header records first, give the rows of the
    unsplit reader on whole chunks (records cut by a chunk end: the test below)."""
    from ptreplay.pipeline.formats.perf import walk
    want, _ = _rows(HERE / "data" / "perf" / name, split=False)
    for chunk in range(512, 2600, 97):
        monkeypatch.setattr(walk, "CHUNK_BYTES", chunk)
        got, _ = _rows(HERE / "data" / "perf" / name, split=True)
        monkeypatch.undo()
        for k in want:            # seq may count a record split across compressed chunks once more
            if k != "seq":
                assert (got[k] == want[k]).all(), (name, chunk, k)


def _unsplit(monkeypatch):
    read = perfdata.read
    monkeypatch.setattr(perfdata, "read", lambda *a, split=False, **kw: read(*a, **kw))


@pytest.mark.parametrize("path", [p.parent for p in BUNDLED], ids=lambda p: p.name)
def test_ingest_of_split_faults_equals_the_merged_path(path, tmp_path, monkeypatch):
    """Each bundled capture ingested with the fault rows apart (normalize's fast path, and its
    merged fallback for batches with an exec, a fault end, a kernel address ...) and without:
    identical events and normalize statistics."""
    fast = ingest([path], tmp_path / "split.parquet")
    _unsplit(monkeypatch)
    slow = ingest([path], tmp_path / "merged.parquet")
    assert read_table(fast, EVENTS).equals(read_table(slow, EVENTS))
    a, b = read_capture(fast), read_capture(slow)
    assert a["normalize"] == b["normalize"] and a["events_by_name"] == b["events_by_name"]


def test_the_fast_path_and_its_fallbacks_are_both_taken(tmp_path, monkeypatch):
    """Across the bundled captures most split batches take the fast path, and some must merge
    (an exec, a fault end): the equality test above compares both."""
    outcomes = []
    pairs = normalize.Normalizer._split_pairs
    monkeypatch.setattr(normalize.Normalizer, "_split_pairs",
                        lambda self, raw: outcomes.append(pairs(self, raw)) or outcomes[-1])
    for name in ("jvm-launch", "jemalloc-thp-always", "seed-2m"):
        ingest([REPO / "data" / name], tmp_path / f"{name}.parquet")
    fast = sum(o is not None for o in outcomes)
    assert fast > 0 and len(outcomes) - fast > 0, outcomes.count(None)


def test_rank_and_between_merge_by_time_then_seq():
    """Equal times interleave by seq, whichever part a row is in (the slow reference: a lexsort
    of all rows)."""
    rng = np.random.default_rng(3)
    n = 4000
    t = np.sort(rng.integers(0, 300, n))                      # many equal times
    seq = np.arange(n)
    rng.shuffle(seq[:])
    order = np.lexsort((seq, t))
    t, seq = t[order], seq[order]
    fault = rng.random(n) < 0.8
    fi, oi = np.flatnonzero(fault), np.flatnonzero(~fault)
    faults = {"t_ns": t[fi], "pid": np.full(len(fi), 5, np.int32), "tid": np.full(len(fi), 6, np.int32),
              "cpu": np.zeros(len(fi), np.int32), "addr": fi.astype(np.uint64) * 4096, "ip": np.ones(len(fi), np.uint64),
              "error_code": np.full(len(fi), -2, np.int32), "user_mode": fi % 2 == 0, "seq": seq[fi]}
    cols = {k: np.zeros(len(oi), np.uint64) for k in ("a0", "a1", "a2", "a3", "a4", "a5")}
    cols.update(t_ns=t[oi], pid=np.full(len(oi), 5, np.int32), tid=np.full(len(oi), 6, np.int32),
                cpu=np.zeros(len(oi), np.int32), ret=np.full(len(oi), 7, np.int64), seq=seq[oi])
    cols["a0"] = oi.astype(np.uint64)
    raw = RawColumns(cols, np.zeros(len(oi), np.int32), ["sys_exit_mmap"], np.full(len(oi), -1, np.int32), [],
                     faults)
    assert (rank(t[oi], seq[oi], t[fi], seq[fi]) + np.arange(len(oi)) == oi).all()
    m = raw.merged()
    assert len(m) == n and (m.columns["t_ns"] == t).all() and (m.columns["seq"] == seq).all()
    names = np.array(m.events)[m.event]
    assert (names[fi] == np.where(fi % 2 == 0, "page_fault_user", "page_fault_kernel")).all()
    assert (names[oi] == "sys_exit_mmap").all() and (m.columns["ret"][oi] == 7).all()
    assert (m.columns["a0"][fi] == fi.astype(np.uint64) * 4096).all() and (m.columns["a2"][fi] == 0xFFFFFFFE).all()
    lo, hi = int(t[n // 3]), int(t[2 * n // 3])
    inside = (t >= lo) & (t <= hi)
    w = raw.between(lo, hi)
    assert (w.columns["seq"] == seq[inside]).all()


@pytest.mark.parametrize("disorder", [0.0, 0.03])
def test_split_orderer_releases_what_a_sorted_reference_releases(disorder):
    """SplitOrderer against a slow reference (all pending rows sorted by (t_ns, seq)): every
    release, its pieces merged, is the reference's rows up to a time no later than the limit
    (whole segments may stop earlier), and each piece's other rows lie after the previous piece's
    last fault row and before its own; at the end every row is out."""
    rng = np.random.default_rng(5)
    o = perfdata.SplitOrderer(reuse=True, piece=3000, hold=500)
    pending = np.empty((0, 3), np.int64)          # (t_ns, seq, is fault)
    seq = t = 0
    pieces = 0
    for step in range(301):
        n = int(rng.integers(0, 4000)) if step < 300 else 0
        is_fault = rng.random(n) < 0.95
        ts = t + np.cumsum(rng.integers(0, 5, n))
        late = rng.random(n) < disorder
        ts[late] -= rng.integers(0, 4000, int(late.sum()))
        seqs = np.arange(seq, seq + n)
        f, _ = o.faults.room(n)
        rows, _ = o.others.room(n)
        nf, no = int(is_fault.sum()), int((~is_fault).sum())
        f["t_ns"][:nf], f["seq"][:nf] = ts[is_fault], seqs[is_fault]
        f["addr"][:nf] = seqs[is_fault].astype(np.uint64) * 7
        rows["t_ns"][:no], rows["seq"][:no] = ts[~is_fault], seqs[~is_fault]
        o.add((nf, no))
        pending = np.concatenate([pending, np.stack([ts, seqs, is_fault.astype(np.int64)], 1)])
        seq, t = seq + n, max(t, int(ts.max()) if n else t)
        limit = None if step == 300 else t - int(rng.integers(0, 5000))
        got = o.release(limit)
        pending = pending[np.lexsort((pending[:, 1], pending[:, 0]))]
        if not got:
            continue
        # released: every row up to a time no later than the limit (whole segments: maybe earlier)
        last = max(int(p[0]["t_ns"][-1]) if len(p[0]["t_ns"]) else -1 for p in got)
        last = max([last] + [int(p[1]["t_ns"][-1]) for p in got if len(p[1]["t_ns"])])
        assert limit is None or last <= limit
        cut = len(pending) if limit is None else int(np.searchsorted(pending[:, 0], last, side="right"))
        want, pending = pending[:cut], pending[cut:]
        merged = []
        prev_end = (-1 << 62, -1)
        for j, (faults, others) in enumerate(got):
            assert len(faults["seq"]) <= 3000
            assert (faults["addr"] == faults["seq"].astype(np.uint64) * 7).all()    # columns travel together
            end = (int(faults["t_ns"][-1]), int(faults["seq"][-1])) if len(faults["seq"]) else None
            for k in range(len(others["seq"])):
                key = (int(others["t_ns"][k]), int(others["seq"][k]))
                assert key > prev_end and (end is None or key < end or j == len(got) - 1)
            prev_end = end or prev_end
            both = np.concatenate([np.stack([faults["t_ns"], faults["seq"]], 1),
                                   np.stack([others["t_ns"], others["seq"]], 1)])
            merged.append(both[np.lexsort((both[:, 1], both[:, 0]))])
            pieces += 1
        merged = np.concatenate(merged)
        assert (merged == want[:, :2]).all(), step
    assert len(pending) == 0 and pieces > 100 and o.pending == 0


@pytest.mark.parametrize("other_pid, fast", [(5, True), (-1, True), (9, False)])
def test_a_thread_given_another_pid_by_an_other_row_sends_the_batch_to_the_merge(other_pid, fast):
    """_split_pairs takes the fast path only when no other row with a known pid gives a fault
    row's thread (tid 6, pid 5 here) another pid; a thread no fault row names may have any."""
    n = 3
    faults = {"t_ns": np.arange(n) * 10, "pid": np.full(n, 5, np.int32), "tid": np.full(n, 6, np.int32),
              "cpu": np.zeros(n, np.int32), "addr": np.arange(n, dtype=np.uint64) * 4096,
              "ip": np.ones(n, np.uint64), "error_code": np.full(n, 6, np.int32), "user_mode": np.ones(n, bool),
              "seq": np.arange(n) * 2}
    cols = {k: np.zeros(2, np.uint64) for k in ("a0", "a1", "a2", "a3", "a4", "a5")}
    cols.update(t_ns=np.array([5, 15]), pid=np.array([7, other_pid], np.int32), tid=np.array([8, 6], np.int32),
                cpu=np.zeros(2, np.int32), ret=np.zeros(2, np.int64), seq=np.array([1, 3]))
    raw = RawColumns(cols, np.zeros(2, np.int32), ["sys_exit_mmap"], np.full(2, -1, np.int32), [], faults)
    got = normalize.Normalizer()._split_pairs(raw)
    assert (got == ([6], [5])) if fast else got is None


@pytest.mark.parametrize("name", ["jvm-attach", "redis-attach"])
def test_records_cut_by_a_chunk_end_are_carried_into_the_next(monkeypatch, name):
    """Real captures whose decompressed chunks end inside a record (perf cuts its zstd stream
    into records anywhere): the decoder carries the record's start into the next chunk, in the
    room before its data or (room too small) a new buffer, and the rows equal the unsplit
    reader's.  Both ways are counted, so the test fails if it no longer exercises them."""
    from ptreplay.pipeline.formats.perf import decode, walk
    path = REPO / "data" / name / "perf.data"
    want, want_counts = _rows(path, split=False)
    seen = {"room": 0, "new": 0}
    carried_in = decode.Decoder._carried_in

    def counting(self, ch):
        carry = self._carry.get(ch.stream)
        if carry is not None and len(carry):
            seen["room" if len(carry) <= ch.start else "new"] += 1
        return carried_in(self, ch)

    monkeypatch.setattr(decode.Decoder, "_carried_in", counting)
    for chunk in (1500, 4096, walk.CHUNK_BYTES):
        for room in (walk.HEAD_ROOM, 16):
            with monkeypatch.context() as m:
                m.setattr(walk, "CHUNK_BYTES", chunk)
                m.setattr(walk, "HEAD_ROOM", room)
                got, got_counts = _rows(path, split=True)
            assert got_counts == want_counts
            for k in want:
                if k != "seq":
                    assert (got[k] == want[k]).all(), (name, chunk, room, k)
    assert seen["room"] and seen["new"], seen
