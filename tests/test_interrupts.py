"""Interrupted work and lost events: never a partial output, never a silent loss."""
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ptreplay.pipeline.events.ingest import ingest
from ptreplay.schemas.parquet_io import read_capture, read_table
from ptreplay.replay.engine import ReplayOptions, replay
from ptreplay.schemas import ARTIFACTS, EVENTS, SUMMARY

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "data"
LOST = HERE / "data" / "perf" / "lost_z.data"
BIG = [DATA / n for n in ("seed-2m", "seed-1m-halves", "jemalloc-churn", "threads-zap", "mixed-vma")]


def perf_script_lost(path: Path) -> int:
    out = subprocess.run(["perf", "script", "-i", str(path), "--show-lost-events"],
                         capture_output=True, text=True, check=True).stdout
    return sum(int(m) for m in re.findall(r"PERF_RECORD_LOST lost (\d+)", out))


def test_lost_events_reach_metadata_summary_and_a_warning(tmp_path, perf_oracle):
    expected = perf_script_lost(LOST)
    assert expected > 0
    events = ingest([LOST], tmp_path / "events.parquet")
    meta = read_capture(events)
    assert meta["lost_events"] == expected
    summary = replay(events, ReplayOptions(policies="none")).summary
    assert summary.num_rows and set(summary.column("lost_events").to_pylist()) == {expected}
    r = subprocess.run([sys.executable, "-m", "ptreplay", "replay", str(events), "-o", str(tmp_path / "out"),
                        "--policy", "none"], capture_output=True, text=True)
    assert r.returncode == 0 and f"lost {expected} events" in r.stderr
    assert set(read_table(tmp_path / "out" / "summary.parquet", SUMMARY).column("lost_events").to_pylist()) == {expected}


def _start(cmd):
    return subprocess.Popen([sys.executable, "-m", "ptreplay", *map(str, cmd)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for_temporary(folder: Path, name: str, proc, timeout=60.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if list(folder.glob(f".{name}.*.tmp")):
            return True
        time.sleep(0.01)
    return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_interrupted_ingest_keeps_the_previous_output(tmp_path, sig):
    out = tmp_path / "events.parquet"
    ingest([BIG[-1]], out)
    before = out.read_bytes()
    proc = _start(["ingest", *BIG, "-o", out, "--force"])
    assert _wait_for_temporary(tmp_path, out.name, proc), "ingest finished before it could be interrupted"
    proc.send_signal(sig)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    if sig != signal.SIGKILL:
        assert "Traceback" not in proc.stderr.read()
        assert not list(tmp_path.glob(".events.parquet.*")), "temporary left behind"
    assert out.read_bytes() == before, "the previous complete output was damaged"
    # a rerun completes (and clears what a SIGKILL left)
    ingest(BIG, out, force=True)
    assert not list(tmp_path.glob(".events.parquet.*"))
    assert read_table(out, EVENTS).num_rows > 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_interrupted_replay_leaves_each_output_complete_old_or_new(tmp_path, sig):
    """A --force replay interrupted while it writes: every output is a complete artifact, either
    the previous run's (policy none only) or the new one's (all six), never a torn file."""
    events = ingest([BIG[1]], tmp_path / "events.parquet")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "ptreplay", "replay", str(events), "-o", str(out), "--policy", "none"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in out.glob("*.parquet"))
    assert {"summary.parquet", "timeseries.parquet", "effects.parquet", "occupancy.parquet"} <= set(names)
    before = {n: (out / n).read_bytes() for n in names}
    proc = _start(["replay", events, "-o", out, "--force", "--interval", "100us"])
    assert _wait_for_temporary(out, "*", proc, timeout=120), "replay finished before it could be interrupted"
    proc.send_signal(sig)
    proc.wait(timeout=120)
    assert proc.returncode != 0
    if sig != signal.SIGKILL:
        assert "Traceback" not in proc.stderr.read()
        assert list(out.glob(".*.tmp")) == [], "temporary left behind"
    assert sorted(p.name for p in out.glob("*.parquet")) == names  # nothing lost
    for n in names:
        table = read_table(out / n, ARTIFACTS[n.split(".")[0]])  # complete: reads and conforms
        policies = set(table.column("policy").to_pylist()) if "policy" in table.column_names else None
        if (out / n).read_bytes() == before[n]:
            continue
        assert policies is None or len(policies) == 6, (n, policies)  # a new file is the whole new output
    r = subprocess.run([sys.executable, "-m", "ptreplay", "replay", str(events), "-o", str(out), "--force",
                        "--policy", "none,pt_reclaim"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    s = read_table(out / "summary.parquet", SUMMARY)
    assert set(s.column("policy").to_pylist()) == {"none", "pt_reclaim"}
    assert not list(out.glob(".*.tmp"))


def test_an_interrupt_as_the_temporary_is_created_leaves_nothing(tmp_path, monkeypatch):
    """An interrupt raised the moment the temporary's open() returns (the main thread waiting for
    the GIL while the reader's threads run: the SIGINT case above caught it about once in 30 runs)
    removes the temporary."""
    import os
    from ptreplay.schemas.parquet_io import atomic_path
    out = tmp_path / "events.parquet"
    real_open = os.open

    def open_then_interrupt(path, flags, mode=0o777, **kw):
        fd = real_open(path, flags, mode, **kw)
        if str(path).endswith(".tmp"):
            os.close(fd)
            raise KeyboardInterrupt
        return fd

    monkeypatch.setattr(os, "open", open_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(out):
            pass
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_an_interrupt_while_the_last_groups_are_written_leaves_nothing(tmp_path, monkeypatch):
    """StreamWriter.__exit__ waits for its writer thread; an interrupt there drops the temporary."""
    import threading
    from ptreplay.schemas import EVENT_FAULTS
    from ptreplay.schemas.parquet_io import StreamWriter
    out = tmp_path / "faults.parquet"
    join = threading.Thread.join

    def interrupted(self, *a, **kw):
        if self.name == "parquet-writer":
            join(self, *a, **kw)
            raise KeyboardInterrupt
        return join(self, *a, **kw)

    monkeypatch.setattr(threading.Thread, "join", interrupted)
    with pytest.raises(KeyboardInterrupt):
        with StreamWriter(out, EVENT_FAULTS) as w:
            w.write(EVENT_FAULTS.schema.empty_table())
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def _ptreplay_dir(path: Path, rows: int) -> Path:
    """A directory holding one ptreplay output (a summary table of `rows` rows)."""
    from ptreplay.schemas.parquet_io import write_table
    path.mkdir()
    write_table(SUMMARY.schema.empty_table().slice(0, 0), path / "summary.parquet", SUMMARY,
                extra={"test": {"rows": rows}})
    return path


def _tag(path: Path) -> dict:
    import json
    import pyarrow.parquet as pq
    return json.loads(pq.read_schema(path / "summary.parquet").metadata[b"test"])


def test_an_interrupt_between_publishs_renames_puts_the_old_directory_back(tmp_path, monkeypatch):
    """publish moves a directory in the way aside, then renames the new one in; an interrupt
    between the two renames puts the old one back (it used to stay under a temporary's name,
    which the next write of that path deleted as stale)."""
    import os
    from ptreplay.schemas import parquet_io
    out = _ptreplay_dir(tmp_path / "out", 1)
    new = _ptreplay_dir(tmp_path / ".out.new.tmp", 2)
    replace = os.replace

    def interrupted(src, dst, *a, **kw):
        if Path(src) == new:
            raise KeyboardInterrupt
        return replace(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        parquet_io.publish(new, out)
    monkeypatch.undo()
    assert _tag(out) == {"rows": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.new.tmp", "out"]
    parquet_io.publish(new, out)                     # and the next publish replaces it
    assert _tag(out) == {"rows": 2} and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_an_old_output_a_killed_writer_left_aside_is_put_back_not_deleted(tmp_path):
    """SIGKILL between publish's renames leaves the old output under `.NAME.PID.XXXX.old.tmp`:
    the next write of that path puts it back when the path is free, and deletes it when a newer
    output is there."""
    from ptreplay.schemas.parquet_io import remove_stale_temporaries
    dead = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1      # no process has this pid
    out = tmp_path / "out"
    _ptreplay_dir(tmp_path / f".out.{dead}.0badcafe.old.tmp", 1)
    remove_stale_temporaries(out)
    assert _tag(out) == {"rows": 1} and [p.name for p in tmp_path.iterdir()] == ["out"]
    _ptreplay_dir(tmp_path / f".out.{dead}.0badcafe.old.tmp", 3)
    remove_stale_temporaries(out)
    assert _tag(out) == {"rows": 1} and [p.name for p in tmp_path.iterdir()] == ["out"]
