"""`ptreplay record`: the refusals, the /proc readers, the sampler, and live recordings.

Live tests (marked `live`) run the real perf on this machine: the final VmPTE
of the truth must equal what the workload itself printed, Ctrl-C must leave a
valid capture, and -p must add maps and present pages.
"""
from __future__ import annotations

import gzip
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pyarrow.compute as pc

from conftest import require, run_cli
from ptreplay.pipeline.events.ingest import ingest
from ptreplay.replay.engine import ReplayOptions, replay
from ptreplay.pipeline import cli
from ptreplay.pipeline.capture import machine
from ptreplay.schemas.errors import RecordError
from ptreplay.schemas.parquet_io import read_capture, read_table
from ptreplay.pipeline.capture.record import (RecordOptions, Sampler, check_command, check_pid, check_privileges, check_tracepoints,
                             children, find_perf, find_tracefs, parse_status, perf_argv,
                             prepare_out_dir)
from ptreplay.schemas import CAPTURE, EVENTS, SUMMARY, TRUTH

STATUS = b"""Name:\tseed_loop
Umask:\t0022
State:\tS (sleeping)
Pid:\t42
VmPeak:\t 1051052 kB
VmSize:\t 1051052 kB
VmRSS:\t    1320 kB
RssAnon:\t     128 kB
RssFile:\t    1192 kB
RssShmem:\t       0 kB
VmPTE:\t      52 kB
Threads:\t1
"""
ZOMBIE = b"Name:\tseed_loop\nState:\tZ (zombie)\nPid:\t42\nThreads:\t1\n"


def final_vmpte_kb(text: str, prefix: str = "final") -> int:
    m = re.search(rf"^{prefix} VmPTE:\s+(\d+) kB", text, re.M)
    assert m, f"no '{prefix} VmPTE' line in {text!r}"
    return int(m.group(1))


def assert_one_line_error(proc: subprocess.CompletedProcess, needle: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("ptreplay: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    assert needle in lines[0], lines[0]


# --- pure functions -----------------------------------------------------------

def test_parse_status_converts_kb_to_bytes():
    name, sizes = parse_status(STATUS)
    assert name == b"seed_loop"
    assert sizes == (1051052 * 1024, 1320 * 1024, 128 * 1024, 1192 * 1024, 0, 52 * 1024)


def test_parse_status_without_vmpte_means_no_mm():
    assert parse_status(ZOMBIE) == (b"seed_loop", None)


def test_perf_argv_has_clock_compression_buffers_and_no_callgraph_by_default(tmp_path):
    opts = RecordOptions(out_dir=tmp_path, command=["./a", "x"], mmap_pages="8M")
    argv = perf_argv("/usr/bin/perf", ["exceptions:page_fault_user"], tmp_path / "perf.data", opts)
    assert argv[:2] == ["/usr/bin/perf", "record"]
    assert argv[argv.index("-k") + 1] == "CLOCK_MONOTONIC" and "-z" in argv
    assert argv[argv.index("-m") + 1] == "8M"
    assert "--call-graph" not in argv and "--no-inherit" not in argv
    assert argv[-3:] == ["--", "./a", "x"]
    opts.callgraph = True
    argv = perf_argv("perf", ["exceptions:page_fault_user", "syscalls:sys_exit_madvise",
                              "syscalls:sys_enter_madvise"], tmp_path / "p", opts)
    assert "exceptions:page_fault_user/call-graph=fp/" in argv
    assert "syscalls:sys_exit_madvise/call-graph=dwarf,stack-size=8192/" in argv
    assert "syscalls:sys_enter_madvise/call-graph=no/" in argv and "--buildid-mmap" in argv


def test_perf_argv_threads(tmp_path):
    opts = RecordOptions(out_dir=tmp_path, command=["./a"], threads=True)
    argv = perf_argv("perf", ["exceptions:page_fault_user"], tmp_path / "perf.data", opts)
    assert "--threads" in argv and argv.index("--threads") < argv.index("--")
    opts.threads = False
    assert "--threads" not in perf_argv("perf", [], tmp_path / "perf.data", opts)


def test_perf_argv_attach_is_switched_by_the_control_fifo(tmp_path):
    """-p (and the command stopped at its exec): perf attaches with its events off and no
    command of its own; the recording is timed by `enable`/`disable` on the control fifo."""
    opts = RecordOptions(out_dir=tmp_path, pid=123, duration_s=1.5)
    argv = perf_argv("perf", [], tmp_path / "perf.data", opts, 123, ("-D", "-1", "--control", "fifo:c,a"))
    assert argv[argv.index("-p") + 1] == "123"
    assert argv[-4:] == ["-D", "-1", "--control", "fifo:c,a"] and "--" not in argv


def test_machine_readers_on_fixture_files(tmp_path):
    (tmp_path / "thp").write_text("always [madvise] never\n")
    assert machine.thp_mode(tmp_path / "thp") == "madvise"
    assert machine.thp_mode(tmp_path / "missing") == ""
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nflags\t\t: fpu la57 pse\n")
    assert machine.paging_levels(tmp_path / "cpuinfo") == 5
    (tmp_path / "cpuinfo").write_text("flags\t\t: fpu pse\n")
    assert machine.paging_levels(tmp_path / "cpuinfo") == 4
    (tmp_path / "config.gz").write_bytes(gzip.compress(b"CONFIG_A=y\nCONFIG_PT_RECLAIM=y\n"))
    assert machine.pt_reclaim("x", tmp_path / "config.gz", tmp_path) == "y"
    (tmp_path / "config-x").write_text("# CONFIG_PT_RECLAIM is not set\n")
    assert machine.pt_reclaim("x", tmp_path / "none.gz", tmp_path) == "n"
    assert machine.pt_reclaim("y", tmp_path / "none.gz", tmp_path) == "unknown"


def test_machine_info_has_the_capture_fields():
    info = machine.machine_info()
    assert set(info) <= set(CAPTURE.schema.names)
    assert info["page_size_bytes"] == 4096 and info["paging_levels"] in (4, 5)
    assert info["pt_reclaim"] in ("y", "n", "unknown")


# --- refusals as functions ----------------------------------------------------

def test_privileges_root_always_ok(tmp_path):
    check_privileges(0, tmp_path / "missing")


def test_privileges_non_root_needs_paranoid_minus_one(tmp_path):
    p = tmp_path / "paranoid"
    p.write_text("2\n")
    with pytest.raises(RecordError, match="not root.*perf_event_paranoid is 2"):
        check_privileges(1000, p)
    p.write_text("-1\n")
    check_privileges(1000, p)


def test_find_perf_refuses_without_perf(tmp_path):
    with pytest.raises(RecordError, match="perf not found"):
        find_perf(str(tmp_path))


def test_tracefs_and_tracepoint_refusals(tmp_path):
    with pytest.raises(RecordError, match=r"as root, run `mount -t tracefs nodev .*/nope`"):
        find_tracefs({"PTREPLAY_TRACEFS": str(tmp_path / "nope")}, euid=1000)
    (tmp_path / "events" / "exceptions" / "page_fault_user").mkdir(parents=True)
    assert find_tracefs({"PTREPLAY_TRACEFS": str(tmp_path)}) == tmp_path
    assert check_tracepoints(tmp_path, required=["exceptions:page_fault_user"],
                             optional=["mmap:exit_mmap"]) == ["exceptions:page_fault_user"]
    with pytest.raises(RecordError, match="bogus:nope"):
        check_tracepoints(tmp_path, required=["exceptions:page_fault_user", "bogus:nope"])


def test_root_mounts_tracefs_itself(tmp_path, capsys):
    where = tmp_path / "tracing"
    mounted = []

    def fake_mount(path):
        mounted.append(path)
        (path / "events").mkdir(parents=True)

    assert find_tracefs({}, euid=0, candidates=[where], mount=fake_mount) == where
    assert mounted == [where]
    assert capsys.readouterr().err.strip() == f"ptreplay: record: tracefs was not mounted: mounted it (mount -t tracefs nodev {where})"
    with pytest.raises(RecordError, match="failed"):
        find_tracefs({}, euid=0, candidates=[tmp_path / "other"], mount=lambda path: None)


def test_check_command_refuses_what_perf_cannot_exec(tmp_path):
    check_command(["sh", "-c", "true"])
    with pytest.raises(RecordError, match="command not found"):
        check_command([str(tmp_path / "nope")])
    (tmp_path / "data.txt").write_text("not a program")
    with pytest.raises(RecordError, match="not executable"):
        check_command([str(tmp_path / "data.txt")])


def test_check_pid_refuses_dead_process():
    p = subprocess.Popen(["true"])
    p.wait()
    with pytest.raises(RecordError, match=f"process {p.pid} not found"):
        check_pid(p.pid)
    with pytest.raises(RecordError, match="no user address space"):
        check_pid(2)   # kthreadd


def test_prepare_out_dir_refuses_non_empty_and_force_clears_only_ours(tmp_path):
    import pyarrow as pa
    from ptreplay.schemas.parquet_io import write_table
    d = tmp_path / "cap"
    d.mkdir()
    (d / "perf.data").write_text("old")
    (d / "notes.txt").write_text("mine")
    (d / "maps").mkdir()
    (d / "maps" / "1.start.txt").write_text("maps")
    with pytest.raises(RecordError, match="not empty"):
        prepare_out_dir(d, force=False)
    # no ptreplay capture.parquet: the perf.data is a user's, never removed
    with pytest.raises(RecordError, match=r"is a directory holding files ptreplay did not write \(perf\.data, maps: "):
        prepare_out_dir(d, force=True)
    assert (d / "perf.data").read_text() == "old" and (d / "maps" / "1.start.txt").exists()
    # a previous record's directory (our capture.parquet): its files go, the user's notes stay
    row = {f.name: (0 if pa.types.is_integer(f.type) else False if pa.types.is_boolean(f.type) else "")
           for f in CAPTURE.schema}
    write_table(pa.Table.from_pylist([row], schema=CAPTURE.schema), d / "capture.parquet", CAPTURE)
    prepare_out_dir(d, force=True)
    assert sorted(p.name for p in d.iterdir()) == ["notes.txt"]
    assert (d / "notes.txt").read_text() == "mine"


def test_cli_not_root_is_one_line(tmp_path, monkeypatch, capsys):
    paranoid = tmp_path / "paranoid"
    paranoid.write_text("2\n")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr("ptreplay.pipeline.capture.record.PARANOID_PATH", paranoid)
    rc = cli.main(["record", "-o", str(tmp_path / "out"), "--", "true"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "not root (euid 1000)" in err[0]


# --- /proc readers and the sampler (no perf needed) -------------------------

def test_sampler_follows_a_process_tree_until_exit():
    sh = subprocess.Popen(["sh", "-c", "sleep 0.4 & sleep 0.3; wait"])
    sampler = Sampler(sh.pid, include_top=True, interval_ns=1_000_000)
    sampler.start()
    sh.wait()
    time.sleep(0.02)
    sampler.stop()
    sampler.join()
    pids = sampler.pids()
    assert sh.pid in pids and len(pids) == 3, pids
    assert sampler.first_pid == sh.pid
    assert set(sampler.maps_start) == set(pids) and set(sampler.maps_end) == set(pids)
    assert sampler.rate_hz() > 300
    table = sampler.truth_table()
    assert table.schema.names == TRUTH.schema.names and table.num_rows == len(sampler.rows)


def test_children_of_self():
    p = subprocess.Popen(["sleep", "1"])
    try:
        assert p.pid in children(os.getpid())
    finally:
        p.kill()
        p.wait()


# --- live: the CLI and real perf --------------------------------------------

@pytest.mark.live
def test_record_truth_ends_on_the_printed_vmpte(tmp_path, workload_bin):
    out = tmp_path / "cap"
    r = run_cli("record", "-o", str(out), "--", str(workload_bin / "seed_loop"), "1", "50", "1")
    assert r.returncode == 0, r.stderr
    printed = final_vmpte_kb(r.stdout)
    info = json.loads((out / "record.json").read_text())
    truth = read_table(out / "truth.parquet", TRUTH).to_pandas()
    mine = truth[truth.pid == info["root_pid"]]
    assert mine.vmpte_bytes.iloc[-1] == printed * 1024
    assert mine.t_ns.is_monotonic_increasing
    capture = read_table(out / "capture.parquet", CAPTURE).to_pylist()[0]
    assert capture == json.loads((out / "capture.json").read_text())
    assert capture["trace_id"] == "cap" and capture["clock"] == "CLOCK_MONOTONIC"
    assert capture["start_ns"] <= mine.t_ns.iloc[0] <= mine.t_ns.iloc[-1] <= capture["end_ns"]
    assert (out / "command.txt").read_text().strip().endswith("seed_loop 1 50 1")
    pid = info["root_pid"]
    assert (out / "maps" / f"{pid}.start.txt").exists() and (out / "maps" / f"{pid}.end.txt").exists()
    assert (out / "perf.data").stat().st_size > 0


@pytest.mark.live
def test_record_threads_replays_to_the_kernel_vmpte(tmp_path, workload_bin):
    """--threads: perf.data is a directory of per-CPU data files, merged at ingest; the
    replay under pt_reclaim ends on the VmPTE the program printed.  migrate moves its worker
    between the CPUs, so every data file holds its faults and calls."""
    out = tmp_path / "cap"
    r = run_cli("record", "--threads", "-o", str(out), "--", str(workload_bin / "migrate"), "16", "8")
    assert r.returncode == 0, r.stderr
    files = sorted(p.name for p in (out / "perf.data").glob("data.*"))
    assert len(files) == os.cpu_count() >= 2, files
    events, rep = tmp_path / "events.parquet", tmp_path / "replay"
    r2 = run_cli("ingest", str(out), "-o", str(events))
    assert r2.returncode == 0, r2.stderr
    r3 = run_cli("replay", str(events), "-o", str(rep), "--policy", "pt_reclaim")
    assert r3.returncode == 0, r3.stderr
    root = json.loads((out / "record.json").read_text())["root_pid"]
    rows = [x for x in read_table(rep / "summary.parquet", SUMMARY).to_pylist() if x["pid"] == root]
    assert rows and rows[0]["final_vmpte_bytes"] == final_vmpte_kb(r.stdout) * 1024


@pytest.mark.live
@pytest.mark.parametrize("case", ["path", "tracefs", "dead_pid", "non_empty", "no_command", "not_root"])
def test_record_refusals_are_one_line(case, tmp_path, workload_bin):
    out = tmp_path / "out"
    args = ["record", "-o", str(out), "--", str(workload_bin / "seed_loop"), "1", "1", "1"]
    env = dict(os.environ)
    prefix = None
    if case == "path":
        env["PATH"] = str(tmp_path)
        needle = "perf not found"
    elif case == "tracefs":
        (tmp_path / "fake" / "events" / "exceptions" / "page_fault_user").mkdir(parents=True)
        env["PTREPLAY_TRACEFS"] = str(tmp_path / "fake")
        needle = "syscalls:sys_enter_mmap"
    elif case == "dead_pid":
        p = subprocess.Popen(["true"])
        p.wait()
        args = ["record", "-o", str(out), "-p", str(p.pid), "--duration", "1"]
        needle = f"process {p.pid} not found"
    elif case == "no_command":
        args[-4:] = [str(tmp_path / "no-such-program")]
        needle = "command not found"
    elif case == "non_empty":
        out.mkdir()
        (out / "keep.txt").write_text("x")
        needle = "not empty"
    else:
        if open("/proc/sys/kernel/perf_event_paranoid").read().strip() == "-1":
            pytest.skip("perf_event_paranoid is -1: non-root may record here")
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        needle = "not root (euid 65534)"
    assert_one_line_error(run_cli(*args, env=env, prefix=prefix), needle)
    assert case == "non_empty" or not out.exists()


def _recorded_child(recorder_pid: int, name: str, timeout: float = 20) -> int:
    """Wait until the recorder has exec'd the workload (its child, stopped at exec, then run);
    return its pid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for c in children(recorder_pid):
            try:
                stat = Path(f"/proc/{c}/stat").read_text()
                running = stat[stat.rindex(")") + 2] != "t"      # no longer stopped at its exec
                if Path(f"/proc/{c}/comm").read_text().strip() == name and running:
                    return c
            except OSError:
                pass
        time.sleep(0.05)
    raise AssertionError(f"{name} never started under the recorder")


@pytest.mark.live
def test_sigint_leaves_a_valid_capture(tmp_path, workload_bin):
    out = tmp_path / "cap"
    argv = [sys.executable, "-m", "ptreplay", "record", "-o", str(out), "--",
            str(workload_bin / "seed_loop"), "4", "1000000", "1"]
    rec = subprocess.Popen(argv, cwd=Path(__file__).parents[1], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        workload = _recorded_child(rec.pid, "seed_loop")
        time.sleep(0.5)
        rec.send_signal(signal.SIGINT)
        stdout, stderr = rec.communicate(timeout=60)
    finally:
        if rec.poll() is None:
            rec.kill()
    assert rec.returncode == 0, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert not Path(f"/proc/{workload}").exists() or "Z" in Path(f"/proc/{workload}/stat").read_text().split()[2]
    assert subprocess.run(["perf", "script", "-i", str(out / "perf.data"), "--header-only"],
                          capture_output=True).returncode == 0
    r = subprocess.run(["perf", "report", "-i", str(out / "perf.data"), "--stats"], capture_output=True, text=True)
    assert r.returncode == 0 and "page_fault_user" in r.stdout
    truth = read_table(out / "truth.parquet", TRUTH)
    assert truth.num_rows > 100
    assert json.loads((out / "record.json").read_text())["interrupted"] is True
    read_table(out / "capture.parquet", CAPTURE)


@pytest.mark.live
def test_attach_to_a_sleeping_process(tmp_path):
    code = ("import mmap, sys, time\n"
            "m = mmap.mmap(-1, 4 << 20)\n"
            "for i in range(0, 4 << 20, 4096): m[i] = 1\n"
            "print('ready', flush=True)\n"
            "time.sleep(30)\n")
    target = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert target.stdout.readline().strip() == "ready"
        out = tmp_path / "cap"
        r = run_cli("record", "-o", str(out), "-p", str(target.pid), "--duration", "1")
        assert r.returncode == 0, r.stderr
        assert target.poll() is None, "recording must not stop the target"
    finally:
        target.kill()
        target.wait()
    assert (out / f"maps/{target.pid}.start.txt").exists() and (out / f"maps/{target.pid}.end.txt").exists()
    snap = read_table(out / "snapshot.parquet", EVENTS)
    assert set(snap.column("pid").to_pylist()) == {target.pid}
    pages = snap.filter(pc.equal(snap.column("kind"), "snapshot_pages"))
    assert sum(pages.column("len").to_pylist()) >= 4 << 20    # the 4 MiB it touched, at least
    truth = read_table(out / "truth.parquet", TRUTH).to_pandas()
    assert set(truth.pid) == {target.pid} and len(truth) > 500
    assert "time.sleep(30)" in (out / "command.txt").read_text()


@pytest.mark.live
def test_launch_stops_the_command_at_its_exec(tmp_path, workload_bin):
    """The command's start state is read while it is stopped right after its execve: nothing
    changes under it, and it is the kernel's (VmSize of a fresh exec is hundreds of kB that no
    tracepoint shows)."""
    out = tmp_path / "cap"
    r = run_cli("record", "-o", str(out), "--", str(workload_bin / "seed_loop"), "1", "20", "1")
    assert r.returncode == 0, r.stderr
    info = json.loads((out / "record.json").read_text())
    assert info["launch"] == "exec_stop" and info["command_exit_status"] == 0
    snap = info["snapshot"]
    assert snap["pid"] == info["root_pid"] and snap["comm"] == "seed_loop"
    assert snap["changed_during_snapshot"] == {} and snap["status"]["vmsize_bytes"] > 100 << 10
    assert info["snapshot"]["perf_recording_seen_ns"] <= snap["t_ns"]
    events = read_table(out / "snapshot.parquet", EVENTS).to_pandas()
    vmas = events[events.kind == "snapshot_vma"]
    assert vmas.len.sum() == snap["status"]["vmsize_bytes"]
    assert (vmas.fd == 0).sum() >= 8        # the binary's and the loader's segments


@pytest.mark.live
def test_launch_falls_back_to_perf_where_ptrace_is_refused(tmp_path, workload_bin, monkeypatch, capfd):
    from ptreplay.pipeline.capture import ptrace, record as rec

    def refused(command):
        raise ptrace.PtraceRefused("Operation not permitted")
    monkeypatch.setattr(ptrace, "spawn_stopped", refused)
    out = rec.record(RecordOptions(out_dir=tmp_path / "cap",
                                   command=[str(workload_bin / "seed_loop"), "1", "20", "1"]))
    captured = capfd.readouterr()
    assert "ptrace refused (Operation not permitted)" in captured.err
    info = json.loads((out / "record.json").read_text())
    assert info["launch"] == "perf" and info["snapshot"] is None and not (out / "snapshot.parquet").exists()
    truth = read_table(out / "truth.parquet", TRUTH).to_pandas()
    assert truth[truth.pid == info["root_pid"]].vmpte_bytes.iloc[-1] == final_vmpte_kb(captured.out) * 1024


@pytest.mark.live
def test_perf_failing_before_enable_leaves_no_stopped_command(tmp_path, workload_bin):
    """A perf that dies before it switched its events on: one-line error, and the command
    that waited stopped at its exec is killed, not left behind."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "perf").write_text("#!/bin/sh\ncase \"$1\" in record) exit 3;; esac\nexec /usr/bin/perf \"$@\"\n")
    (fake / "perf").chmod(0o755)
    env = dict(os.environ, PATH=f"{fake}:{os.environ['PATH']}")
    marker = f"ptreplay-orphan-{os.getpid()}"
    r = run_cli("record", "-o", str(tmp_path / "cap"), "--", "/bin/sh", "-c", f": {marker}; sleep 30", env=env)
    assert_one_line_error(r, "perf record exited with status 3 before it enabled its events")
    left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
    assert left == [], left
    assert not (tmp_path / "cap").exists()


def _memory_cgroup(name: str) -> tuple[Path, str, str, str] | None:
    """A new memory cgroup (its dir, task file, limit file, the value lifting the limit): v1 under
    /sys/fs/cgroup/memory, v2 where the memory controller is enabled; None when neither."""
    v1 = Path("/sys/fs/cgroup/memory")
    if (v1 / "tasks").exists():
        return v1 / name, "tasks", "memory.limit_in_bytes", "-1"
    for root in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
        if "memory" in ((root / "cgroup.subtree_control").read_text().split()
                        if (root / "cgroup.subtree_control").exists() else []):
            return root / name, "cgroup.procs", "memory.max", "max"
    return None


@pytest.mark.live
def test_a_thp_fallback_is_a_fault_without_an_end(tmp_path, workload_bin):
    """A huge page the kernel cannot have (its memcg charge fails under a 1 MiB limit:
    THP_FAULT_FALLBACK_CHARGE) leaves a THP write fault with no THP_FAULT_ALLOC end in the trace,
    and the replay maps one 4 KiB page there; once the limit is lifted the next such fault ends
    with its huge page.  The model's RssAnon passes through the values the program printed after
    each write, and its final VmPTE is the kernel's."""
    cg = _memory_cgroup(f"ptreplay-fallback-{os.getpid()}")
    require(cg is not None, "no memory cgroup to limit (v1 memory or v2 with +memory)")
    require(machine.thp_mode() in ("madvise", "always"), "THP is `never` here")
    cgdir, tasks, limit, lift = cg
    cgdir.mkdir()
    before = int(dict(line.split() for line in open("/proc/vmstat"))["thp_fault_fallback_charge"])
    try:
        (cgdir / limit).write_text("1048576")
        out = tmp_path / "cap"
        r = run_cli("record", "-o", str(out), "--", str(workload_bin / "thp_fallback"), str(cgdir / tasks),
                    str(cgdir / limit), lift)
        assert r.returncode == 0, r.stderr
    finally:
        cgdir.rmdir()
    after = int(dict(line.split() for line in open("/proc/vmstat"))["thp_fault_fallback_charge"])
    assert after > before                                   # the kernel fell back
    printed = dict(re.findall(r"^(\w+) RssAnon:\s+(\d+) kB", r.stdout, re.M))
    final_kb = int(re.search(r"final VmPTE:\s+(\d+) kB", r.stdout).group(1))
    events = ingest([out], tmp_path / "events.parquet")
    faults = read_table(events, EVENTS).to_pandas().query("kind == 'fault' and addr % 2097152 == 0")
    assert list(faults.dur_ns > 0) == [False, True]         # A: no end; B: its huge page's end
    result = replay(events, ReplayOptions(policies="pt_reclaim", interval_ns=1000))
    anon = [r["rss_anon_bytes"] // 1024 for r in result.timeseries.to_pylist()]
    assert int(printed["A"]) in anon and int(printed["B"]) in anon
    assert anon.index(int(printed["B"])) > anon.index(int(printed["A"]))
    assert int(printed["B"]) - int(printed["A"]) >= 2048
    assert result.summary.to_pylist()[0]["final_vmpte_bytes"] == final_kb * 1024


@pytest.mark.live
def test_a_child_of_a_launcher_exits_when_the_kernel_says(tmp_path, workload_bin):
    """env runs sh, which runs seed_loop, then sleep.  env's exec of sh tears env's mm down (an
    exit_mmap, which per-task perf records), but a process's own end has no exit_mmap in a per-task
    capture (perf stops following a task at its exit): seed_loop's exit must come there, before
    the shell forks sleep (the shell waits for it), not at the end of the capture.  Judged by the
    kernel: the truth sampler saw sleep running after the exit.  A status read that began before
    the exit may be stamped after it (a read holding the mm's last reference runs its teardown,
    exit_mmap, and is stamped at its middle: up to ~0.1 ms late here), hence the slack."""
    out = tmp_path / "cap"
    script = f"{workload_bin / 'seed_loop'} 1 50 1; sleep 0.3; true"
    r = run_cli("record", "-o", str(out), "--", "/usr/bin/env", "/bin/sh", "-c", script)
    assert r.returncode == 0, r.stderr
    events = tmp_path / "events.parquet"
    assert run_cli("ingest", str(out), "-o", str(events)).returncode == 0
    ev = read_table(events, EVENTS).to_pandas()
    execs = ev[ev.kind == "exec"]
    loop_pid = int(execs[execs.comm == "seed_loop"].pid.iloc[0])
    sleep_pid = int(execs[execs.comm == "sleep"].pid.iloc[0])
    exits = ev[(ev.kind == "exit") & (ev.pid == loop_pid)]
    assert len(exits) == 1
    t_exit = int(exits.t_ns.iloc[0])
    truth = read_table(out / "truth.parquet", TRUTH).to_pandas()
    loop_t, sleep_t = truth[truth.pid == loop_pid].t_ns, truth[truth.pid == sleep_pid].t_ns
    assert len(loop_t) and len(sleep_t)
    assert int(loop_t.max()) - 1_000_000 <= t_exit < int(sleep_t.min())
    assert t_exit < int(ev[(ev.pid == sleep_pid) & (ev.kind == "exec")].t_ns.iloc[0])
    assert int(ev[(ev.pid == loop_pid) & (ev.kind != "exit")].t_ns.max()) <= t_exit


@pytest.mark.live
def test_a_teardown_run_by_another_process_is_not_its_exit(tmp_path, workload_bin):
    """mm_holder's reader thread reads its child's /proc/PID/pagemap (holding the child's mm)
    while the parent kills the child: the kernel runs the child's exit_mmap in the reader thread,
    a task of the parent, which lives on and maps more.  That exit_mmap must not end the parent
    (it used to: its tables were freed there and its final VmPTE came out 16 kB low) nor switch
    the capture to 'exits at exit_mmap only'.  Judged by the kernel: the parent's final VmPTE is
    what it printed from /proc/self/status, and the child exits once."""
    out = tmp_path / "cap"
    r = run_cli("record", "-o", str(out), "--", str(workload_bin / "mm_holder"), "8")
    assert r.returncode == 0, r.stderr
    assert "read done after kill: yes" in r.stdout, r.stdout     # the reader held the mm (5 attempts)
    final_kb = int(re.search(r"final VmPTE:\s+(\d+) kB", r.stdout).group(1))
    events = ingest([out], tmp_path / "events.parquet")
    meta = read_capture(events)
    assert meta["normalize"]["foreign_exit_mmaps"] >= 1
    ev = read_table(events, EVENTS).to_pandas()
    forks = ev[ev.kind == "fork"]
    parent = int(forks.pid.iloc[0])
    exits = ev[ev.kind == "exit"]
    assert sorted(exits.pid.tolist()) == sorted([parent] + forks.child_pid.tolist())   # each once
    assert int(exits[exits.pid == parent].t_ns.iloc[0]) >= int(ev[ev.pid == parent].t_ns.max())
    result = replay(events, ReplayOptions(policies="pt_reclaim"))
    rows = {row["pid"]: row for row in result.summary.to_pylist()}
    assert rows[parent]["final_vmpte_bytes"] == final_kb * 1024
