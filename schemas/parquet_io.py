"""Parquet I/O for every artifact: conform on write and read, atomic replace, and what ptreplay owns.

Writes go to a hidden temporary file in the destination directory and are
renamed into place only when complete, so an interrupted job leaves either
the previous complete output or none (never a partial file).  The file then
gets the mode a new file would (0666 minus the umask), not mkstemp's 0600.

--force replaces only what ptreplay wrote (:func:`check_writable`): a file
carrying the ``ptreplay.schema`` mark (Parquet key-value metadata, a PNG tEXt
chunk, an HTML <meta>; see `schemas`), or a directory holding nothing else.
A user's file or directory is refused with one line naming it, and so is
every error the file system raises while writing (:func:`write_error`).
"""
from __future__ import annotations

import base64
import errno
import json
import os
import queue
import re
import secrets
import stat
import sys
import threading
import shutil
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ptreplay.schemas.errors import OutputExistsError, PipelineError, SchemaError
from ptreplay.schemas import (CAPTURE_KEY, EVENT_FAULTS, EVENT_OTHERS, EVENTS, HTML_MARK, OTHERS_KEY, PLOT_TAG,
                              SCHEMA_KEY, TRUTH, TRUTH_KEY, Artifact, conform, schema_metadata)
from ptreplay.schemas import events_layout


# Parquet writer options per artifact.  Events are by far the largest: their
# time and address columns delta-encode well (not ip: a few call sites repeat, and plain + zstd
# is 1.7-2.6x smaller on the bundled captures and 2.4x cheaper), only the string columns are worth
# a dictionary, and statistics are kept where readers filter (time, pid, kind).
# Most event columns are constant over long runs (faults have no len, prot, ...):
# pages of up to 256 Ki rows instead of the default 20 Ki make 13x fewer pages,
# each with its own zstd context (measured: 1.25 s -> 1.0 s for 13 M events).
_EVENTS_OPTIONS = dict(
    compression="zstd", use_dictionary=["kind", "comm"], write_statistics=["t_ns", "pid", "kind"],
    column_encoding={"t_ns": "DELTA_BINARY_PACKED", "addr": "DELTA_BINARY_PACKED"},
    max_rows_per_page=1 << 18, data_page_size=4 << 20,
)
# Arrow types the writer is given instead of the artifact's (the same Parquet column):
# normalize makes events.kind as int8 codes into EVENT_KINDS; casting millions of them
# to strings only for the writer to hash them back into a dictionary cost 0.3 s.
_WRITE_TYPES = {"events": {"kind": pa.dictionary(pa.int8(), pa.string())}}


# events/2 faults (EVENT_FAULTS): every column is non-null and set per row; no dictionaries (pid,
# tid, cpu and error_code cost 2-4x more with one), statistics where readers filter.  Measured on
# the 13.1 M faults of the full-size seed capture: 0.25 s of CPU against 0.72 s for events/1.
_FAULTS_OPTIONS = dict(
    compression="zstd", use_dictionary=False, write_statistics=["t_ns", "pid"],
    column_encoding={"t_ns": "DELTA_BINARY_PACKED", "addr": "DELTA_BINARY_PACKED"},
    max_rows_per_page=1 << 18, data_page_size=4 << 20,
)


def writer_options(artifact: Artifact) -> dict:
    if artifact is EVENT_FAULTS:
        return dict(_FAULTS_OPTIONS)
    return dict(_EVENTS_OPTIONS) if artifact.name == "events" else {"compression": "zstd"}


def _for_writer(table: pa.Table, artifact: Artifact, source: str) -> pa.Table:
    """Conform `table` to `artifact` in the Arrow types the Parquet writer is given."""
    return conform(table, artifact, source, physical=_WRITE_TYPES.get(artifact.name))


def _writer_schema(artifact: Artifact, capture: dict | None) -> pa.Schema:
    types = _WRITE_TYPES.get(artifact.name, {})
    schema = pa.schema([f.with_type(types[f.name]) if f.name in types else f for f in artifact.schema])
    return schema.with_metadata(schema_metadata(artifact, capture))


# ----------------------------------------------------------------------------- what ptreplay owns

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TEMPORARY = re.compile(r"^\..+\.\d+\.[^.]+\.tmp$")    # atomic_path's `.NAME.PID.XXXX.tmp`


def mark_of(path: Path) -> str | None:
    """The ``ptreplay.schema`` tag a regular file carries ('events/1', 'plot/1', ...), or None
    when ptreplay did not write it (symbolic links and special files included)."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        with open(path, "rb") as f:
            head = f.read(4096)
            if head[:4] == b"PAR1":
                return _parquet_mark(path)
            if head[:8] == _PNG_SIGNATURE:
                return _png_mark(f)
            if head.lstrip().lower().startswith((b"<!doctype html", b"<html")) and HTML_MARK.encode() in head:
                return PLOT_TAG      # the page's head, within its first 4 KiB
    except OSError:
        pass
    return None


def _parquet_mark(path: Path) -> str | None:
    try:
        tag = (pq.read_metadata(path).metadata or {}).get(SCHEMA_KEY)
    except (OSError, pa.ArrowException):
        return None
    return tag.decode(errors="replace") if tag else None


def _png_mark(f) -> str | None:
    """The SCHEMA_KEY tEXt chunk of a PNG (ptreplay writes it before the image data)."""
    f.seek(len(_PNG_SIGNATURE))
    while True:
        header = f.read(8)
        if len(header) < 8 or header[4:] in (b"IDAT", b"IEND"):
            return None
        length = int.from_bytes(header[:4], "big")
        if header[4:] == b"tEXt" and length < 4096:
            key, _, value = f.read(length).partition(b"\0")
            if key == SCHEMA_KEY:
                return value.decode("latin-1")
            f.seek(4, os.SEEK_CUR)
        else:
            f.seek(length + 4, os.SEEK_CUR)


def foreign_files(path: Path, limit: int | None = None) -> list[str]:
    """What under `path` ptreplay did not write, relative to `path` ([] for a file or tree of ours),
    in name order; the walk stops once `limit` are found.

    A directory is ptreplay's when everything in it is (recursively); its atomic
    writers' temporaries count as ptreplay's, symbolic links never do.
    """
    path = Path(path)
    if path.is_symlink() or not path.is_dir():
        return [] if mark_of(path) else [path.name]
    found: list[str] = []
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError:
        return ["(unreadable)"]
    for entry in entries:
        if limit is not None and len(found) >= limit:
            break
        if entry.is_dir(follow_symlinks=False):
            left = None if limit is None else limit - len(found)
            found += [f"{entry.name}/{name}" for name in foreign_files(Path(entry.path), left)]
        elif entry.is_symlink() or not (_TEMPORARY.match(entry.name) or mark_of(Path(entry.path))):
            found.append(entry.name)
    return found


def check_replaceable(path: Path) -> None:
    """Refuse (OutputExistsError, one line) to replace an existing `path` that ptreplay did not write."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        foreign = foreign_files(path, limit=4)
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise OutputExistsError(f"{path}: is a directory holding files ptreplay did not write ({shown}); "
                                    f"not replaced (choose another -o)")
    elif path.is_symlink():
        raise OutputExistsError(f"{path}: is a symbolic link; not replaced (choose another -o)")
    elif mark_of(path) is None:
        raise OutputExistsError(f"{path}: is a file ptreplay did not write; not replaced (choose another -o)")


def check_writable(path: Path, force: bool) -> None:
    """Refuse to replace an existing output: always when ptreplay did not write it, else unless --force."""
    path = Path(path)
    if not (path.exists() or path.is_symlink()):
        return
    check_replaceable(path)
    if not force:
        raise OutputExistsError(f"{path}: already exists (use --force to replace it)")


def output_dir(path: Path) -> Path:
    """Create the directory output `path` (and its parents); one line when a file is in the way
    or the file system refuses.  Nothing in an existing directory is touched."""
    path = Path(path)
    for p in (path, *path.parents):
        if (p.exists() or p.is_symlink()) and not p.is_dir():     # a file (or a dangling link) in the way
            where = "is a file" if p == path else f"{p} is a file"
            raise OutputExistsError(f"{path}: {where}, expected a directory (choose another -o)")
        if p.is_dir():
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(path, e) from None
    return path


def remove_output(path: Path) -> None:
    """Delete an output of ptreplay's (a file or a tree); the caller has checked it is one."""
    path = Path(path)
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    except OSError as e:
        raise write_error(path, e) from None


def write_error(path: Path, e: OSError) -> PipelineError:
    """One line for an OSError met writing `path`: permission, read-only file system, no space ..."""
    m = re.search(r"\[errno (\d+)\]", str(e), re.I)   # pyarrow's: "Error writing bytes ... [errno 28] ..."
    code = e.errno or (int(m.group(1)) if m else None)
    reason = os.strerror(code) if code else e.strerror or _short(e)
    return PipelineError(f"{path}: cannot write ({reason})")


def _umask() -> int:
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)   # no /proc: read it by setting it (and back)
    os.umask(mask)
    return mask


def publish(tmp: Path, path: Path) -> None:
    """Rename the complete temporary `tmp` onto `path`, with a new file's (or directory's) mode.

    A directory in the way (ptreplay's own, checked again now) is moved aside first
    and deleted after the rename; a user's file that appeared meanwhile is refused.
    An interrupt between the two renames puts the old directory back (`_put_back`).
    """
    tmp, path = Path(tmp), Path(path)
    aside = None
    landed = False
    try:
        os.chmod(tmp, (0o777 if tmp.is_dir() else 0o666) & ~_umask())
        if path.exists() or path.is_symlink():
            check_replaceable(path)
        if path.is_dir() and not path.is_symlink():
            # named before the rename, as atomic_path names its temporary: once `path` is
            # moved, whatever interrupts this block knows where it went
            aside = _temporary_name(path, ASIDE_SUFFIX)
            os.rename(path, aside)
        os.replace(tmp, path)
        landed = True
    except OSError as e:
        raise write_error(path, e) from None
    finally:
        if aside is not None:
            if landed:
                shutil.rmtree(aside, ignore_errors=True)
            else:
                _put_back(aside, path)


ASIDE_SUFFIX = ".old.tmp"      # an output moved aside by publish (a temporary of its path)


def _temporary_name(path: Path, suffix: str = ".tmp") -> Path:
    """A fresh name for a temporary of `path`: `.NAME.PID.XXXXXXXX<suffix>` beside it (the
    pattern remove_stale_temporaries knows)."""
    return path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{suffix}"


def _put_back(aside: Path, path: Path) -> None:
    """An output moved aside whose replacement never landed, back at `path` (when it is free)."""
    if aside.exists() and not (path.exists() or path.is_symlink()):
        try:
            os.replace(aside, path)
        except OSError:
            pass


@contextmanager
def atomic_path(path: Path, force: bool = True):
    """Yield a temporary path beside `path`; rename it onto `path` on success.

    On any exception (including KeyboardInterrupt) the temporary is removed
    and an existing `path` is left untouched.  An existing `path` is replaced
    only when ptreplay wrote it, and only with `force` (:func:`check_writable`).
    """
    path = Path(path)
    try:
        remove_stale_temporaries(path)   # first: an old output it puts back is checked as any other
    except OSError as e:
        raise write_error(path, e) from None
    check_writable(path, force)
    output_dir(path.parent)
    tmp = None
    try:
        try:
            for _ in range(100):
                # named before it exists: an interrupt (SIGINT, SIGTERM) in any bytecode after the
                # open below leaves `tmp` set, and the file is removed.  tempfile.mkstemp made the
                # file before returning its name; an interrupt raised as its open() returned (the
                # main thread waiting for the GIL) left the file behind.
                tmp = _temporary_name(path)
                try:
                    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
                    break
                except FileExistsError:      # not ours: never removed
                    tmp = None
            if tmp is None:
                raise FileExistsError(errno.EEXIST, "no free temporary name beside it", str(path))
        except OSError as e:
            raise write_error(path, e) from None
        yield tmp
        publish(tmp, path)
    except BaseException:
        if tmp is not None:
            try:                   # it may not exist (the open failed): never mask the error
                _remove(tmp)
            except OSError:
                pass
        raise


def remove_stale_temporaries(path: Path) -> None:
    """Delete temporaries of `path` left by a killed writer (SIGKILL cannot clean up).

    Temporaries are named `.NAME.PID.XXXX.tmp`; one whose PID is no longer
    running is stale.  A live writer's temporary is left alone.  A stale old output that
    publish moved aside (`.NAME.PID.XXXX.old.tmp`) goes back to `path` if nothing is there.
    """
    for tmp in Path(path).parent.glob(f".{Path(path).name}.*.tmp"):
        parts = tmp.name[len(Path(path).name) + 2:].split(".")
        if parts and parts[0].isdigit() and not Path(f"/proc/{parts[0]}").exists():
            if tmp.name.endswith(ASIDE_SUFFIX):
                _put_back(tmp, Path(path))   # killed between publish's renames: the old output
            _remove(tmp)


def _remove(tmp: Path) -> None:
    """A temporary, a folder or a file (already gone: nothing to do)."""
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
        try:
            pq.write_table(table, tmp, row_group_size=ROW_GROUP_ROWS, **writer_options(artifact))
        except OSError as e:
            raise write_error(path, e) from None
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
        try:     # an interrupt before __enter__ returns skips __exit__: drop the temporary here
            self._tmp = self._ctx.__enter__()
            schema = _writer_schema(self.artifact, self.capture)
            try:
                self._writer = pq.ParquetWriter(self._tmp, schema, **writer_options(self.artifact))
            except OSError as e:
                raise write_error(self.path, e) from None
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
            # written: its buffers may go back to the reader's pool while this waits for the next
            del table

    def write(self, table: pa.Table) -> None:
        if self._error is not None:
            raise self._failure()
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

    def set_capture(self, capture: dict, truth: pa.Table | None = None) -> None:
        """Capture metadata known only at the end of a stream, and the kernel truth recorded with
        the capture (TRUTH_KEY); stored when the file is closed."""
        self._late_meta = {CAPTURE_KEY.decode(): json.dumps(capture, sort_keys=True)}
        if truth is not None:
            self._late_meta[TRUTH_KEY.decode()] = encode_table(truth, TRUTH, f"{self.path} (truth)")

    def _failure(self) -> BaseException:
        e = self._error
        return write_error(self.path, e) if isinstance(e, OSError) else e

    def __exit__(self, typ, exc, tb):
        try:
            if typ is None:
                self._flush()
            self._queue.put(None)
            self._thread.join()
        except BaseException as e:  # interrupted while the last groups are written: drop the temporary
            self._ctx.__exit__(type(e), e, e.__traceback__)
            raise
        try:
            if getattr(self, "_late_meta", None) is not None and self._error is None:
                self._writer.add_key_value_metadata(self._late_meta)
            self._writer.close()
        except BaseException as e:
            self._error = self._error or e
        if typ is None and self._error is not None:
            error = self._failure()
            self._ctx.__exit__(type(error), error, None)  # drops the temporary
            raise error
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
    """Read an artifact, checking its schema tag and its columns (events: events/1 and events/2 files
    alike give the EVENTS table)."""
    path = Path(path)
    pf = open_artifact(path, artifact)
    if artifact is EVENTS and _tag(pf) == EVENT_FAULTS.tag:
        table = pa.Table.from_batches(list(events_batches(path, pf=pf)), schema=events_layout.JOINED)
    else:
        table = pf.read()
    table = conform(table, artifact, str(path))
    if columns:
        table = table.select(columns)
    return table


def _tag(pf: pq.ParquetFile) -> str:
    return (pf.metadata.metadata or {}).get(SCHEMA_KEY, b"").decode(errors="replace")


def is_events2(pf: pq.ParquetFile) -> bool:
    """Whether an opened events file (`open_artifact`) is in the events/2 layout."""
    return _tag(pf) == EVENT_FAULTS.tag


def events_batches(path: Path, batch_rows: int = 1 << 18, pf: pq.ParquetFile | None = None):
    """The events of an events/2 file as record batches of about `batch_rows` rows, in the
    events_layout.JOINED schema (EVENTS columns, kind and comm dictionary-encoded); both parts
    are conformed (EVENT_FAULTS, EVENT_OTHERS)."""
    path = Path(path)
    pf = pf or open_artifact(path, EVENTS)
    conform(pf.schema_arrow.empty_table(), EVENT_FAULTS, str(path))
    others = events_other(path, pf)
    batches = pf.iter_batches(batch_size=batch_rows) if pf.metadata.num_rows else iter(())
    try:
        yield from events_layout.join(None, others, 0, batch_rows, fault_batches=batches)
    except ValueError as e:
        raise SchemaError(f"{path}: {e}") from None


def events_other(path: Path, pf: pq.ParquetFile | None = None) -> pa.Table:
    """The other rows (EVENT_OTHERS) an events/2 file keeps in its key-value metadata."""
    pf = pf or open_artifact(Path(path), EVENTS)
    raw = (pf.metadata.metadata or {}).get(OTHERS_KEY)
    if raw is None:
        raise SchemaError(f"{path}: an {EVENT_FAULTS.tag} file without its {OTHERS_KEY.decode()} metadata")
    return decode_table(raw, EVENT_OTHERS, f"{path}: {OTHERS_KEY.decode()}")


def events2_time_range(pf: pq.ParquetFile, path: Path) -> tuple[int | None, int | None]:
    """(first, last) t_ns of an events/2 file: the fault table's row-group statistics (its t_ns
    column when they are missing) and the other rows' times; (None, None) when it has no rows."""
    md = pf.metadata
    j = pf.schema_arrow.get_field_index("t_ns")
    stats = [md.row_group(i).column(j).statistics for i in range(md.num_row_groups)] if j >= 0 else []
    if stats and all(st is not None and st.has_min_max for st in stats):
        times = [int(st.min) for st in stats] + [int(st.max) for st in stats]
    else:
        t = pf.read(columns=["t_ns"]).column("t_ns").to_numpy()
        times = [int(t.min()), int(t.max())] if len(t) else []
    others = events_other(path, pf).column("t_ns").to_numpy()
    if len(others):
        times += [int(others.min()), int(others.max())]
    return (min(times), max(times)) if times else (None, None)


class EventsWriter:
    """Write an events file in the events/2 layout, batch by batch, atomically on close (as
    StreamWriter): faults go to the Parquet table as they come, the other rows are kept and
    stored in the key-value metadata (OTHERS_KEY) when the file is closed."""

    def __init__(self, path: Path, force: bool = True):
        self.path = Path(path)
        self._faults = StreamWriter(path, EVENT_FAULTS, capture=None, force=force)
        self._others: list[pa.Table] = []
        self.rows = 0

    def __enter__(self):
        self._faults.__enter__()
        return self

    def write(self, batch) -> None:
        """One run of events: an `events_layout.EventParts`, or an events table (split here)."""
        parts = batch if isinstance(batch, events_layout.EventParts) else events_layout.split(batch)
        if parts.others.num_rows:
            others = events_layout.shift_rows(parts.others, self.rows)
            self._others.append(conform(others, EVENT_OTHERS, str(self.path)))
        if parts.faults.num_rows:
            self._faults.write(parts.faults)
        self.rows += parts.num_rows

    def set_capture(self, capture: dict, truth: pa.Table | None = None) -> None:
        self._faults.set_capture(capture, truth)

    def __exit__(self, typ, exc, tb):
        if typ is None:
            try:
                others = (pa.concat_tables(self._others) if self._others
                          else EVENT_OTHERS.schema.empty_table())
                text = encode_table(others, EVENT_OTHERS, f"{self.path} (others)")
                meta = getattr(self._faults, "_late_meta", None) or {}
                meta[OTHERS_KEY.decode()] = text
                self._faults._late_meta = meta
            except BaseException:
                self._faults.__exit__(*sys.exc_info())
                raise
        return self._faults.__exit__(typ, exc, tb)


def read_capture(path: Path) -> dict:
    """The capture metadata stored in a Parquet file's key-value metadata ({} if none)."""
    meta = pq.read_metadata(path).metadata or {}
    raw = meta.get(CAPTURE_KEY)
    return json.loads(raw) if raw else {}


def encode_table(table: pa.Table, artifact: Artifact, source: str) -> str:
    """`table`, conformed to `artifact`, as text for key-value metadata: base64 of a zstd Arrow IPC stream."""
    table = conform(table, artifact, source).combine_chunks()    # one batch: zstd per buffer per batch
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression="zstd")) as w:
        w.write_table(table)
    return base64.b64encode(sink.getvalue().to_pybytes()).decode("ascii")


def decode_table(text: bytes | str, artifact: Artifact, source: str) -> pa.Table:
    """The inverse of :func:`encode_table`; SchemaError naming `source` when it is not one."""
    try:
        with pa.ipc.open_stream(pa.py_buffer(base64.b64decode(text, validate=True))) as r:
            table = r.read_all()
    except (ValueError, pa.ArrowException) as e:
        raise SchemaError(f"{source}: not an encoded {artifact.tag} table ({_short(e)})") from None
    return conform(table, artifact, source)


def read_truth(path: Path) -> pa.Table | None:
    """The kernel truth an events file carries (TRUTH_KEY: ingested from a `ptreplay record`
    directory), or None when it carries none."""
    path = Path(path)
    try:
        raw = (pq.read_metadata(path).metadata or {}).get(TRUTH_KEY)
    except (OSError, pa.ArrowInvalid) as e:
        raise SchemaError(f"{path}: not a readable Parquet file ({_short(e)})") from None
    return None if raw is None else decode_table(raw, TRUTH, f"{path}: {TRUTH_KEY.decode()}")


def _short(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__
