"""Ingestion: captures (any supported format) -> one time-ordered `events` Parquet file.

    capture file(s) --formats.detect--> reader.read --raw batches--> Normalizer
        --events batches--> merge by time --> EventsWriter (atomic) -> events.parquet (events/2)

A `ptreplay record` directory is accepted as an input: its perf.data is read
and its capture.parquet sidecar supplies the machine metadata.  The capture
metadata travels in the Parquet key-value metadata (see `schemas`), and so
does the directory's truth.parquet (the kernel's own /proc numbers, key
``ptreplay.truth``), which `ptreplay replay` writes out beside its outputs.
"""
from __future__ import annotations

import json

import re
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa

from ptreplay.pipeline.events.arrow_np import dictionary, strings, to_arrow, to_numpy
from ptreplay.pipeline.events.host_gate import HostGate, host_info
from ptreplay.schemas.errors import TraceFormatError
from ptreplay.pipeline.formats import detect, open_binary
from ptreplay.pipeline.events.normalize import BATCH_SCHEMA, Normalizer
from ptreplay.schemas.parquet_io import EventsWriter, check_writable, read_table
from ptreplay.schemas.events_layout import EventParts
from ptreplay.pipeline.progress import progress, warn
from ptreplay.schemas import CAPTURE, EVENT_KINDS, EVENTS, TRUTH

X86_64 = ("x86_64", "amd64", "x86-64")
KIND_VALUES = strings(len(EVENT_KINDS), np.arange(len(EVENT_KINDS)), list(EVENT_KINDS))


def resolve_input(path: Path) -> tuple[Path, dict]:
    """The capture file to read for `path` and any sidecar metadata next to it.

    A `ptreplay record` directory (perf.data + capture.parquet) resolves to its
    perf.data with the sidecar's row as metadata.
    """
    path = Path(path)
    if not path.exists():
        raise TraceFormatError(f"{path}: no such file or directory")
    sidecar = {}
    if path.is_dir() and (path / "perf.data").exists():
        cap = path / "capture.parquet"
        if cap.exists():
            sidecar = read_table(cap, CAPTURE).to_pylist()[0]
        sidecar.setdefault("trace_id", trace_id_of(path))
        return path / "perf.data", sidecar
    return path, {"trace_id": trace_id_of(path)}


_SUFFIXES = (".gz", ".xz", ".zst", ".bz2", ".data", ".txt")


def trace_id_of(path: Path | str) -> str:
    """A capture's identifier, safe as a partition name: the record directory's name,
    or the file name without compression and .data/.txt suffixes
    ('seed-64.ftrace.txt.zst' -> 'seed-64.ftrace')."""
    name = str(path).rstrip("/").rsplit("/", 1)[-1]
    while True:
        suffix = next((x for x in _SUFFIXES if name.endswith(x) and len(name) > len(x)), None)
        if suffix is None:
            break
        name = name[: -len(suffix)]
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name) or "trace"


def read_events(path: Path, allow_sampled: bool = False, parts: bool = False
                ) -> tuple[Iterator[pa.Table | EventParts], dict]:
    """Decode and normalize one capture; returns (events batches, capture metadata).

    The metadata dict is completed when the iterator is exhausted (lost-event
    counts and normalization statistics are known only then).  `parts`: batches in
    the events/2 layout (`EventParts`), except for the events of a capture with a start
    snapshot up to the snapshot's time (merged with it as events tables).
    """
    file, meta = resolve_input(path)
    reader = detect(file)
    host = host_info(Path(path))
    # perf.data: numpy columns, the fault rows apart for the events/2 layout (Normalizer.push_parts)
    kwargs = {"allow_sampled": allow_sampled, "columns": True, "split": parts} if reader.NAME == "perf.data" else {}
    capture = reader.read(file, open_binary, **kwargs)
    meta = {**_capture_defaults(), **meta}
    meta["source_format"] = reader.NAME
    levels = int(meta.get("paging_levels") or 4)
    ends = fault_ends(Path(path))
    norm = Normalizer(paging_levels=levels, fault_end_item=ends["item"] if ends else None,
                      whole_host=host is not None, reader_meta=capture.meta)
    if ends:                       # the replay's THP faults without an end fell back to 4 KiB
        meta["fault_ends"] = dict(ends)

    start = StartStates(Path(path))
    gate = None if host is None else HostGate(host, start.t0, record_truth(Path(path)))
    if gate is not None:           # the gate may leave out snapshotted processes: the filters
        start.keep_only(gate.snapshot_pids)
    admit = (lambda ev: ev) if gate is None else gate.filter
    push, finish = (norm.push_parts, norm.finish_parts) if parts else (norm.push, norm.finish)

    def batches() -> Iterator[pa.Table | EventParts]:
        first = last = None
        for raw in norm.batches(capture.batches):
            ev = admit(start.drop(push(raw)))
            if ev.num_rows:
                lo, hi = _span(ev)
                first = lo if first is None else first
                last = hi
                yield ev
        tail = admit(start.drop(finish()))
        if tail.num_rows:
            last = max(last or 0, _span(tail)[1])
            yield tail
        _merge_reader_meta(meta, capture.meta, file)
        meta["normalize"] = norm.stats.as_dict()
        if start.table is not None:
            meta["snapshot"] = start.report()
        if gate is not None:
            meta["host_recording"] = gate.report()     # ("host" is the machine's name)
        if start.t_end is not None:
            meta["trace_end"] = start.end_report()
        meta["start_ns"] = int(first or 0)
        meta["end_ns"] = int(last or 0)
        if norm.stats.fault_rows == 0:
            raise TraceFormatError(
                f"{file}: no page-fault events found: record exceptions:page_fault_user and "
                f"exceptions:page_fault_kernel (use `ptreplay record`)")

    if start.table is None:
        return batches(), meta
    snapshot = start.batch()
    first_t = int(to_numpy(snapshot.column("t_ns")).min()) if snapshot.num_rows else None

    t_snap = int(to_numpy(snapshot.column("t_ns")).max()) if snapshot.num_rows else None

    def with_snapshot() -> Iterator[pa.Table | EventParts]:
        # the snapshot rows go in time order among the events up to the last snapshot time
        # (as tables); from there on the events flow as they come (events/2 parts included)
        head, merged = [], t_snap is None
        for ev in batches():
            if merged:
                yield ev
                continue
            later = None
            if isinstance(ev, EventParts) and _span(ev)[1] > t_snap:    # the rest goes on as parts
                ev, later = ev.cut(t_snap)
            if ev.num_rows:
                head.append(ev if isinstance(ev, pa.Table) else _wide(ev))
            if later is not None or _span(ev)[1] >= t_snap:
                yield from merge_sorted([iter([snapshot]), iter(head)])
                head, merged = [], True
                if later is not None and later.num_rows:
                    yield later
        if not merged:
            yield from merge_sorted([iter([snapshot]), iter(head)])
        if first_t is not None:
            meta["start_ns"] = min(meta["start_ns"] or first_t, first_t)

    return with_snapshot(), meta


def _wide(ev: EventParts) -> pa.Table:
    """events/2 parts as the events table normalize would have made (BATCH_SCHEMA)."""
    return ev.to_table().cast(BATCH_SCHEMA)


def _span(ev: pa.Table | EventParts) -> tuple[int, int]:
    """The first and the largest t_ns of a batch sorted by time (events table or parts)."""
    if isinstance(ev, pa.Table):
        t = to_numpy(ev.column("t_ns"))
        return int(t[0]), int(t.max())
    ts = [to_numpy(x.column("t_ns")) for x in (ev.faults, ev.others) if x.num_rows]
    return min(int(t[0]) for t in ts), max(int(t.max()) for t in ts)


class StartStates:
    """The start snapshot of a record directory (snapshot.parquet, capture/start_state.py):
    its rows lead the events of their process, and that process's traced events before the
    snapshot time are dropped (the snapshot already shows them), counted per pid.  An attach
    capture also has an end (record.json `trace_end_ns`, the target's last status read):
    events after it are dropped and counted, so the model ends where the truth does."""

    def __init__(self, path: Path):
        file = path / "snapshot.parquet"
        self.table = read_table(file, EVENTS) if path.is_dir() and file.exists() else None
        self.t0: dict[int, int] = {}
        self.dropped: dict[int, dict[str, int]] = {}
        self._pids = self._t0s = None
        self.t_end = _trace_end(path)
        self.after_end: dict[str, int] = {}
        if self.table is not None and self.table.num_rows:
            pids = to_numpy(self.table.column("pid"))
            ts = to_numpy(self.table.column("t_ns"))
            for pid in np.unique(pids).tolist():
                self.t0[pid] = int(ts[pids == pid].min())

    def keep_only(self, pids: set[int]) -> None:
        """Forget the snapshots of other processes (a host recording's filters left them out)."""
        if self.table is None or set(self.t0) <= set(pids):
            return
        keep = np.isin(to_numpy(self.table.column("pid")), np.fromiter(pids, np.int64, len(pids)))
        self.table = self.table.filter(to_arrow(keep, pa.bool_()))
        self.t0 = {p: t for p, t in self.t0.items() if p in pids}
        self._pids = None

    def drop(self, ev: pa.Table | EventParts) -> pa.Table | EventParts:
        """drop_before for an events table, or for events/2 parts: those pass unchanged unless
        one of their rows is to go (then they become one events table, which the writer splits)."""
        if isinstance(ev, pa.Table):
            return self.drop_before(ev)
        if not self._drops_any(ev.faults) and not self._drops_any(ev.others):
            return ev
        return self.drop_before(_wide(ev))

    def _drops_any(self, t: pa.Table) -> bool:
        if not t.num_rows or (not self.t0 and self.t_end is None):
            return False
        ts = to_numpy(t.column("t_ns"))
        if self.t_end is not None and int(ts.max()) > self.t_end:
            return True
        if not self.t0 or int(ts.min()) >= self._latest_t0():
            return False
        return bool(self._early(to_numpy(t.column("pid")), ts).any())

    def _latest_t0(self) -> int:
        """The latest snapshot time: no row at or after it is early for any process."""
        if self._pids is None:
            self._early(np.empty(0, np.int64), np.empty(0, np.int64))
        return int(self._t0s.max())

    def _early(self, pid: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Rows of a snapshotted process before its snapshot time (one lookup for every pid)."""
        if self._pids is None:
            self._pids = np.array(sorted(self.t0), np.int64)
            self._t0s = np.array([self.t0[p] for p in self._pids.tolist()], np.int64)
        at = np.minimum(np.searchsorted(self._pids, pid), len(self._pids) - 1)
        return (self._pids[at] == pid) & (t < self._t0s[at])

    def drop_before(self, ev: pa.Table) -> pa.Table:
        ev = self._drop_after_end(ev)
        if not self.t0 or not ev.num_rows:
            return ev
        early = self._early(to_numpy(ev.column("pid")), to_numpy(ev.column("t_ns")))
        if not early.any():
            return ev
        gone = ev.filter(to_arrow(early, pa.bool_()))
        for p, kind in zip(gone.column("pid").to_pylist(), gone.column("kind").to_pylist()):
            per_kind = self.dropped.setdefault(p, {})
            per_kind[kind] = per_kind.get(kind, 0) + 1
        return ev.filter(to_arrow(~early, pa.bool_()))

    def _drop_after_end(self, ev: pa.Table) -> pa.Table:
        if self.t_end is None or not ev.num_rows:
            return ev
        late = to_numpy(ev.column("t_ns")) > self.t_end
        if not late.any():
            return ev
        for kind in ev.filter(to_arrow(late, pa.bool_())).column("kind").to_pylist():
            self.after_end[kind] = self.after_end.get(kind, 0) + 1
        return ev.filter(to_arrow(~late, pa.bool_()))

    def batch(self) -> pa.Table:
        """The snapshot rows as normalize emits events (BATCH_SCHEMA: kind as int8 codes)."""
        codes = np.array([EVENT_KINDS.index(k) for k in self.table.column("kind").to_pylist()], np.int8)
        kind = dictionary(codes, KIND_VALUES, pa.int8())      # (pa.array would import pandas)
        cols = [kind if f.name == "kind" else self.table.column(f.name) for f in BATCH_SCHEMA]
        return pa.Table.from_arrays(cols, schema=BATCH_SCHEMA)

    def report(self) -> dict:
        """Per pid: the snapshot time and the traced events dropped before it, by kind."""
        return {str(p): {"t_ns": t0, "events_before_dropped": dict(sorted(self.dropped.get(p, {}).items()))}
                for p, t0 in self.t0.items()}

    def end_report(self) -> dict | None:
        """The attach capture's end and the traced events dropped after it, by kind."""
        if self.t_end is None:
            return None
        return {"t_ns": self.t_end, "events_after_dropped": dict(sorted(self.after_end.items()))}


def _record_info(path: Path) -> dict:
    """record.json of a `ptreplay record` directory ({} for any other input)."""
    info = path / "record.json"
    if not (path.is_dir() and info.exists()):
        return {}
    try:
        got = json.loads(info.read_text())
    except (OSError, ValueError):
        return {}
    return got if isinstance(got, dict) else {}


def _trace_end(path: Path) -> int | None:
    """record.json's `trace_end_ns` of an attach capture (None for anything else)."""
    end = _record_info(path).get("trace_end_ns")
    return int(end) if isinstance(end, int) else None


def fault_ends(path: Path) -> dict | None:
    """record.json's `fault_ends` (what marks a THP fault's end in the trace), or None."""
    ends = _record_info(Path(path)).get("fault_ends")
    return ends if isinstance(ends, dict) and isinstance(ends.get("item"), int) else None


def record_truth(path: Path) -> pa.Table | None:
    """The truth table of a `ptreplay record` directory (None for any other input)."""
    path = Path(path)
    truth = path / "truth.parquet"
    if path.is_dir() and (path / "perf.data").exists() and truth.exists():
        return read_table(truth, TRUTH)
    return None


def ingest(inputs: list[Path], output: Path, force: bool = False, allow_sampled: bool = False,
           capture: dict | None = None) -> Path:
    """Ingest one or more captures into `output` (events Parquet), merged in time order.

    The truth of record directories among the inputs goes into the output's metadata
    (``ptreplay.truth``; all inputs' rows together when several have one).  `capture`
    lays fields over the capture metadata (a fleet's host label and trace id, its
    ``fleet`` record); the values they replace are kept under ``overridden``.
    """
    output = Path(output)
    check_writable(output, force)
    streams, metas = [], []
    for p in inputs:     # one input goes to the writer in the events/2 layout as it comes
        it, meta = read_events(Path(p), allow_sampled, parts=len(inputs) == 1)
        streams.append(it)
        metas.append(meta)
    with EventsWriter(output, force=force) as w, \
            progress(f"ingest {output.name}", unit="events") as advance:
        for batch in merge_sorted(streams):
            w.write(batch)
            advance(batch.num_rows)
        w.set_capture(_overlay(_combine(metas), capture or {}), truth=_truth(inputs, metas))
    for m in metas:
        if m.get("lost_events") or m.get("lost_samples"):
            per_cpu = lost_per_cpu(m)
            where = (" (by CPU: " + ", ".join(f"cpu {c} {n}" for c, n in sorted(per_cpu.items(), key=_cpu_key))
                     + ")") if per_cpu else ""
            warn(f"{m.get('trace_id')}: the tracer lost {m.get('lost_events', 0)} events and "
                 f"{m.get('lost_samples', 0)} samples{where}; replay results undercount (see capture metadata)")
    return output


def lost_per_cpu(meta: dict) -> dict:
    """Events lost per CPU ring buffer, from the reader's metadata: the kernel's LOST records (one
    per overflow of a CPU's ring buffer, its CPU in the sample_id trailer); perf's LOST_SAMPLES
    records only where there are none (perf synthesizes those at the end, all on one CPU here)."""
    return dict(meta.get("lost_events_per_cpu") or meta.get("lost_samples_per_cpu") or {})


def _cpu_key(item) -> tuple:
    return (0, int(item[0]), "") if str(item[0]).isdigit() else (1, 0, str(item[0]))


def _truth(inputs: list[Path], metas: list[dict]) -> pa.Table | None:
    """The truth of the record directories among the inputs (a host recording's: of the processes
    it replays only), all rows together in time order."""
    truths = []
    for p, m in zip(inputs, metas):
        t = record_truth(Path(p))
        if t is not None and "host_recording" in m:
            keep = np.isin(to_numpy(t.column("pid")), np.array(m["host_recording"]["replayed_pids"], np.int64))
            t = t.filter(pa.array(keep))
        if t is not None:
            truths.append(t)
    return (None if not truths else truths[0] if len(truths) == 1
            else pa.concat_tables(truths).sort_by([("t_ns", "ascending")]))


def merge_sorted(streams: list[Iterator[pa.Table]]) -> Iterator[pa.Table]:
    """Merge event batch streams, each sorted by t_ns, into one sorted stream.

    Rows are released up to the smallest 'latest time seen' among the streams
    still open, so memory stays at about one batch per stream.
    """
    if len(streams) == 1:
        yield from streams[0]
        return
    buffers = [[] for _ in streams]
    latest = [-(1 << 63)] * len(streams)
    open_ = set(range(len(streams)))
    while open_:
        for i in list(open_):
            batch = next(streams[i], None)
            if batch is None:
                open_.discard(i)
            elif batch.num_rows:
                buffers[i].append(batch)
                latest[i] = batch.column("t_ns")[-1].as_py()
        mark = min((latest[i] for i in open_), default=None)
        ready = []
        for i, bufs in enumerate(buffers):
            if not bufs:
                continue
            t = pa.concat_tables(bufs)
            ts = to_numpy(t.column("t_ns"))
            cut = len(ts) if mark is None else int(np.searchsorted(ts, mark, side="right"))
            ready.append(t.slice(0, cut))
            buffers[i] = [t.slice(cut)] if cut < len(ts) else []
        if ready:
            merged = pa.concat_tables(ready)
            if merged.num_rows:
                yield merged.take(to_arrow(np.argsort(to_numpy(merged.column("t_ns")), kind="stable"), pa.int64()))


def _capture_defaults() -> dict:
    return {"trace_id": "", "host": "", "kernel_release": "", "arch": "", "page_size_bytes": 4096,
            "paging_levels": 4, "thp_mode": "", "pt_reclaim": "unknown", "clock": "", "perf_version": "",
            "command_line": "", "source_format": "", "lost_events": 0, "lost_samples": 0,
            "synthetic": False, "start_ns": 0, "end_ns": 0}


def _merge_reader_meta(meta: dict, reader_meta: dict, file: Path) -> None:
    """Fold what the capture itself says into `meta`; the sidecar wins where the reader is silent."""
    for key, value in reader_meta.items():
        if key in ("lost_events", "lost_samples"):
            meta[key] = int(value or 0)
        elif value not in (None, "", [], {}) and not meta.get(key):
            meta[key] = value
        elif key not in meta:
            meta[key] = value
    arch = str(meta.get("arch") or "")
    if arch and arch not in X86_64:
        raise TraceFormatError(f"{file}: capture is from a {arch} machine; only x86_64 page tables are modelled")
    for w in reader_meta.get("warnings", []) or []:
        warn(f"{file}: {w}")


def _overlay(meta: dict, fields: dict) -> dict:
    """`meta` with `fields` laid over it; each value replaced is kept in meta['overridden']."""
    if not fields:
        return meta
    replaced = {k: meta[k] for k, v in fields.items() if k in meta and meta[k] != v}
    out = {**meta, **fields}
    if replaced:
        out["overridden"] = {**meta.get("overridden", {}), **replaced}
    return out


def _combine(metas: list[dict]) -> dict:
    """One capture dict for a merged output: the first input's, with summed losses."""
    if len(metas) == 1:
        return metas[0]
    out = dict(metas[0])
    out["trace_id"] = "+".join(m.get("trace_id", "") for m in metas)
    out["lost_events"] = sum(int(m.get("lost_events") or 0) for m in metas)
    out["lost_samples"] = sum(int(m.get("lost_samples") or 0) for m in metas)
    out["start_ns"] = min(m.get("start_ns", 0) for m in metas)
    out["end_ns"] = max(m.get("end_ns", 0) for m in metas)
    out["inputs"] = metas
    return out
