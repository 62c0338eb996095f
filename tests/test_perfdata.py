"""perf.data reader: `perf script` is the oracle; garbage must raise TraceFormatError.

Captures: tests/data/perf/ (made by make_captures.sh there) plus any
data/*/perf.data recorded by `ptreplay record`.
"""
from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from ptreplay.schemas.errors import TraceFormatError
from ptreplay.pipeline.formats import RAW, detect
from ptreplay.pipeline.formats.perf import reader as perfdata
from ptreplay.pipeline.formats.perf import walk

HERE = Path(__file__).parent
PERF_DIR = HERE / "data" / "perf"
REPO = HERE.parent
GOOD = ["seed_z.data", "seed_plain.data", "seed_pipe.data", "seed_pipez.data", "mt_z.data",
        "mt_threads_z.data", "mt_cg_z.data", "migrate_z.data", "migrate_threads_z.data"]
CAPTURES = [PERF_DIR / n for n in GOOD] + [pytest.param(p, marks=pytest.mark.slow)
                                           for p in sorted(REPO.glob("data/*/perf.data"))]
PERF = shutil.which("perf")
needs_perf = pytest.mark.usefixtures("perf_oracle")


def read_all(path, **kw):
    cap = perfdata.read(path, **kw)
    tables = list(cap.batches)
    for t in tables:
        assert t.schema == RAW
    return (pa.concat_tables(tables) if tables else RAW.empty_table()), cap.meta


# ----------------------------------------------------------------------------- the oracle

_LINE = re.compile(r"^\s*(?P<comm>.*?)\s+(?P<pid>-?\d+)/(?P<tid>-?\d+)\s+\[(?P<cpu>\d+)\]\s+"
                   r"(?P<sec>\d+)\.(?P<ns>\d{9}):\s+(?P<sys>\w+):(?P<ev>\w+):\s?(?P<trace>.*)$")
_HEX = re.compile(r"^0x[0-9a-f]+$")


def perf_script(path) -> list[dict]:
    """Tracepoint samples as `perf script` decodes them, in its (time) order."""
    out = subprocess.run([PERF, "script", "-F", "comm,pid,tid,cpu,time,event,trace", "--ns", "-i", str(path)],
                         capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        m = _LINE.match(line)
        if m:
            rows.append(m.groupdict())
    return rows


def _kv(trace: str) -> dict:
    """key=value pairs of a tracepoint's text; a value runs to the next key (a JVM's thread
    names hold spaces: comm=VM Thread pid=...)."""
    return dict(re.findall(r"(\w+)=(.*?)(?=\s+\w+=|$)", trace))


def compare_row(ref: dict, row: dict) -> list[str]:
    """Field-by-field differences between one perf script line and one RAW row."""
    diffs = []

    def same(name, want, got):
        if want != got:
            diffs.append(f"{name}: perf script {want!r}, reader {got!r}")

    same("t_ns", int(ref["sec"]) * 10**9 + int(ref["ns"]), row["t_ns"])
    same("pid", int(ref["pid"]), row["pid"])
    same("tid", int(ref["tid"]), row["tid"])
    same("cpu", int(ref["cpu"]), row["cpu"])
    ev, trace = ref["ev"], ref["trace"]
    same("event", ev, row["event"])
    if ev.startswith("page_fault_"):
        kv = _kv(trace)
        same("address", int(kv["address"], 16), row["a0"])
        if _HEX.match(kv["ip"]):                      # kernel faults may print a symbol
            same("ip", int(kv["ip"], 16), row["a1"])
        same("error_code", int(kv["error_code"], 16), row["a2"])
    elif ev.startswith("sys_enter_"):
        args = [int(v, 16) for v in re.findall(r"\w+: (0x[0-9a-f]+)", trace)]
        for i, want in enumerate(args):
            same(f"arg{i}", want, row[f"a{i}"])
    elif ev.startswith("sys_exit_"):
        same("ret", int(trace.strip(), 16), row["ret"] & (2**64 - 1))
    elif ev == "sched_process_fork":
        kv = _kv(trace)
        same("child_pid", int(kv["child_pid"]), row["a0"])
        same("child_comm", kv["child_comm"], row["comm"])
    elif ev == "sched_process_exec":
        kv = _kv(trace)
        same("pid", int(kv["pid"]), row["a0"])
        same("old_pid", int(kv["old_pid"]), row["a1"])
        same("filename", kv["filename"], row["comm"])
    elif ev == "sched_process_exit":
        same("comm", _kv(trace)["comm"], row["comm"])
    return diffs


@needs_perf
@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: str(Path(p).relative_to(REPO)))
def test_matches_perf_script(path):
    table, meta = read_all(path)
    ref = perf_script(path)
    ours = [r for r in table.to_pylist() if not r["event"].startswith("perf_")]
    assert len(ours) == len(ref), f"{len(ours)} tracepoint rows, perf script prints {len(ref)}"
    assert ref, "perf script printed no tracepoint samples"
    bad = []
    for i, (a, b) in enumerate(zip(ref, ours)):
        d = compare_row(a, b)
        if d:
            bad.append(f"row {i}: " + "; ".join(d))
    assert not bad, f"{len(bad)} rows differ, first: {bad[:3]}"
    counts = {}
    for r in ref:
        counts[r["ev"]] = counts.get(r["ev"], 0) + 1
    assert {k: v for k, v in meta["events_by_name"].items() if not k.startswith("perf_")} == counts


@pytest.mark.parametrize("path", [PERF_DIR / n for n in GOOD], ids=GOOD)
def test_meta_and_order(path):
    table, meta = read_all(path)
    assert meta["arch"] == "x86_64" and meta["source_format"] == "perf.data"
    assert meta["clock"] == "CLOCK_MONOTONIC"
    assert meta["sampled"] is False and meta["lost_events"] == 0
    assert "-k CLOCK_MONOTONIC" in meta["command_line"]
    assert meta["host"] and meta["kernel_release"] and meta["nr_cpus"] >= 1 and meta["perf_version"]
    t, seq = table["t_ns"].to_numpy(), table["seq"].to_numpy()
    assert (np.diff(t) >= 0).all()
    assert len(np.unique(seq)) == len(seq)
    tie = np.diff(t) == 0
    assert (np.diff(seq)[tie] > 0).all()
    assert all(m["filename"] for m in meta["mmap2"])
    events = set(table["event"].to_pylist())
    assert {"perf_comm", "page_fault_user", "sys_enter_madvise"} <= events
    execs = [r for r in table.to_pylist() if r["event"] == "perf_comm" and r["a2"] == 1]
    assert execs, "the exec COMM record (misc COMM_EXEC) is flagged"


def test_forks_and_threads_seen():
    table, _ = read_all(PERF_DIR / "mt_z.data")
    rows = table.to_pylist()
    forks = [r for r in rows if r["event"] == "perf_fork"]
    assert len({r["a1"] for r in forks}) >= 4          # 3 threads + 1 process
    assert any(r["a0"] != forks[0]["a0"] for r in forks)  # the forked child is its own process
    assert any(r["event"] == "sched_process_fork" for r in rows)


def _events(path):
    table, _ = read_all(path)
    return [(r["event"], r["a0"], r["a1"], r["a2"]) for r in table.to_pylist()
            if not r["event"].startswith("perf_")]


def test_pipe_mode_reads_like_file_mode():
    # Different runs of the same deterministic program: the anonymous-memory story must agree.
    def story(path):
        return [(e, a2) for e, a0, a1, a2 in _events(path) if e in ("sys_enter_madvise",)]
    assert story(PERF_DIR / "seed_pipez.data") == story(PERF_DIR / "seed_z.data")
    ev_pipe = {e for e, *_ in _events(PERF_DIR / "seed_pipe.data")}
    ev_file = {e for e, *_ in _events(PERF_DIR / "seed_plain.data")}
    assert ev_pipe == ev_file


def test_threads_dir_reads_like_file_mode():
    def calls(path):
        return sorted((e, a1) for e, a0, a1, a2 in _events(path)
                      if e in ("sys_enter_madvise", "sys_enter_mremap", "sys_enter_munmap"))
    assert calls(PERF_DIR / "mt_threads_z.data") == calls(PERF_DIR / "mt_z.data")
    assert perfdata.sniff_dir(PERF_DIR / "mt_threads_z.data")
    assert detect(PERF_DIR / "mt_threads_z.data") is perfdata


def test_threads_dir_streams(monkeypatch):
    """A --threads directory has no rounds: rows are released as the data files' common
    time front advances, not all at the end (a 13 M-event capture used to peak at 1.67 GB).
    Small chunks, with and without a decoding thread per file, give the default rows, and
    the rows held at any time stay a small part of the capture."""
    path = PERF_DIR / "migrate_threads_z.data"
    whole, _ = read_all(path)
    release = perfdata.Orderer.release
    for ahead in (perfdata.AHEAD_FILES, 0):
        held = []

        def spy(self, limit):
            held.append(self.pending)
            return release(self, limit)
        monkeypatch.setattr(walk, "CHUNK_BYTES", 1 << 15)
        monkeypatch.setattr(perfdata, "AHEAD_FILES", ahead)
        monkeypatch.setattr(perfdata.Orderer, "release", spy)
        got, _ = read_all(path)
        monkeypatch.undo()
        assert got.drop_columns(["seq"]).equals(whole.drop_columns(["seq"])), ahead
        assert len(held) > 10 and max(held) < len(whole) / 4, (len(held), max(held), len(whole))


def test_released_rows_reach_normalize_in_pieces(monkeypatch):
    """Rows final at one round go out in pieces of at most BATCH_ROWS: a capture recorded
    with -m 256M has rounds of ~1 M records, and normalizing each whole cost 1.36 GB."""
    for name in ("seed_z.data", "migrate_threads_z.data"):
        whole = perfdata.read(PERF_DIR / name, columns=True)
        want = [b.columns["t_ns"] for b in whole.batches]
        monkeypatch.setattr(perfdata, "BATCH_ROWS", 100)
        sizes = [len(b.columns["t_ns"]) for b in perfdata.read(PERF_DIR / name, columns=True).batches]
        monkeypatch.undo()
        assert max(sizes) <= 100 < max(len(t) for t in want), name
        assert sum(sizes) == sum(len(t) for t in want), name


def _signed(hex_text: str) -> int:
    v = int(hex_text, 16)
    return v - (1 << 64) if v >= 1 << 63 else v


@needs_perf
@pytest.mark.parametrize("name", ["migrate_z.data", "migrate_threads_z.data"])
def test_calls_that_migrate_cpus_pair_up(name):
    """workloads/migrate.c moves a thread between CPUs during its calls: a call entered
    on one CPU and left on another has its exit in another ring buffer, often earlier in
    the file than its enter.  Pairing by file order dropped those exits as orphans and
    left the enters open; every call must pair up as `perf script` shows it in time order."""
    from ptreplay.pipeline.events.ingest import read_events
    want, open_calls, moved = [], {}, 0
    for r in perf_script(PERF_DIR / name):
        t = int(r["sec"]) * 10**9 + int(r["ns"])
        if r["ev"].startswith("sys_enter_") and r["ev"] != "sys_enter_exit_group":
            open_calls[r["tid"]] = (r, t)
        elif r["ev"].startswith("sys_exit_"):
            enter, t0 = open_calls.pop(r["tid"])
            assert enter["ev"][10:] == r["ev"][9:]
            want.append((r["ev"][9:], t, _signed(r["trace"].strip()), t - t0))
            moved += enter["cpu"] != r["cpu"]
    assert moved, "no call changed CPU in this capture: nothing is tested"
    batches, meta = read_events(PERF_DIR / name)
    events = pa.concat_tables(list(batches))
    calls = events.filter(pa.compute.is_in(events["kind"], pa.array(["mmap", "munmap", "madvise", "brk",
                                                                        "mremap", "mprotect"])))
    got = list(zip(*(calls[c].to_pylist() for c in ("kind", "t_ns", "ret", "dur_ns"))))
    assert got == want
    stats = meta["normalize"]
    assert stats["orphan_exits_dropped"] == stats["lost_exit_syscalls"] == stats["time_clamped_rows"] == 0


@needs_perf
def test_zstd_stream_ending_inside_a_record(tmp_path):
    """`perf record --threads -z` can end a data file's zstd stream inside a record (the
    13 M-event capture's data.1 ended 64 bytes into a 96-byte sample) and `perf script`
    drops that record silently.  Made from a real capture: data.1's stream compressed
    again without the second half of its last record.  The reader drops it too, and says so."""
    import zstandard
    cut_dir = tmp_path / "cut_threads.data"
    shutil.copytree(PERF_DIR / "migrate_threads_z.data", cut_dir)
    blob = (cut_dir / "data.1").read_bytes()
    offs, types, sizes, stop, _ = walk_reference(blob)
    assert set(types) == {81} and stop == len(blob)          # PERF_RECORD_COMPRESSED only
    payload = b"".join(blob[o + 8:o + n] for o, n in zip(offs, sizes))
    stream = zstandard.ZstdDecompressor().decompressobj().decompress(payload)
    offs, _, sizes, stop, _ = walk_reference(stream)
    assert stop == len(stream)
    last, kept = offs[-1], sizes[-1] // 2
    cut, z = stream[:last + kept], zstandard.ZstdCompressor().compressobj()
    with open(cut_dir / "data.1", "wb") as f:         # as perf writes: one flushed piece per 32 KiB
        for i in range(0, len(cut), 1 << 15):
            piece = z.compress(cut[i:i + (1 << 15)]) + z.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
            f.write(struct.pack("<IHH", 81, 0, 8 + len(piece)) + piece)
    intact, _ = read_all(PERF_DIR / "migrate_threads_z.data")
    got, meta = read_all(cut_dir)
    assert meta["dropped_tail_bytes"] == kept
    assert any("ends %d bytes into a record" % kept in w for w in meta["warnings"])
    assert len(got) == len(intact) - 1
    assert len([r for r in got["event"].to_pylist() if not r.startswith("perf_")]) == len(perf_script(cut_dir))


def test_compressed2_records_read_like_compressed(tmp_path):
    """perf >= 6.15 wraps zstd bytes in COMPRESSED2 (header, u64 data_size, data, padded to
    8 bytes) instead of COMPRESSED; perf here (6.1) writes only the latter.  The pipe-mode
    capture with every COMPRESSED record rewritten as COMPRESSED2 gives the same rows (the
    original's rows are checked against `perf script` above)."""
    whole = (PERF_DIR / "seed_pipez.data").read_bytes()
    blob = whole[16:]                                      # the records after the pipe header
    offs, types, sizes, stop, _ = walk_reference(blob)
    assert stop == len(blob)
    out, rewritten = [whole[:16]], 0
    for p, end, typ, size in zip(offs, offs[1:] + [stop], types, sizes):
        if typ == 81:
            data = blob[p + 8:p + size]
            total = (16 + len(data) + 7) // 8 * 8
            misc = struct.unpack_from("<H", blob, p + 4)[0]
            out.append(struct.pack("<IHHQ", 83, misc, total, len(data)) + data + bytes(total - 16 - len(data)))
            rewritten += 1
        else:
            out.append(blob[p:end])           # the whole record, HEADER_TRACING_DATA's payload too
    path = tmp_path / "seed_pipez2.data"
    path.write_bytes(b"".join(out))
    assert rewritten > 1
    want, _ = read_all(PERF_DIR / "seed_pipez.data")
    got, _ = read_all(path)
    assert got.equals(want)


def test_sniff():
    head = (PERF_DIR / "seed_z.data").read_bytes()[:64]
    assert perfdata.sniff(head) and perfdata.sniff(b"2ELIFREP" + head[8:])
    assert perfdata.sniff((PERF_DIR / "seed_pipe.data").read_bytes()[:16])
    assert not perfdata.sniff(b"hello world")


def test_small_chunks_give_same_rows(monkeypatch):
    """Records and zstd frames split across chunk boundaries decode the same."""
    for name in ("seed_z.data", "seed_plain.data", "seed_pipe.data"):
        whole, _ = read_all(PERF_DIR / name)
        monkeypatch.setattr(walk, "CHUNK_BYTES", 4099)
        monkeypatch.setattr(perfdata, "BATCH_ROWS", 1000)
        cap = perfdata.read(PERF_DIR / name)
        tables = list(cap.batches)
        monkeypatch.undo()
        assert pa.concat_tables(tables).equals(whole), name


# ----------------------------------------------------------------------------- the kernel

def walk_reference(buf: bytes):
    """Naive record walk (perf_event_header {u32 type, u16 misc, u16 size}) for the kernel test."""
    offs, types, sizes, p = [], [], [], 0
    while p + 8 <= len(buf):
        typ, _, size = struct.unpack_from("<IHH", buf, p)
        if size < 8:
            return offs, types, sizes, p, 1
        extent = size
        if typ == 66 and size >= 12:
            if p + 12 > len(buf):
                break
            extent += struct.unpack_from("<I", buf, p + 8)[0]
        if p + extent > len(buf):
            break
        offs.append(p), types.append(typ), sizes.append(size)
        p += extent
    return offs, types, sizes, p, 0


@pytest.mark.parametrize("cut", [0, 7, 8, 4096, 100_003, None])
@pytest.mark.parametrize("name", ["seed_pipe.data", "seed_plain.data"])
def test_walk_kernel_matches_reference(name, cut):
    from ptreplay.pipeline.formats.perf.kernel_abi import unaligned_views
    from ptreplay.pipeline.formats.perf.kernels import walk_records
    data = (PERF_DIR / name).read_bytes()
    start = 16 if name == "seed_pipe.data" else _data_section(name)[0]
    buf = data[start:] if cut is None else data[start:start + cut]
    got = walk_records(*unaligned_views(buf), 0, len(buf))
    want = walk_reference(buf)
    for g, w in zip(got[:3], want[:3]):
        assert g.tolist() == w
    assert got[3:] == want[3:]


@pytest.mark.parametrize("name", ["seed_pipe.data", "seed_plain.data"])
def test_index_records_matches_numpy(name):
    """The producer's record index (SAMPLE, FINISHED_ROUND, the rest) equals the numpy one."""
    from ptreplay.pipeline.formats.perf.kernel_abi import unaligned_views
    from ptreplay.pipeline.formats.perf.kernels import index_records, walk_records
    data = (PERF_DIR / name).read_bytes()
    start = 16 if name == "seed_pipe.data" else _data_section(name)[0]
    types = walk_records(*unaligned_views(data[start:]), 0, len(data) - start)[1]
    for t in (types, types[:0], types[:1], np.array([9, 9, 68, 3], np.int64)):
        samples, rounds, others = index_records(t, 9, 68)      # SAMPLE, FINISHED_ROUND
        assert samples.tolist() == np.flatnonzero(t == 9).tolist()
        assert rounds.tolist() == np.flatnonzero(t == 68).tolist()
        assert others.tolist() == np.flatnonzero((t != 9) & (t != 68)).tolist()


def test_walk_kernel_bad_size():
    from ptreplay.pipeline.formats.perf.kernel_abi import unaligned_views
    from ptreplay.pipeline.formats.perf.kernels import walk_records
    buf = struct.pack("<IHH", 9, 0, 16) + bytes(8) + struct.pack("<IHH", 9, 0, 4)
    offs, _, _, stop, status = walk_records(*unaligned_views(buf), 0, len(buf))
    assert offs.tolist() == [0] and stop == 16 and status == 1


# ----------------------------------------------------------------------------- refusals

def _mutated(tmp_path, name, fn) -> Path:
    data = bytearray((PERF_DIR / name).read_bytes())
    out = tmp_path / ("bad_" + name)
    out.write_bytes(fn(data))
    return out


def _raises(path, *words, **kw):
    with pytest.raises(TraceFormatError) as e:
        read_all(path, **kw)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg
    for w in words:
        assert w in msg, msg
    return msg


def _data_section(name):
    data = (PERF_DIR / name).read_bytes()
    return struct.unpack_from("<QQ", data, 40)


@pytest.mark.parametrize("name", ["seed_plain.data", "seed_z.data", "seed_pipe.data"])
def test_truncated(tmp_path, name):
    n = (PERF_DIR / name).stat().st_size
    cut = n // 2 + 3
    msg = _raises(_mutated(tmp_path, name, lambda d: d[:cut]), "offset")
    assert re.search(r"offset \d+", msg)


def test_truncated_header(tmp_path):
    _raises(_mutated(tmp_path, "seed_z.data", lambda d: d[:50]), "offset 8", "header size")


def test_corrupt_record_size(tmp_path):
    off, _ = _data_section("seed_plain.data")

    def zero_size(d):
        p = off
        for _ in range(20):                      # the 21st record header in the data section
            p += struct.unpack_from("<H", d, p + 6)[0]
        d[p + 6:p + 8] = b"\0\0"
        return d
    _raises(_mutated(tmp_path, "seed_plain.data", zero_size), "size < 8")

    def huge_size(d):
        d[off + 6:off + 8] = b"\xff\xff"
        return d
    _raises(_mutated(tmp_path, "seed_plain.data", huge_size), "offset")


def test_corrupt_data_section_pointer(tmp_path):
    def past_end(d):
        d[48:56] = struct.pack("<Q", 10**12)
        return d
    _raises(_mutated(tmp_path, "seed_plain.data", past_end), "offset 40", "past the end")


def test_attr_size_mismatch(tmp_path):
    def bad(d):
        d[16:24] = struct.pack("<Q", 100)
        return d
    _raises(_mutated(tmp_path, "seed_plain.data", bad), "attr_size")


def test_bad_and_swapped_magic(tmp_path):
    _raises(_mutated(tmp_path, "seed_z.data", lambda d: b"NOTPERF!" + d[8:]), "bad magic")
    swapped = _mutated(tmp_path, "seed_z.data", lambda d: b"2ELIFREP" + d[8:])
    _raises(swapped, "byte-swapped", "big-endian")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.data"
    p.write_bytes(b"")
    _raises(p, "offset 0", "empty")


def test_no_fault_events_refused():
    _raises(PERF_DIR / "nofault.data", "exceptions:page_fault_user", "no page-fault events")


def test_sampled_refused_unless_allowed():
    _raises(PERF_DIR / "sampled.data", "sampled", "allow_sampled")
    table, meta = read_all(PERF_DIR / "sampled.data", allow_sampled=True)
    assert meta["sampled"] and meta["warnings"]
    assert table.num_rows > 0


def test_random_garbage_never_escapes(tmp_path):
    """Flip bytes all over a capture: only TraceFormatError (or success) may come out."""
    src = (PERF_DIR / "seed_z.data").read_bytes()
    rng = np.random.default_rng(7)
    for k in range(40):
        d = bytearray(src)
        for p in rng.integers(0, len(d), size=int(rng.integers(1, 30))):
            d[p] = int(rng.integers(0, 256))
        if k % 4 == 0:
            d = d[:int(rng.integers(0, len(d)))]
        p = tmp_path / f"g{k}.data"
        p.write_bytes(bytes(d))
        try:
            read_all(p)
        except TraceFormatError as e:
            assert "\n" not in str(e)


@pytest.mark.parametrize("name", ["seed_plain.data", "mt_z.data", "seed_z.data"])
def test_any_chunk_boundary_gives_same_rows(monkeypatch, name):
    """Chunks ending right after a short record of a minor attr (e.g. a sys_exit) used to
    read the dominant attr's fields past the buffer end (found on a full-size capture)."""
    whole, _ = read_all(PERF_DIR / name)
    for chunk in range(512, 2600, 61):
        monkeypatch.setattr(walk, "CHUNK_BYTES", chunk)
        tables = list(perfdata.read(PERF_DIR / name).batches)
        monkeypatch.undo()
        # seq (a tie-breaker) may count a record split across compressed chunks once more
        got = pa.concat_tables(tables).drop_columns(["seq"])
        assert got.equals(whole.drop_columns(["seq"])), (name, chunk)


@pytest.mark.parametrize("disorder", [0.0, 0.02])
def test_orderer_releases_what_a_sorted_reference_releases(disorder, monkeypatch):
    """Orderer against a slow reference (the pending rows sorted by (t_ns, seq), those at or
    before the limit released): chunks of random sizes fill many segments, some rows come
    late (disorder: rows, and whole chunks), and every release equals the reference's, while the frames a consumer
    still holds are never overwritten by the buffers' reuse (many held at first: few sets are
    free to reuse; then few: most are)."""
    rng = np.random.default_rng(7)
    fresh = []
    buffers = perfdata._buffers
    monkeypatch.setattr(perfdata, "_buffers", lambda cap, *spec: fresh.append(cap) or buffers(cap, *spec))
    o = perfdata.Orderer(reuse=True)
    retire = o._retire
    retired = []
    monkeypatch.setattr(o, "_retire", lambda g: retired.append(g.cap) or retire(g))
    pending = np.empty((0, 2), np.int64)    # the reference: (t_ns, seq) of rows not yet released
    held: list = []                         # released frames still alive, with a copy of their rows
    seq = t = releases = 0
    for step in range(401):
        n = int(rng.integers(0, 3000)) if step < 400 else 0
        rows, args = o.room(n)
        ts = t + np.cumsum(rng.integers(0, 5, n))
        late = rng.random(n) < disorder
        ts[late] -= rng.integers(0, 4000, int(late.sum()))
        if disorder and rng.random() < 0.1:                   # a whole chunk late, in order in itself
            ts -= 4000
        rows["t_ns"][:] = ts
        rows["seq"][:] = np.arange(seq, seq + n)
        args[0] = rows["seq"].astype(np.uint64) * 3            # a column that travels with its row
        o.add(n)
        pending = np.concatenate([pending, np.stack([ts, np.arange(seq, seq + n)], 1)])
        seq, t = seq + n, max(t, int(ts.max()) if n else t)
        limit = None if step == 400 else t - int(rng.integers(0, 5000))
        pending = pending[np.lexsort((pending[:, 1], pending[:, 0]))]
        cut = len(pending) if limit is None else int(np.searchsorted(pending[:, 0], limit, side="right"))
        want, pending = pending[:cut], pending[cut:]
        frames = o.release(limit)
        got_t = np.concatenate([f["t_ns"] for f in frames] or [np.empty(0, np.int64)])
        got_seq = np.concatenate([f["seq"] for f in frames] or [np.empty(0, np.int64)])
        assert (got_t == want[:, 0]).all() and (got_seq == want[:, 1]).all(), step
        assert o.pending == len(pending)
        releases += bool(frames)
        held = (held + [(f, f["seq"].copy()) for f in frames])[-(150 if step < 200 else 3):]
        for f, copy in held:
            assert (f["seq"] == copy).all() and (f["a0"] == copy.astype(np.uint64) * 3).all()
    assert seq > 500_000 and releases > 300
    assert len(o._pool) <= o.POOL and len(fresh) < len(retired)     # sets were reused


def test_orderer_cuts_frames_the_same_whether_buffers_are_reused_or_not():
    """Where released rows are cut into frames (and so the batches normalize sees) depends on the
    rows only, never on which buffer sets happened to be free: under load a reused larger set once
    moved a segment's end, and two ingests of one capture gave different batches."""
    def frames(reuse: bool, hold: int) -> list:
        rng = np.random.default_rng(11)
        o = perfdata.Orderer(reuse=reuse)
        held, cuts, t = [], [], 0
        for step in range(300):
            n = 40_000 if step == 0 else int(rng.integers(1, 3000))    # a first set bigger than the rest
            rows, _ = o.room(n)
            rows["t_ns"][:] = t + np.arange(n)
            o.add(n)
            t += n
            for f in o.release(t - int(rng.integers(0, 5000))):
                cuts.append(len(f["t_ns"]))
                held = (held + [f])[-hold:]
        return cuts
    fresh = frames(reuse=False, hold=1)
    assert len(fresh) > 200
    assert frames(reuse=True, hold=1) == fresh
    assert frames(reuse=True, hold=20) == fresh


class _Trickle:
    """A file whose readinto gives at most 777 bytes a call (a pipe, a slow stream), or, with
    readinto=False, one that has only read (a minimal file-like object)."""

    def __init__(self, f, readinto: bool):
        self._f = f
        if readinto:
            self.readinto = lambda b: f.readinto(memoryview(b)[:777])

    def __getattr__(self, name):
        if name in ("readinto", "fileno"):
            raise AttributeError(name)
        return getattr(self._f, name)


@pytest.mark.parametrize("name", ["seed_z.data", "seed_plain.data", "seed_pipe.data", "mt_threads_z.data"])
@pytest.mark.parametrize("readinto", [True, False], ids=["short-readinto", "read-only"])
def test_short_reads_and_read_only_files_give_the_same_rows(name, readinto, monkeypatch):
    """The data section is read into pooled buffers (`walk.record_chunks`): reads that come back
    short, and files without readinto, give the rows of a plain file, at any chunk size."""
    want, _ = read_all(PERF_DIR / name)
    monkeypatch.setattr(walk, "CHUNK_BYTES", 4096)
    got, _ = read_all(PERF_DIR / name, opener=lambda p: _Trickle(open(p, "rb"), readinto))
    assert got.equals(want)


def test_prefetch_starts_at_once_stops_on_close_and_raises_the_producers_error():
    """The producer thread starts when prefetch is called (the reader's work overlaps the caller's
    set-up), close() stops it midway, and its exception is raised in the consumer."""
    import threading
    started, made = threading.Event(), []

    def items(fail_at=None):
        started.set()
        for i in range(100):
            if i == fail_at:
                raise TraceFormatError("bad item")
            made.append(i)
            yield i

    it = walk.prefetch(items(), depth=2)
    assert started.wait(5)                     # before any next()
    assert [next(it), next(it)] == [0, 1]
    it.close()
    assert len(made) < 100 and list(it) == []
    started.clear()
    with pytest.raises(TraceFormatError, match="bad item"):
        list(walk.prefetch(items(fail_at=3)))
