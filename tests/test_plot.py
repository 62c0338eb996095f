"""`ptreplay plot` and the HTML report: PNG and plotly figures of a replay output.

The heatmap matrix is checked against a naive pure-Python reference on a hand-built
occupancy table; the figures are checked by reading back the data they draw (the
matplotlib QuadMesh, the plotly traces, the JSON inside the written HTML).
"""
from __future__ import annotations

import base64
import json
import math
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ptreplay.schemas.errors import UsageError
from ptreplay.schemas.parquet_io import write_table
from ptreplay.pipeline.presentation.plot import plot
from ptreplay.pipeline.presentation.plotdata import (ENTRIES_PER_TABLE, MAX_REGIONS, REGION_BYTES, heatmap_matrix, load,
                                                     top_regions)
from ptreplay.pipeline.presentation.png import render_png
from ptreplay.schemas import OCCUPANCY
from conftest import DATA, run_cli

GIB = REGION_BYTES
BASE = 0x7F3A40000000          # a 1 GiB aligned address, as in a real mmap area


def occupancy_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=OCCUPANCY.schema)


def write_occupancy(out_dir: Path, rows: list[dict]) -> Path:
    """occupancy.parquet as the engine writes it (artifact occupancy/1), from rows."""
    return write_table(occupancy_table(rows), out_dir / "occupancy.parquet", OCCUPANCY, force=True)


def row(policy, pid, t, region, tables, empty, live, full=0, trace="t"):
    return dict(trace_id=trace, policy=policy, pid=pid, t_ns=t, region_start=region, pte_tables=tables,
                empty_pte_tables=empty, live_entries=live, full_pte_tables=full)


# ----------------------------------------------------------------------------- naive reference

def reference_regions(rows, policies, k):
    peak = {}
    for r in rows:
        if r["policy"] in policies and r["pte_tables"] > 0:
            peak[r["region_start"]] = max(peak.get(r["region_start"], 0), r["pte_tables"])
    best = sorted(peak, key=lambda reg: (-peak[reg], reg))[:k]
    return sorted(best)


def reference_matrix(rows, policy, regions, times):
    """occupancy[i][j] = sum(live) / (sum(tables) * 512) of the rows at (regions[i], times[j]); None: no table."""
    out = []
    for reg in regions:
        line = []
        for t in times:
            tables = sum(r["pte_tables"] for r in rows if r["policy"] == policy and r["region_start"] == reg and r["t_ns"] == t)
            live = sum(r["live_entries"] for r in rows if r["policy"] == policy and r["region_start"] == reg and r["t_ns"] == t)
            line.append(None if tables == 0 else live / (tables * 512))
        out.append(line)
    return out


def fixture_rows(n_regions=5, times=(0, 10, 20, 30), pid=7):
    """Region k has k+1 tables under none, emptier as time passes; pt_reclaim keeps only the live ones."""
    rng = np.random.default_rng(1)
    rows = []
    for j, t in enumerate(times):
        for k in range(n_regions):
            if (k, j) in {(1, 2), (3, 0)}:
                continue  # a hole: region without tables at that snapshot
            region = BASE + k * GIB if k % 2 == 0 else 0x55D1C0000000 + k * GIB
            tables = k + 1
            empty = min(tables, j)
            live = int(rng.integers(0, (tables - empty) * 512 + 1)) if tables > empty else 0
            rows.append(row("none", pid, t, region, tables, empty, live, full=int(live == tables * 512)))
            if tables > empty:
                rows.append(row("pt_reclaim", pid, t, region, tables - empty, 0, live))
    rows.append(row("none", pid + 1, times[1], BASE, 3, 3, 0))     # another process: not in pid's matrix
    rows.append(row("none", pid, times[1], BASE + 100 * GIB, 0, 0, 0))  # a region with no table: never shown
    return rows


def same(a: np.ndarray, b: list[list]) -> bool:
    want = np.array([[np.nan if v is None else v for v in line] for line in b], float).reshape(a.shape)
    return bool(np.allclose(a, want, equal_nan=True))


def test_heatmap_matrix_equals_naive_reference():
    rows = fixture_rows()
    occ = occupancy_table([r for r in rows if r["pid"] == 7])
    for policy in ("none", "pt_reclaim"):
        regions = top_regions(occ, ["none", "pt_reclaim"])
        assert list(regions) == reference_regions(rows, {"none", "pt_reclaim"}, MAX_REGIONS)
        hm = heatmap_matrix(occ, policy, regions=regions, times=np.array([0, 10, 20, 30]))
        assert hm.occupancy.shape == (5, 4)
        assert same(hm.occupancy, reference_matrix([r for r in rows if r["pid"] == 7], policy, list(regions), [0, 10, 20, 30]))
        assert np.all((hm.occupancy[~np.isnan(hm.occupancy)] >= 0) & (hm.occupancy[~np.isnan(hm.occupancy)] <= 1))
    none = heatmap_matrix(occ, "none", regions=regions)
    # rows are ascending addresses; every table of region k at time j: empty = min(k+1, j)
    assert list(none.region_start) == sorted(none.region_start)
    k = list(regions).index(BASE + 4 * GIB)  # 5 tables
    assert list(none.empty_pte_tables[k]) == [0, 1, 2, 3] and list(none.pte_tables[k]) == [5, 5, 5, 5]
    assert none.regions_total == 5


def test_heatmap_keeps_the_64_busiest_regions_and_says_so():
    rows = [row("none", 1, t, BASE + k * GIB, tables=k + 1, empty=0, live=(k + 1) * 256)
            for k in range(100) for t in (0, 5)]
    hm = heatmap_matrix(occupancy_table(rows), "none")
    assert hm.occupancy.shape == (MAX_REGIONS, 2)
    assert list(hm.region_start) == [BASE + k * GIB for k in range(36, 100)]   # the most tables
    assert np.allclose(hm.occupancy, 0.5)
    assert hm.regions_note == "the 64 of 100 regions with the most PTE tables"
    assert heatmap_matrix(occupancy_table(rows[:20]), "none").regions_note == "10 regions"


def test_whole_run_times_give_columns_where_the_process_had_no_table():
    rows = [row("none", 1, 10, BASE, 1, 1, 0)]
    hm = heatmap_matrix(occupancy_table(rows), "none", times=np.array([0, 10, 20]))
    assert hm.occupancy.shape == (1, 3)
    assert np.isnan(hm.occupancy[0, 0]) and hm.occupancy[0, 1] == 0.0 and np.isnan(hm.occupancy[0, 2])
    assert list(hm.all_empty_pte_tables) == [0, 1, 0]


def test_empty_occupancy_gives_an_empty_matrix():
    hm = heatmap_matrix(occupancy_table([]), "none")
    assert hm.occupancy.shape == (0, 0) and hm.regions_total == 0


# ----------------------------------------------------------------------------- real replay outputs

def replay_capture(name: str, out: Path) -> Path:
    from ptreplay.pipeline.events.ingest import ingest
    from ptreplay.replay.engine import ReplayOptions, replay_to_dir
    events = out.parent / f"{name}.events.parquet"
    ingest([DATA / name], events, force=True)
    replay_to_dir(events, out, ReplayOptions(), force=True)   # writes out/truth.parquet: ingest carried it
    return out


@pytest.fixture(scope="module")
def seed_out(tmp_path_factory) -> Path:
    return replay_capture("seed-2m", tmp_path_factory.mktemp("seed") / "out")


@pytest.fixture
def seed_fixture_occ(seed_out, tmp_path) -> Path:
    """The seed-2m replay with a hand-made occupancy.parquet (replacing the engine's, if any)."""
    out = tmp_path / "seed"
    shutil.copytree(seed_out, out)
    summary = pq.read_table(out / "summary.parquet").to_pylist()
    trace, pid = summary[0]["trace_id"], summary[0]["pid"]
    times = [s["start_ns"] + i * 10_000_000 for s in summary[:1] for i in range(12)]
    rows = [dict(r, trace_id=trace, pid=pid) for r in fixture_rows(times=times, pid=pid)
            if r["pid"] == pid]
    (out / "occupancy.parquet").unlink(missing_ok=True)
    write_occupancy(out, rows)
    return out


def heatmap_meshes(fig):
    """The occupancy QuadMeshes render_png drew (tagged with gid 'occupancy POLICY')."""
    return [c for ax in fig.get_axes() for c in ax.collections if (c.get_gid() or "").startswith("occupancy ")]


def test_png_draws_the_heatmap_matrix_per_policy(seed_fixture_occ, tmp_path):
    data = load(seed_fixture_occ)
    assert [h.policy for h in data.heatmaps] == ["none", "pt_reclaim"]
    fig = render_png(data)
    meshes = heatmap_meshes(fig)
    assert [m.get_gid() for m in meshes] == ["occupancy none", "occupancy pt_reclaim"]
    for mesh, hm in zip(meshes, data.heatmaps):
        drawn = np.ma.filled(mesh.get_array().astype(float), np.nan).reshape(hm.occupancy.shape)
        assert hm.occupancy.shape == (5, 12)
        assert np.allclose(drawn, hm.occupancy, equal_nan=True)
    heat_ax = meshes[0].axes
    assert [t.get_text() for t in heat_ax.get_yticklabels()] == [f"0x{int(r):x}" for r in data.heatmaps[0].region_start]
    assert f"0x{BASE:x}" == "0x7f3a40000000"
    png = plot(seed_fixture_occ, tmp_path / "p.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_png_of_many_regions_shows_64_and_says_so(seed_out, tmp_path):
    out = tmp_path / "many"
    shutil.copytree(seed_out, out)
    (out / "occupancy.parquet").unlink(missing_ok=True)
    s = pq.read_table(out / "summary.parquet").to_pylist()[0]
    write_occupancy(out, [row(policy, s["pid"], s["start_ns"] + j * 10**7, BASE + k * GIB, 1 + k % 7, 0, 100,
                              trace=s["trace_id"]) for policy in ("none", "pt_reclaim") for k in range(100) for j in range(30)])
    fig = render_png(load(out), heatmap_only=True)
    assert [m.get_array().shape for m in heatmap_meshes(fig)] == [(64, 30), (64, 30)]
    assert "the 64 of 100 regions with the most PTE tables" in fig._suptitle.get_text()


def test_policy_flag_chooses_the_heatmaps_and_rejects_unreplayed(seed_fixture_occ):
    assert [h.policy for h in load(seed_fixture_occ, policies=["pt_reclaim"]).heatmaps] == ["pt_reclaim"]
    with pytest.raises(UsageError, match="policy scan:9s was not replayed"):
        load(seed_fixture_occ, policies=["scan:9s"])


def test_old_outputs_plot_without_heatmap_and_say_so(seed_out, tmp_path, capsys):
    out = tmp_path / "old"
    shutil.copytree(seed_out, out)
    (out / "occupancy.parquet").unlink(missing_ok=True)
    png = plot(out, tmp_path / "old.png")
    assert png.stat().st_size > 20_000
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "heatmap omitted" in err
    data = load(out)
    assert data.heatmaps == [] and not heatmap_meshes(render_png(data))


def test_default_process_is_the_largest_potential_savings(seed_out):
    data = load(seed_out)
    summary = pq.read_table(seed_out / "summary.parquet").to_pylist()
    best = max(summary, key=lambda r: r["vmpte_saved_bytes"])
    assert (data.trace_id, data.pid) == (best["trace_id"], best["pid"])
    # the truth replay wrote names its trace in its metadata (the folder's name is not the trace id)
    import pyarrow.compute as pc
    truth = pq.read_table(DATA / "seed-2m" / "truth.parquet")
    mine = truth.filter(pc.equal(truth.column("pid"), data.pid))
    assert data.truth.num_rows == mine.num_rows > 100
    assert data.truth.column("vmpte_bytes").to_pylist() == mine.column("vmpte_bytes").to_pylist()


# ----------------------------------------------------------------------------- HTML (plotly)

def decode(v):
    """A plotly JSON array: a list, or {"dtype", "bdata"} (plotly >= 6 typed arrays)."""
    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        return a.reshape(v["shape"]) if "shape" in v else a
    return v


def plotly_figures_in(page: str) -> list[dict]:
    """Each Plotly.newPlot(id, data, layout, config) call's data and layout, parsed."""
    out = []
    dec = json.JSONDecoder()
    for m in re.finditer(r'Plotly\.newPlot\(\s*"[^"]+",\s*', page):
        data, end = dec.raw_decode(page, m.end())
        layout, _ = dec.raw_decode(page, page.index("{", end))
        out.append({"data": data, "layout": layout})
    return out


def test_html_has_the_same_panels_with_human_hover(seed_fixture_occ, tmp_path):
    pytest.importorskip("plotly")
    data = load(seed_fixture_occ)
    page = plot(seed_fixture_occ, tmp_path / "p.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "Plotly.newPlot" in page
    assert '<script src="https://cdn' not in page and len(page) > 3_000_000   # plotly.js inline: works offline
    timeline, heat = plotly_figures_in(page)
    names = [t["name"] for t in timeline["data"]]
    policies = data.policies
    assert names == (policies + ["kernel (/proc truth)"]) * 3 + ["policies (cost vs savings)"]
    ts = data.timeseries.to_pylist()
    for t, policy in zip(timeline["data"], policies):
        assert len(decode(t["x"])) == sum(r["policy"] == policy for r in ts)
        assert len(t["customdata"]) == len(decode(t["x"])) and re.fullmatch(r"[\d.]+[kMG]?", t["customdata"][-1])
    assert len(decode(timeline["data"][len(policies)]["x"])) == data.truth.num_rows
    heatmaps = [t for t in heat["data"] if t["type"] == "heatmap"]
    assert [t["name"] for t in heatmaps] == ["occupancy none", "occupancy pt_reclaim"]
    for t, hm in zip(heatmaps, data.heatmaps):
        assert t["y"] == hm.labels and len(decode(t["x"])) == len(hm.t_ns)
        z = np.array([[np.nan if v is None else v for v in line] for line in t["z"]], float)
        assert np.allclose(z, hm.occupancy, equal_nan=True)
        assert "empty" in t["hovertemplate"] and "customdata" in t["hovertemplate"]


def test_html_and_report_escape_strings_from_captures(seed_out, tmp_path):
    pytest.importorskip("plotly")
    from ptreplay.pipeline.presentation.report import report
    out = tmp_path / "evil"
    shutil.copytree(seed_out, out)
    summary = pq.read_table(out / "summary.parquet")
    evil = "<script>alert(1)</script>"
    meta = summary.schema.metadata
    summary = summary.set_column(summary.schema.get_field_index("comm"), "comm", pa.array([evil] * summary.num_rows))
    pq.write_table(summary.replace_schema_metadata(meta), out / "summary.parquet")
    for page in (plot(out, tmp_path / "e.html").read_text(), report(out, "html")):
        assert evil not in page and "alert(1)</script>" not in page
        assert "\\u003cscript\\u003ealert(1)" in page or "&lt;script&gt;alert(1)" in page


def test_report_html_embeds_plotly_or_falls_back_to_png(seed_fixture_occ, monkeypatch):
    pytest.importorskip("plotly")
    from ptreplay.pipeline.presentation.report import report
    page = report(seed_fixture_occ, "html")
    assert len(plotly_figures_in(page)) == 2 and '<img alt="VIRT' not in page
    monkeypatch.setitem(sys.modules, "plotly", None)      # plotly not installed
    page = report(seed_fixture_occ, "html")
    assert "Plotly.newPlot" not in page and '<img alt="VIRT, RES and VmPTE per policy" src="data:image/png;base64,' in page


def test_cli_plot_flags_and_one_line_errors(seed_fixture_occ, tmp_path):
    pytest.importorskip("plotly")
    pid = load(seed_fixture_occ).pid
    ok = run_cli("plot", str(seed_fixture_occ), "-o", str(tmp_path / "h.png"), "--pid", str(pid),
                 "--policy", "none", "--heatmap-only")
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "h.png").stat().st_size > 10_000
    bad = run_cli("plot", str(seed_fixture_occ), "-o", str(tmp_path / "x.png"), "--policy", "nope")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "nope" in bad.stderr
    bad = run_cli("plot", str(seed_fixture_occ), "-o", str(tmp_path / "x.svg"))
    assert bad.returncode == 2 and ".png or .html" in bad.stderr
    missing = run_cli("plot", str(seed_fixture_occ), "-o", str(tmp_path / "x.png"), "--pid", "999999")
    assert missing.returncode == 1 and "no process pid 999999" in missing.stderr


# ----------------------------------------------------------------------------- the engine's own occupancy

def test_seed_2m_under_none_leaves_ever_more_empty_tables(seed_out):
    """seed-2m touches then zaps 2 MiB at a time: under none every zapped table stays,
    empty, so the empty tables (and the regions that are nothing but empty tables) grow."""
    data = load(seed_out, policies=["none", "pt_reclaim"])
    none, reclaim = data.heatmaps
    assert len(none.t_ns) <= 120 and none.occupancy.shape == (len(none.region_start), len(none.t_ns))
    empty = none.all_empty_pte_tables
    assert np.all(np.diff(empty[: np.argmax(empty) + 1]) >= 0) and empty.max() >= 1000
    emptiest = np.nanmin(np.where(none.pte_tables > 0, none.occupancy, np.nan), axis=0)
    late = emptiest[np.argmax(empty)]
    assert late < 0.01                              # a region with (almost) nothing mapped in its tables
    assert reclaim.all_empty_pte_tables.max() <= 2   # pt_reclaim frees each one at once
    # the matrix is the table's: recompute one cell from the Parquet file directly
    rows = [r for r in pq.read_table(seed_out / "occupancy.parquet").to_pylist()
            if r["policy"] == "none" and r["pid"] == data.pid]
    i, j = np.unravel_index(np.nanargmax(none.pte_tables), none.pte_tables.shape)
    cell = [r for r in rows if r["region_start"] == none.region_start[i] and r["t_ns"] == none.t_ns[j]]
    assert none.pte_tables[i, j] == sum(r["pte_tables"] for r in cell)
    assert math.isclose(none.occupancy[i, j], sum(r["live_entries"] for r in cell) /
                        (ENTRIES_PER_TABLE * sum(r["pte_tables"] for r in cell)))
