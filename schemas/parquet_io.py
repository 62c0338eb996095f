"""Parquet I/O for every artifact: conform on write and read, atomic replace.

Writes go to a hidden temporary file in the destination directory and are
renamed into place only when complete, so an interrupted job leaves either
the previous complete output or none (never a partial file).
"""
from __future__ import annotations

import json
import os
import queue
import sys
import threading
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ptreplay.schemas.errors import OutputExistsError, SchemaError
from ptreplay.schemas import CAPTURE_KEY, SCHEMA_KEY, Artifact, conform, schema_metadata


# Parquet writer options per artifact.  Events are by far the largest: their
# time and address columns delta-encode well, only the string columns are worth
# a dictionary, and statistics are kept where readers filter (time, pid, kind).
# Most event columns are constant over long runs (faults have no len, prot, ...):
# pages of up to 256 Ki rows instead of the default 20 Ki make 13x fewer pages,
# each with its own zstd context (measured: 1.25 s -> 1.0 s for 13 M events).
_EVENTS_OPTIONS = dict(
    compression="zstd", use_dictionary=["kind", "comm"], write_statistics=["t_ns", "pid", "kind"],
    column_encoding={"t_ns": "DELTA_BINARY_PACKED", "addr": "DELTA_BINARY_PACKED", "ip": "DELTA_BINARY_PACKED"},
    max_rows_per_page=1 << 18, data_page_size=4 << 20,
)
# Arrow types the writer is given instead of the artifact's (the same Parquet column):
# normalize makes events.kind as int8 codes into EVENT_KINDS; casting millions of them
# to strings only for the writer to hash them back into a dictionary cost 0.3 s.
_WRITE_TYPES = {"events": {"kind": pa.dictionary(pa.int8(), pa.string())}}


def writer_options(artifact: Artifact) -> dict:
    return dict(_EVENTS_OPTIONS) if artifact.name == "events" else {"compression": "zstd"}


def _for_writer(table: pa.Table, artifact: Artifact, source: str) -> pa.Table:
    """Conform `table` to `artifact` in the Arrow types the Parquet writer is given."""
    return conform(table, artifact, source, physical=_WRITE_TYPES.get(artifact.name))


def _writer_schema(artifact: Artifact, capture: dict | None) -> pa.Schema:
    types = _WRITE_TYPES.get(artifact.name, {})
    schema = pa.schema([f.with_type(types[f.name]) if f.name in types else f for f in artifact.schema])
    return schema.with_metadata(schema_metadata(artifact, capture))


def check_writable(path: Path, force: bool) -> None:
    """Refuse to overwrite an existing output unless --force."""
    if path.exists() and not force:
        raise OutputExistsError(f"{path}: already exists (use --force to replace it)")


@contextmanager
def atomic_path(path: Path, force: bool = True):
    """Yield a temporary path beside `path`; rename it onto `path` on success.

    On any exception (including KeyboardInterrupt) the temporary is removed
    and an existing `path` is left untouched.
    """
    path = Path(path)
    check_writable(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if path.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def remove_stale_temporaries(path: Path) -> None:
    """Delete temporaries of `path` left by a killed writer (SIGKILL cannot clean up).

    Temporaries are named `.NAME.PID.XXXX.tmp`; one whose PID is no longer
    running is stale.  A live writer's temporary is left alone.
    """
    for tmp in Path(path).parent.glob(f".{Path(path).name}.*.tmp"):
        parts = tmp.name[len(Path(path).name) + 2:].split(".")
        if parts and parts[0].isdigit() and not Path(f"/proc/{parts[0]}").exists():
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)


def write_table(table: pa.Table, path: Path, artifact: Artifact, capture: dict | None = None,
                force: bool = True, source: str | None = None, extra: dict[str, dict] | None = None) -> Path:
    """Conform `table` to `artifact` and write it atomically to `path`.

    `extra` adds key-value metadata of the writer's own (name -> JSON-able dict),
    e.g. the replay engine's options and counts of what it could not see.
    """
    table = _for_writer(table, artifact, source or str(path))
    meta = schema_metadata(artifact, capture)
    for key, value in (extra or {}).items():
        meta[key.encode()] = json.dumps(value, sort_keys=True).encode()
    table = table.replace_schema_metadata(meta)
    with atomic_path(path, force) as tmp:
        pq.write_table(table, tmp, row_group_size=ROW_GROUP_ROWS, **writer_options(artifact))
    return Path(path)


ROW_GROUP_ROWS = 1 << 20


class StreamWriter:
    """Write an artifact batch by batch to `path`, atomically on close().

    Used as a context manager; an exception inside the block discards the
    temporary file and leaves `path` as it was.  Batches are conformed on the
    caller's thread, gathered (without copying) into row groups of about
    ROW_GROUP_ROWS and encoded on a background thread (Parquet encoding and
    compression release the GIL), so producing the next batches overlaps writing
    this row group; at most two row groups wait.
    """

    def __init__(self, path: Path, artifact: Artifact, capture: dict | None = None, force: bool = True):
        self.path = Path(path)
        self.artifact = artifact
        self.capture = capture
        self._ctx = atomic_path(self.path, force)
        self.rows = 0

    def __enter__(self):
        self._tmp = self._ctx.__enter__()
        try:     # an interrupt before __enter__ returns skips __exit__: drop the temporary here
            schema = _writer_schema(self.artifact, self.capture)
            self._writer = pq.ParquetWriter(self._tmp, schema, **writer_options(self.artifact))
            self._queue: queue.Queue = queue.Queue(maxsize=2)
            self._group: list[pa.Table] = []
            self._group_rows = 0
            self._error: BaseException | None = None
            self._thread = threading.Thread(target=self._drain, name="parquet-writer", daemon=True)
            self._thread.start()
        except BaseException:
            if getattr(self, "_writer", None) is not None:
                self._writer.close()
            self._ctx.__exit__(*sys.exc_info())
            raise
        return self

    def _drain(self) -> None:
        while True:
            table = self._queue.get()
            if table is None:
                return
            if self._error is None:
                try:
                    self._writer.write_table(table, row_group_size=max(ROW_GROUP_ROWS, table.num_rows))
                except BaseException as e:  # reported on the caller's thread
                    self._error = e

    def write(self, table: pa.Table) -> None:
        if self._error is not None:
            raise self._error
        table = _for_writer(table, self.artifact, str(self.path))
        self._group.append(table)
        self._group_rows += table.num_rows
        self.rows += table.num_rows
        if self._group_rows >= ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._group:
            self._queue.put(pa.concat_tables(self._group))
            self._group, self._group_rows = [], 0

    def set_capture(self, capture: dict) -> None:
        """Capture metadata known only at the end of a stream; stored when the file is closed."""
        self._late_capture = capture

    def __exit__(self, typ, exc, tb):
        if typ is None:
            self._flush()
        self._queue.put(None)
        self._thread.join()
        try:
            if getattr(self, "_late_capture", None) is not None and self._error is None:
                self._writer.add_key_value_metadata(
                    {CAPTURE_KEY.decode(): json.dumps(self._late_capture, sort_keys=True)})
            self._writer.close()
        except BaseException as e:
            self._error = self._error or e
        if typ is None and self._error is not None:
            self._ctx.__exit__(type(self._error), self._error, None)  # drops the temporary
            raise self._error
        return self._ctx.__exit__(typ, exc, tb)


def open_artifact(path: Path, artifact: Artifact) -> pq.ParquetFile:
    """Open a Parquet file for reading `artifact`: readable, and not tagged as another artifact."""
    path = Path(path)
    try:
        pf = pq.ParquetFile(path)
    except (OSError, pa.ArrowInvalid) as e:
        raise SchemaError(f"{path}: not a readable Parquet file ({_short(e)})") from None
    tag = (pf.metadata.metadata or {}).get(SCHEMA_KEY, b"").decode()
    if tag and tag.split("/")[0] != artifact.name:
        raise SchemaError(f"{path}: holds a {tag} table, expected {artifact.tag}")
    return pf


def read_table(path: Path, artifact: Artifact, columns: list[str] | None = None) -> pa.Table:
    """Read an artifact, checking its schema tag and its columns."""
    path = Path(path)
    table = open_artifact(path, artifact).read()
    table = conform(table, artifact, str(path))
    if columns:
        table = table.select(columns)
    return table


def read_capture(path: Path) -> dict:
    """The capture metadata stored in a Parquet file's key-value metadata ({} if none)."""
    meta = pq.read_metadata(path).metadata or {}
    raw = meta.get(CAPTURE_KEY)
    return json.loads(raw) if raw else {}


def _short(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__
