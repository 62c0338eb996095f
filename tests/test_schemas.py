"""Schemas: conform() names missing, extra and mistyped columns; Parquet I/O is atomic and tagged."""
import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ptreplay.schemas.errors import OutputExistsError, SchemaError
from ptreplay.schemas.parquet_io import StreamWriter, read_capture, read_table, write_table
from ptreplay.schemas import ARTIFACTS, CAPTURE_KEY, SCHEMA_KEY, SUMMARY, TRUTH, conform


def truth_rows(n=3):
    return pa.table({
        "t_ns": pa.array(range(n), pa.int64()), "pid": pa.array([1] * n, pa.int32()),
        **{c: pa.array([4096 * i for i in range(n)], pa.int64()) for c in
           ("vmsize_bytes", "vmrss_bytes", "rss_anon_bytes", "rss_file_bytes", "rss_shmem_bytes", "vmpte_bytes")},
    })


def test_every_field_documents_its_unit_or_meaning():
    for art in ARTIFACTS.values():
        for f in art.schema:
            doc = (f.metadata or {}).get(b"doc", b"").decode()
            assert doc, f"{art.tag}.{f.name} has no doc"
            if f.name.endswith("_bytes"):
                assert "bytes" in doc, f"{art.tag}.{f.name}: unit missing"
            if f.name.endswith("_ns"):
                assert "ns" in doc, f"{art.tag}.{f.name}: unit missing"


def test_conform_names_missing_extra_and_mistyped_columns():
    t = truth_rows().drop_columns(["vmpte_bytes"]).append_column("bogus", pa.array([1, 2, 3]))
    t = t.set_column(1, "pid", pa.array(["a", "b", "c"]))
    with pytest.raises(SchemaError) as e:
        conform(t, TRUTH, "x.parquet")
    msg = str(e.value)
    assert "x.parquet" in msg and "truth/1" in msg
    assert "missing column(s) vmpte_bytes" in msg
    assert "extra column(s) bogus" in msg
    assert "pid is string, expected int32" in msg
    assert "\n" not in msg


def test_conform_reorders_and_accepts_dictionary_strings():
    t = truth_rows()
    shuffled = t.select(list(reversed(t.column_names)))
    assert conform(shuffled, TRUTH).column_names == TRUTH.schema.names
    s = pa.table({f.name: pa.array([], f.type) for f in SUMMARY.schema})
    s = s.set_column(3, "policy", pa.array([], pa.string()).dictionary_encode())
    assert conform(s, SUMMARY).schema.field("policy").type == pa.string()


def test_conform_rejects_nulls_in_required_columns():
    t = truth_rows().set_column(0, "t_ns", pa.array([1, None, 3], pa.int64()))
    with pytest.raises(SchemaError, match="t_ns has 1 nulls"):
        conform(t, TRUTH)


def test_written_file_carries_schema_tag_and_capture(tmp_path):
    p = write_table(truth_rows(), tmp_path / "truth.parquet", TRUTH, capture={"host": "h"})
    meta = pq.read_metadata(p).metadata
    assert meta[SCHEMA_KEY] == b"truth/1"
    assert json.loads(meta[CAPTURE_KEY]) == {"host": "h"}
    assert read_capture(p) == {"host": "h"}
    assert read_table(p, TRUTH).num_rows == 3


def test_reading_the_wrong_artifact_is_refused(tmp_path):
    p = write_table(truth_rows(), tmp_path / "t.parquet", TRUTH)
    with pytest.raises(SchemaError, match="holds a truth/1 table, expected summary/2"):
        read_table(p, SUMMARY)


def test_no_overwrite_without_force_and_failed_write_leaves_old_file(tmp_path):
    p = write_table(truth_rows(2), tmp_path / "t.parquet", TRUTH)
    with pytest.raises(OutputExistsError, match="--force"):
        write_table(truth_rows(5), p, TRUTH, force=False)
    with pytest.raises(SchemaError):
        with StreamWriter(p, TRUTH, force=True) as w:
            w.write(truth_rows(4))
            w.write(truth_rows(4).drop_columns(["pid"]))  # bad second batch
    assert read_table(p, TRUTH).num_rows == 2       # the old complete output survives
    assert [x.name for x in tmp_path.iterdir()] == ["t.parquet"]  # no temporary left behind


def test_cli_schema_and_usage_errors_are_one_line():
    ok = subprocess.run([sys.executable, "-m", "ptreplay", "schema", "events"], capture_output=True, text=True)
    assert ok.returncode == 0 and "t_ns" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "ptreplay", "schema", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "unknown artifact 'nope'" in bad.stderr
    bad = subprocess.run([sys.executable, "-m", "ptreplay", "replay"], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and bad.stderr.count("\n") == 1
