"""DuckDB views over fixture outputs (hand-built summary rows) with exact expected values."""
import json
import subprocess
import sys

import pyarrow as pa
import pytest

from ptreplay.schemas.errors import UsageError
from ptreplay.schemas.parquet_io import write_table
from ptreplay.pipeline.presentation.report import report
from ptreplay.pipeline.warehouse import connect, execute
from ptreplay.schemas import SUMMARY

KB = 1024


def summary_rows(trace, pid, comm, finals):
    """finals: {policy: (final_vmpte, refaults, scan_entries)}; savings filled against none."""
    none = finals["none"][0]
    rows = []
    for policy, (vmpte, refaults, scans) in finals.items():
        row = {f.name: 0 for f in SUMMARY.schema}
        row.update(trace_id=trace, pid=pid, comm=comm, policy=policy, final_vmpte_bytes=vmpte,
                   peak_vmpte_bytes=vmpte + 8 * KB, mean_vmpte_bytes=float(vmpte), ideal_pte_bytes=12 * KB,
                   refaults=refaults, scan_entries=scans, vmpte_saved_bytes=none - vmpte,
                   vmpte_saved_pct=100.0 * (none - vmpte) / none)
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=SUMMARY.schema)


@pytest.fixture
def tree(tmp_path):
    a = summary_rows("a", 10, "redis", {"none": (102_640 * KB, 0, 0), "pt_reclaim": (244 * KB, 3, 0)})
    b = summary_rows("b", 20, "java", {"none": (1000 * KB, 0, 0), "scan:1s": (500 * KB, 0, 5120)})
    write_table(a, tmp_path / "trace_id=a" / "summary.parquet", SUMMARY, capture={"trace_id": "a", "host": "h1", "kernel_release": "6.1"})
    write_table(b, tmp_path / "trace_id=b" / "summary.parquet", SUMMARY, capture={"trace_id": "b", "host": "h2", "kernel_release": "6.1"})
    return tmp_path


def test_savings_view_exact_values_and_seed_sentence(tree):
    con = connect(tree)
    rows = execute(con, "SELECT * FROM savings WHERE policy <> 'none' ORDER BY trace_id").to_pylist()
    assert [(r["trace_id"], r["saved_bytes"]) for r in rows] == [("a", (102_640 - 244) * KB), ("b", 500 * KB)]
    assert rows[0]["saved_pct"] == pytest.approx(100 * (102_640 - 244) / 102_640)
    assert rows[0]["line"] == "VmPTE 100.2 MiB under none -> 244.0 KiB under pt_reclaim; ideal 12.0 KiB"


def test_policy_costs_per_gb_saved(tree):
    con = connect(tree)
    (r,) = execute(con, "SELECT * FROM policy_costs WHERE policy = 'scan:1s'").to_pylist()
    assert r["scan_entries_per_gb_saved"] == pytest.approx(5120 / (500 * KB / 2**30))


def test_metadata_and_fleet_rollups(tree):
    con = connect(tree)
    meta = execute(con, "SELECT trace_id, host FROM metadata ORDER BY trace_id").to_pylist()
    assert meta == [{"trace_id": "a", "host": "h1"}, {"trace_id": "b", "host": "h2"}]
    k = execute(con, "SELECT policy, processes, vmpte_bytes FROM fleet_by_kernel WHERE policy='none'").to_pylist()
    assert k == [{"policy": "none", "processes": 2, "vmpte_bytes": (102_640 + 1000) * KB}]
    h = execute(con, "SELECT host, saved_bytes FROM fleet_by_host WHERE policy <> 'none' ORDER BY host").to_pylist()
    assert h == [{"host": "h1", "saved_bytes": (102_640 - 244) * KB}, {"host": "h2", "saved_bytes": 500 * KB}]
    c = execute(con, "SELECT comm, processes FROM fleet_by_comm WHERE policy = 'none' ORDER BY comm").to_pylist()
    assert c == [{"comm": "java", "processes": 1}, {"comm": "redis", "processes": 1}]


def test_missing_artifacts_give_empty_views(tree):
    con = connect(tree)
    assert execute(con, "SELECT count(*) AS n FROM events").to_pylist() == [{"n": 0}]
    assert "vmpte_bytes" in execute(con, "SELECT * FROM truth").column_names


def test_parameters_are_bound_not_formatted(tree):
    con = connect(tree)
    evil = "a' OR '1'='1"
    assert execute(con, "SELECT count(*) AS n FROM summary WHERE trace_id = $t", {"t": evil}).to_pylist() == [{"n": 0}]
    assert execute(con, "SELECT count(*) AS n FROM summary WHERE trace_id = $t", {"t": "a"}).to_pylist() == [{"n": 2}]


@pytest.mark.parametrize("sql", ["COPY summary TO '/tmp/x.csv'", "DROP VIEW summary",
                                 "SELECT 1; DROP VIEW summary", "ATTACH 'x.db'", "INSTALL httpfs"])
def test_only_read_queries_run(tree, sql):
    with pytest.raises(UsageError, match="only a single read query"):
        execute(connect(tree), sql)


def test_report_numbers_equal_summary(tree):
    rows = json.loads(report(tree / "trace_id=a", "json"))
    assert {r["policy"]: r["final_vmpte_bytes"] for r in rows} == {"none": 102_640 * KB, "pt_reclaim": 244 * KB}
    text = report(tree / "trace_id=a", "table")
    assert "100M" in text and "244k" in text


def test_cli_sql_binds_params_and_reports_errors_in_one_line(tree):
    ok = subprocess.run([sys.executable, "-m", "ptreplay", "sql", str(tree),
                         "SELECT pid FROM summary WHERE comm = $c GROUP BY pid", "--param", "c=java", "--format", "csv"],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.split() == ['"pid"', "20"]
    bad = subprocess.run([sys.executable, "-m", "ptreplay", "sql", str(tree), "SELECT nope FROM summary"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


def test_report_by_comm_sums_the_summary_and_reads_a_tree(tree):
    rows = json.loads(report(tree, "json", by="comm"))
    got = {(r["comm"], r["policy"]): r["vmpte_saved_bytes"] for r in rows}
    assert got == {("redis", "pt_reclaim"): (102_640 - 244) * KB, ("java", "scan:1s"): 500 * KB,
                   ("redis", "none"): 0, ("java", "none"): 0}
    assert len(json.loads(report(tree, "json"))) == 4   # --by process over the whole tree


def test_html_report_escapes_strings_from_captures(tmp_path):
    evil = summary_rows("t", 1, "<script>alert(1)</script>", {"none": (8 * KB, 0, 0)})
    write_table(evil, tmp_path / "summary.parquet", SUMMARY, capture={"trace_id": "t"})
    page = report(tmp_path, "html")
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.startswith("<!DOCTYPE html>")


def census_rows(host, rows):
    """rows: (pid, comm, state, t_ns, vmpte_kb, needed_kb); None kb = not measured (vanished, denied)."""
    from ptreplay.schemas import CENSUS
    out = []
    for pid, comm, state, t_ns, vmpte, needed in rows:
        out.append(dict(host=host, kernel_release="6.1", t_ns=t_ns, pid=pid, comm=comm, state=state,
                        vmpte_bytes=None if vmpte is None else vmpte * KB,
                        needed_bytes=None if needed is None else needed * KB,
                        waste_bytes=None if needed is None else (vmpte - needed) * KB))
    return pa.Table.from_pylist(out, schema=CENSUS.schema)


def test_fleet_views_put_census_waste_beside_replay_savings(tree):
    from ptreplay.schemas import CENSUS
    c1 = census_rows("h1", [(10, "redis", "ok", 1, 400, 100), (11, "redis", "ok", 1, 50, 50),
                            (11, "redis", "changed", 5, 60, 40),     # pid 11 again, later: this scan counts
                            (12, "sshd", "denied", 1, 30, None), (13, "cron", "vanished", 1, None, None)])
    c3 = census_rows("h3", [(7, "java", "ok", 1, 90, 10)])          # a host with a census and no replay
    write_table(c1, tree / "c1" / "census.parquet", CENSUS)
    write_table(c3, tree / "c3" / "census.parquet", CENSUS)
    con = connect(tree)
    h = {(r["host"], r["policy"]): r for r in execute(con, "SELECT * FROM fleet_by_host").to_pylist()}
    assert set(h) == {("h1", "none"), ("h1", "pt_reclaim"), ("h2", "none"), ("h2", "scan:1s"), ("h3", None)}
    r = h["h1", "pt_reclaim"]
    assert (r["processes"], r["none_vmpte_bytes"], r["vmpte_bytes"], r["saved_bytes"]) == (
        1, 102_640 * KB, 244 * KB, (102_640 - 244) * KB)
    assert (r["census_processes"], r["census_vmpte_bytes"], r["census_needed_bytes"], r["census_waste_bytes"]) == (
        2, 460 * KB, 140 * KB, 320 * KB)
    assert r["census_waste_pct"] == pytest.approx(100 * 320 / 460)
    assert h["h2", "none"]["census_processes"] == 0 and h["h2", "none"]["census_waste_bytes"] is None
    assert (h["h3", None]["processes"], h["h3", None]["census_waste_bytes"]) == (0, 80 * KB)
    c = {(r["comm"], r["policy"]): r for r in execute(con, "SELECT * FROM fleet_by_comm").to_pylist()}
    assert (c["redis", "pt_reclaim"]["hosts"], c["redis", "pt_reclaim"]["census_waste_bytes"]) == (1, 320 * KB)
    assert (c["java", "scan:1s"]["hosts"], c["java", "scan:1s"]["census_waste_bytes"]) == (2, 80 * KB)
    assert ("sshd", None) not in c and ("cron", None) not in c     # not measured: no waste to add
