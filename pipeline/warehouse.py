"""DuckDB over the pipeline's Parquet outputs: `connect(PATH)` -> connection with views.

Base views (one per artifact, over every matching file below PATH, so one
output directory and a Hive-partitioned fleet tree ``trace_id=.../`` read
alike): ``events``, ``truth``, ``timeseries``, ``summary``, ``effects``,
``occupancy``, ``attribution``, ``census``, ``census_vmas`` (`ptreplay census`: files named
census.parquet and census_vmas.parquet), ``metadata``, ``_fleet_records`` (where each batch
partition's task ran, read by the ``fleet_runs`` view).  ``events`` and ``truth`` rows
take their trace_id from their file's capture metadata (the one the summary
rows carry), else from the ``trace_id=X`` folder, else the folder's name.
Derived views come from ``schemas/sql/NN_topic.sql`` (one topic a file, a
comment on every column), loaded in file-name order.

Every query the CLI runs goes through :func:`execute`, which binds parameters
(never formats them into SQL) and accepts only read queries.
"""
from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

from ptreplay.schemas.errors import PipelineError, SchemaError, UsageError
from ptreplay.schemas import ARTIFACTS, CAPTURE, EVENT_DEFAULTS, EVENT_FAULTS, EVENTS
from ptreplay.schemas.parquet_io import events_other, is_events2, open_artifact

SQL_DIR = Path(__file__).resolve().parent.parent / "schemas" / "sql"

_DUCK_TYPES = {
    pa.int64(): "BIGINT", pa.int32(): "INTEGER", pa.uint64(): "UBIGINT", pa.string(): "VARCHAR",
    pa.bool_(): "BOOLEAN", pa.float64(): "DOUBLE", pa.list_(pa.int32()): "INTEGER[]",
}
# Artifacts whose files carry no trace_id column: it is the file's capture metadata's
# (ptreplay.capture, as in the summary rows made from it), else derived from the path.
_PATH_TRACE_ID = ("events", "truth")


def connect(path: str | Path, database: str = ":memory:"):
    """A DuckDB connection with the base and derived views over `path`."""
    import duckdb
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"{path}: no such file or directory")
    con = duckdb.connect(database)
    try:   # binding a view reads its files' schemas: a file that is not one of ours fails here
        events2 = _register_events2(con, path)
        for name in ("events", "truth", "timeseries", "summary", "effects", "occupancy", "attribution", "census",
                     "census_vmas"):
            con.execute(f"CREATE OR REPLACE VIEW {name} AS {_base_select(path, name, events2)}")
        con.execute(f"CREATE OR REPLACE VIEW metadata AS {_metadata_select(path)}")
        con.execute(f"CREATE OR REPLACE VIEW _fleet_records AS {_fleet_select(path)}")
    except duckdb.Error as e:
        raise SchemaError(f"{path}: cannot read the outputs below it ({str(e).splitlines()[0]})") from None
    for sql_file in sorted(SQL_DIR.glob("*.sql")):
        con.execute(sql_file.read_text())
    return con


def files_of(path: Path, name: str) -> list[str]:
    """Every `<name>.parquet` at or below `path` (a file path is taken as is)."""
    if path.is_file():
        return [str(path)] if path.name == f"{name}.parquet" else []
    return sorted(str(p) for p in path.rglob(f"{name}.parquet") if not p.name.startswith("."))


def _register_events2(con, path: Path) -> list[str]:
    """The events files in the events/2 layout below `path`; their other rows (key-value
    metadata) registered as the Arrow table `_events_other` (with each row's `filename`)."""
    files = [f for f in files_of(path, "events") if is_events2(open_artifact(Path(f), EVENTS))]
    if files:
        parts = [events_other(Path(f)) for f in files]
        parts = [t.append_column("filename", pa.array([f] * t.num_rows, pa.string())) for t, f in zip(parts, files)]
        con.register("_events_other", pa.concat_tables(parts))
    return files


def _events_source(files: list[str], events2: list[str]) -> str:
    """The rows of every events file, in events/1 and events/2 layouts alike, with `filename`."""
    v1 = [f for f in files if f not in events2]
    selects = []
    if events2:
        narrow = EVENT_FAULTS.schema.names
        cols = ", ".join(f'"{f.name}"' if f.name in narrow else "'fault' AS kind" if f.name == "kind" else
                         f'CAST({_sql_value(EVENT_DEFAULTS[f.name])} AS {_DUCK_TYPES[f.type]}) AS "{f.name}"'
                         for f in EVENTS.schema)
        selects.append(f"SELECT {cols}, filename FROM read_parquet({_sql_list(events2)}, filename = true)")
        plain = ", ".join(f'"{n}"' for n in EVENTS.schema.names)
        selects.append(f"SELECT {plain}, filename FROM _events_other")
    if v1:
        selects.append(f"SELECT * FROM read_parquet({_sql_list(v1)}, union_by_name = true, filename = true)")
    return "(" + " UNION ALL BY NAME ".join(selects) + ")"


def _sql_value(v) -> str:
    return "NULL" if v is None else ("true" if v else "false") if isinstance(v, bool) else str(int(v))


def _base_select(path: Path, name: str, events2: list[str] = ()) -> str:
    schema = ARTIFACTS[name].schema
    files = files_of(path, name)
    cols = ", ".join(f'"{f.name}"' for f in schema)
    if not files:
        typed = ", ".join(f'CAST(NULL AS {_DUCK_TYPES[f.type]}) AS "{f.name}"' for f in schema)
        extra = ", CAST(NULL AS VARCHAR) AS trace_id" if name in _PATH_TRACE_ID else ""
        return f"SELECT {typed}{extra} WHERE false"
    source = f"read_parquet({_sql_list(files)}, union_by_name = true, filename = true)"
    if name == "events":
        source = _events_source(files, list(events2))
    if name in _PATH_TRACE_ID:
        cols = ", ".join(f'd."{f.name}"' for f in schema)
        return (f"SELECT {cols}, coalesce(nullif(m.trace_id, ''), {_trace_id_from_filename('d.filename')}) "
                f"AS trace_id FROM {source} d LEFT JOIN ({_capture_trace_ids(files)}) m ON m.file_name = d.filename")
    return f"SELECT {cols} FROM {source}"


def _capture_trace_ids(files: list[str]) -> str:
    """(file_name, trace_id) of each file's ptreplay.capture metadata."""
    return ("SELECT file_name, json_extract_string(decode(value), '$.trace_id') AS trace_id "
            f"FROM parquet_kv_metadata({_sql_list(files)}) WHERE decode(key) = 'ptreplay.capture'")


def _trace_id_from_filename(column: str = "filename") -> str:
    """trace_id=X partition folder if any, else the folder holding the file."""
    return (f"coalesce(nullif(regexp_extract({column}, 'trace_id=([^/]+)', 1), ''), "
            f"regexp_extract({column}, '([^/]+)/[^/]+$', 1))")


def _metadata_select(path: Path) -> str:
    """One row per capture: the `capture` schema's fields from the Parquet key-value metadata."""
    files = files_of(path, "summary") + files_of(path, "events")
    fields = [f for f in CAPTURE.schema]
    if not files:
        typed = ", ".join(f'CAST(NULL AS {_DUCK_TYPES[f.type]}) AS "{f.name}"' for f in fields)
        return f"SELECT {typed} WHERE false"
    cols = ", ".join(
        f"CAST(json_extract_string(v, '$.{f.name}') AS {_DUCK_TYPES[f.type]}) AS \"{f.name}\"" for f in fields)
    return (f"SELECT DISTINCT ON (trace_id) * FROM (SELECT {cols} FROM ("
            f"SELECT decode(value) AS v FROM parquet_kv_metadata({_sql_list(files)}) "
            f"WHERE decode(key) = 'ptreplay.capture')) ORDER BY trace_id")


FLEET_KEY = "ptreplay.fleet"   # pipeline.fleet.batch: a census partition's record of its task


def _fleet_select(path: Path) -> str:
    """(file_name, fleet JSON) per batch partition: where its task ran and what it read (the
    capture metadata's ``fleet`` in summary files, ``ptreplay.fleet`` in census files)."""
    parts = []
    summaries, censuses = files_of(path, "summary"), files_of(path, "census")
    if summaries:
        parts.append("SELECT file_name, CASE WHEN decode(key) = 'ptreplay.capture' THEN "   # CASE: parse only
                     "json_extract(decode(value), '$.fleet')::VARCHAR END AS fleet "        # the JSON values
                     f"FROM parquet_kv_metadata({_sql_list(summaries)})")
    if censuses:
        parts.append(f"SELECT file_name, CASE WHEN decode(key) = '{FLEET_KEY}' THEN decode(value) END AS fleet "
                     f"FROM parquet_kv_metadata({_sql_list(censuses)})")
    if not parts:
        return "SELECT CAST(NULL AS VARCHAR) AS file_name, CAST(NULL AS VARCHAR) AS fleet WHERE false"
    return f"SELECT * FROM ({' UNION ALL '.join(parts)}) WHERE fleet IS NOT NULL AND fleet <> 'null'"


def _sql_list(files: list[str]) -> str:
    return "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"


_READ_ONLY = re.compile(r"^\s*(\(\s*)*(select|with|from|values|describe|summarize|show|explain|table)\b", re.I)


def execute(con, sql: str, params: dict | None = None) -> pa.Table:
    """Run one read query with bound named parameters ($name) and return an Arrow table.

    Anything but a single SELECT-like statement is refused: the views are for
    reading, and the CLI must not become a way to write files (COPY, ATTACH,
    INSTALL ...) from a command line someone else composed.
    """
    stripped = sql.strip().rstrip(";")
    if not _READ_ONLY.match(stripped) or ";" in _strip_strings(stripped):
        raise UsageError("sql: only a single read query (SELECT/WITH/FROM/VALUES/DESCRIBE) is allowed")
    import duckdb
    try:
        rel = con.sql(stripped, params=params or None)
        return rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()
    except duckdb.Error as e:
        raise UsageError(f"sql: {str(e).splitlines()[0]}") from None


def _strip_strings(sql: str) -> str:
    return re.sub(r"'(?:[^']|'')*'", "''", sql)
