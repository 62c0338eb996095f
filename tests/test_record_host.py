"""`ptreplay record -a`: every process on the host, replayed.

The live test runs two C workloads, one started before the recording (attach_target, told to
work during it) and one started during it (seed_loop), records the host for 4 s, ingests and
replays, and requires a summary row for every process that ran -- the processes are taken from
`perf script` (perf's own decoder, not ptreplay's) with a user page fault, less ptreplay's own
recorder, perf and its sleep -- and each workload's `pt_reclaim` final VmPTE within max(1%, 8 kB)
of the kernel's (its last truth sample, and the VmPTE it printed itself).  Processes the
recording could not start from (exited before their snapshot, born of a process before its
snapshot and never exec'd) must be named in the metadata, and few.

The other tests need no perf: the command line's refusals (one line, exit 2, nothing written),
the filters, and the ingest gate on a hand-made event stream (said so).
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

from conftest import REPO, run_cli
from ptreplay.pipeline.capture.host import HostFilters, check_filters, list_processes
from ptreplay.pipeline.events.host_gate import HostGate
from ptreplay.pipeline.events.normalize import BATCH_SCHEMA
from ptreplay.schemas import EVENT_KINDS, events_from_rows
from ptreplay.schemas.errors import RecordError

ACCEPT = (0.01, 8192)      # final VmPTE within max(1%, 8 kB) of the kernel's


def _close(model: int, kernel: int) -> bool:
    return abs(model - kernel) <= max(ACCEPT[0] * kernel, ACCEPT[1])


def _perf_script_user_pids(perf_data: Path) -> tuple[set[int], dict[int, int]]:
    """Thread-group ids with a user-mode page fault, and every tgid's last event time (ns,
    CLOCK_MONOTONIC), as perf's own decoder prints them."""
    r = subprocess.run(["perf", "script", "-i", str(perf_data), "-F", "pid,time,event"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    pids, last = set(), {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) < 3 or not parts[0].isdigit():
            continue
        pid, t = int(parts[0]), round(float(parts[1].rstrip(":")) * 1e9)
        last[pid] = max(last.get(pid, 0), t)
        if parts[2].startswith("exceptions:page_fault_user"):
            pids.add(pid)
    return pids, last


@pytest.mark.live
def test_record_all_replays_every_process_and_the_workloads_match_the_kernel(tmp_path, workload_bin, monkeypatch):
    from ptreplay.pipeline.events.ingest import ingest
    from ptreplay.replay.engine import ReplayOptions, replay_to_dir
    from ptreplay.pipeline.presentation.report import report
    from ptreplay.schemas.parquet_io import read_capture, read_table
    from ptreplay.schemas import EVENTS, SUMMARY, TRUTH
    t_start = time.monotonic()
    before = subprocess.Popen([str(workload_bin / "attach_target"), "8", "12", "0"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    out = tmp_path / "cap"
    during = None
    try:
        assert before.stdout.readline().strip() == "ready"
        rec = subprocess.Popen([sys.executable, "-m", "ptreplay", "record", "-a", "--duration", "4", "-o", str(out)],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_recording(rec.pid)
        time.sleep(0.5)                      # within the snapshot pass, or just after it
        before.stdin.write("go\n")
        before.stdin.flush()
        during = subprocess.run([str(workload_bin / "seed_loop"), "1", "300", "1"], capture_output=True,
                                text=True, timeout=30)
        before_printed = [before.stdout.readline() for _ in range(3)]
        _, err = rec.communicate(timeout=90)
        assert rec.returncode == 0, err
        assert before.poll() is None, "recording must not stop the running workload"
    finally:
        before.kill()
        before.wait()
    kb = lambda lines: int(next(x for x in lines if x.startswith("final VmPTE")).split()[2]) * 1024  # noqa: E731
    printed = {"attach_target": kb(before_printed), "seed_loop": kb(during.stdout.splitlines())}
    info = json.loads((out / "record.json").read_text())
    host = info["host"]
    assert str(rec.pid) in host["excluded"] and len(host["excluded"]) == 3, host["excluded"]
    assert str(before.pid) in host["snapshot"]["processes"], "the running workload was snapshotted"
    assert host["sampler"]["mode"] == "adaptive" and host["sampler"]["cpu_share"] <= 0.15, host["sampler"]

    events = ingest([out], tmp_path / "events.parquet")
    meta = read_capture(events)
    # the ingest's fast path (the reader's fault rows apart, events/2 parts through the host gate)
    # gives the rows and counts of the path through events tables
    from ptreplay.pipeline.events import ingest as ingest_module
    read = ingest_module.read_events
    monkeypatch.setattr(ingest_module, "read_events", lambda p, a=False, parts=False: read(p, a, parts=False))
    tables = ingest([out], tmp_path / "tables.parquet")
    monkeypatch.undo()
    assert read_table(events, EVENTS).equals(read_table(tables, EVENTS))
    assert {k: v for k, v in read_capture(tables).items() if k != "ingested_at"} == {
        k: v for k, v in meta.items() if k != "ingested_at"}
    opts = ReplayOptions(policies="none,pt_reclaim", interval_ns=10_000_000)
    replay_to_dir(events, tmp_path / "replay", opts)   # occupancy too: inherited tables have no region
    summary = read_table(tmp_path / "replay" / "summary.parquet", SUMMARY).to_pylist()
    replayed = {r["pid"] for r in summary}

    # every process that ran (perf's decoder) has a summary row, unless the capture says why not
    # (those it cannot start from are named, and perf shows them ending before the host's start
    # state was complete: they exited before their snapshot, or were born and died meanwhile)
    ran, last_seen = _perf_script_user_pids(out / "perf.data")
    ran -= {int(p) for p in host["excluded"]}
    named = set(host["snapshot"]["vanished_pids"]) | set(host["snapshot"]["not_taken_pids"])
    for pids in meta["host_recording"]["dropped_pids"].values():
        named |= set(pids)
    missing = ran - replayed
    assert not (missing - named), f"processes that ran without a summary row or a reason: {sorted(missing - named)}"
    snap_end = host["snapshot"]["t_end_ns"]
    late = {p: (last_seen[p] - snap_end) / 1e6 for p in missing if last_seen[p] > snap_end + 50_000_000}
    assert not late, f"processes alive after the snapshot yet not replayed (ms after it): {late}"
    assert {before.pid} <= replayed and any(r["comm"] == "seed_loop" for r in summary)

    truth = read_table(tmp_path / "replay" / "truth.parquet", TRUTH).to_pandas()
    measured = []
    for comm, kernel_printed in printed.items():
        row = next(r for r in summary if r["comm"] == comm and r["policy"] == "pt_reclaim")
        mine = truth[truth.pid == row["pid"]].sort_values("t_ns")
        assert len(mine) >= 3, (comm, len(mine))
        last = int(mine.vmpte_bytes.iloc[-1])
        assert _close(row["final_vmpte_bytes"], last), (comm, row["final_vmpte_bytes"], last)
        assert _close(row["final_vmpte_bytes"], kernel_printed), (comm, row["final_vmpte_bytes"], kernel_printed)
        none = next(r for r in summary if r["pid"] == row["pid"] and r["policy"] == "none")
        assert none["final_vmpte_bytes"] >= row["final_vmpte_bytes"]
        measured.append(f"{comm}: pt_reclaim {row['final_vmpte_bytes'] // 1024} kB, kernel {last // 1024} kB "
                        f"(printed {kernel_printed // 1024} kB), none {none['final_vmpte_bytes'] // 1024} kB, "
                        f"{len(mine)} truth samples")

    text = report(tmp_path / "replay")          # a host recording: ranked, one row per process
    assert text.splitlines()[0].split()[:4] == ["rank", "trace", "pid", "comm"]
    assert len([x for x in text.splitlines() if x[:1].isdigit()]) == len(replayed)
    assert "kernel truth for" in text
    print(f"\nrecord -a: {len(ran)} processes with user faults (perf script), {len(replayed)} replayed, "
          f"{len(missing)} not ({sorted(missing)}); snapshot {host['snapshot']['taken']} of "
          f"{host['snapshot']['listed']} listed + {host['snapshot']['born_during']} born meanwhile in "
          f"{host['snapshot']['duration_s']} s (median "
          f"{host['snapshot']['per_process_ms']['median']} ms); events {pq_rows(events)}, lost "
          f"{meta['lost_events']} {meta.get('lost_per_cpu')}; dropped {meta['host_recording']['dropped']}; "
          f"sampler {host['sampler']}; " + "; ".join(measured) + f"; whole test {time.monotonic() - t_start:.1f} s")


@pytest.mark.live
def test_record_all_a_teardown_by_another_process_ends_the_dead_one(tmp_path, workload_bin):
    """A whole-host capture ends a process at its exit_mmap.  mm_holder's child dies while a reader
    thread of the parent holds its mm (/proc/PID/pagemap): the kernel tears the child's mm down in
    that thread.  So the child's exit is at that exit_mmap (it never came before: no exit_mmap of
    its own), and the parent, whose thread ran it, lives on to its own: its final VmPTE is the
    kernel's.  Judged by the kernel: perf's decoder shows where each exit_mmap ran."""
    from ptreplay.pipeline.events.ingest import ingest
    from ptreplay.replay.engine import ReplayOptions, replay
    from ptreplay.schemas.parquet_io import read_table
    from ptreplay.schemas import EVENTS
    out = tmp_path / "cap"
    rec = subprocess.Popen([sys.executable, "-m", "ptreplay", "record", "-a", "--duration", "3", "-o", str(out),
                            "--comm", "mm_holder"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_recording(rec.pid)
    holder = subprocess.Popen([str(workload_bin / "mm_holder"), "8"], stdout=subprocess.PIPE, text=True)
    printed, _ = holder.communicate(timeout=30)
    _, err = rec.communicate(timeout=90)
    assert rec.returncode == 0, err
    assert "read done after kill: yes" in printed, printed
    final_kb = int(re.search(r"final VmPTE:\s+(\d+) kB", printed).group(1))
    r = subprocess.run(["perf", "script", "--ns", "-i", str(out / "perf.data"), "-F", "pid,tid,time,event,trace"],
                       capture_output=True, text=True, timeout=120)
    parent, forked, pids, teardowns = holder.pid, [], set(), {}   # teardowns: (pid, tid) -> exit_mmap times
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) < 3 or "/" not in parts[0]:
            continue
        pid, tid = map(int, parts[0].split("/"))
        pids.add(pid)
        if parts[2].startswith("mmap:exit_mmap"):
            teardowns.setdefault((pid, tid), []).append(round(float(parts[1].rstrip(":")) * 1e9))
        elif parts[2].startswith("sched:sched_process_fork") and pid == parent:
            forked.append(int(re.search(r"child_pid=(\d+)", line).group(1)))
    children = [c for c in forked if c in pids]          # processes (one per attempt), not reader threads
    in_reader = [t for (pid, tid), ts in teardowns.items() if pid == parent and tid != parent for t in ts]
    assert len(in_reader) == 1, teardowns               # the child's mm, torn down in the reader thread
    events = ingest([out], tmp_path / "events.parquet")
    ev = read_table(events, EVENTS).to_pandas()
    exits = ev[ev.kind == "exit"].groupby("pid").t_ns.apply(list)
    assert sorted(t for c in children for t in exits.get(c, [])) == sorted(    # each child once: the held one
        [in_reader[0]] + [t for c in children for (pid, _), ts in teardowns.items() if pid == c for t in ts])
    assert in_reader[0] in [t for c in children for t in exits.get(c, [])]
    assert len(exits.get(parent, [])) == 1 and exits[parent][0] in teardowns[(parent, parent)]   # its own, at its end
    summary = {row["pid"]: row for row in replay(events, ReplayOptions(policies="pt_reclaim")).summary.to_pylist()}
    assert summary[parent]["final_vmpte_bytes"] == final_kb * 1024


def _wait_recording(recorder: int, timeout: float = 30) -> None:
    """Until the recorder's perf runs its timing `sleep` (perf enables the events just before)."""
    from ptreplay.pipeline.capture.record import children
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for perf in children(recorder):
            for c in children(perf):
                try:
                    if Path(f"/proc/{c}/comm").read_text().strip() == "sleep":
                        return
                except OSError:
                    pass
        time.sleep(0.02)
    raise AssertionError("perf never started recording")


def pq_rows(path: Path) -> int:
    import pyarrow.parquet as pq
    return pq.ParquetFile(path).metadata.num_rows


@pytest.mark.live
def test_record_all_filters_by_name_and_vmpte(tmp_path, workload_bin):
    """--comm seed_loop --min-vmpte 256k: a running attach_target is not snapshotted (name); of two
    seed_loops started during the capture the one whose VmPTE reaches 6 MiB is replayed, the one
    that stays near 60 kB is not."""
    from ptreplay.pipeline.events.ingest import ingest
    from ptreplay.replay.engine import ReplayOptions, replay
    from ptreplay.schemas.parquet_io import read_capture
    target = subprocess.Popen([str(workload_bin / "attach_target"), "2", "2", "0"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    out = tmp_path / "cap"
    try:
        assert target.stdout.readline().strip() == "ready"
        rec = subprocess.Popen([sys.executable, "-m", "ptreplay", "record", "-a", "--duration", "3", "-o", str(out),
                                "--comm", "seed_loop", "--min-vmpte", "256k"], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        _wait_recording(rec.pid)
        small = subprocess.Popen([str(workload_bin / "seed_loop"), "1", "5", "1"], stdout=subprocess.DEVNULL)
        # ~1 s above the threshold (VmPTE 256 kB after ~64 of its 1,500 iterations, 6 MB at the end):
        # the adaptive sampler must see it there (a 0.2 s run was missed once under load)
        big = subprocess.Popen([str(workload_bin / "seed_loop"), "4", "1500", "2"], stdout=subprocess.DEVNULL)
        big.wait(30)
        small.wait(30)
        _, err = rec.communicate(timeout=90)
        assert rec.returncode == 0, err
    finally:
        target.kill()
        target.wait()
    host = json.loads((out / "record.json").read_text())["host"]
    assert host["filters"] == {"comm": ["seed_loop"], "min_vmpte_bytes": 256 << 10}
    assert host["snapshot"]["filtered_pids"].get(str(target.pid)) == "comm"
    events = ingest([out], tmp_path / "events.parquet")
    gate = read_capture(events)["host_recording"]
    assert small.pid in gate["dropped_pids"]["filtered"] and big.pid in gate["replayed_pids"], (small.pid, big.pid, gate)
    result = replay(events, ReplayOptions(policies="none"))
    assert {r["pid"] for r in result.summary.to_pylist()} == {big.pid}


# --- the command line's refusals and the filters (no perf needed) ---------------

@pytest.mark.parametrize("args, needle", [
    (["-a"], "-a needs --duration"),
    (["-a", "--duration", "1", "-p", "1"], "give no -p PID and no command"),
    (["-a", "--duration", "1", "--", "true"], "give no -p PID and no command"),
    (["--comm", "x", "--", "true"], "--comm and --min-vmpte filter a host recording"),
    (["--min-vmpte", "1M", "-p", "1", "--duration", "1"], "--comm and --min-vmpte filter a host recording"),
    (["-a", "--duration", "1", "--min-vmpte", "lots"], "--min-vmpte: 'lots' is not a size"),
    (["-a", "--duration", "0"], "--duration: '0' must be positive"),
    (["-a", "--duration", "1", "--comm", ","], "--comm names no process"),
])
def test_record_all_usage_errors_are_one_line(tmp_path, args, needle):
    out = tmp_path / "out"
    r = run_cli("record", "-o", str(out), *args)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("ptreplay: error: "), r.stderr
    assert needle in lines[0] and "Traceback" not in r.stderr
    assert not out.exists() and r.stdout == ""


def test_bad_comm_is_refused_before_recording(tmp_path):
    with pytest.raises(RecordError, match="expected a process name as in /proc/PID/comm"):
        check_filters(("a-name-longer-than-15",), 0)
    r = run_cli("record", "-o", str(tmp_path / "out"), "-a", "--duration", "1", "--comm", "x/y")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "'x/y'" in r.stderr
    assert not (tmp_path / "out").exists()


def test_filters_and_listing():
    f = check_filters(("bash", "seed_loop"), 64 << 10)
    assert f.name_ok("bash") and not f.name_ok("python3") and f.vmpte_ok(64 << 10) and not f.vmpte_ok(60 << 10)
    assert HostFilters().name_ok("anything") and HostFilters().vmpte_ok(0)
    users, kernel = list_processes()
    import os
    assert os.getpid() in {p for p, _, _ in users}
    if Path("/proc/2/status").exists():                 # kthreadd: no mm, skipped
        assert 2 not in {p for p, _, _ in users} and kernel >= 1


# --- the ingest gate on a hand-made stream (not a capture) -----------------------

def _batch(rows: list[dict]) -> pa.Table:
    t = events_from_rows(rows)
    kind = pa.DictionaryArray.from_arrays(pa.array([EVENT_KINDS.index(k) for k in t.column("kind").to_pylist()],
                                                   pa.int8()), pa.array(list(EVENT_KINDS)))
    return pa.Table.from_arrays([kind if f.name == "kind" else t.column(f.name) for f in BATCH_SCHEMA],
                                schema=BATCH_SCHEMA)


def _filtered(gate: HostGate, rows: list[dict], as_parts: bool) -> pa.Table:
    """gate.filter of the rows as an events table, or as events/2 parts (the ingest's fast path;
    joined back into a table here: a wrong `row` misplaces the others among the faults)."""
    from ptreplay.schemas import events_layout
    table = _batch(rows)
    if not as_parts:
        return gate.filter(table)
    kept = gate.filter(events_layout.split(table))
    assert isinstance(kept, events_layout.EventParts)
    return kept.to_table()


@pytest.mark.parametrize("as_parts", [False, True], ids=["table", "parts"])
def test_gate_keeps_known_processes_from_snapshot_fork_or_exec(as_parts):
    """10 snapshotted; 11 running but filtered; 12 ours; 13 running without a snapshot.  10 forks 20
    (kept), 13 forks 21 (unknown start) which execs (kept from the exec), 20 exits and its pid is
    reused by 22's fork from 13 (unknown again); 10 forks 30 before 30's own snapshot (the fork row
    goes: 30 starts from its snapshot)."""
    host = {"excluded": {"12": "perf record"}, "filters": {"comm": [], "min_vmpte_bytes": 0},
            "snapshot": {"listed_pids": [10, 11, 13], "filtered_pids": {"11": "comm"}}}
    gate = HostGate(host, {10: 0, 30: 14}, None)
    f = lambda t, pid, **kw: dict(t_ns=t, pid=pid, kind=kw.pop("kind", "fault"), **kw)  # noqa: E731
    rows = [f(1, 10), f(2, 11), f(3, 12), f(4, 13),
            f(5, 10, kind="fork", child_pid=20, comm="a"), f(6, 20),
            f(7, 13, kind="fork", child_pid=21, comm="b"), f(8, 21), f(9, 21, kind="exec", comm="c"), f(10, 21),
            f(11, 20, kind="exit"), f(12, 13, kind="fork", child_pid=20, comm="b"), f(13, 20),
            f(13, 10, kind="fork", child_pid=30, comm="a"), f(14, 30), f(15, 30)]       # 30: snapshot at 14
    kept = _filtered(gate, rows, as_parts)
    assert list(zip(kept.column("t_ns").to_pylist(), kept.column("pid").to_pylist(),
                    kept.column("kind").to_pylist())) == [
        (1, 10, "fault"), (5, 10, "fork"), (6, 20, "fault"), (9, 21, "exec"), (10, 21, "fault"), (11, 20, "exit"),
        (14, 30, "fault"), (15, 30, "fault")]
    rep = gate.report()
    assert rep["dropped_pids"] == {"excluded": [12], "filtered": [11], "no_snapshot": [13], "unknown_start": [20, 21]}
    assert rep["replayed_pids"] == [10, 20, 21, 30] and rep["forks_of_snapshotted_children"] == 1


@pytest.mark.parametrize("as_parts", [False, True], ids=["table", "parts"])
def test_gate_applies_the_filters_to_processes_born_during_the_capture(as_parts):
    truth = pa.table({"t_ns": [1, 2], "pid": pa.array([20, 21], pa.int32()),
                      "vmpte_bytes": [1 << 20, 8 << 10]})
    host = {"excluded": {}, "filters": {"comm": ["keep"], "min_vmpte_bytes": 64 << 10},
            "snapshot": {"listed_pids": [10], "filtered_pids": {}}}
    gate = HostGate(host, {10: 0}, truth)
    f = lambda t, pid, **kw: dict(t_ns=t, pid=pid, kind=kw.pop("kind", "fault"), **kw)  # noqa: E731
    rows = [f(1, 10, kind="fork", child_pid=20, comm="keep"), f(2, 20),
            f(3, 10, kind="fork", child_pid=21, comm="keep"), f(4, 21),         # too small a VmPTE
            f(5, 10, kind="fork", child_pid=22, comm="keep"), f(6, 22),         # never sampled
            f(7, 20, kind="exec", comm="other"), f(8, 20)]                      # stays: known already
    kept = _filtered(gate, rows, as_parts)
    assert kept.column("t_ns").to_pylist() == [1, 2, 7, 8]
    assert kept.column("kind").to_pylist() == ["fork", "fault", "exec", "fault"]
    assert gate.report()["forks_of_dropped_children"] == 2


# --- the ranking report on hand-built summary rows (not a capture) --------------------

def test_report_ranks_processes_of_a_host_recording_by_each_policys_saving(tmp_path):
    from ptreplay.pipeline.presentation.report import report
    from ptreplay.pipeline.warehouse import connect, execute
    from ptreplay.schemas import SUMMARY, TRUTH
    from ptreplay.schemas.parquet_io import write_table
    KB = 1024
    finals = {10: ("redis", 1000, 200, 900), 20: ("java", 500, 400, 100), 30: ("bash", 40, 40, 40)}
    rows = []
    for pid, (comm, none, ptr, scan) in finals.items():
        for policy, v in (("none", none), ("pt_reclaim", ptr), ("scan:1s", scan)):
            row = {f.name: 0 for f in SUMMARY.schema}
            row.update(trace_id="h", pid=pid, comm=comm, policy=policy, final_vmpte_bytes=v * KB,
                       ideal_pte_bytes=40 * KB, vmpte_saved_bytes=(none - v) * KB)
            rows.append(row)
    capture = {"trace_id": "h", "command_line": "ptreplay record -a --duration 4", "lost_events": 7,
               "lost_events_per_cpu": {"0": 5, "1": 2}}
    write_table(pa.Table.from_pylist(rows, schema=SUMMARY.schema), tmp_path / "summary.parquet", SUMMARY,
                capture=capture)
    truth = pa.table({"t_ns": [1, 1], "pid": pa.array([10, 20], pa.int32()), "vmsize_bytes": [0, 0],
                      "vmrss_bytes": [0, 0], "rss_anon_bytes": [0, 0], "rss_file_bytes": [0, 0],
                      "rss_shmem_bytes": [0, 0], "vmpte_bytes": [200 * KB, 480 * KB]})
    write_table(truth, tmp_path / "truth.parquet", TRUTH, capture=capture)
    ranked = execute(connect(tmp_path), "SELECT policy, policy_rank, pid, saved_bytes, saved_share_pct "
                                        "FROM process_ranking WHERE policy <> 'none' ORDER BY policy, policy_rank")
    assert [(r["policy"], r["policy_rank"], r["pid"]) for r in ranked.to_pylist()] == [
        ("pt_reclaim", 1, 10), ("pt_reclaim", 2, 20), ("pt_reclaim", 3, 30),
        ("scan:1s", 1, 20), ("scan:1s", 2, 10), ("scan:1s", 3, 30)]
    assert ranked.to_pylist()[0]["saved_share_pct"] == pytest.approx(100 * 800 / 900)
    text = report(tmp_path)               # a host recording: the ranking by default
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["rank", "trace", "pid", "comm"]
    assert [x.split()[2] for x in lines[1:4]] == ["10", "20", "30"]     # redis saves 900k under scan:1s
    assert "pt_reclaim: saves 900k over 3 processes; most for pid 10 (redis): 800k, 89% of it" in text
    assert "kernel truth for 2 processes: pt_reclaim final VmPTE within max(1%, 8 kB) of the kernel's for 1" in text
    assert "h: the tracer lost 7 events (cpu 0 5, cpu 1 2); results undercount" in text
    assert "rank" not in report(tmp_path, by="process").splitlines()[0]
    import json
    assert [r["pid"] for r in json.loads(report(tmp_path, fmt="json"))] == [10, 20, 30]
