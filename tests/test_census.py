"""`ptreplay census` and its pagemap reader, checked against the kernel.

The live tests (root: pagemap of another process, kpageflags) run workloads/census_target.c,
which builds a page-table state it knows (touched regions, half-zapped tables, a THP, the huge
zero page, guard markers, a 50 GiB sparse reservation) and prints its own VmPTE.  Every
expectation is the kernel's (VmPTE in /proc) or the program's own construction; both scan
methods (PAGEMAP_SCAN and chunked pagemap reads) must agree page for page.
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import REPO, require, run_cli
from ptreplay.pipeline.capture import pagemap as pm
from ptreplay.pipeline.capture.census import census_to_file, take, vmas_path
from ptreplay.schemas import CENSUS, CENSUS_VMAS, conform

MIB, GIB = 1 << 20, 1 << 30


# ----------------------------------------------------------------------------- no kernel needed

def _scan(runs, vmas_text="0-8000000000 rw-p 00000000 00:00 0\n"):
    """A PageScan of (start, pages, flags) runs inside one VMA."""
    v = pm.parse_maps(vmas_text)
    a = np.array(runs, np.uint64).reshape(-1, 3)
    start, pages, flags = a[:, 0], a[:, 1], a[:, 2].astype(np.uint8)
    return pm.PageScan(1, v, start, pages, flags, np.zeros(len(a), np.int32), "test", 0, 0)


def test_parse_maps_skips_the_kernel_half_and_keeps_names():
    v = pm.parse_maps("00400000-00401000 r-xp 00000000 fe:00 12 /bin/x\n"
                      "7ffd0000-7ffd1000 rw-p 00000000 00:00 0                          [stack]\n"
                      "7f000000-7f001000 rw-p 00000000 00:00 0\n"
                      "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]\n")
    assert v.name == ["/bin/x", "[stack]", ""] and v.inode.tolist() == [12, 0, 0]
    assert v.start[0] == 0x400000 and v.end[1] == 0x7ffd1000


def test_tables_needed_counts_each_level_once_and_knows_thp_deposits():
    P, F, T, H = pm.F_PRESENT, pm.F_FILE, pm.F_THP, pm.F_HUGETLB
    s = _scan([
        (0x200000, 1, P), (0x3ff000, 1, P),              # two pages, one 2 MiB region: one table, 2 entries
        (0x5ff000, 2, P),                                 # straddles two regions: one entry in each
        (GIB, 512, P | T),                                # anonymous THP: its deposit counts
        (GIB + 2 * MIB, 512, P | T | F),                  # file PMD mapping: no PTE table on x86-64
        (2 * GIB, 512, P | H),                            # hugetlb: no PTE table
        (600 * GIB, 1, pm.F_SWAPPED),                     # a swap entry far away: its own PUD and PMD
    ])
    t = pm.tables_needed(s)
    assert (t.pte, t.pmd, t.pud) == (5, 4, 2)
    assert t.bytes == 4096 * 11
    assert t.occupancy[2] == 1 and t.occupancy[1] == 3 and t.occupancy[512] == 1 and t.occupancy.sum() == 5


def test_split_and_overlap_helpers():
    s, p, f = pm._split_at(np.array([0x1000], np.uint64), np.array([4], np.uint64), np.array([1], np.uint64),
                           np.array([0x2000, 0x4000], np.uint64))
    assert s.tolist() == [0x1000, 0x2000, 0x4000] and p.tolist() == [1, 2, 1]
    a = pm._drop_overlaps(np.array([[0x1000, 0x3000, 8], [0x2000, 0x4000, 8], [0x2000, 0x3000, 8]], np.uint64))
    assert a[:, :2].tolist() == [[0x1000, 0x3000], [0x3000, 0x4000]]


def test_bad_output_and_unknown_pid_are_one_line_errors(tmp_path):
    foreign = tmp_path / "mine.parquet"
    foreign.write_text("not ptreplay's")
    for args, code in ((["-o", str(tmp_path / "x.csv")], 2), (["-o", str(tmp_path)], 2),
                       (["-o", str(foreign)], 1), (["-p", "999999999", "-o", str(tmp_path / "c.parquet")], 1)):
        r = run_cli("census", *args, env={**os.environ, "HOME": str(tmp_path)})
        assert r.returncode == code, r.stderr
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr and r.stderr.startswith("ptreplay: error:")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.parquet"]     # no partial output
    assert foreign.read_text() == "not ptreplay's"


# ----------------------------------------------------------------------------- against the kernel

def _root():
    require(os.geteuid() == 0, "census: reading another process's pagemap and kpageflags needs root")


@pytest.fixture(scope="module")
def target_bin(tmp_path_factory) -> Path:
    require(shutil.which("gcc") is not None, "gcc not found: cannot build workloads/census_target.c")
    out = tmp_path_factory.mktemp("census-bin") / "census_target"
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(out), str(REPO / "workloads" / "census_target.c")],
                   check=True, capture_output=True)
    return out


class Target:
    """A census_target process holding its state until close()."""

    def __init__(self, binary: Path, *args: str):
        self.proc = subprocess.Popen([str(binary), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.pid = self.proc.pid
        self.said = {}
        for line in self.proc.stdout:
            if line.strip() == "ready":
                break
            k, v = line.split()
            self.said[k] = int(v)
        assert "vmpte_kb" in self.said, f"census_target {args} did not get ready"

    def vmpte(self) -> int:
        return int(re.search(r"VmPTE:\s+(\d+) kB", Path(f"/proc/{self.pid}/status").read_text()).group(1)) * 1024

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


@pytest.fixture
def target(target_bin):
    made = []

    def start(*args):
        t = Target(target_bin, *args)
        made.append(t)
        return t
    yield start
    for t in made:
        t.close()


def _both(pid):
    a, b = pm.scan(pid, method="pagemap_scan"), pm.scan(pid, method="pagemap_read")
    assert a.method == "pagemap_scan" and b.method == "pagemap_read"
    for name in ("run_start", "run_pages", "run_flags", "run_vma"):      # page for page
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    return a


def test_no_empty_table_means_needed_equals_vmpte(target):
    _root()
    t = target("fresh", "20")
    before = t.vmpte()
    s = _both(t.pid)
    need = pm.tables_needed(s)
    assert need.bytes == before == t.vmpte() == t.said["vmpte_kb"] * 1024
    assert need.occupancy[512] >= 1                      # the one region the program filled


def test_half_zapped_tables_are_the_waste(target):
    _root()
    n = 6
    t = target("halves", str(n))
    assert t.said["empty_tables"] == n
    s = _both(t.pid)
    need = pm.tables_needed(s)
    assert t.vmpte() - need.bytes == n * 4096
    # the program's 12 MiB: nothing present there, every region of it page-free
    c = take([t.pid])
    row = c.processes.to_pylist()[0]
    assert row["state"] == "ok" and row["vmpte_bytes"] == row["vmpte_after_bytes"] == t.vmpte()
    assert row["waste_bytes"] == n * 4096 and row["needed_bytes"] + row["waste_bytes"] == row["vmpte_bytes"]
    vm = c.vmas.to_pylist()
    assert any(v["size_bytes"] == n * 2 * MIB and v["present_pages"] == 0 and v["pagefree_regions"] == n for v in vm)


def test_thp_zero_page_and_guard_markers(target):
    _root()
    t = target("thp")
    require(t.said["madv_hugepage"] == 1, "THP unavailable (MADV_HUGEPAGE failed)")
    s = _both(t.pid)
    need = pm.tables_needed(s)
    assert need.bytes == t.vmpte()                       # deposits of the THP and the huge zero page counted
    assert s.count(pm.F_PRESENT | pm.F_THP) >= 1024      # one written THP, one huge zero page
    assert s.count(pm.F_PRESENT | pm.F_THP | pm.F_ZERO) == 512
    assert s.count(pm.F_GUARD) == (16 if t.said["guard"] else 0)
    assert s.count(pm.F_PRESENT | pm.F_THP | pm.F_EXCLUSIVE, pm.F_ZERO) == 512


def test_50_gib_sparse_process_is_scanned_well_under_a_second(target):
    _root()
    t = target("sparse", "50", "512")
    best = min(_timed(t.pid) for _ in range(3))
    s = pm.scan(t.pid)
    assert s.method == "pagemap_scan" and best < 0.25, best
    assert pm.tables_needed(s).bytes == t.vmpte()


def _timed(pid):
    t0 = time.perf_counter()
    pm.scan(pid)
    return time.perf_counter() - t0


def test_fallback_when_the_ioctl_is_missing(target, monkeypatch):
    _root()
    t = target("fresh", "5")

    def no_ioctl(*a, **k):
        raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")
    monkeypatch.setattr(pm.fcntl, "ioctl", no_ioctl)
    s = pm.scan(t.pid)
    assert s.method == "pagemap_read" and pm.tables_needed(s).bytes == t.vmpte()
    with pytest.raises(pm.PagemapUnavailable):
        pm.scan(t.pid, method="pagemap_scan")


def test_whole_machine_census_agrees_with_proc(target, tmp_path):
    _root()
    n = 3
    t = target("halves", str(n))
    out = tmp_path / "census.parquet"
    r = run_cli("census", "-o", str(out), "--report", env={**os.environ, "HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    rows = conform(pq.read_table(out), CENSUS, str(out)).to_pylist()
    conform(pq.read_table(vmas_path(out)), CENSUS_VMAS)
    assert pq.read_metadata(out).metadata[b"ptreplay.schema"] == b"census/1"
    ok = [x for x in rows if x["state"] == "ok"]
    assert len(ok) >= 0.8 * len(rows)
    for x in ok:
        assert x["vmpte_bytes"] == x["vmpte_after_bytes"] and x["needed_bytes"] + x["waste_bytes"] == x["vmpte_bytes"]
        assert x["waste_bytes"] >= 0 or x["pfnmap_regions"] > 0, x
    mine = next(x for x in rows if x["pid"] == t.pid)
    assert mine["state"] == "ok" and mine["waste_bytes"] == n * 4096 and mine["vmpte_bytes"] == t.vmpte()
    assert str(t.pid) in r.stdout and "processes" in r.stdout
    # the report ranks by waste, via the views; `ptreplay report` on the file says the same
    r2 = run_cli("report", str(out), "--format", "json", env={**os.environ, "HOME": str(tmp_path)})
    assert r2.returncode == 0, r2.stderr
    assert '"waste_bytes"' in r2.stdout
    # --force replaces our own outputs; without it they are refused
    r3 = run_cli("census", "-p", str(t.pid), "-o", str(out), env={**os.environ, "HOME": str(tmp_path)})
    assert r3.returncode == 1 and "already exists" in r3.stderr


def test_census_views_and_plot(target, tmp_path):
    _root()
    t = target("halves", "2")
    out = tmp_path / "census.parquet"
    census_to_file(out, pids=[t.pid])
    from ptreplay.pipeline.warehouse import connect, execute
    w = execute(connect(tmp_path), "SELECT pid, waste_tables FROM census_waste").to_pylist()
    assert w == [{"pid": t.pid, "waste_tables": 2}]
    m = execute(connect(tmp_path), "SELECT sum(pte_tables) AS n FROM census_by_mapping").to_pylist()[0]["n"]
    assert m * 4096 == pq.read_table(out).column("needed_pte_tables")[0].as_py() * 4096
    pytest.importorskip("matplotlib")
    from ptreplay.pipeline.presentation.census_report import write_census_png
    from ptreplay.schemas.parquet_io import mark_of
    png = write_census_png(out, tmp_path / "census.png")
    assert mark_of(png) == "plot/1"
