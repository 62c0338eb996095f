"""Fleet batch on a real dask LocalCluster (loopback) against the serial path."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

from ptreplay.pipeline.fleet.batch import batch
from ptreplay.pipeline.events.ingest import ingest
from ptreplay.pipeline.warehouse import connect, execute
from ptreplay.replay.engine import ReplayOptions, replay

pytest.importorskip("dask.distributed")

DATA = Path(__file__).resolve().parent.parent / "data"
CAPTURES = sorted(p for p in DATA.iterdir() if (p / "perf.data").exists()) if DATA.exists() else []
POLICIES = "none,pt_reclaim,refcount"


def _sorted(t: pa.Table) -> pa.Table:
    return t.sort_by([("pid", "ascending"), ("policy", "ascending")])


def test_local_cluster_equals_serial(tmp_path):
    out = tmp_path / "fleet"
    res = batch([str(c) for c in CAPTURES], out, policies=POLICIES, workers=2)
    assert not res.failed and sorted(res.done) == sorted(c.name for c in CAPTURES)
    for cap in CAPTURES:
        serial = replay(ingest([cap], tmp_path / f"{cap.name}.parquet"), ReplayOptions(policies=POLICIES))
        part = out / f"trace_id={cap.name}"
        got = execute(connect(part), "SELECT * FROM summary")
        assert _sorted(got).to_pylist() == _sorted(serial.summary.select(got.column_names)).to_pylist(), cap.name
        ts = execute(connect(part), "SELECT count(*) AS n FROM timeseries").to_pylist()[0]["n"]
        assert ts == serial.timeseries.num_rows
    # the views read the whole tree as one, one row per (trace, pid, policy)
    con = connect(out)
    n, distinct = execute(con, "SELECT count(*) AS n, count(DISTINCT (trace_id, pid, policy)) AS d FROM summary").to_pylist()[0].values()
    assert n == distinct and n > 0
    # a rerun skips everything
    again = batch([str(c) for c in CAPTURES], out, policies=POLICIES, workers=2)
    assert again.done == [] and sorted(again.skipped) == sorted(c.name for c in CAPTURES)


def test_killed_batch_resumes_without_redoing_or_duplicating(tmp_path):
    out = tmp_path / "fleet"
    cmd = [sys.executable, "-m", "ptreplay", "batch", *map(str, CAPTURES), "-o", str(out),
           "--workers", "1", "--policy", POLICIES]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and not list(out.glob("trace_id=*")):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {p.name: p.stat().st_mtime_ns for p in out.glob("trace_id=*")}
    assert done_before, "no trace finished before the kill"
    for part in out.glob("trace_id=*"):  # whatever is visible is complete
        assert (part / "summary.parquet").exists() and (part / "timeseries.parquet").exists()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert f"{len(done_before)} already done" in r.stdout
    for name, mtime in done_before.items():
        assert (out / name).stat().st_mtime_ns == mtime, f"{name} was redone"
    assert sorted(p.name for p in out.glob("trace_id=*")) == sorted(f"trace_id={c.name}" for c in CAPTURES)
    assert not list(out.glob(".trace_id=*"))
    con = connect(out)
    n, distinct = execute(con, "SELECT count(*) AS n, count(DISTINCT (trace_id, pid, policy)) AS d FROM summary").to_pylist()[0].values()
    assert n == distinct


def test_one_bad_trace_is_reported_and_the_rest_finish(tmp_path):
    bad = tmp_path / "broken.data"
    bad.write_bytes(b"PERFILE2" + b"\0" * 40)
    out = tmp_path / "fleet"
    res = batch([str(CAPTURES[-1]), str(bad)], out, policies="none", workers=1)
    assert res.done == [CAPTURES[-1].name]
    assert list(res.failed) == ["broken"] and str(bad) in res.failed["broken"]
    r = subprocess.run([sys.executable, "-m", "ptreplay", "batch", str(bad), "-o", str(out), "--workers", "1"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "failed broken" in r.stderr and "Traceback" not in r.stderr


def test_uris_and_directories_of_captures(tmp_path):
    """A file:// URI (any pyarrow filesystem works the same way) and a directory whose
    README and scripts are passed over rather than reported as failed traces."""
    out = tmp_path / "fleet"
    uri = f"file://{CAPTURES[-1]}"
    res = batch([uri, str(DATA / "text")], out, policies="none", workers=1)
    assert not res.failed, res.failed
    assert CAPTURES[-1].name in res.done and "seed-64.ftrace" in res.done and "seed-64.perf" in res.done
    assert "README" not in " ".join(res.done)
    part = out / f"trace_id={CAPTURES[-1].name}"
    assert (part / "truth.parquet").exists() and not (part / "_input").exists()
    got = execute(connect(part), "SELECT DISTINCT trace_id FROM summary").to_pylist()
    assert got == [{"trace_id": CAPTURES[-1].name}]  # partition name == the trace_id column
