"""Ingest end to end on the bundled real captures, checked against `perf script` on the same files."""
import collections
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.compute as pc
import pytest

from conftest import require
from ptreplay.pipeline.events.ingest import ingest
from ptreplay.schemas.parquet_io import read_capture, read_table
from ptreplay.schemas import EVENTS

DATA = Path(__file__).resolve().parent.parent / "data"
CAPTURES = sorted(p for p in DATA.iterdir() if (p / "perf.data").exists()) if DATA.exists() else []
HAVE_PERF = shutil.which("perf") is not None


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "ptreplay", *map(str, args)], capture_output=True, text=True, **kw)


def perf_script_counts(perf_data: Path) -> collections.Counter:
    """Events per name as `perf script` decodes them; faults split by user/kernel address."""
    out = subprocess.run(["perf", "script", "-i", str(perf_data), "-F", "tid,event,trace"],
                         capture_output=True, text=True, check=True).stdout
    counts = collections.Counter()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        name = parts[1].rstrip(":").split(":")[-1]
        if name.startswith("page_fault"):
            addr = int(parts[2].split("=")[1], 16)
            name = "fault" if addr < 1 << 47 else "kernel_address_fault"
        counts[name] += 1
    return counts


@pytest.mark.parametrize("capture", CAPTURES, ids=[c.name for c in CAPTURES])
def test_ingest_counts_match_perf_script(capture, tmp_path):
    out = ingest([capture], tmp_path / "events.parquet")
    events = read_table(out, EVENTS)
    kinds = collections.Counter(events.column("kind").to_pylist())
    meta = read_capture(out)
    assert meta["trace_id"] == capture.name and meta["source_format"] == "perf.data"
    assert meta["kernel_release"] and meta["thp_mode"] in ("always", "madvise", "never")
    t = events.column("t_ns").to_numpy()
    assert (t[1:] >= t[:-1]).all(), "events are not time-ordered"
    require(HAVE_PERF, "perf not installed: counts not checked against perf script")
    ref = perf_script_counts(capture / "perf.data")
    # attach captures: the target's events before its start snapshot are dropped (it shows them)
    for snap in meta.get("snapshot", {}).values():
        kinds.update(snap["events_before_dropped"])
    # and an attach capture's events after its last status read (the trace's end)
    kinds.update((meta.get("trace_end") or {}).get("events_after_dropped", {}))
    assert kinds["fault"] == ref["fault"]
    for name in ("mmap", "munmap", "madvise", "mremap", "brk", "mprotect"):
        # one event per sys_enter (paired, lost-exit or unfinished), none for orphan exits
        stats = meta["normalize"]
        assert kinds[name] == ref[f"sys_enter_{name}"], name
    assert kinds["exec"] == ref["sched_process_exec"]
    assert stats["kernel_address_faults_dropped"] == ref["kernel_address_fault"]


@pytest.mark.parametrize("capture", CAPTURES[:1], ids=[c.name for c in CAPTURES[:1]])
def test_madvise_rows_carry_perf_script_arguments(capture, tmp_path):
    """Every madvise row's (start, len, advice) appears in perf script's sys_enter_madvise lines."""
    require(HAVE_PERF, "perf not installed")
    events = read_table(ingest([capture], tmp_path / "e.parquet"), EVENTS)
    mad = events.filter(pc.equal(events.column("kind"), "madvise")).to_pylist()
    out = subprocess.run(["perf", "script", "-i", str(capture / "perf.data"), "-F", "event,trace"],
                         capture_output=True, text=True, check=True).stdout
    ref = []
    for line in out.splitlines():
        if "sys_enter_madvise" in line:
            f = dict(kv.split(": ") for kv in line.split(":", 2)[2].strip().split(", "))
            ref.append((int(f["start"], 16), int(f["len_in"], 16), int(f["behavior"], 16)))
    assert sorted((r["addr"], r["len"], r["advice"]) for r in mad) == sorted(ref)
    assert mad and all(r["ret"] == 0 and not r["failed"] for r in mad)


ENDED = [c for c in CAPTURES if (json.loads((c / "record.json").read_text()).get("fault_ends") or {}).get("item")
         is not None and json.loads((c / "capture.json").read_text()).get("thp_mode") == "always"]


@pytest.mark.parametrize("capture", ENDED, ids=[c.name for c in ENDED])
def test_thp_fault_ends_are_perf_scripts(capture, tmp_path):
    """Each memcg THP_FAULT_ALLOC record (`perf script`) ends its thread's previous record, a
    page fault: that fault's row carries the end as t_ns and end - entry as dur_ns; no other
    fault has a duration."""
    require(HAVE_PERF, "perf not installed")
    item = json.loads((capture / "record.json").read_text())["fault_ends"]["item"]
    out = subprocess.run(["perf", "script", "-i", str(capture / "perf.data"), "-F", "tid,time,event,trace", "--ns"],
                         capture_output=True, text=True, check=True).stdout
    last, want = {}, []
    for line in out.splitlines():
        tid, t, name, *rest = line.split(None, 3)
        t_ns = int(t.rstrip(":").replace(".", ""))
        if name.endswith("count_memcg_events:"):
            assert f"item={item} " in rest[0]
            entry = last.get(tid)
            assert entry is not None and entry[0] == "fault", line
            want.append((t_ns, entry[2], t_ns - entry[1]))
        addr = re.search(r"address=(0x[0-9a-f]+)", rest[0]) if rest else None
        last[tid] = ("fault" if "page_fault" in name else name, t_ns, int(addr.group(1), 16) if addr else 0)
    events = read_table(ingest([capture], tmp_path / "e.parquet"), EVENTS)
    ended = events.filter(pc.and_(pc.equal(events.column("kind"), "fault"), pc.greater(events.column("dur_ns"), 0)))
    got = sorted(zip(*(ended.column(c).to_pylist() for c in ("t_ns", "addr", "dur_ns"))))
    assert len(want) > 100 and got == sorted(want)
    assert read_capture(tmp_path / "e.parquet")["normalize"]["fault_ends"] == len(want)


@pytest.mark.parametrize("capture", ENDED, ids=[c.name for c in ENDED])
def test_thp_fault_ends_survive_any_batch_boundary(capture, tmp_path, monkeypatch):
    """Read in batches of 7 records, nearly every huge-page fault of the loop has its end in
    another batch, and `env`'s exec of the program (the old mm's exit_mmap, the loader's faults,
    the exec) spans several: the normalizer joins a batch's tail to the next where either would
    be parted, so every event row (times, addresses, durations, the exec and no extra exit) is
    the same as from whole batches."""
    from ptreplay.pipeline.formats.perf import reader as perfdata

    whole = read_table(ingest([capture], tmp_path / "whole.parquet"), EVENTS)
    monkeypatch.setattr(perfdata, "BATCH_ROWS", 7)
    small = read_table(ingest([capture], tmp_path / "small.parquet"), EVENTS)
    monkeypatch.undo()
    assert small.equals(whole) and pc.sum(pc.greater(small.column("dur_ns"), 0)).as_py() > 100
    kinds = whole.column("kind").to_pylist()
    execs = int((capture / "command.txt").read_text().startswith("env "))     # launched: exec'ed before tracing
    assert kinds.count("exec") == execs and kinds.count("exit") == 1, (capture, execs)
    assert read_capture(tmp_path / "small.parquet")["normalize"]["fault_ends_unmatched"] == 0


def test_bad_inputs_one_line_exit_1_no_output(tmp_path):
    empty = tmp_path / "empty.data"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(os.urandom(4096))
    out = tmp_path / "events.parquet"
    for bad, expect in [(empty, "empty file"), (garbage, "unknown format"), (tmp_path / "missing", "no such file")]:
        r = cli("ingest", bad, "-o", out)
        assert r.returncode == 1, r.stderr
        assert expect in r.stderr and str(bad) in r.stderr
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
        assert not out.exists() and not list(tmp_path.glob(".events*"))


def test_existing_output_needs_force_and_survives_a_failed_run(tmp_path):
    out = tmp_path / "events.parquet"
    assert cli("ingest", CAPTURES[0], "-o", out).returncode == 0
    before = out.read_bytes()
    r = cli("ingest", CAPTURES[0], "-o", out)
    assert r.returncode == 1 and "--force" in r.stderr
    truncated = tmp_path / "cut.data"
    truncated.write_bytes((CAPTURES[0] / "perf.data").read_bytes()[:5000])
    r = cli("ingest", truncated, "-o", out, "--force")
    assert r.returncode == 1 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1
    assert out.read_bytes() == before


def test_several_inputs_merge_into_one_time_ordered_table(tmp_path):
    a, b = CAPTURES[0], CAPTURES[-1]
    one = read_table(ingest([a], tmp_path / "a.parquet"), EVENTS)
    two = read_table(ingest([b], tmp_path / "b.parquet"), EVENTS)
    both_path = ingest([a, b], tmp_path / "ab.parquet")
    both = read_table(both_path, EVENTS)
    assert both.num_rows == one.num_rows + two.num_rows
    t = both.column("t_ns").to_numpy()
    assert (t[1:] >= t[:-1]).all()
    assert sorted(both.column("pid").to_pylist()) == sorted(one.column("pid").to_pylist() + two.column("pid").to_pylist())
    assert read_capture(both_path)["trace_id"] == f"{a.name}+{b.name}"
