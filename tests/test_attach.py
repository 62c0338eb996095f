"""Attach mode: a replay starts from the process as it was when the trace began.

The live test attaches to workloads/attach_target.c while it runs and requires the replay to
equal the kernel: at the snapshot instant (VmPTE, VmSize, RssAnon, RssFile exactly, against
the snapshot's own /proc/PID/status read) and at the end (pt_reclaim against the VmPTE the
program printed).  The policy test is a synthetic stream (said so) checking how each policy
treats inherited empty tables.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from conftest import REPO, require
from ptreplay.pipeline.capture import census, start_state
from ptreplay.pipeline.events.ingest import ingest
from ptreplay.replay.engine import ReplayOptions, replay
from ptreplay.schemas import SNAP_ANON, SNAP_FILE, SNAP_THP

FULL, EMPTY, THP = 8, 12, 1


def _at(ts, policy: str, pid: int, t: int) -> dict:
    """The model's state after everything at or before t (the last timeseries row there)."""
    rows = ts.filter(pc.and_(pc.equal(ts.column("policy"), policy), pc.equal(ts.column("pid"), pid)))
    t_ns = rows.column("t_ns").to_numpy()
    return rows.slice(int(np.searchsorted(t_ns, t, side="right")) - 1, 1).to_pylist()[0]


@pytest.mark.live
def test_attach_replays_from_the_kernels_state(tmp_path, workload_bin):
    target = subprocess.Popen([str(workload_bin / "attach_target"), str(FULL), str(EMPTY), str(THP)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    out = tmp_path / "cap"
    try:
        assert target.stdout.readline().strip() == "ready"
        rec = subprocess.Popen([sys.executable, "-m", "ptreplay", "record", "-o", str(out), "-p", str(target.pid),
                                "--duration", "5"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
        time.sleep(3.0)                      # perf is recording and the snapshot taken by now (checked below)
        go_ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        target.stdin.write("go\n")
        target.stdin.flush()
        printed = [target.stdout.readline() for _ in range(3)]
        _, err = rec.communicate(timeout=60)
        assert rec.returncode == 0, err
        assert target.poll() is None, "recording must not stop the target"
        after = census.take([target.pid])     # it waits on stdin: its state is the trace's end
    finally:
        target.kill()
        target.wait()
    final_kb = int(next(line for line in printed if line.startswith("final VmPTE")).split()[2])
    info = json.loads((out / "record.json").read_text())
    assert info["perf_enabled_ns"] < go_ns, "perf took over 3 s to start: the test's load began untraced"
    snap = info["snapshot"]
    assert snap["pid"] == target.pid and snap["comm"] == "attach_target"
    assert snap["t_ns"] >= snap["perf_recording_seen_ns"] - 50_000_000
    assert not snap["changed_during_snapshot"], snap      # the target sleeps in read(): nothing moves

    events = ingest([out], tmp_path / "events.parquet")
    result = replay(events, ReplayOptions(policies="all", interval_ns=1_000_000))
    status, t0 = snap["status"], snap["t_ns"]
    summary = {r["policy"]: r for r in result.summary.to_pylist()}
    for policy in ("none", "pt_reclaim"):
        m = _at(result.timeseries, policy, target.pid, t0)
        assert (m["vmpte_bytes"], m["virt_bytes"], m["rss_anon_bytes"], m["rss_file_bytes"]) == (
            status["vmpte_bytes"], status["vmsize_bytes"], status["rss_anon_bytes"],
            status["rss_file_bytes"] + status["rss_shmem_bytes"]), policy
    inherited = summary["pt_reclaim"]["inherited_empty_tables"]
    assert inherited >= EMPTY                         # the half-zapped regions' tables, at least
    assert inherited * 4096 == status["vmpte_bytes"] - snap["scan"]["tables_needed_bytes"]
    m = _at(result.timeseries, "refcount", target.pid, t0)
    assert m["vmpte_bytes"] == status["vmpte_bytes"] - inherited * 4096   # refcount frees them at once
    assert summary["pt_reclaim"]["final_vmpte_bytes"] == final_kb * 1024  # the kernel's, printed
    assert summary["none"]["final_vmpte_bytes"] >= summary["pt_reclaim"]["final_vmpte_bytes"]
    assert summary["pt_reclaim"]["comm"] == "attach_target"
    # a census at the end of the capture: the kernel's VmPTE is the model's, and the tables the
    # present pages need (pagemap) are the replay's ideal
    row = after.processes.to_pylist()[0]
    assert row["state"] == "ok" and row["vmpte_bytes"] == final_kb * 1024, row
    assert row["needed_bytes"] == summary["pt_reclaim"]["ideal_pte_bytes"], (row, summary["pt_reclaim"])


@pytest.mark.live
def test_census_at_the_end_of_a_redis_capture_is_the_replays_ideal(tmp_path):
    """A running redis-server (Debian's, jemalloc) attached under redis-benchmark sets, FLUSHALL
    and MEMORY PURGE, then idle: a census right after the capture sees the kernel's VmPTE of the
    trace's last status read, and the tables its present and swapped pages need (pagemap) are the
    replay's ideal; pt_reclaim ends within max(1%, 8 kB) of the kernel."""
    tools = [shutil.which(t) for t in ("redis-server", "redis-benchmark", "redis-cli")]
    require(all(tools), "redis-server, redis-benchmark and redis-cli are needed (apt-get install redis-server)")
    port = str(6390 + os.getpid() % 9)
    server = subprocess.Popen([tools[0], "--port", port, "--save", "", "--appendonly", "no"],
                              stdout=subprocess.DEVNULL)
    out = tmp_path / "cap"
    try:
        time.sleep(0.5)
        bench = [tools[1], "-p", port, "-q", "-t", "set"]
        subprocess.run(bench + ["-n", "100000", "-d", "1024", "-r", "50000"], capture_output=True, check=True)
        subprocess.run([tools[2], "-p", port, "flushall"], capture_output=True, check=True)
        load = subprocess.Popen(["sh", "-c", f"sleep 0.5; {shlex.join(bench)} -n 60000 -d 2048 -r 30000 >/dev/null; "
                                 f"{tools[2]} -p {port} flushall >/dev/null; sleep 0.3; "
                                 f"{tools[2]} -p {port} memory purge >/dev/null"])
        rec = subprocess.run([sys.executable, "-m", "ptreplay", "record", "-o", str(out), "-p", str(server.pid),
                              "--duration", "6"], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert rec.returncode == 0, rec.stderr
        assert load.wait(timeout=60) == 0
        after = census.take([server.pid])
    finally:
        server.kill()
        server.wait()
    events = ingest([out], tmp_path / "events.parquet")
    result = replay(events, ReplayOptions(policies="pt_reclaim", interval_ns=10_000_000))
    final = next(r for r in result.summary.to_pylist() if r["policy"] == "pt_reclaim" and r["pid"] == server.pid)
    truth = pq.read_table(out / "truth.parquet").to_pylist()
    last = [r for r in truth if r["pid"] == server.pid][-1]
    row = after.processes.to_pylist()[0]
    assert row["state"] == "ok" and row["vmpte_bytes"] == last["vmpte_bytes"], (row, last)
    assert row["needed_bytes"] == final["ideal_pte_bytes"], (row, final)
    assert abs(final["final_vmpte_bytes"] - last["vmpte_bytes"]) <= max(0.01 * last["vmpte_bytes"], 8192), final


def test_start_state_of_this_process_matches_its_status():
    """take() on our own process: every class of page the kernel counts is where the scan put it."""
    import mmap
    anon = mmap.mmap(-1, 64 * 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    shmem = mmap.mmap(-1, 64 * 4096)               # MAP_SHARED anonymous: shmem, counted in RssShmem
    for i in range(0, 64 * 4096, 2 * 4096):
        anon[i] = 1
        shmem[i] = 1
    st = start_state.take(os.getpid())
    for m, cls in ((anon, SNAP_ANON), (shmem, SNAP_FILE)):
        base = np.frombuffer(m, np.uint8).ctypes.data
        runs = st.runs[(st.runs["start"] >= base) & (st.runs["start"] < base + 64 * 4096)]
        assert set(runs["cls"].tolist()) == {cls} and int(runs["pages"].sum()) == 32
    anon_pages = int(st.runs["pages"][np.isin(st.runs["cls"], [SNAP_ANON, SNAP_THP])].sum())
    file_pages = int(st.runs["pages"][st.runs["cls"] == SNAP_FILE].sum())
    # the scan lies between the status read before it and the one after, up to what the other
    # threads of this pytest process moved while it ran (4 MB) beyond what those two reads show
    def between(scanned, *keys):
        before, after = (sum(s[k] for k in keys) for s in (st.status, st.status_after))
        return min(before, after) - (4 << 20) <= scanned <= max(before, after) + (4 << 20)
    assert between(anon_pages * 4096, "rss_anon_bytes"), (anon_pages, st.status, st.status_after)
    assert between(file_pages * 4096, "rss_file_bytes", "rss_shmem_bytes"), (file_pages, st.status, st.status_after)
    assert st.comm and st.vmas and st.brk is not None
    if "vmsize_bytes" not in st.meta()["changed_during_snapshot"]:
        assert sum(v.end - v.start for v in st.vmas) == st.status["vmsize_bytes"]
    anon.close()
    shmem.close()


def test_policies_treat_inherited_tables_like_empty_ones():
    """Synthetic stream (not a capture): a 64 MiB VMA with one mapped region, a kernel VmPTE
    10 tables above what that needs, then a fault 3 s later."""
    t0, R = 1_000_000_000, 2 << 20
    base = 0x7f0000000000
    rows = [dict(kind="snapshot_vma", addr=base, len=32 * R, prot=3, flags=0x22, fd=-1),
            dict(kind="snapshot_pages", addr=base, len=R, flags=SNAP_ANON)]
    needed = 3                                   # one PTE, one PMD, one PUD table
    rows.append(dict(kind="snapshot_tables", len=(needed + 10) * 4096, comm="synthetic"))
    table = start_state.events_table(rows, t0, 100)
    fault = start_state.events_table([dict(kind="fault", addr=base + 5, error_code=6)], t0 + 3_000_000_000, 100)
    r = replay(pa.concat_tables([table, fault]), ReplayOptions(policies="all", interval_ns=10_000_000))
    final = {s["policy"]: s["final_vmpte_bytes"] // 4096 for s in r.summary.to_pylist()}
    assert final == {"none": 13, "pt_reclaim": 13, "refcount": 3, "scan:1s": 3, "delayed:100ms": 3,
                     "all_levels": 3}
    assert {s["inherited_empty_tables"] for s in r.summary.to_pylist()} == {10}
    vmpte = lambda pol, t: _at(r.timeseries, pol, 100, t)["vmpte_bytes"] // 4096  # noqa: E731
    assert vmpte("delayed:100ms", t0 + 50_000_000) == 13 and vmpte("delayed:100ms", t0 + 200_000_000) == 3
    assert vmpte("scan:1s", t0 + 500_000_000) == 13 and vmpte("scan:1s", t0 + 2_100_000_000) == 3


@pytest.mark.live
def test_freeze_reads_a_busy_server_at_one_instant(tmp_path):
    """`record -p --freeze` stops every thread of a server that never rests (CPython churn)
    while its start state is read: nothing changes under the scan, the model equals the
    kernel at the snapshot, and afterwards the server runs on, its parent having seen no stop."""
    server = subprocess.Popen([sys.executable, str(REPO / "workloads" / "py_churn.py")],
                              stdout=subprocess.PIPE, text=True)
    out = tmp_path / "cap"
    try:
        assert server.stdout.readline().strip() == "ready"
        time.sleep(0.5)
        r = subprocess.run([sys.executable, "-m", "ptreplay", "record", "--freeze", "-o", str(out),
                            "-p", str(server.pid), "--duration", "1.5"], cwd=REPO, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        stat = Path(f"/proc/{server.pid}/stat").read_text()
        assert stat[stat.rindex(")") + 2] in "RS", stat          # running again, not left stopped
        assert os.waitpid(server.pid, os.WNOHANG | os.WUNTRACED) == (0, 0)   # the parent saw no stop
    finally:
        server.kill()
        server.wait()
    snap = json.loads((out / "record.json").read_text())["snapshot"]
    assert snap["frozen"]["threads"] >= 1 and snap["frozen"]["duration_ns"] > 0
    assert snap["changed_during_snapshot"] == {} and snap["scan"]["changed_pages"] == 0, snap
    events = ingest([out], tmp_path / "events.parquet")
    result = replay(events, ReplayOptions(policies="pt_reclaim"))
    m = _at(result.timeseries, "pt_reclaim", server.pid, snap["t_ns"])
    st = snap["status"]
    assert (m["vmpte_bytes"], m["virt_bytes"], m["rss_anon_bytes"]) == \
        (st["vmpte_bytes"], st["vmsize_bytes"], st["rss_anon_bytes"])
