"""perf.data reader: file mode, pipe mode (`-o -`), `--threads` directories, `-z` compression.

Written against tools/perf/Documentation/perf.data-file-format.txt and
include/uapi/linux/perf_event.h (layouts in `layout.py`).  The data is
decoded in chunks of whole records:

1. bytes of the data section (or of each zstd stream, one decompressor per
   data file) -> a compiled walk over record headers gives record offsets
   (`walk.py`, the record walk the stack pass shares);
2. SAMPLE records are grouped by attr and decoded column-wise with numpy
   gathers at fixed or per-record byte positions (`decode.py`, `samples.py`);
   asked to `split` (ingest's events/2), the decoder walks each decompressed chunk
   itself and writes the page faults straight into normalize's fault columns
   (`Decoder.decode_split`, `SplitOrderer`);
3. the few side-band records (FORK, EXIT, COMM, MMAP2, LOST, ...) are decoded
   in Python (`header.Session.side_record`);
4. rows are released in (t_ns, seq) order: perf reorders nothing across a
   FINISHED_ROUND, so after round k everything up to the largest time seen
   before round k-1 is final (the rule of perf's ordered_events).  A --threads
   directory has no rounds; its data.N files (one CPU's ring buffer each, in time
   order) are merged: rows older than every unfinished file's latest time are final.
"""
from __future__ import annotations

import sys
from typing import Iterator

import numpy as np
import pyarrow as pa

from ptreplay.pipeline.formats.base import FAULT_ROWS, RAW, Capture, RawColumns, rank
from ptreplay.pipeline.formats.perf.decode import COLUMNS, Decoder, concat, nrows
from ptreplay.pipeline.formats.perf.errors import guard
from ptreplay.pipeline.formats.perf.header import COLS_U64, NAME, Session
from ptreplay.pipeline.formats.perf.walk import DataFile, PerfFile, open_capture, prefetch, sniff, sniff_dir

__all__ = ["NAME", "sniff", "sniff_dir", "read"]

BATCH_ROWS = 1 << 17             # rows per yielded table (about), and most rows normalize gets at once: bounds memory
AHEAD_FILES = 4                 # --threads data files decoded ahead on a thread each, up to this many files


def read(path, opener=None, allow_sampled: bool = False, columns: bool = False, split: bool = False) -> Capture:
    """Read a perf.data file, pipe-mode stream or --threads directory as RAW batches.

    Header, attrs and features are parsed (and the capture validated) now for
    file mode; pipe mode learns them from its first records.  Batches are sorted
    by (t_ns, seq) and hold about BATCH_ROWS rows; `meta` is complete once the
    batches are exhausted.  `columns`: yield the same rows as `RawColumns` (numpy,
    event and comm as codes) instead of RAW tables, for `Normalizer.push`; `split` (with
    columns): with the page-fault rows apart (`RawColumns.faults`), for `Normalizer.push_parts`.
    """
    pf = open_capture(path, opener, allow_sampled)
    if columns:        # decoded on a thread of its own, beside the caller's normalize
        return Capture(batches=prefetch(_batches(pf, columns, split)), meta=pf.session.meta)
    return Capture(batches=_batches(pf, columns), meta=pf.session.meta)


# ----------------------------------------------------------------------------- ordering

class Orderer:
    """Holds decoded rows until they are final, then releases them sorted by (t_ns, seq).

    Rows live in segments: sets of column buffers, each holding rows [lo, hi) still
    pending, oldest first.  Each chunk is decoded straight into the room after the last
    segment's rows (`room`); when that is full a new segment starts, and the pending rows
    stay where they are (no row is moved to make room).  Released rows are views of the
    buffers.  Rows arrive in seq order; while they also arrive in time order (the usual
    case) release is slicing, segment by segment; otherwise the pending rows are sorted
    first with a stable sort on t_ns, which keeps seq order among equal times (into one
    segment when they span several).
    """

    POOL = 4          # buffer sets kept for reuse once their rows are released (by default)

    def __init__(self, reuse: bool = False, columns: dict | None = None, pool: int = POOL,
                 rows: int = 1 << 16):
        self.segs: list[_Segment] = []
        self.pool = pool
        self.rows = rows                  # a segment's rows: at least this, and 4 chunks
        # the columns (name: dtype) and which of them are the rows of one 2-D array (`room`'s args)
        self.columns, self.rows_2d = ((columns, ()) if columns is not None else
                                      ({c: dtype for c, (dtype, _) in COLUMNS.items()}, COLS_U64))
        self.in_order = True
        # reuse: a buffer set is taken again instead of a fresh one (fresh buffers cost page
        # faults: 1.3 GB for the full seed capture) once no row released from it is still
        # held (normalize copies what it keeps; the batches waiting in a queue hold theirs)
        self.reuse = reuse
        self._pool: list[tuple] = []
        self._idle: list = []          # a buffer set's reference counts when only its tuple holds it

    @property
    def pending(self) -> int:
        return sum(g.hi - g.lo for g in self.segs)

    def room(self, n: int) -> tuple[dict, np.ndarray]:
        """Uninitialised rows for the next n rows (a frame, and its a0..a5 as one 2-D view)."""
        g = self.segs[-1] if self.segs else None
        if g is None or g.hi + n > g.cap:
            if g is not None and g.lo == g.hi:
                self._retire(self.segs.pop())
            g = self._segment(max(4 * n, self.rows))
            self.segs.append(g)
        end = g.hi + n
        return {c: v[g.hi:end] for c, v in g.cols.items()}, g.args[:, g.hi:end]

    def add(self, n: int) -> int:
        """The n rows of the last `room` hold the rows of one chunk (in seq order) -> their
        largest time (-1 for no rows)."""
        if not n:
            return -1
        g = self.segs[-1]
        t = g.cols["t_ns"][g.hi:g.hi + n]
        if self.in_order:
            last = self._last_pending_t()
            if (last is not None and t[0] < last) or not (t[1:] >= t[:-1]).all():
                self.in_order = False
        g.hi += n
        return int(t.max())

    def ready(self, limit: int) -> int:
        """How many pending rows have t_ns <= limit (sorted first if they came out of order)."""
        if not self.in_order:
            self._sort()
        return sum(int(np.searchsorted(g.cols["t_ns"][g.lo:g.hi], limit, side="right")) for g in self.segs)

    def release(self, limit: int | None) -> list[dict]:
        """The rows with t_ns <= limit (all rows if limit is None), in order, as one frame
        per segment they lie in ([] if none)."""
        if not self.in_order:
            self._sort()
        out = []
        while self.segs:
            g = self.segs[0]
            t = g.cols["t_ns"]
            cut = g.hi if limit is None else g.lo + int(np.searchsorted(t[g.lo:g.hi], limit, side="right"))
            if cut > g.lo:
                out.append({c: v[g.lo:cut] for c, v in g.cols.items()})
                g.lo = cut
            if cut < g.hi or len(self.segs) == 1:
                break
            self._retire(self.segs.pop(0))
        return out

    def _last_pending_t(self) -> int | None:
        for g in reversed(self.segs):
            if g.hi > g.lo:
                return int(g.cols["t_ns"][g.hi - 1])
        return None

    def _sort(self) -> None:
        """The pending rows sorted by t_ns (stable: seq order among equals), in one segment."""
        live = [g for g in self.segs if g.hi > g.lo]
        if len(live) == 1:
            g = live[0]
            order = np.argsort(g.cols["t_ns"][g.lo:g.hi], kind="stable") + g.lo
            for v in g.cols.values():
                v[g.lo:g.hi] = v[order]
        elif live:
            t = np.concatenate([g.cols["t_ns"][g.lo:g.hi] for g in live])
            order = np.argsort(t, kind="stable")
            new = self._segment(max(2 * len(t), 1 << 16))
            for c, v in new.cols.items():
                v[:len(t)] = np.concatenate([g.cols[c][g.lo:g.hi] for g in live])[order]
            new.hi = len(t)
            for g in self.segs:
                self._retire(g)
            self.segs = [new]
        self.in_order = True

    def _segment(self, cap: int) -> "_Segment":
        """A segment of cap rows in a pooled buffer set no released row still views (it may be
        larger), or in a fresh one.  Its room is cap whatever the set: where segments end, and so
        how released rows are cut into frames, never depends on which sets were free (timing)."""
        for k, t in enumerate(self._pool):
            if t[1].shape[1] >= cap and _refcounts(t) == self._idle:
                del self._pool[k]
                return _Segment(*t, cap)
        t, self._idle = _buffers(cap, self.columns, self.rows_2d)
        return _Segment(*t, cap)

    def _retire(self, g: "_Segment") -> None:
        if self.reuse:
            self._pool.append((g.cols, g.args))
            del self._pool[:-self.pool]


class _Segment:
    """A set of column buffers (cols: a frame; args: its a0..a5 as rows of one 2-D array) whose
    rows [lo, hi) are pending."""

    def __init__(self, cols: dict, args: np.ndarray, cap: int):
        self.cols, self.args = cols, args
        self.cap = cap
        self.lo = self.hi = 0


def _buffers(cap: int, columns: dict, rows_2d: tuple) -> tuple[tuple, list]:
    """A fresh set of column buffers (cols, args: the columns rows_2d as the rows of one uint64
    array) and its reference counts while only that tuple holds it: the same for every set
    (Orderer._segment reuses a set whose counts are back to these: no view of it is alive)."""
    args = np.empty((len(rows_2d), cap), np.uint64)
    cols = {c: np.empty(cap, dtype) for c, dtype in columns.items() if c not in rows_2d}
    cols.update(zip(rows_2d, args))
    t = (cols, args)
    del cols, args
    return t, _refcounts(t)


def _refcounts(t: tuple) -> list:
    """Reference counts of the arrays of a buffer set (a released row's view holds one)."""
    return [sys.getrefcount(v) for v in t[0].values()] + [sys.getrefcount(t[1])]


FAULT_POOL = 16
FAULT_SEGMENT = 1 << 18


class SplitOrderer:
    """The rows of a reader asked to split (`read(split=True)`): the page-fault rows
    (`decode_fault_records`' columns, FAULT_ROWS) and the others (RAW rows) in an Orderer each,
    released together: every row up to a limit, as pieces of at most `piece` fault rows, each
    with the other rows that come before its last fault row in (t_ns, seq) order (the last
    piece: all that remain).  Rows are released by whole fault segments (each one piece), or
    once at least `hold` rows (by default `piece`) are final: fewer, larger batches (normalize copies no fault row,
    and much of its cost is per batch)."""

    def __init__(self, reuse: bool = False, piece: int = 2 * BATCH_ROWS, hold: int | None = None):
        # the fault rows go to the Parquet writer as they are (no copy), which holds up to four row
        # groups of 1 Mi rows (schemas.parquet_io.StreamWriter): ~16 segments of FAULT_SEGMENT rows,
        # so FAULT_POOL sets are reused once written
        self.faults = Orderer(reuse, FAULT_ROWS, pool=FAULT_POOL, rows=FAULT_SEGMENT)
        self.others = Orderer(reuse)
        self.piece = piece
        self.hold = piece if hold is None else hold

    @property
    def pending(self) -> int:
        return self.faults.pending + self.others.pending

    def add(self, n: tuple[int, int]) -> int:
        """The last rooms hold n = (fault rows, other rows) of one chunk -> their largest time."""
        return max(self.faults.add(n[0]), self.others.add(n[1]))

    def _whole_segments(self, limit: int) -> int | None:
        """The last time of the last full fault segment whose rows are all final by `limit` (None:
        no such segment): releasing to there gives one piece per segment."""
        if not self.faults.in_order:
            return None
        end = None
        for g in self.faults.segs[:-1]:          # a segment followed by another is full
            if g.hi > g.lo:
                last = int(g.cols["t_ns"][g.hi - 1])
                if last > limit:
                    break
                end = last
        return end

    def release(self, limit: int | None) -> list[tuple[dict, dict]]:
        """The rows with t_ns <= limit (all if None), as (fault rows, other rows) pieces ([]
        while fewer than `hold` rows are ready)."""
        if limit is not None:
            whole = self._whole_segments(limit)
            if whole is not None:
                limit = whole
            elif self.faults.ready(limit) + self.others.ready(limit) < self.hold:
                return []
        frames, rest = self.faults.release(limit), self.others.release(limit)
        if not frames and not rest:
            return []
        others = concat(rest) if rest else {c: np.empty(0, dtype) for c, dtype in self.others.columns.items()}
        pieces = [{c: v[i:i + self.piece] for c, v in f.items()} for f in frames
                  for i in range(0, len(f["seq"]), self.piece)]
        if not pieces:
            pieces = [{c: np.empty(0, dtype) for c, dtype in FAULT_ROWS.items()}]
        out, k = [], 0
        for j, f in enumerate(pieces):
            if j == len(pieces) - 1:
                cut = len(others["seq"])
            else:      # the others before this piece's last fault row
                cut = int(rank(f["t_ns"][-1:], f["seq"][-1:], others["t_ns"], others["seq"])[0])
            out.append((f, {c: v[k:cut] for c, v in others.items()}))
            k = cut
        return out


# ----------------------------------------------------------------------------- data files

class Stream:
    """One data file being decoded, and the latest time decoded from it so far."""

    def __init__(self, df: DataFile):
        self.df = df
        self.path = df.path
        self.last = -1

    def decode_next(self, dec: Decoder, orderer: Orderer) -> tuple[int, np.ndarray] | None:
        """Decode this file's next chunk into `orderer` -> (rows, round maxima), None at its end."""
        ch = next(self.df.chunks, None)
        if ch is None:
            return None
        r = dec.s
        r.where.path = self.path
        n, round_max = guard(r.where, lambda: dec.decode(ch, orderer))
        if ch.tail:                   # known once decoded (a cut chunk's decoder finds it)
            r.meta["dropped_tail_bytes"] = r.meta.get("dropped_tail_bytes", 0) + ch.tail
            r.meta["warnings"].append(f"{self.path}: its zstd stream ends {ch.tail} bytes into a record "
                                      "(perf's last flush); that record is dropped, as perf script does")
        self.last = max(self.last, orderer.add(n))
        return n, round_max

    def close(self):
        self.df.close()


def _by_rounds(dec: Decoder, orderer: Orderer, s: Stream) -> Iterator[dict]:
    """One stream (file or pipe mode): release rows at perf's round marks (module docstring)."""
    maxes = [-1, -1]                     # largest time as of the previous round, as of the last round
    t_max = -1
    while (step := s.decode_next(dec, orderer)) is not None:
        _, round_max = step
        if len(round_max):
            for m in np.maximum(round_max, t_max)[-2:].tolist():
                maxes = [maxes[1], max(m, maxes[1])]
            yield from orderer.release(maxes[0])
        t_max = s.last


def _merged(dec: Decoder, orderer: Orderer, streams: list[Stream]) -> Iterator[dict]:
    """A --threads directory: each data.N file holds one CPU's ring buffer, in time order
    (what perf itself assumes of directory data), and no rounds.  Decode next the file that
    is furthest behind; rows older than every unfinished file's latest time are final, so
    only rows near the files' common front are held (a file out of time order shows as
    clamped rows in the normalize statistics)."""
    live = list(streams)
    while live:
        s = min(live, key=lambda x: x.last)
        if s.decode_next(dec, orderer) is None:
            live.remove(s)
        if live:
            yield from orderer.release(min(x.last for x in live) - 1)


def _released(pf: PerfFile, dec: Decoder, reuse: bool = False) -> Iterator[dict]:
    """Every row of the capture, as frames released in (t_ns, seq) order (`reuse`: see Orderer;
    a decoder that splits: as SplitOrderer's (fault rows, other rows) pieces)."""
    r = pf.session
    orderer = SplitOrderer(reuse, 2 * BATCH_ROWS) if dec.split else Orderer(reuse)
    streams = []
    try:
        ahead = len(pf.extra) <= AHEAD_FILES    # a thread per file only for a few files
        for k, src in enumerate(pf.sources()):
            streams.append(Stream(DataFile(*src, opener=r.opener, ahead=k == 0 or ahead, lazy=dec.split)))
        yield from _merged(dec, orderer, streams) if pf.extra else _by_rounds(dec, orderer, streams[0])
    finally:
        for s in streams:
            s.close()
        if not streams:
            pf.fh.close()
    if not r.validated:
        r.where.path = pf.header_file
        guard(r.where, r.validate)
    yield from orderer.release(None)


def _batches(pf: PerfFile, columns: bool = False, split: bool = False) -> Iterator[pa.Table | RawColumns]:
    """Decode every data stream, release rows in (t_ns, seq) order, yield ~BATCH_ROWS tables
    (or RawColumns)."""
    r = pf.session
    if columns and split:
        for faults, others in _released(pf, Decoder(r, split=True), reuse=True):
            yield to_columns(r, others, faults)
        r.meta["events_total"] = sum(r.meta["events_by_name"].values())
        return
    emit = (lambda rows: to_columns(r, rows)) if columns else (lambda rows: to_table(r, rows))
    # RawColumns go out as soon as rows are released (tens of thousands, still in the
    # cache; no copy into bigger batches: the Parquet writer gathers its row groups)
    batch_rows = 1 if columns else BATCH_ROWS
    out, nout = [], 0
    for ready in _released(pf, Decoder(r, narrow_faults=columns), reuse=columns):
        for i in range(0, nrows(ready), BATCH_ROWS):        # huge rounds (-m 256M) in pieces
            piece = {k: v[i:i + BATCH_ROWS] for k, v in ready.items()}
            out.append(piece)
            nout += nrows(piece)
            if nout >= batch_rows:
                yield emit(concat(out))
                out, nout = [], 0
    if out:
        yield emit(concat(out))
    r.meta["events_total"] = sum(r.meta["events_by_name"].values())


# ----------------------------------------------------------------------------- rows -> Arrow

def count_events(r: Session, rows: dict) -> None:
    """Add the rows' events to meta['events_by_name']."""
    counts = np.bincount(rows["ev"], minlength=len(r.events))
    by_name = r.meta["events_by_name"]
    for code in np.flatnonzero(counts).tolist():
        by_name[r.events[code]] = by_name.get(r.events[code], 0) + int(counts[code])


def to_columns(r: Session, rows: dict, faults: dict | None = None) -> RawColumns:
    """RawColumns of released rows (and of fault rows apart, counted when decoded)."""
    count_events(r, rows)
    cols = {c: rows[c] for c in ("t_ns", "pid", "tid", "cpu", *COLS_U64, "ret", "seq")}
    return RawColumns(cols, rows["ev"], list(r.events), rows["comm"], list(r.comms), faults)


def to_table(r: Session, rows: dict) -> pa.Table:
    n = nrows(rows)
    count_events(r, rows)
    event = pa.DictionaryArray.from_arrays(pa.array(rows["ev"], pa.int32()),
                                           pa.array(r.events, pa.string())).cast(pa.string())
    comm_codes = rows["comm"]
    if (comm_codes < 0).all():
        comm = pa.nulls(n, pa.string())
    else:
        idx = pa.array(comm_codes, pa.int32(), mask=comm_codes < 0)
        comm = pa.DictionaryArray.from_arrays(idx, pa.array(r.comms, pa.string())).cast(pa.string())
    cols = [rows["t_ns"], rows["pid"], rows["tid"], rows["cpu"], event,
            *(rows[c] for c in COLS_U64), rows["ret"], comm, rows["seq"]]
    return pa.Table.from_arrays([c if isinstance(c, pa.Array) else pa.array(c, type=fld.type)
                                 for c, fld in zip(cols, RAW)], schema=RAW)
