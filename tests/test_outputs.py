"""Outputs never destroy what a user owns, honour the umask, fail in one line; kernel truth flows.

Every command that writes (record, ingest, replay, plot, demo, batch, synth, attribute) goes
through schemas.parquet_io: `--force` replaces only what ptreplay wrote (a file carrying the
`ptreplay.schema` mark, a directory holding nothing else).  And the truth a `ptreplay record`
directory holds travels ingest -> events metadata -> replay -> truth.parquet -> views, report, plot.
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from conftest import DATA, REPO, live_skip_reason
from ptreplay.pipeline.events.ingest import ingest
from ptreplay.pipeline.warehouse import connect, execute
from ptreplay.replay.engine import ReplayOptions, replay_to_dir
from ptreplay.schemas import PLOT_TAG, SUMMARY, TRUTH
from ptreplay.schemas.errors import OutputExistsError
from ptreplay.schemas.parquet_io import (check_writable, foreign_files, mark_of, read_table, read_truth,
                                         write_table)

SEED = DATA / "seed-2m"


def kernel_final(cap: Path) -> tuple[int, int, int]:
    """(root pid, its truth rows, its last truth VmPTE in bytes): what the kernel reported."""
    import json
    pid = json.loads((cap / "record.json").read_text())["root_pid"]
    truth = read_table(cap / "truth.parquet", TRUTH)
    mine = truth.filter(pc.equal(truth.column("pid"), pid)).sort_by("t_ns")
    return pid, mine.num_rows, mine.column("vmpte_bytes")[-1].as_py()


def model_final_kb(out: Path, pid: int) -> dict:
    """policy -> the replay's final VmPTE of pid, in kB (the summary the report formats)."""
    rows = read_table(out / "summary.parquet", SUMMARY).to_pylist()
    return {r["policy"]: r["final_vmpte_bytes"] // 1024 for r in rows if r["pid"] == pid}
MINE = b"the user's own bytes\n"


def ptreplay(*args, cwd: Path = REPO, umask: int | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ptreplay", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout,
                          preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)


def one_line(r: subprocess.CompletedProcess) -> str:
    """The single error line of a refused command (warnings, dask and matplotlib chatter aside)."""
    lines = [line for line in r.stderr.splitlines() if line.startswith(("ptreplay: error", "ptreplay: internal"))]
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert "internal error" not in r.stderr and "Traceback" not in r.stderr, r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("outputs")


@pytest.fixture(scope="module")
def events(work) -> Path:
    return ingest([SEED], work / "seed.events.parquet")


@pytest.fixture(scope="module")
def replayed(work, events) -> Path:
    return replay_to_dir(events, work / "replayed", ReplayOptions(policies="none,pt_reclaim"))


def user_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "user.txt").write_bytes(MINE)
    return path


def user_file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(MINE)
    return path


# ----------------------------------------------------------------------------- every writing command

# name -> (argv with OUT standing for the -o path, output kind, files the command writes into a directory)
COMMANDS = {
    "ingest": (["ingest", SEED, "-o", "OUT"], "file", None),
    "synth": (["synth", "production", "--scale", "1e-6", "-o", "OUT"], "file", None),
    "plot-png": (["plot", "REPLAYED", "-o", "OUT"], "file", None),
    "plot-html": (["plot", "REPLAYED", "-o", "OUT"], "file", None),
    "replay": (["replay", "EVENTS", "-o", "OUT", "--policy", "none"], "dir",
               ["timeseries.parquet", "summary.parquet", "effects.parquet", "occupancy.parquet", "truth.parquet"]),
    "demo": (["demo", "-o", "OUT"], "dir",
             ["events.parquet", "timeseries.parquet", "summary.parquet", "effects.parquet", "occupancy.parquet",
              "truth.parquet"]),
    "batch": (["batch", SEED, "-o", "OUT", "--workers", "1", "--policy", "none"], "dir",
              ["trace_id=seed-2m/summary.parquet", "trace_id=seed-2m/truth.parquet"]),
    "record": (["record", "-o", "OUT", "--", "true"], "dir", ["perf.data", "truth.parquet", "capture.parquet"]),
}
SUFFIX = {"plot-png": ".png", "plot-html": ".html"}


def argv(name: str, out: Path, events: Path, replayed: Path, force: bool = True) -> list:
    args = [{"OUT": out, "EVENTS": events, "REPLAYED": replayed}.get(a, a) if isinstance(a, str) else a
            for a in COMMANDS[name][0]]
    if force:
        cut = args.index("--") if "--" in args else len(args)
        args.insert(cut, "--force")
    return args


def ours(path: Path) -> bool:
    """Written by ptreplay: the mark, or (perf's own file in a record directory) perf.data."""
    return bool(mark_of(path)) or (path.name == "perf.data" and path.stat().st_size > 0)


def stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def live(name: str) -> None:
    if name == "record" and live_skip_reason():
        pytest.skip(live_skip_reason())


@pytest.mark.parametrize("name", COMMANDS)
def test_a_users_directory_survives_force(name, tmp_path, events, replayed):
    live(name)
    out = user_dir(tmp_path / f"users{SUFFIX.get(name, '')}")
    r = ptreplay(*argv(name, out, events, replayed))
    if COMMANDS[name][1] == "file":     # the output would replace the directory: refused, naming the user's file
        assert one_line(r) == (f"ptreplay: error: {out}: is a directory holding files ptreplay did not write "
                               f"(user.txt); not replaced (choose another -o)")
        assert sorted(p.name for p in out.iterdir()) == ["user.txt"]
    else:                               # written beside the user's file, which is left alone
        assert r.returncode == 0, r.stderr
        for rel in COMMANDS[name][2]:
            assert ours(out / rel), rel
    assert (out / "user.txt").read_bytes() == MINE


@pytest.mark.parametrize("name", COMMANDS)
def test_a_users_file_survives_force(name, tmp_path, events, replayed):
    live(name)
    out = user_file(tmp_path / f"users{SUFFIX.get(name, '.parquet')}")
    r = ptreplay(*argv(name, out, events, replayed))
    if COMMANDS[name][1] == "file":
        assert one_line(r) == f"ptreplay: error: {out}: is a file ptreplay did not write; not replaced (choose another -o)"
    else:
        assert one_line(r) == f"ptreplay: error: {out}: is a file, expected a directory (choose another -o)"
    assert out.read_bytes() == MINE


@pytest.mark.parametrize("name", [n for n, c in COMMANDS.items() if c[1] == "dir"])
def test_a_users_file_among_the_outputs_survives_force(name, tmp_path, events, replayed):
    """In a directory output, a user's file where an output goes is refused, the rest untouched."""
    live(name)
    out = tmp_path / "out"
    rel = COMMANDS[name][2][0 if name != "record" else 0]
    theirs = user_file(out / rel)
    r = ptreplay(*argv(name, out, events, replayed))
    line = one_line(r)
    if name == "record":
        assert line == (f"ptreplay: error: {out}: is a directory holding files ptreplay did not write (perf.data: "
                        f"no capture.parquet of ptreplay's beside them); not replaced (choose another -o)")
    elif name == "batch":
        assert line == (f"ptreplay: error: {out / 'trace_id=seed-2m'}: is a directory holding files ptreplay did "
                        f"not write ({Path(rel).name}); not replaced (choose another -o)")
    else:
        assert line == f"ptreplay: error: {theirs}: is a file ptreplay did not write; not replaced (choose another -o)"
    assert theirs.read_bytes() == MINE
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [rel]


@pytest.mark.parametrize("name", COMMANDS)
def test_ptreplays_own_output_is_replaced_with_force_only(name, tmp_path, events, replayed):
    live(name)
    out = tmp_path / f"out{SUFFIX.get(name, '.parquet' if COMMANDS[name][1] == 'file' else '')}"
    assert ptreplay(*argv(name, out, events, replayed, force=False)).returncode == 0
    files = [out] if COMMANDS[name][1] == "file" else [out / rel for rel in COMMANDS[name][2]]
    before = {f: stamp(f) for f in files}
    again = ptreplay(*argv(name, out, events, replayed, force=False))
    if name == "batch":     # a rerun resumes: finished partitions are kept as they are
        assert again.returncode == 0 and "1 already done" in again.stdout
    elif name == "record":
        assert one_line(again) == f"ptreplay: error: {out}: directory is not empty (use --force to record over it)"
    else:
        assert "already exists (use --force to replace it)" in one_line(again)
    assert {f: stamp(f) for f in files} == before
    r = ptreplay(*argv(name, out, events, replayed))
    assert r.returncode == 0, r.stderr
    for f in files:
        assert ours(f) and stamp(f) != before[f], f


def test_attribute_replaces_only_its_own_attribution(tmp_path, events):
    from ptreplay.schemas import ATTRIBUTION
    out = replay_to_dir(events, tmp_path / "out", ReplayOptions(policies="none,pt_reclaim"))
    theirs = user_file(out / "attribution.parquet")          # not even Parquet: the views say so, in one line
    line = one_line(ptreplay("attribute", SEED, out))
    assert line.startswith(f"ptreplay: error: {out}: cannot read the outputs below it (") and str(theirs) in line
    assert theirs.read_bytes() == MINE
    pq.write_table(ATTRIBUTION.schema.empty_table(), theirs)   # the right columns, but someone else's file
    mine = theirs.read_bytes()
    r = ptreplay("attribute", SEED, out)
    assert one_line(r) == (f"ptreplay: error: {theirs}: is a file ptreplay did not write; not replaced "
                           f"(choose another -o)")
    assert theirs.read_bytes() == mine
    theirs.unlink()
    user_file(out / "user.txt")
    assert ptreplay("attribute", SEED, out).returncode == 0
    ino = (out / "attribution.parquet").stat().st_ino
    assert mark_of(out / "attribution.parquet") == "attribution/1"
    assert ptreplay("attribute", SEED, out).returncode == 0          # its own output: replaced
    assert (out / "attribution.parquet").stat().st_ino != ino and (out / "user.txt").read_bytes() == MINE


def test_a_directory_of_ptreplays_outputs_only_is_replaced_by_a_file_with_force(tmp_path, replayed):
    out = tmp_path / "was-a-replay"
    out.mkdir()
    for f in replayed.glob("*.parquet"):
        (out / f.name).write_bytes(f.read_bytes())
    assert foreign_files(out) == []
    r = ptreplay("ingest", SEED, "-o", out, "--force")
    assert r.returncode == 0, r.stderr
    assert out.is_file() and mark_of(out) == "events/2"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]    # nothing moved aside is left


def test_demo_replaces_only_its_default_without_force(tmp_path):
    first = ptreplay("demo", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    summary = tmp_path / "out" / "demo" / "summary.parquet"
    ino = summary.stat().st_ino
    again = ptreplay("demo", cwd=tmp_path)                  # the README's command, run twice
    assert again.returncode == 0, again.stderr
    assert summary.stat().st_ino != ino and again.stdout.count("final VmPTE") == 1
    other = tmp_path / "mine"
    assert ptreplay("demo", "-o", other, cwd=tmp_path).returncode == 0
    ino = (other / "summary.parquet").stat().st_ino
    refused = ptreplay("demo", "-o", other, cwd=tmp_path)
    assert one_line(refused) == f"ptreplay: error: {other / 'events.parquet'}: already exists (use --force to replace it)"
    assert (other / "summary.parquet").stat().st_ino == ino


def test_figures_carry_the_mark(tmp_path, replayed):
    from ptreplay.pipeline.presentation.plot import plot
    png = plot(replayed, tmp_path / "a.png")
    html = plot(replayed, tmp_path / "a.html")
    assert mark_of(png) == PLOT_TAG and mark_of(html) == PLOT_TAG
    (tmp_path / "b.png").write_bytes(png.read_bytes().replace(b"ptreplay.schema", b"someone.elses"))
    (tmp_path / "b.html").write_text(html.read_text().replace("ptreplay.schema", "generator"))
    assert mark_of(tmp_path / "b.png") is None and mark_of(tmp_path / "b.html") is None
    assert mark_of(replayed / "summary.parquet") == SUMMARY.tag
    pq.write_table(pa.table({"x": [1]}), tmp_path / "foreign.parquet")
    assert mark_of(tmp_path / "foreign.parquet") is None
    os.symlink(replayed / "summary.parquet", tmp_path / "link.parquet")
    assert mark_of(tmp_path / "link.parquet") is None
    with pytest.raises(OutputExistsError, match="is a symbolic link; not replaced"):
        check_writable(tmp_path / "link.parquet", force=True)


# ----------------------------------------------------------------------------- modes, OS errors, batch

MODES = {0o022: (0o644, 0o755), 0o077: (0o600, 0o700)}


@pytest.mark.parametrize("umask", MODES)
def test_outputs_honour_the_umask(umask, tmp_path, events, replayed):
    file_mode, dir_mode = MODES[umask]
    outs = {
        "ingest": (["ingest", SEED, "-o", tmp_path / "e.parquet"], [tmp_path / "e.parquet"]),
        "synth": (["synth", "production", "--scale", "1e-6", "-o", tmp_path / "s.parquet"], [tmp_path / "s.parquet"]),
        "replay": (["replay", events, "-o", tmp_path / "r", "--policy", "none"],
                   [tmp_path / "r", *(tmp_path / "r" / f"{n}.parquet" for n in
                                      ("timeseries", "summary", "effects", "occupancy", "truth"))]),
        "plot": (["plot", replayed, "-o", tmp_path / "p.png"], [tmp_path / "p.png"]),
        "plot-html": (["plot", replayed, "-o", tmp_path / "p.html"], [tmp_path / "p.html"]),
        "demo": (["demo", "-o", tmp_path / "d"], [tmp_path / "d", tmp_path / "d" / "events.parquet",
                                                   tmp_path / "d" / "truth.parquet"]),
        "batch": (["batch", SEED, "-o", tmp_path / "f", "--workers", "1", "--policy", "none"],
                  [tmp_path / "f", tmp_path / "f" / "trace_id=seed-2m",
                   tmp_path / "f" / "trace_id=seed-2m" / "summary.parquet"]),
    }
    for name, (args, paths) in outs.items():
        r = ptreplay(*args, umask=umask)
        assert r.returncode == 0, (name, r.stderr)
        for p in paths:
            want = dir_mode if p.is_dir() else file_mode
            assert stat.S_IMODE(p.stat().st_mode) == want, (name, p, oct(p.stat().st_mode))


@pytest.mark.skipif(live_skip_reason() is not None, reason=str(live_skip_reason()))
def test_record_outputs_honour_the_umask(tmp_path):
    r = ptreplay("record", "-o", tmp_path / "cap", "--", "true", umask=0o077)
    assert r.returncode == 0, r.stderr
    for name in ("truth.parquet", "capture.parquet", "capture.json", "record.json"):
        assert stat.S_IMODE((tmp_path / "cap" / name).stat().st_mode) == 0o600, name
    r = ptreplay("record", "-o", tmp_path / "cap2", "--", "true", umask=0o022)
    for name in ("truth.parquet", "capture.parquet", "capture.json", "record.json"):
        assert stat.S_IMODE((tmp_path / "cap2" / name).stat().st_mode) == 0o644, name


@pytest.fixture
def tmpfs(tmp_path):
    """mount(options) -> a fresh tmpfs under tmp_path (root only), unmounted afterwards."""
    mounted = []

    def mount(options: str) -> Path:
        where = tmp_path / f"fs{len(mounted)}"
        where.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
        mounted.append(where)
        return where
    yield mount
    for where in mounted:
        subprocess.run(["umount", str(where)], check=True)


def test_read_only_and_full_file_systems_are_one_line(tmpfs, events, replayed):
    ro, full = tmpfs("ro,size=1m"), tmpfs("size=96k")
    for args, path in [(["ingest", SEED, "-o", ro / "e.parquet"], ro / "e.parquet"),
                       (["replay", events, "-o", ro / "r"], ro / "r"),
                       (["plot", replayed, "-o", ro / "p.png"], ro / "p.png"),
                       (["plot", replayed, "-o", ro / "p.html"], ro / "p.html"),
                       (["demo", "-o", ro / "d"], ro / "d"),
                       (["synth", "production", "--scale", "1e-6", "-o", ro / "s.parquet"], ro / "s.parquet"),
                       (["batch", SEED, "-o", ro / "f"], ro / "f")]:
        assert one_line(ptreplay(*args)) == f"ptreplay: error: {path}: cannot write (Read-only file system)"
    r = ptreplay("ingest", SEED, "-o", full / "e.parquet")
    assert one_line(r) == f"ptreplay: error: {full / 'e.parquet'}: cannot write (No space left on device)"
    r = ptreplay("replay", events, "-o", full / "r")
    assert one_line(r).endswith(": cannot write (No space left on device)")
    assert not [p for p in full.rglob(".*")], "a temporary was left behind"


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv "
                    "to run a command as another user")
def test_permission_denied_is_one_line(events):
    base = Path(tempfile.mkdtemp(prefix="ptreplay-perm-"))     # pytest's own tmp folders are root's only
    try:
        os.chmod(base, 0o755)
        cache = base / "cache"     # numba's and matplotlib's caches: somewhere the other user may write
        cache.mkdir(mode=0o777)
        os.chmod(cache, 0o777)
        env = {**os.environ, "HOME": str(cache), "NUMBA_CACHE_DIR": str(cache / "numba"),
               "MPLCONFIGDIR": str(cache / "mpl")}
        shutil.copyfile(events, base / "events.parquet")
        os.chmod(base / "events.parquet", 0o644)
        locked = base / "locked"
        locked.mkdir(mode=0o555)
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        for args, path in [(["ingest", SEED, "-o", locked / "e.parquet"], locked / "e.parquet"),
                           (["replay", base / "events.parquet", "-o", locked / "r"], locked / "r"),
                           (["synth", "production", "--scale", "1e-6", "-o", locked / "s.parquet"],
                            locked / "s.parquet")]:
            r = subprocess.run([*nobody, sys.executable, "-m", "ptreplay", *map(str, args)], cwd=base,
                               capture_output=True, text=True, timeout=120, env=env)
            assert one_line(r) == f"ptreplay: error: {path}: cannot write (Permission denied)"
        assert list(locked.iterdir()) == []
    finally:
        shutil.rmtree(base)


def test_a_file_where_a_directory_goes_is_one_line(tmp_path, events):
    blocker = user_file(tmp_path / "blocker")
    assert one_line(ptreplay("ingest", SEED, "-o", blocker / "e.parquet")) == (
        f"ptreplay: error: {blocker}: is a file, expected a directory (choose another -o)")
    assert one_line(ptreplay("replay", events, "-o", blocker / "sub" / "r")) == (
        f"ptreplay: error: {blocker / 'sub' / 'r'}: {blocker} is a file, expected a directory (choose another -o)")
    assert blocker.read_bytes() == MINE


def test_a_failed_batch_leaves_no_tree_and_bad_policies_start_no_cluster(tmp_path, monkeypatch):
    pytest.importorskip("dask.distributed")
    import dask.distributed
    from ptreplay.pipeline.fleet.batch import batch
    from ptreplay.schemas.errors import UsageError

    def no_cluster(*a, **k):
        raise AssertionError("a cluster was started")
    monkeypatch.setattr(dask.distributed, "LocalCluster", no_cluster)
    out = tmp_path / "a" / "fleet"
    with pytest.raises(UsageError, match="unknown policy 'bogus'"):
        batch([str(SEED)], out, policies="none,bogus")
    assert not (tmp_path / "a").exists()
    monkeypatch.undo()
    bad = user_file(tmp_path / "broken.data")
    bad.write_bytes(b"PERFILE2" + b"\0" * 40)
    res = batch([str(bad)], out, policies="none", workers=1)
    assert list(res.failed) == ["broken"] and res.done == []
    assert not (tmp_path / "a").exists()        # every trace failed: the tree this run made is gone
    kept = user_dir(tmp_path / "kept")
    res = batch([str(bad)], kept, policies="none", workers=1)
    assert list(res.failed) == ["broken"] and sorted(p.name for p in kept.iterdir()) == ["user.txt"]


def test_force_replaces_a_batch_partition_and_its_metadata_names_existing_paths(tmp_path):
    pytest.importorskip("dask.distributed")
    from ptreplay.pipeline.fleet.batch import batch
    import json
    out = tmp_path / "fleet"
    cap = DATA / "purge-sites"
    assert batch([str(cap)], out, policies="none,pt_reclaim", workers=1).done == ["purge-sites"]
    part = out / "trace_id=purge-sites"
    meta = pq.read_metadata(part / "summary.parquet").metadata
    events_path = Path(json.loads(meta[b"ptreplay.replay"])["events_path"])
    assert events_path == (part / "events.parquet").absolute() and events_path.exists()
    assert b".trace_id=" not in b"".join(meta.values())            # no temporary directory is named
    r = ptreplay("attribute", cap, part, "--binaries", cap, "--top", "1", "--format", "csv")
    assert r.returncode == 0, r.stderr
    assert "purge_arena.constprop.0" in r.stdout and mark_of(part / "attribution.parquet") == "attribution/1"
    ino = (part / "summary.parquet").stat().st_ino
    assert batch([str(cap)], out, policies="none", workers=1, force=True).done == ["purge-sites"]
    assert (part / "summary.parquet").stat().st_ino != ino
    assert sorted(execute(connect(part), "SELECT DISTINCT policy FROM summary").column("policy").to_pylist()) == ["none"]
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


# ----------------------------------------------------------------------------- kernel truth flows

def truth_rows(table: pa.Table) -> list[dict]:
    return table.select(TRUTH.schema.names).sort_by([("pid", "ascending"), ("t_ns", "ascending")]).to_pylist()


def test_ingest_carries_the_record_directorys_truth(events):
    recorded = read_table(SEED / "truth.parquet", TRUTH)
    carried = read_truth(events)
    assert carried.num_rows == recorded.num_rows > 0
    assert carried.equals(recorded)
    assert read_truth(DATA / "seed-2m" / "capture.parquet") is None   # no truth key: None, not an error


def test_ingest_of_several_record_directories_carries_all_their_truth(tmp_path):
    ev = ingest([SEED, DATA / "threads-zap"], tmp_path / "two.parquet")
    t = read_truth(ev)
    want = [read_table(d / "truth.parquet", TRUTH) for d in (SEED, DATA / "threads-zap")]
    assert t.num_rows == sum(w.num_rows for w in want) > want[0].num_rows > 0
    assert truth_rows(t) == truth_rows(pa.concat_tables(want))
    assert pc.all(pc.greater_equal(pc.pairwise_diff(t.column("t_ns").combine_chunks()).fill_null(0), 0)).as_py()


def test_replay_writes_the_truth_and_the_truth_view_equals_the_record_dirs(replayed):
    recorded = read_table(SEED / "truth.parquet", TRUTH)
    assert read_table(replayed / "truth.parquet", TRUTH).equals(recorded)
    con = connect(replayed)
    view = execute(con, "SELECT * FROM truth")
    assert view.num_rows == recorded.num_rows
    assert truth_rows(view) == truth_rows(recorded)
    # the view's trace id is the one the summary rows carry (not the folder's name, 'replayed')
    assert set(view.column("trace_id").to_pylist()) == {"seed-2m"}
    joined = execute(con, """SELECT s.policy, last(t.vmpte_bytes ORDER BY t.t_ns) AS kernel, s.final_vmpte_bytes AS model
                             FROM summary s JOIN truth t USING (trace_id, pid) GROUP BY ALL ORDER BY 1""").to_pylist()
    _, _, kernel = kernel_final(SEED)
    assert [r["policy"] for r in joined] == ["none", "pt_reclaim"] and {r["kernel"] for r in joined} == {kernel}
    assert joined[1]["model"] == kernel < joined[0]["model"]   # pt_reclaim is this kernel; none keeps tables


def test_replay_of_events_without_truth_writes_none(tmp_path):
    ev = ingest([DATA / "seed-2m" / "perf.data"], tmp_path / "bare.parquet")
    assert read_truth(ev) is None
    out = replay_to_dir(ev, tmp_path / "out", ReplayOptions(policies="none"))
    assert not (out / "truth.parquet").exists()
    assert execute(connect(out), "SELECT count(*) AS n FROM truth").to_pylist() == [{"n": 0}]


def test_report_prints_the_kernel_line(replayed):
    from ptreplay.pipeline.presentation.report import kernel_lines, report
    pid, _, kernel = kernel_final(SEED)
    model = model_final_kb(replayed, pid)
    line = (f"pid {pid}: kernel (CONFIG_PT_RECLAIM=y) final VmPTE {kernel // 1024} kB; "
            f"model: none {model['none']} kB, pt_reclaim {model['pt_reclaim']} kB")
    assert kernel_lines(replayed) == [line] and model["pt_reclaim"] == kernel // 1024
    text = report(replayed)
    assert text.endswith(f"\n\n{line}\n") and text.count("final VmPTE") == 1
    assert f"\n\n{line}\n" in report(replayed, fmt="md")
    assert "kernel" not in report(replayed, fmt="csv") and "kernel" not in report(replayed, fmt="json")
    r = ptreplay("report", replayed)
    assert r.returncode == 0 and r.stdout.endswith(f"{line}\n")


def test_report_of_a_tree_names_each_trace(tmp_path):
    from ptreplay.pipeline.presentation.report import kernel_lines
    for name in ("seed-2m", "threads-zap"):
        ev = ingest([DATA / name], tmp_path / f"{name}.parquet")
        replay_to_dir(ev, tmp_path / "tree" / f"trace_id={name}", ReplayOptions(policies="pt_reclaim"))
    want = []
    for name in ("seed-2m", "threads-zap"):
        pid, _, kernel = kernel_final(DATA / name)
        want.append(f"{name} pid {pid}: kernel (CONFIG_PT_RECLAIM=y) final VmPTE {kernel // 1024} kB; "
                    f"model: pt_reclaim {kernel // 1024} kB")          # pt_reclaim ends on the kernel's
    assert kernel_lines(tmp_path / "tree") == want


def test_plot_overlays_the_truth(replayed):
    from ptreplay.pipeline.presentation.plotdata import MIB, TRUTH_LABEL, load
    from ptreplay.pipeline.presentation.png import render_png
    data = load(replayed)
    recorded = read_table(SEED / "truth.parquet", TRUTH)
    mine = recorded.filter(pc.equal(recorded.column("pid"), data.pid)).sort_by("t_ns")
    pid, rows, kernel = kernel_final(SEED)
    assert data.pid == pid and data.truth.num_rows == mine.num_rows == rows > 0
    assert data.truth.column("vmpte_bytes").to_pylist() == mine.column("vmpte_bytes").to_pylist()
    fig = render_png(data)
    overlays = [line for ax in fig.axes for line in ax.get_lines() if line.get_label() == TRUTH_LABEL]
    assert len(overlays) == 3                   # VIRT, RES and VmPTE panels
    vmpte = [line for line in overlays if line.axes.get_title().startswith("VmPTE")][0]
    assert list(vmpte.get_ydata()) == [v / MIB for v in mine.column("vmpte_bytes").to_pylist()]
    assert vmpte.get_ydata()[-1] * MIB == kernel
    pytest.importorskip("plotly")
    from ptreplay.pipeline.presentation.html import timeline_figure
    traces = [t for t in timeline_figure(data).data if t.name == TRUTH_LABEL]
    assert len(traces) == 3 and all(len(t.x) == rows for t in traces)


def test_demo_and_batch_take_the_same_path(tmp_path):
    """No copying: the demo's truth.parquet is the replay's own (its metadata is the events' capture)."""
    r = ptreplay("demo", "-o", tmp_path / "d")
    assert r.returncode == 0, r.stderr
    pid, _, kernel = kernel_final(SEED)
    model = model_final_kb(tmp_path / "d", pid)
    line = (f"pid {pid}: kernel (CONFIG_PT_RECLAIM=y) final VmPTE {kernel // 1024} kB; model: "
            + ", ".join(f"{p} {model[p]} kB" for p in ("none", "pt_reclaim", "refcount", "scan:1s", "delayed:100ms",
                                                         "all_levels")))
    assert r.stdout.endswith(f"\n\n{line}\n") and model["pt_reclaim"] == kernel // 1024
    truth = tmp_path / "d" / "truth.parquet"
    assert read_table(truth, TRUTH).equals(read_table(SEED / "truth.parquet", TRUTH))
    assert pq.read_metadata(truth).metadata[b"ptreplay.capture"] == \
        pq.read_metadata(tmp_path / "d" / "summary.parquet").metadata[b"ptreplay.capture"]
    assert read_table(tmp_path / "d" / "summary.parquet", SUMMARY).num_rows == 6
    write_table(read_table(truth, TRUTH), tmp_path / "t.parquet", TRUTH)   # still a plain truth/1 table
