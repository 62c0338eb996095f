"""The bundled real captures in data/: complete, within size, and true.

Each capture's truth must end, for the traced command's pid, on exactly the
VmPTE the program printed just before it exited (stdout.txt): that is what
makes it a usable oracle for the replayer.
"""
from __future__ import annotations

import json
import re

import pytest

from conftest import DATA, launch_mode
from ptreplay.schemas.parquet_io import read_capture, read_table
from ptreplay.schemas import CAPTURE, EVENTS, TRUTH

CAPTURES = sorted(p.parent for p in DATA.glob("*/capture.json"))
EXPECTED = {"seed-2m", "seed-1m-halves", "jemalloc-churn", "threads-zap", "mixed-vma", "purge-sites",
            "redis-attach", "python-attach", "node-launch", "jvm-launch", "node-attach", "jvm-attach",
            "seed-2m-thp-always", "jemalloc-thp-always", "mm-holder"}
FILES = ("perf.data", "truth.parquet", "capture.parquet", "capture.json", "command.txt",
         "record.json", "maps")


ATTACH = [c for c in CAPTURES if launch_mode(c) == "attach"]           # `record -p` of a running server
LAUNCH = [c for c in CAPTURES if c not in ATTACH]                      # `record -- COMMAND`
SNAPSHOT = [c for c in CAPTURES if (c / "snapshot.parquet").exists()]  # both, when they have a start state


def _printed_kb(text: str, prefix: str) -> int | None:
    m = re.search(rf"^{prefix} VmPTE:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else None


def test_the_expected_captures_are_there_and_small():
    assert EXPECTED <= {p.name for p in CAPTURES}
    total = sum(f.stat().st_size for c in CAPTURES for f in c.rglob("*") if f.is_file())
    assert total <= 20 * 2**20


@pytest.mark.parametrize("cap", CAPTURES, ids=lambda p: p.name)
def test_capture_files_conform(cap):
    for name in FILES + (("snapshot.parquet",) if cap in SNAPSHOT else ()) + (("stdout.txt",) if cap in LAUNCH else ()):
        assert (cap / name).exists(), f"{cap.name}: {name} missing"
    assert (cap / "perf.data").stat().st_size <= 5 * 2**20
    assert (cap / "perf.data").read_bytes()[:8] == b"PERFILE2"
    capture = read_table(cap / "capture.parquet", CAPTURE).to_pylist()
    assert len(capture) == 1
    capture = capture[0]
    assert capture == json.loads((cap / "capture.json").read_text())
    assert capture == read_capture(cap / "truth.parquet")
    assert capture["trace_id"] == cap.name and capture["source_format"] == "perf.data"
    assert capture["clock"] == "CLOCK_MONOTONIC" and capture["synthetic"] is False
    assert capture["command_line"] == (cap / "command.txt").read_text().rstrip("\n")
    truth = read_table(cap / "truth.parquet", TRUTH).to_pandas()
    assert len(truth) > 0
    assert capture["start_ns"] <= truth.t_ns.min() and truth.t_ns.max() <= capture["end_ns"]
    assert (truth.vmpte_bytes % 4096 == 0).all()
    assert (truth.vmrss_bytes == truth.rss_anon_bytes + truth.rss_file_bytes + truth.rss_shmem_bytes).all()


@pytest.mark.parametrize("cap", LAUNCH, ids=lambda p: p.name)
def test_truth_ends_on_the_printed_vmpte(cap):
    info = json.loads((cap / "record.json").read_text())
    stdout = (cap / "stdout.txt").read_text()
    truth = read_table(cap / "truth.parquet", TRUTH).to_pandas().sort_values("t_ns", kind="stable")
    root = info["root_pid"]
    printed = _printed_kb(stdout, "final")
    assert printed is not None, f"{cap.name}: no 'final VmPTE' in stdout.txt"
    assert truth[truth.pid == root].vmpte_bytes.iloc[-1] == printed * 1024
    child = _printed_kb(stdout, "child")
    if child is not None:        # mixed-vma: the fork child prints its own line
        others = truth[truth.pid != root]
        assert others.pid.nunique() == 1
        assert others.vmpte_bytes.iloc[-1] == child * 1024
    for pid in truth.pid.unique():
        assert (cap / "maps" / f"{pid}.start.txt").exists() and (cap / "maps" / f"{pid}.end.txt").exists()


@pytest.mark.parametrize("cap", SNAPSHOT, ids=lambda p: p.name)
def test_start_snapshot_is_the_kernels_state(cap):
    """The start snapshot holds the target's VMAs exactly as its start maps list them, its
    VmPTE row equals the truth row read at the same instant, and the trace outlives it.  A
    command stopped at its exec changes nothing while it is read."""
    info = json.loads((cap / "record.json").read_text())
    snap = info["snapshot"]
    if launch_mode(cap) == "exec_stop":
        assert snap["changed_during_snapshot"] == {} and snap["scan"]["changed_pages"] == 0, snap
    pid = snap["pid"]
    assert pid == info["root_pid"]
    events = read_table(cap / "snapshot.parquet", EVENTS).to_pandas()
    assert set(events.pid) == {pid} and set(events.t_ns) == {snap["t_ns"]}
    truth = read_table(cap / "truth.parquet", TRUTH).to_pandas()
    at0 = truth[(truth.pid == pid) & (truth.t_ns == snap["t_ns"])]
    assert len(at0) == 1 and at0.vmpte_bytes.iloc[0] == snap["status"]["vmpte_bytes"]
    tables = events[events.kind == "snapshot_tables"]
    assert tables.len.tolist() == [snap["status"]["vmpte_bytes"]] and tables.comm.tolist() == [snap["comm"]]
    vmas = events[events.kind == "snapshot_vma"]
    assert len(vmas) == snap["vmas"]
    if launch_mode(cap) == "attach":
        assert truth.t_ns.max() <= info["perf_stop_seen_ns"]     # no sample after the trace stopped
        if "trace_end_ns" in info:                               # the last status read ends the trace
            assert truth[truth.pid == pid].t_ns.max() == info["trace_end_ns"]
