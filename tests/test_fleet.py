"""Fleet: `ptreplay batch --fleet` on a real dask cluster (a `dask scheduler` and two `dask worker`
processes on loopback), its views against an independent computation, and its failure paths.

The fleet is made here: bundled real captures under two host labels **assigned by this test**
(every bundled capture was recorded on one machine, hostname `vm`; seed-2m is filed under both
hosts, as two hosts' identically named captures would be), plus a real `ptreplay census` of
processes this test starts on each "host" (root: pagemap of other processes).  The replay
columns of fleet_by_host / fleet_by_comm are recomputed with pandas from the partitions'
summary.parquet files; the census ones from /proc/PID/status VmPTE read here and the census
files' needed bytes.  That the tasks ran on the workers is checked against the workers' own
pids and addresses (Client.run).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import DATA, require, run_cli

distributed = pytest.importorskip("dask.distributed")

from ptreplay.pipeline.fleet.batch import gather_items  # noqa: E402
from ptreplay.pipeline.warehouse import connect, execute  # noqa: E402

POLICIES = "none,pt_reclaim,refcount"
HOSTS = {"web-1": ["seed-2m", "threads-zap"], "db-1": ["seed-2m", "mixed-vma"]}   # labels assigned here
MIB = 1 << 20

# A process that leaves known waste: 16 aligned 2 MiB regions filled, then each zapped as two
# 1 MiB halves (no single zap covers a table, so even CONFIG_PT_RECLAIM keeps all 16 tables).
HALVES = """
import ctypes, mmap, sys, time
m = mmap.mmap(-1, 34 << 20)
base = ctypes.addressof(ctypes.c_char.from_buffer(m))
off = -base % (2 << 20)
for i in range(off, off + (32 << 20), 4096):
    m[i] = 1
for r in range(16):
    start = off + r * (2 << 20)
    m.madvise(mmap.MADV_DONTNEED, start, 1 << 20)
    m.madvise(mmap.MADV_DONTNEED, start + (1 << 20), 1 << 20)
print("ready", flush=True)
time.sleep(600)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(scheduler address, {worker address: pid}): separate processes, 1 thread each, killed after."""
    logs = tmp_path_factory.mktemp("dask-logs")
    address = f"tcp://127.0.0.1:{free_port()}"
    dask = [sys.executable, "-m", "dask"]
    procs = []

    def start(name, args):
        log = open(logs / f"{name}.log", "w")
        procs.append(subprocess.Popen(dask + args, stdout=log, stderr=subprocess.STDOUT, cwd=logs,
                                      start_new_session=True))
        log.close()
    try:
        start("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                            "--no-dashboard"])
        for n in range(2):
            start(f"worker{n}", ["worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--no-nanny",
                                 "--no-dashboard", "--name", f"w{n}", "--local-directory", str(logs)])
        with distributed.Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
            pids = client.run(os.getpid)
        yield address, pids, logs
    except Exception:
        for f in sorted(logs.glob("*.log")):
            print(f"--- {f.name}\n{f.read_text()[-3000:]}", file=sys.stderr)
        raise
    finally:
        _stop(procs)


def vmpte_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmPTE:"):
            return int(line.split()[1]) * 1024
    raise KeyError(pid)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """FLEET/HOST/<captures as symlinks, census.parquet of two processes started here>, and the
    VmPTE /proc reported for each host's processes around its census."""
    require(os.geteuid() == 0, "census of other processes needs root (pagemap)")
    root = tmp_path_factory.mktemp("fleet") / "fleet"
    kids, vmpte = [], {}
    try:
        for host, captures in HOSTS.items():
            (root / host).mkdir(parents=True)
            for cap in captures:
                (root / host / cap).symlink_to(DATA / cap)
            pair = [subprocess.Popen([sys.executable, "-c", HALVES], stdout=subprocess.PIPE, text=True),
                    subprocess.Popen(["sleep", "600"])]
            kids += pair
            assert pair[0].stdout.readline().strip() == "ready"
            pids = [p.pid for p in pair]
            before = [vmpte_bytes(p) for p in pids]
            r = run_cli("census", *[a for p in pids for a in ("-p", str(p))], "-o", str(root / host / "census.parquet"))
            assert r.returncode == 0, r.stderr
            after = [vmpte_bytes(p) for p in pids]
            assert before == after, "an idle process's VmPTE moved during its census"
            vmpte[host] = {"sum": sum(before), "halves_pid": pids[0]}
        yield root, vmpte
    finally:
        for k in kids:
            k.kill()
            k.wait()


def _partition_summaries(out: Path):
    """Every partition's summary.parquet read directly (no views), host from its host=H folder."""
    import pandas as pd
    frames = []
    for f in sorted(out.glob("host=*/trace_id=*/summary.parquet")):
        df = pq.read_table(f).to_pandas()
        df["host"] = f.parent.parent.name.split("=", 1)[1]
        frames.append(df)
    return pd.concat(frames)


def test_batch_on_a_real_cluster_and_the_fleet_views(cluster, fleet, tmp_path):
    import pandas as pd
    address, worker_pids, _ = cluster
    root, vmpte = fleet
    out = tmp_path / "out"
    t0 = time.monotonic()
    r = run_cli("batch", "--fleet", str(root), "-o", str(out), "--scheduler", address, "--policy", POLICIES,
                timeout=900)
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "batch: 4 replayed, 2 censuses filed, 0 already done, 0 failed", r.stdout
    parts = sorted(str(p.relative_to(out)) for p in out.glob("host=*/*"))
    assert parts == ["host=db-1/census=census@db-1", "host=db-1/trace_id=mixed-vma@db-1",
                     "host=db-1/trace_id=seed-2m@db-1", "host=web-1/census=census@web-1",
                     "host=web-1/trace_id=seed-2m@web-1", "host=web-1/trace_id=threads-zap@web-1"]
    con = connect(out)

    # the work ran on the two worker processes, not in the batch command
    runs = execute(con, "SELECT kind, id, host_label, worker_address, worker_pid FROM fleet_runs").to_pylist()
    assert len(runs) == 6
    for run in runs:
        assert worker_pids.get(run["worker_address"]) == run["worker_pid"], run

    # host labels replace the recorded hostname, which is kept
    meta = execute(con, "SELECT trace_id, host FROM metadata ORDER BY trace_id").to_pylist()
    assert {m["trace_id"]: m["host"] for m in meta} == {
        "mixed-vma@db-1": "db-1", "seed-2m@db-1": "db-1", "seed-2m@web-1": "web-1", "threads-zap@web-1": "web-1"}
    cap = pq.read_metadata(out / "host=web-1/trace_id=seed-2m@web-1/summary.parquet").metadata
    assert b'"overridden": {"host": "vm", "trace_id": "seed-2m"}' in cap[b"ptreplay.capture"]

    # replay columns: pandas over the partitions' own summaries
    s = _partition_summaries(out)
    a = s[s.trace_id == "seed-2m@web-1"].drop(columns=["trace_id", "host"]).sort_values(["pid", "policy"])
    b = s[s.trace_id == "seed-2m@db-1"].drop(columns=["trace_id", "host"]).sort_values(["pid", "policy"])
    assert a.reset_index(drop=True).equals(b.reset_index(drop=True))    # one capture, two hosts: same replay
    want = s.groupby(["host", "policy"]).agg(traces=("trace_id", "nunique"), processes=("pid", "size"),
                                              vmpte_bytes=("final_vmpte_bytes", "sum"),
                                              saved_bytes=("vmpte_saved_bytes", "sum"),
                                              ideal_bytes=("ideal_pte_bytes", "sum"))
    got = execute(con, "SELECT host, policy, traces, processes, vmpte_bytes, saved_bytes, ideal_bytes, "
                       "census_vmpte_bytes, census_needed_bytes, census_waste_bytes, census_processes "
                       "FROM fleet_by_host").to_pandas().set_index(["host", "policy"]).sort_index()
    for col in want.columns:
        assert got[col].tolist() == want[col].tolist(), col
    none = want.xs("none", level="policy")["vmpte_bytes"]
    for (host, policy), row in got.iterrows():
        assert row.vmpte_bytes + row.saved_bytes == none[host]

    # census columns: /proc VmPTE read by this test, needed bytes from the census files as written
    for host, v in vmpte.items():
        c = pq.read_table(root / host / "census.parquet").to_pandas()
        rows = got.xs(host, level="host")
        assert (rows.census_vmpte_bytes == v["sum"]).all() and (rows.census_processes == 2).all()
        assert (rows.census_waste_bytes == v["sum"] - c.needed_bytes.sum()).all()
        halves = c[c.pid == v["halves_pid"]].iloc[0]
        assert halves.waste_bytes >= 16 * 4096, "16 half-zapped tables are waste the kernel keeps"
    census_rows = execute(con, "SELECT host FROM census GROUP BY host ORDER BY host").to_pylist()
    assert census_rows == [{"host": "db-1"}, {"host": "web-1"}]   # labelled rows, not the recorded 'vm'

    # fleet_by_comm: the same sums per command, replay and census side by side
    cen = pd.concat([pq.read_table(out / p / "census.parquet").to_pandas()
                     for p in ("host=web-1/census=census@web-1", "host=db-1/census=census@db-1")])
    by_comm = execute(con, "SELECT * FROM fleet_by_comm").to_pylist()
    for r in by_comm:
        rep = s[(s.comm == r["comm"]) & (s.policy == r["policy"])]
        assert r["processes"] == len(rep) and (r["saved_bytes"] or 0) == rep.vmpte_saved_bytes.sum(), r
        cc = cen[cen.comm == r["comm"]]
        assert r["census_processes"] == len(cc) and (r["census_waste_bytes"] or 0) == cc.waste_bytes.sum(), r
        hosts = set(s[s.comm == r["comm"]].host) | set(cc.host)
        assert r["hosts"] == len(hosts), r
    seed = [r for r in by_comm if r["comm"] == "seed_loop" and r["policy"] == "pt_reclaim"]
    assert seed and seed[0]["hosts"] == 2 and seed[0]["processes"] == 2

    # the report ranks hosts and commands
    rep = run_cli("report", str(out))
    assert rep.returncode == 0, rep.stderr
    assert rep.stdout.startswith("hosts, most page-table waste now first") and "commands across hosts" in rep.stdout
    assert "saved pt_reclaim" in rep.stdout and "seed_loop" in rep.stdout
    print(f"\nfleet batch on the dask cluster: {took:.1f} s\n{rep.stdout}")

    # a rerun on the cluster skips every partition
    again = run_cli("batch", "--fleet", str(root), "-o", str(out), "--scheduler", address, "--policy", POLICIES)
    assert again.returncode == 0 and "0 replayed, 6 already done" in again.stdout, again.stdout + again.stderr


def test_unreachable_scheduler_is_one_line_and_leaves_no_tree(tmp_path):
    for label, listener in (("refused", None), ("silent", socket.create_server(("127.0.0.1", 0)))):
        port = listener.getsockname()[1] if listener else free_port()
        out = tmp_path / label / "out"
        t0 = time.monotonic()
        r = run_cli("batch", str(DATA / "mixed-vma"), "-o", str(out), "--scheduler", f"tcp://127.0.0.1:{port}",
                    "--connect-timeout", "2s", timeout=120)
        took = time.monotonic() - t0
        if listener:
            listener.close()
        assert r.returncode == 1, (label, r.stdout, r.stderr)
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("ptreplay: error: batch: cannot reach the dask "
                                                                  f"scheduler at tcp://127.0.0.1:{port}"), r.stderr
        assert not (tmp_path / label).exists(), "a partial output tree was left"
        assert took < 60, took


def test_manifest_and_layout_name_the_same_partitions(tmp_path):
    root = tmp_path / "fleet"
    for host, captures in HOSTS.items():
        (root / host).mkdir(parents=True)
        for cap in captures:
            (root / host / cap).symlink_to(DATA / cap)
    manifest = tmp_path / "fleet.csv"
    manifest.write_text("host,path\n" + "".join(f"{h},fleet/{c}\n".replace("fleet/", f"fleet/{h}/")
                                                for h, cs in HOSTS.items() for c in cs))
    layout = sorted(i.partition for i in gather_items([], fleet=[str(root)]))
    listed = sorted(i.partition for i in gather_items([], manifest=[str(manifest)]))
    assert layout == listed == ["host=db-1/trace_id=mixed-vma@db-1", "host=db-1/trace_id=seed-2m@db-1",
                                "host=web-1/trace_id=seed-2m@web-1", "host=web-1/trace_id=threads-zap@web-1"]
    bad = tmp_path / "bad"
    (bad / "no good").mkdir(parents=True)
    (bad / "no good" / "seed-2m").symlink_to(DATA / "seed-2m")
    r = run_cli("batch", "--fleet", str(bad), "-o", str(tmp_path / "o"))
    assert r.returncode == 2 and "host 'no good' must be letters" in r.stderr and not (tmp_path / "o").exists()


def test_a_census_keeps_its_hostname_in_plain_inputs_and_takes_the_label_in_a_manifest(tmp_path):
    """file_census, the census task, run here (no cluster): rows as written, host relabelled or not."""
    from ptreplay.pipeline.capture.census import census_to_file
    from ptreplay.pipeline.fleet.batch import file_census
    src = tmp_path / "in" / "c.parquet"
    census_to_file(src, pids=[os.getpid()])
    (plain,) = gather_items([str(src)])
    manifest = tmp_path / "m.csv"
    manifest.write_text("host,path\nweb-9,in/c.parquet\n")
    (labelled,) = gather_items([], manifest=[str(manifest)])
    assert (plain.partition, labelled.partition) == ("census=c", "host=web-9/census=c@web-9")
    out = tmp_path / "out"
    for item in (plain, labelled):
        assert file_census(item, str(out)) == item.id
    original = pq.read_table(src).to_pylist()
    for part, host in (("census=c", socket.gethostname()), ("host=web-9/census=c@web-9", "web-9")):
        rows = pq.read_table(out / part / "census.parquet").to_pylist()
        assert rows == [{**r, "host": host} for r in original]
        assert (out / part / "census_vmas.parquet").exists()
    runs = execute(connect(out), "SELECT id, host_label, worker_address, worker_pid FROM fleet_runs").to_pylist()
    assert runs == [{"id": "c", "host_label": None, "worker_address": "", "worker_pid": os.getpid()},
                    {"id": "c@web-9", "host_label": "web-9", "worker_address": "", "worker_pid": os.getpid()}]
