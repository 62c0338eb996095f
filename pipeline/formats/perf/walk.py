"""The record walk of a perf.data capture, shared by the reader and the stack pass.

    pf = open_capture(path)                  # header, attrs, features (file mode: validated)
    for src in pf.sources():                 # the data section, or each --threads data.N file
        df = DataFile(*src, opener=pf.session.opener)
        for ch in df.chunks:                 # Chunk: whole records, COMPRESSED ones expanded
            sidx, side = split_records(pf.session, ch, seq0)   # side-band records applied
            ...                              # SAMPLE records at ch.offs[sidx]: see samples.py

Bytes are read in chunks of about CHUNK_BYTES; one compiled pass over the record headers
(`kernels.walk_records`) gives each record's offset, type and size.  A record cut by a chunk
end is carried into the next chunk.  `-z` data is one zstd stream per data file, cut into
COMPRESSED/COMPRESSED2 records anywhere; `expand_compressed` replaces those records by the
records they hold.  For the decoder that splits the faults off (`lazy`), decompressed bytes go
out unwalked as *cut* chunks: that decoder walks them in its own pass and carries the record a
chunk ends in into the room left before the next one's data (decode.Decoder.decode_split), so the
bytes are walked once.  Offsets in messages are file offsets, or decompressed-stream offsets
inside compressed data.
"""
from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ptreplay.replay import aot
from ptreplay.schemas.errors import TraceFormatError
from ptreplay.pipeline.formats.perf import layout as L
from ptreplay.pipeline.formats.perf.errors import Where, fail, guard, guarded
from ptreplay.pipeline.formats.perf.header import Session, read_file_header
from ptreplay.pipeline.formats.perf.kernel_abi import unaligned_views
from ptreplay.pipeline.formats.perf.samples import Views
from ptreplay.pipeline.formats.perf.zstd_stream import BufferPool, Decompressor

CHUNK_BYTES = 4 << 20           # decoded stream bytes per step: fits the L3 cache, bounds memory
HEAD_ROOM = 1 << 16             # bytes kept free before a cut chunk's data: the record its predecessor ends in


# ----------------------------------------------------------------------------- sniffing

def sniff(head: bytes) -> bool:
    """PERFILE2 magic in either byte order (file or pipe mode)."""
    return head[:8] in (L.MAGIC, L.MAGIC_SWAPPED)


def data_files(path: Path) -> list[Path]:
    """The data.N files of a --threads directory, by N."""
    files = [p for p in path.glob("data.*") if re.fullmatch(r"data\.\d+", p.name)]
    return sorted(files, key=lambda p: int(p.name.split(".")[1]))


def sniff_dir(path) -> bool:
    """A `perf record --threads` directory: `data` with a PERFILE2 header plus data.N files."""
    path = Path(path)
    try:
        with open(path / "data", "rb") as f:
            head = f.read(8)
    except OSError:
        return False
    return sniff(head) and bool(data_files(path))


def file_size(f) -> int:
    """Size of an open file (its end, for streams that cannot fstat)."""
    try:
        return os.fstat(f.fileno()).st_size
    except (AttributeError, OSError, ValueError):
        here = f.tell()
        f.seek(0, 2)
        n = f.tell()
        f.seek(here)
        return n


# ----------------------------------------------------------------------------- opening

@dataclass
class PerfFile:
    """An opened capture: its session (header parsed) and where its records are."""
    session: Session
    header_file: Path           # the perf.data file (`data` in a --threads directory), open as `fh`
    fh: object
    data_off: int               # its data section (pipe mode: all that follows the header)
    data_size: int
    extra: list[Path]           # --threads: the data.N files, which hold records only

    def sources(self) -> list[tuple]:
        """(path, open file or None, start, length or None (to its end), label) of each
        data file, in order: the arguments of `DataFile`."""
        first = (self.header_file, self.fh, self.data_off, self.data_size, "" if not self.extra else "data ")
        return [first] + [(p, None, 0, None, f"{p.name} ") for p in self.extra]


def open_capture(path, opener=None, allow_sampled: bool = False) -> PerfFile:
    """Open a perf.data file, pipe-mode stream or --threads directory and parse its header.

    File mode: attrs and features are read and the capture validated now; pipe mode learns
    them from its first records.  The header file stays open (`PerfFile.fh`).
    """
    path = Path(path)
    r = Session(path, opener, allow_sampled)
    if path.is_dir():
        if not sniff_dir(path):
            fail(path, 0, "directory is not a perf --threads capture (expected data with a "
                          "PERFILE2 header and data.N files)")
        header_file, extra = path / "data", data_files(path)
    else:
        header_file, extra = path, []
    try:
        f = r.opener(header_file)
    except OSError as e:
        raise TraceFormatError(f"{header_file}: offset 0: cannot open ({e.strerror})") from None
    r.path = header_file
    try:
        size = file_size(f)
        mode, data_off, data_size = guard(r.where, lambda: read_file_header(r, f, size))
        if mode == "file":
            guard(r.where, r.validate)
        r.meta["mode"] = "threads" if extra else mode
    except BaseException:
        f.close()
        raise
    r.path = path
    return PerfFile(r, header_file, f, data_off, data_size, extra)


class DataFile:
    """One data file as chunks of whole records (`chunks`, produced `ahead` on a thread)."""

    def __init__(self, path: Path, fh, start: int, length: int | None, label: str, opener, ahead: bool = False,
                 lazy: bool = False):
        self.path = path
        if fh is None:
            try:
                fh = opener(path)
            except OSError as e:
                raise TraceFormatError(f"{path}: offset 0: cannot open ({e.strerror})") from None
            length = file_size(fh)
        self.fh = fh
        where = Where(path)
        chunks = guarded(where, expand_compressed(record_chunks(fh, start, length, label, where), label, where, lazy))
        self.chunks = prefetch(chunks) if ahead else chunks

    def close(self):
        self.chunks.close()
        self.fh.close()


def split_records(r: Session, ch: "Chunk", seq0: int) -> tuple[np.ndarray, list]:
    """Apply the chunk's non-sample records to the session, in order (pipe mode's header
    records first, since the samples after them need their attrs and formats), and return
    the indices of its SAMPLE records and [(index, RAW row dict)] of its FORK/EXIT/COMM
    records (row seq = seq0 + index).  FINISHED_ROUND marks are in `ch.rounds`."""
    if ch.samples is None:
        types = ch.types
        ch.samples = np.flatnonzero(types == L.REC["SAMPLE"])
        ch.others = np.flatnonzero((types != L.REC["SAMPLE"]) & (types != L.REC["FINISHED_ROUND"]))
    types, other = ch.types, ch.others
    side = []
    for i in other.tolist():
        off = int(ch.offs[i])
        r.where.at(ch.base + off, ch.stream)
        row = r.side_record(ch.buf, int(types[i]), off, int(ch.sizes[i]), seq0 + i)
        if row is not None:
            side.append((i, row))
    return ch.samples, side


# ----------------------------------------------------------------------------- byte streams

@dataclass
class Chunk:
    """Whole records of one stream: bytes, per-record offset/type/size, and round marks."""
    buf: bytes | np.ndarray   # bytes, or a uint8 buffer (decompressed data)
    offs: np.ndarray          # record starts in buf (int64)
    types: np.ndarray         # perf_event_header.type (int64)
    sizes: np.ndarray         # perf_event_header.size (int64)
    rounds: np.ndarray        # for each FINISHED_ROUND: how many records of this chunk precede it
    base: int                 # stream offset of buf[0], for messages
    stream: str               # '' (file offsets) or 'data.1 decompressed stream ' ...
    tail: int = 0             # bytes of a record cut off by the end of a zstd stream, dropped
    samples: np.ndarray | None = None   # indices of the SAMPLE records (None: not indexed yet)
    others: np.ndarray | None = None    # indices of the records neither SAMPLE nor FINISHED_ROUND
    end: int = 0              # where its whole records end in buf
    marks: np.ndarray | None = None     # a chunk not walked yet (offs etc. None): its round marks (bytes)
    start: int = 0            # where its first record starts in buf
    cut: bool = False         # decompressed bytes as they came (`expand_compressed`, lazy): buf[start:] may
                              # end inside a record, which the stream's next cut chunk continues
    last: bool = False        # a cut chunk that ends its stream


def fail_short_header(where: Where, at: int, stream: str):
    """The error of a record header whose size is below 8 bytes, at stream offset `at`."""
    where.at(at, stream).fail("record header with size < 8 (expected a perf_event_header)")


def _walk(buf, start: int, end: int):
    return aot.kernels().walk_records(*unaligned_views(buf), start, end)


def _chunk(buf, base: int, stream: str, where: Where, final: bool, extra_rounds=()) -> tuple:
    """Walk buf -> (Chunk of its whole records or None, stop).  `final`: no more bytes follow."""
    offs, types, sizes, stop, status = _walk(buf, 0, len(buf))
    if status:
        fail_short_header(where, base + stop, stream)
    if final and stop < len(buf):
        need = record_extent(buf, stop)
        where.at(base + stop, stream).fail(
            f"truncated record: expected {need if need else 'an 8-byte header'} bytes, {len(buf) - stop} remain")
    marks = np.asarray(extra_rounds, np.int64)
    if not len(offs):
        return None, stop
    return _indexed(Chunk(buf, offs, types, sizes, None, base, stream, end=stop), marks), stop


def indexed(ch: Chunk, where: Where) -> Chunk:
    """The chunk walked: its records' offsets, types and sizes, SAMPLE and other indices, rounds
    (a cut chunk: its whole records, `end` set where they end; `where` reports a bad header)."""
    if ch.offs is not None:
        return ch
    ch.offs, ch.types, ch.sizes, stop, status = _walk(ch.buf, ch.start, ch.end)
    if status:
        fail_short_header(where, ch.base + stop, ch.stream)
    ch.end = stop
    return _indexed(ch, ch.marks)


def _indexed(ch: Chunk, marks: np.ndarray) -> Chunk:
    ch.samples, ch.rounds, ch.others = aot.kernels().index_records(ch.types, L.REC["SAMPLE"], L.REC["FINISHED_ROUND"])
    if len(marks):
        ch.rounds = np.sort(np.concatenate([ch.rounds, np.searchsorted(ch.offs, marks, side="left")]))
    ch.marks = None
    return ch


def record_chunks(f, start: int, length: int | None, label: str, where: Where) -> Iterator[Chunk]:
    """Read [start, start+length) (to EOF if None) as chunks of whole records.

    A partial record is carried into the next chunk; a chunk grows when one record
    (pipe-mode tracing data) is larger than CHUNK_BYTES.  The bytes are read into pooled
    buffers (a chunk keeps its buffer while it lives): no fresh pages, and no copy of a
    chunk to prepend the carried record.
    """
    f.seek(start)
    pool = BufferPool(limit=4)
    pos, carry, want, remaining = start, None, CHUNK_BYTES, length
    while True:
        n = want if remaining is None else min(want, remaining)
        k = 0 if carry is None else len(carry)
        out = pool.get(max(2 * CHUNK_BYTES, k + n))
        if k:
            out[:k] = carry
        carry = None                     # the previous buffer is free once its chunk is
        got = _read_into(f, memoryview(out)[k:k + n]) if n > 0 else 0
        if remaining is not None:
            if got < n:
                where.at(pos + k + got, label).fail(
                    f"file is truncated: the data section needs {remaining - got} more bytes")
            remaining -= got
        final = not got or remaining == 0
        if not k + got:
            return
        buf = out[:k + got]
        ch, stop = _chunk(buf, pos, label, where, final)
        if ch is not None:
            yield ch
        if final:
            return
        carry, pos = buf[stop:], pos + stop
        want = max(CHUNK_BYTES, record_extent(carry, 0) - len(carry))
        del ch, buf


def _read_into(f, view: memoryview) -> int:
    """Fill `view` from f as f.read(len(view)) would (short only at EOF) -> the bytes read."""
    if not hasattr(f, "readinto"):
        data = f.read(len(view))
        view[:len(data)] = data
        return len(data)
    got = 0
    while got < len(view):
        r = f.readinto(view[got:])
        if not r:
            break
        got += r
    return got


def record_extent(buf, p: int) -> int:
    if len(buf) - p < 8:
        return 0
    typ, _, size = L.EVENT_HEADER.unpack_from(buf, p)
    if typ == L.REC["HEADER_TRACING_DATA"] and len(buf) - p >= 12:
        return size + struct.unpack_from("<I", buf, p + 8)[0]
    return size


def expand_compressed(chunks: Iterator[Chunk], label: str, where: Where, lazy: bool = False) -> Iterator[Chunk]:
    """Replace COMPRESSED/COMPRESSED2 records by the records they hold, in place.

    One streaming zstd decompressor per data file (perf keeps one zstd stream per
    file and cuts it into records anywhere, so a record may span two of them).
    The payloads of consecutive compressed records are fed to it in groups of
    about CHUNK_BYTES of output; a partial record at the end is carried over (`lazy`: by the
    decoder; the chunks are cut where the bytes end, HEAD_ROOM free before their data).
    A group ends at its last FINISHED_ROUND, which becomes a round mark at that
    point of the output (the rounds inside a group are dropped: fewer rounds only
    make the flush limits more conservative), or, with no round in it (sparse
    rounds, --threads files), at its size; any other uncompressed record is
    passed on at its place.  Offsets in
    messages are decompressed-stream offsets.
    """
    dec = Decompressor()
    pool = BufferPool()
    stream = f"{label}decompressed stream "
    # lazy: chunks are cut where the bytes end, not walked (`cut_chunk`); each buffer keeps room
    # before its data for the decoder to put the end of the record its predecessor was cut in
    empty = HEAD_ROOM if lazy else 0
    st = {"n": empty, "base": -empty, "marks": [], "ratio": 16.0, "out": pool.get(2 * CHUNK_BYTES + empty),
          "cut": False}
    R = L.REC

    def grow(out, filled: int, more: int):
        bigger = pool.get(max(2 * len(out), filled + more))
        bigger[:filled] = out[:filled]
        return bigger

    def cut_chunk(final: bool):
        """The bytes decompressed so far as they are: the decoder walks them and carries the
        record they end in to the next cut chunk (reader: decode.Decoder.decode_split)."""
        buf = st["out"][:st["n"]]
        ch = Chunk(buf, None, None, None, None, st["base"], stream, start=HEAD_ROOM, end=len(buf),
                   marks=np.asarray(st["marks"], np.int64), cut=True, last=final)
        st.update(out=pool.get(2 * CHUNK_BYTES + HEAD_ROOM), n=HEAD_ROOM, base=st["base"] + len(buf) - HEAD_ROOM,
                  marks=[], cut=True)
        return ch

    def emit(final: bool):
        if lazy:
            return cut_chunk(final)
        buf = st["out"][:st["n"]]        # the decompressed bytes: the chunk keeps its buffer
        marks = st["marks"]
        ch, stop = _chunk(buf, st["base"], stream, where, False, marks)
        carry = len(buf) - stop
        if final and carry:
            # the compressed records are whole but the stream they hold ends inside a
            # record (seen at the end of `perf record --threads -z` data files): perf's
            # reader drops such a tail silently; it is dropped here too, and reported
            ch = ch or Chunk(buf, *(np.empty(0, np.int64) for _ in range(4)), st["base"], stream,
                             samples=np.empty(0, np.int64), others=np.empty(0, np.int64))
            ch.tail = carry
        nxt = pool.get(max(2 * CHUNK_BYTES, 2 * carry))   # not one a chunk still holds
        if carry and not final:
            nxt[:carry] = buf[stop:]
        st.update(out=nxt, n=carry if not final else 0, base=st["base"] + stop,
                  marks=[m - stop for m in marks if m > stop])
        return ch

    def feed(data):
        before = st["n"]
        st["out"], st["n"] = dec.into(data, st["out"], before, grow)
        got = st["n"] - before
        if got:
            st["ratio"] = max(1.0, 0.9 * st["ratio"] + 0.1 * got / max(1, len(data)))

    for ch in chunks:
        comp = (ch.types == R["COMPRESSED"]) | (ch.types == R["COMPRESSED2"])
        rounds = ch.types == R["FINISHED_ROUND"]
        if not comp.any() and st["n"] == empty and not st["marks"]:
            yield ch
            continue
        start, stop = _payloads(ch, where)
        length = np.where(comp, stop - start, 0)
        other = np.flatnonzero(~comp & ~rounds)
        cuts = sorted({0, len(ch.offs), *other.tolist(), *(other + 1).tolist()})
        mv = memoryview(ch.buf)
        for a, b in zip(cuts[:-1], cuts[1:]):
            if b == a + 1 and not comp[a] and not rounds[a]:            # an uncompressed record
                if st["n"] > empty or st["marks"]:
                    inner = emit(False)
                    if inner is not None:
                        yield inner
                t = ch.types[a:b]
                yield Chunk(ch.buf, ch.offs[a:b], t, ch.sizes[a:b], np.flatnonzero(t == R["FINISHED_ROUND"]),
                             ch.base, ch.stream)
                continue
            total = np.cumsum(length[a:b])
            rnd = np.flatnonzero(rounds[a:b]) + a
            g0 = a
            while g0 < b:                     # groups of up to ~CHUNK_BYTES/4 output
                where.at(ch.base + int(ch.offs[g0]), ch.stream)
                want = max(1 << 14, int(CHUNK_BYTES / 4 / st["ratio"]))
                done = int(total[g0 - a - 1]) if g0 > a else 0
                g1 = min(b, a + int(np.searchsorted(total, done + want, side="left")) + 1)
                k = int(np.searchsorted(rnd, g1 - 1, side="right")) - 1
                if k >= 0 and rnd[k] >= g0:   # end at the group's last round (its mark is kept)
                    g1 = int(rnd[k]) + 1
                idx = np.flatnonzero(comp[g0:g1]) + g0
                feed(b"".join([mv[s0:s1] for s0, s1 in zip(start[idx].tolist(), stop[idx].tolist())]))
                if rounds[g1 - 1]:
                    st["marks"].append(st["n"])
                if st["n"] - empty >= CHUNK_BYTES:
                    inner = emit(False)
                    if inner is not None:
                        yield inner
                g0 = g1
    if st["n"] > empty or st["marks"] or st["cut"]:      # a cut stream ends with its last chunk marked
        inner = emit(True)
        if inner is not None:
            yield inner
    dec.close()


def _payloads(ch: Chunk, where: Where) -> tuple[np.ndarray, np.ndarray]:
    """Where the zstd data of each record of a walked chunk starts and stops (meaningful for its
    COMPRESSED and COMPRESSED2 records; COMPRESSED2 says its data size, checked here)."""
    start = ch.offs + 8
    stop = ch.offs + ch.sizes
    c2 = np.flatnonzero(ch.types == L.REC["COMPRESSED2"])
    if len(c2):
        data_size = Views(ch.buf).u64(ch.offs[c2] + 8).astype(np.int64)
        bad = data_size > ch.sizes[c2] - 16
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            where.at(ch.base + int(ch.offs[c2[k]]), ch.stream).fail(
                f"COMPRESSED2 data_size {int(data_size[k])} exceeds its {int(ch.sizes[c2[k]])}-byte record")
        start[c2] += 8
        stop[c2] = start[c2] + data_size
    return start, stop


def prefetch(items: Iterator, depth: int = 2) -> Iterator:
    """Run a chunk producer (file reads, zstd, the header walk: all release the GIL) in a
    background thread, `depth` chunks ahead of the decoder, on the machine's second core.

    The thread starts now, not at the first `next`: the reader's work overlaps whatever the
    caller sets up before it asks for the first item (an ingest's snapshot, its writer)."""
    return _Prefetch(items, depth)


class _Prefetch:
    """prefetch's iterator: items from a producer thread through a queue; the producer's
    exception is raised here.  close() (or dropping the iterator) stops the producer."""

    _DONE = object()

    def __init__(self, items: Iterator, depth: int):
        import queue
        import threading
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=_produce, args=(items, self._q, self._stop, self._DONE),
                                        name="perfdata-prefetch", daemon=True)
        self._thread.start()

    def __iter__(self):
        return self

    def __next__(self):
        if self._done:
            raise StopIteration
        item = self._q.get()
        if item is self._DONE or isinstance(item, BaseException):
            self.close()
            if item is self._DONE:
                raise StopIteration
            raise item
        return item

    def close(self) -> None:
        self._done = True
        self._stop.set()
        self._thread.join()

    def __del__(self):
        self._stop.set()           # the producer ends at its next item


def _produce(items: Iterator, q, stop, done) -> None:
    """prefetch's thread: put each item (then `done`, or the exception raised) unless stopped.
    Every put gives up once `stop` is set: a consumer that closes the iterator with the queue
    full (one file of a --threads directory failed while another was ahead) joins this thread."""
    try:
        for item in items:
            if not _put(q, item, stop):
                return
        _put(q, done, stop)
    except BaseException as e:       # re-raised in the consumer
        _put(q, e, stop)


def _put(q, item, stop) -> bool:
    """q.put(item), retried until it fits or `stop` is set -> whether it was put."""
    import queue
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False
