"""Attribution: page-table waste attributed to the call sites of a real capture.

data/purge-sites is `workloads/purge_sites` recorded with `ptreplay record
--call-graph`: fill_pages() faults every table in, purge_arena() zaps
ARENA_REGIONS 2 MiB regions whole, trim_cache() zaps CACHE_REGIONS regions as
two halves.  The counts come from the C source; the kernel's final VmPTE
(stdout.txt) checks the replay; `addr2line` (DWARF line info, independent of
the ELF symbol tables we read) checks every symbolized frame.
"""
from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess

import pyarrow.parquet as pq
import pytest

from conftest import DATA, REPO, run_cli
from ptreplay.schemas.errors import PipelineError
from ptreplay.pipeline.formats.perf.stacks import read_stacks
from ptreplay.pipeline.attribution.symbols import Symbolizer, site
from ptreplay.schemas import EVENTS
from ptreplay.schemas.parquet_io import read_table

CAPTURE = DATA / "purge-sites"
BINARY = CAPTURE / "purge_sites"
SOURCE = (REPO / "workloads" / "purge_sites.c").read_text()
ARENA = int(re.search(r"#define ARENA_REGIONS (\d+)", SOURCE).group(1))
CACHE = int(re.search(r"#define CACHE_REGIONS (\d+)", SOURCE).group(1))


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    from ptreplay.pipeline.events.ingest import ingest
    d = tmp_path_factory.mktemp("purge")
    return ingest([CAPTURE], d / "events.parquet")


@pytest.fixture(scope="module")
def replayed(events):
    from ptreplay.replay.engine import replay_to_dir
    return replay_to_dir(events, events.parent / "out")


@pytest.fixture(scope="module")
def madvise_stacks(events):
    """The sys_exit_madvise sample of every madvise event (found by the event's thread and time)."""
    ev = read_table(events, EVENTS, columns=["kind", "tid", "t_ns"]).to_pylist()
    keys = {(r["tid"], r["t_ns"]) for r in ev if r["kind"] == "madvise"}
    stacks, mmaps, _ = read_stacks(CAPTURE / "perf.data", keys)
    assert set(stacks) == keys
    assert {s.event for s in stacks.values()} == {"syscalls:sys_exit_madvise"}
    return stacks, mmaps


@pytest.fixture(scope="module")
def same_libc(madvise_stacks):
    """Unwinding through glibc's madvise() needs the capture's libc (its CFI); skip elsewhere."""
    libc = next(m for m in madvise_stacks[1] if m["filename"].endswith("/libc.so.6"))
    sym = Symbolizer([libc], roots=[CAPTURE])
    binary, note = sym.binary(libc)
    if binary is None:
        pytest.skip(f"{libc['filename']}: {note} (the capture's build id is {libc.get('build_id')})")
    return binary


def _function(name: str) -> str:
    return name.split(".", 1)[0]           # trim_cache.constprop.0 -> trim_cache


def _addr2line(offsets: list[int]) -> list[str]:
    out = subprocess.run(["addr2line", "-f", "-e", str(BINARY), *[hex(o) for o in offsets]],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    return out[0::2]


def test_dwarf_unwinding_finds_the_caller_of_glibcs_madvise(madvise_stacks, same_libc):
    stacks, mmaps = madvise_stacks
    sym = Symbolizer(mmaps, roots=[CAPTURE])
    sites = {}
    for s in stacks.values():
        frames, how = sym.stack(s)
        assert how == "dwarf"
        assert frames[0].runtime and "madvise" in frames[0].function   # the libc wrapper itself
        at = site(frames)
        sites[_function(at.function)] = sites.get(_function(at.function), 0) + 1
        own = [f for f in frames if f.dso.endswith("purge_sites")]
        if shutil.which("addr2line"):
            names = _addr2line([f.offset for f in own])
            assert [_function(f.function) for f in own] == names
    # one madvise per purge_arena call, two per trim_cache call (plus mmap_aligned's MADV_NOHUGEPAGE)
    assert sites["purge_arena"] == ARENA and sites["trim_cache"] == 2 * CACHE
    assert set(sites) == {"purge_arena", "trim_cache", "mmap_aligned"}


def test_build_id_mismatch_and_missing_binaries_fall_back_to_file_offsets(madvise_stacks, tmp_path):
    stacks, mmaps = madvise_stacks
    s = next(iter(stacks.values()))
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    shutil.copy(shutil.which("true") or "/bin/true", wrong / "purge_sites")
    frames, _ = Symbolizer(mmaps, roots=[wrong], build_id_cache=tmp_path).stack(s)
    own = [f for f in frames if f.dso.endswith("purge_sites")]
    assert own and all(f.function is None and f.note == "build id mismatch" for f in own)
    assert re.fullmatch(r"purge_sites\+0x[0-9a-f]+", own[0].name)
    nowhere = Symbolizer(mmaps, roots=[tmp_path / "nowhere"], build_id_cache=tmp_path)
    frames, _ = nowhere.stack(s)
    own = [f for f in frames if f.dso.endswith("purge_sites")]
    # the recorded path (where the capture was made) may hold a rebuilt binary: never used
    assert own and all(f.function is None and f.note in ("binary not found", "build id mismatch") for f in own)


def test_attribute_names_the_purge_sites(replayed, same_libc):
    from ptreplay.pipeline.attribution.attribute import attribute_to_dir
    from ptreplay.pipeline.warehouse import connect, execute
    attribute_to_dir(CAPTURE, replayed, [CAPTURE])
    con = connect(replayed)
    top = {(r["policy"], r["rank"]): r for r in execute(con, "SELECT * FROM top_sites").to_pylist()}
    # before 6.14: every purge leaves its table behind; the biggest site is purge_arena
    assert _function(top[("none", 1)]["site"]) == "purge_arena"
    assert top[("none", 1)]["pte_tables_emptied"] == ARENA
    assert _function(top[("none", 2)]["site"]) == "trim_cache"
    assert top[("none", 2)]["pte_tables_emptied"] == CACHE
    # CONFIG_PT_RECLAIM frees the whole-region zaps: only the half zaps leave tables behind
    assert _function(top[("pt_reclaim", 1)]["site"]) == "trim_cache"
    assert top[("pt_reclaim", 1)]["empty_pte_bytes"] == CACHE * 4096
    purge = execute(con, "SELECT sum(pte_tables_emptied) AS n, sum(pte_tables_freed) AS freed FROM attribution "
                         "WHERE policy = 'pt_reclaim' AND site LIKE 'purge_arena%'").to_pylist()[0]
    assert purge["n"] == 0 and purge["freed"] == ARENA
    # the faults that allocated the tables: fill_pages, one table per 2 MiB region
    fill = execute(con, "SELECT sum(pte_tables_allocated) AS n FROM attribution WHERE policy = 'none' "
                        "AND kind = 'fault' AND site LIKE 'fill_pages%'").to_pylist()[0]
    assert fill["n"] == ARENA + CACHE
    # the empty bytes attributed under none minus pt_reclaim are the summary's difference in final VmPTE,
    # and pt_reclaim's final VmPTE is the kernel's
    summary = {r["policy"]: r for r in execute(con, "SELECT * FROM summary").to_pylist()}
    empty = {p: execute(con, "SELECT sum(empty_pte_bytes) AS b FROM attribution WHERE policy = $p",
                        {"p": p}).to_pylist()[0]["b"] for p in ("none", "pt_reclaim")}
    assert empty["none"] - empty["pt_reclaim"] == \
        summary["none"]["final_vmpte_bytes"] - summary["pt_reclaim"]["final_vmpte_bytes"]
    kernel_kb = int(re.findall(r"VmPTE:\s+(\d+) kB", (CAPTURE / "stdout.txt").read_text())[-1])
    assert summary["pt_reclaim"]["final_vmpte_bytes"] == kernel_kb * 1024


def test_cli_attribute_prints_the_top_sites(replayed, same_libc):
    r = run_cli("attribute", str(CAPTURE), str(replayed), "--binaries", str(CAPTURE), "--format", "csv",
                "--policy", "none")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert rows[0]["policy"] == "none" and rows[0]["rank"] == "1" and rows[0]["site"].startswith("purge_arena")
    assert int(rows[0]["empty_pte_bytes"]) == ARENA * 4096 and {r["policy"] for r in rows} == {"none"}
    assert (replayed / "attribution.parquet").exists()
    assert pq.read_metadata(replayed / "attribution.parquet").num_rows > 0


def test_capture_without_call_chains_is_grouped_and_said(tmp_path):
    from ptreplay.pipeline.attribution.attribute import NO_CHAIN, attribute
    from ptreplay.pipeline.events.ingest import ingest
    from ptreplay.replay.engine import ReplayOptions, replay_to_dir
    ingest([DATA / "seed-2m"], tmp_path / "e.parquet")
    replay_to_dir(tmp_path / "e.parquet", tmp_path / "out", ReplayOptions(policies=["none"]))
    t = attribute(DATA / "seed-2m", tmp_path / "out")
    assert set(t.column("site").to_pylist()) == {NO_CHAIN}
    assert sum(t.column("pte_tables_emptied").to_pylist()) > 0


def test_attribute_refuses_text_captures_and_missing_effects(tmp_path, replayed):
    r = run_cli("attribute", str(DATA / "text" / "seed-2-tgid.trace_pipe.txt"), str(replayed))
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "perf.data" in r.stderr
    with pytest.raises(PipelineError, match="effects.parquet"):
        from ptreplay.pipeline.attribution.attribute import attribute
        attribute(CAPTURE, tmp_path)


def test_truncated_or_corrupt_captures_fail_in_one_line(tmp_path, events):
    """Cut or damaged copies of the capture: read_stacks ends in success or a TraceFormatError, never a crash."""
    from ptreplay.schemas.errors import TraceFormatError
    data = (CAPTURE / "perf.data").read_bytes()
    keys = {(r["tid"], r["t_ns"]) for r in pq.read_table(events, columns=["tid", "t_ns"]).to_pylist()[:2000]}
    rng = __import__("random").Random(5)
    outcomes = set()
    for k in range(30):
        blob = bytearray(data)
        if k % 2:
            blob = blob[:rng.randrange(200, len(blob))]
        else:
            for _ in range(8):
                blob[rng.randrange(len(blob))] ^= 1 << rng.randrange(8)
        bad = tmp_path / f"bad{k}.data"
        bad.write_bytes(bytes(blob))
        try:
            read_stacks(bad, keys)
            outcomes.add("ok")
        except TraceFormatError as e:
            assert str(e).startswith(str(bad)) and "\n" not in str(e)
            outcomes.add("error")
    assert "error" in outcomes


def test_html_report_lists_the_top_sites(replayed, same_libc):
    from ptreplay.pipeline.attribution.attribute import attribute_to_dir
    from ptreplay.pipeline.presentation.report import report
    attribute_to_dir(CAPTURE, replayed, [CAPTURE])
    page = report(replayed, fmt="html")
    table = page.split("Call sites leaving empty PTE tables behind", 1)[1].split("</table>", 1)[0]
    assert table.index("purge_arena") < table.index("trim_cache")


def test_attribute_says_in_one_line_which_frames_it_could_not_name(replayed, tmp_path, same_libc):
    """Without the program's binary (only libc at its recorded path) the purge_sites frames stay
    unnamed: one warning line counts them and says why."""
    r = run_cli("attribute", str(CAPTURE), str(replayed), "--binaries", str(tmp_path), "--format", "csv")
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and "frames could not be named" in lines[0], r.stderr
    n, total = map(int, re.search(r"(\d+) of (\d+) frames", lines[0]).groups())
    assert 0 < n < total and "purge_sites" in lines[0]
    # the frames it names come from libc; the purge_sites frames show as file+offset
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert any(re.fullmatch(r"purge_sites\+0x[0-9a-f]+", row["site"]) for row in rows)


def test_attribute_refuses_a_replay_of_another_capture(tmp_path):
    from ptreplay.pipeline.events.ingest import ingest
    from ptreplay.replay.engine import ReplayOptions, replay_to_dir
    ingest([DATA / "seed-2m"], tmp_path / "e.parquet")
    replay_to_dir(tmp_path / "e.parquet", tmp_path / "out", ReplayOptions(policies=["none"]))
    r = run_cli("attribute", str(CAPTURE), str(tmp_path / "out"), "--policy", "none")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "another capture" in r.stderr, r.stderr
    assert not (tmp_path / "out" / "attribution.parquet").exists()


@pytest.mark.parametrize("args, needle", [(["--top", "0"], "must be at least 1"), (["--top", "x"], "whole number"),
                                          (["--policy", "delayed:5s"], "not replayed"), (["--policy", "bogus"], "not replayed")])
def test_attribute_validates_top_and_policy(replayed, args, needle):
    r = run_cli("attribute", str(CAPTURE), str(replayed), "--binaries", str(CAPTURE), *args)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
