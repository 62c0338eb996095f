"""Chunks of whole perf.data records -> RAW rows, as numpy columns (the reader's decode).

SAMPLE records are grouped by attr and decoded column-wise: attrs whose samples
have a fixed layout in one compiled pass (`kernels.decode_fixed_samples`), the
others with numpy gathers at the per-record offsets of `samples.walk_fields`.
The few side-band records (FORK, EXIT, COMM, ...) come from `walk.split_records`.
Rows are written into a *frame*: a dict of columns (`COLUMNS`), event and comm
as codes into the session's interned strings.
"""
from __future__ import annotations

import numpy as np

from ptreplay.pipeline.formats.base import FAULT_EVENTS, FAULT_ROWS
from ptreplay.replay import aot
from ptreplay.pipeline.formats.perf import kernel_abi as K
from ptreplay.pipeline.formats.perf.header import COLS_U64, Attr, Session
from ptreplay.pipeline.formats.perf.samples import Fields, Views, walk_fields
from ptreplay.pipeline.formats.perf import walk
from ptreplay.pipeline.formats.perf.walk import Chunk, split_records

# ----------------------------------------------------------------------------- frames

COLUMNS = {"t_ns": (np.int64, 0), "pid": (np.int32, -1), "tid": (np.int32, -1), "cpu": (np.int32, -1),
           "ev": (np.int32, 0), **{c: (np.uint64, 0) for c in COLS_U64}, "ret": (np.int64, 0),
           "comm": (np.int32, -1), "seq": (np.int64, 0)}      # working frame: dtype, default


def frame(n: int) -> dict:
    """n rows in the reader's working form, at the defaults (event/comm as int codes, comm -1 = null)."""
    return complete({"seq": np.zeros(n, np.int64)})


def put(f: dict, col: str, rows, values) -> None:
    """f[col][rows] = values; a whole column (rows = all) is taken as is, without a copy."""
    dtype, default = COLUMNS[col]
    n = len(f["seq"])
    if col not in f:
        if isinstance(rows, slice) and np.ndim(values):
            f[col] = np.asarray(values).astype(dtype, copy=False)    # C casts: signed -> u64 wraps
            return
        f[col] = np.full(n, default, dtype)
    f[col][rows] = values


def complete(f: dict) -> dict:
    """Add the columns nobody wrote, at their defaults."""
    n = len(f["seq"])
    for col, (dtype, default) in COLUMNS.items():
        if col not in f:
            f[col] = np.full(n, default, dtype) if default else np.zeros(n, dtype)
    return f


def concat(frames: list[dict]) -> dict:
    if len(frames) == 1:
        return frames[0]
    return {k: np.concatenate([f[k] for f in frames]) for k in frames[0]}


def take(f: dict, idx) -> dict:
    return {k: v[idx] for k, v in f.items()}


def nrows(f: dict) -> int:
    return len(f["seq"])


# ----------------------------------------------------------------------------- the decoder

class Decoder:
    """Decodes the chunks of one capture into frames; `seq` numbers its records in file order."""

    def __init__(self, session: Session, narrow_faults: bool = False, split: bool = False):
        self.s = session
        self.seq = 0
        self._plan_key = None
        self.narrow_faults = narrow_faults or split   # RawColumns for normalize: see kernel_abi.LAY_NARROW
        self.split = split                     # page faults apart (reader.SplitOrderer, decode_split)
        self._scratch = [np.empty(0, np.int64)] * 6    # fault_records' other-record arrays
        self._carry: dict[str, np.ndarray] = {}        # stream -> the bytes its last cut chunk ended in

    def decode(self, ch: Chunk, orderer) -> tuple[int, np.ndarray]:
        """Decode one chunk into `orderer.room` (rows in seq order) -> (rows, largest time
        before each of its rounds)."""
        if self.split:
            return self.decode_split(ch, orderer)
        s = self.s
        seq0, self.seq = self.seq, self.seq + len(ch.offs)
        sidx, side = split_records(s, ch, seq0)
        n = len(sidx) + len(side)
        if not n:
            return 0, np.full(len(ch.rounds), -1, np.int64)
        rows, args = orderer.room(n)
        return n, self.rows_into(ch, sidx, side, seq0, rows, args, ch.rounds)

    def rows_into(self, ch: Chunk, sidx: np.ndarray, side: list, seq0: int, rows: dict, args: np.ndarray,
                  rounds: np.ndarray) -> np.ndarray:
        """The SAMPLE records sidx of a chunk and its side rows (`split_records`) into a room
        (rows, args: len(sidx) + len(side) rows), in seq order -> the largest time before each of
        `rounds` (-1: none)."""
        s = self.s
        if len(sidx):
            s.validate()
        if side:                          # rare: samples and side rows into a frame, then in seq order
            f = frame(len(side))
            for j, (_, row) in enumerate(side):
                for key, val in row.items():
                    f[key][j] = val
            if len(sidx):
                f = concat([self.decode_samples(Views(ch.buf), ch, sidx, seq0, frame(len(sidx))), f])
            f = take(f, np.argsort(f["seq"], kind="stable"))
            for c, v in rows.items():
                v[:] = f[c]
        else:
            self.decode_samples(Views(ch.buf), ch, sidx, seq0, rows, args)
        # largest time before each round: records before it are samples or side rows
        kept = np.sort(np.concatenate([sidx, np.array([i for i, _ in side], np.int64)])) if side else sidx
        return _round_max(rows["t_ns"], np.searchsorted(kept, rounds))

    def decode_split(self, ch: Chunk, orderer) -> tuple[tuple[int, int], np.ndarray]:
        """`decode` with the page faults apart (`orderer`: a reader.SplitOrderer): one compiled
        pass (`kernels.decode_fault_records`) walks the chunk and writes the fault rows of the
        narrow fixed-layout attrs into orderer.faults' room; the other records are decoded as
        `decode` does, into orderer.others' room -> ((fault rows, other rows), largest time before
        each round).  A chunk the producer did not walk (`Chunk.offs` None) is walked here, once
        the capture's attrs are known and until a header record (pipe mode); a walked one after
        its side-band records are applied (they may be the attrs its samples need)."""
        s = self.s
        seq0 = self.seq
        single = len(s.attrs) == 1
        got = None
        if ch.cut:
            ch = self._carried_in(ch)
        if ch.offs is None and s.validated and (single or s.sid.sample_id_pos is not None):
            got = self.fault_records(ch, orderer, seq0, ch.start, ch.end, ch.marks, True)
        if got is None:                    # walked first; side-band records applied first
            ch = walk.indexed(ch, s.where)
            if ch.cut:
                self._carry_out(ch, ch.end)
            if not len(ch.offs):
                return (0, 0), np.full(len(ch.rounds), -1, np.int64)
            sidx, side = split_records(s, ch, seq0)
            nf, rest, rounds = 0, sidx, ch.rounds
            if len(sidx):
                s.validate()
                self.id_pos(ch, sidx)
                end = int(ch.offs[-1]) + walk.record_extent(ch.buf, int(ch.offs[-1]))
                nf, sub, _, n, _ = self.fault_records(ch, orderer, seq0, int(ch.offs[0]), end, np.empty(0, np.int64),
                                                      False)
                rest = sub.samples
        else:
            nf, sub, rounds, n, stop = got
            if ch.cut:
                self._carry_out(ch, stop)
            sidx, side = split_records(s, sub, seq0)
            rest, ch = sidx, sub
        self.seq = seq0 + (n if got is not None else len(ch.offs))
        no = len(rest) + len(side)
        round_max = np.full(len(rounds), -1, np.int64)
        if no:
            rows, args = orderer.others.room(no)
            round_max = self.rows_into(ch, rest, side, seq0, rows, args, rounds)
        if nf:                                   # the fault rows in the room fault_records wrote
            g = orderer.faults.segs[-1]
            rec = g.cols["seq"][g.hi:g.hi + nf] - seq0     # their record indices
            round_max = np.maximum(round_max, _round_max(g.cols["t_ns"][g.hi:g.hi + nf], np.searchsorted(rec, rounds)))
        return (nf, no), round_max

    def _carried_in(self, ch: Chunk) -> Chunk:
        """A cut chunk with the bytes of its stream's record that the previous cut chunk ended in
        put before its own (in the room the producer left, or in a new buffer when it is larger)."""
        carry = self._carry.pop(ch.stream, None)
        if carry is None or not len(carry):
            return ch
        k = len(carry)
        if k <= ch.start:
            ch.buf[ch.start - k:ch.start] = carry
            ch.start -= k
            return ch
        shift = k - ch.start                      # buffer positions move by this much
        ch.buf = np.concatenate([carry, ch.buf[ch.start:]])
        ch.base, ch.start, ch.end, ch.marks = ch.base - shift, 0, len(ch.buf), ch.marks + shift
        return ch

    def _carry_out(self, ch: Chunk, stop: int) -> None:
        """Keep a cut chunk's bytes from `stop` on (a record its stream's next cut chunk continues);
        at the stream's end they are a record perf never finished writing (`Chunk.tail`)."""
        rest = ch.buf[stop:]
        if ch.last:
            ch.tail = len(rest)
        elif len(rest):
            self._carry[ch.stream] = rest.copy()

    def fault_records(self, ch: Chunk, orderer, seq0: int, start: int, end: int, marks: np.ndarray,
                      headers_stop: bool) -> tuple | None:
        """`kernels.decode_fault_records` over ch.buf[start:end] into orderer.faults' room (rows
        not yet added) -> (fault rows, a Chunk of the other records (their offs/types/sizes, its
        samples and others), rounds, records, where its whole records end), or None where it
        stopped at a header record."""
        s = self.s
        lay, fields = self.sample_plan()
        fast = (lay[:, K.LAY_NARROW] != 0) & (lay[:, K.LAY_FIXED] != 0)
        f, _ = orderer.faults.room((end - start) // int(lay[fast, K.LAY_SIZE].clip(8).min(initial=1 << 20)) + 1)
        cap = (end - start) // 8 + 1                      # records are at least 8 bytes
        if len(self._scratch[0]) < cap + len(marks):      # reused: the pages they touch stay mapped
            self._scratch = [np.empty(2 * (cap + len(marks)), np.int64) for _ in range(6)]
        offs, types, sizes, samples, others, rounds = self._scratch
        id_pos = -1 if len(s.attrs) == 1 else s.sid.sample_id_pos
        counts = np.zeros(len(lay), np.int64)
        v = Views(ch.buf)
        status, at, n, nf, ns, no, nr = aot.kernels().decode_fault_records(
            *K.unaligned_views(v.buf), start, end, marks, int(headers_stop), seq0, id_pos, s.id_lut, lay, fields,
            *(f[c] for c in FAULT_ROWS), offs, types, sizes, samples, others, rounds, counts)
        if status == K.HEADER_RECORD:
            return None
        if status == K.HEADER_TOO_SMALL:
            walk.fail_short_header(s.where, ch.base + at, ch.stream)
        if status:
            size = int(v.u64(np.array([at]))[0] >> np.uint64(48))
            s.where.at(ch.base + at, ch.stream).fail(self.sample_error(status, v, at, size, id_pos, nf))
        by_name = s.meta["events_by_name"]
        for a in np.flatnonzero(counts).tolist():
            name = s.attrs[a].event
            by_name[name] = by_name.get(name, 0) + int(counts[a])
        sub = Chunk(ch.buf, offs, types, sizes, rounds[:nr], ch.base, ch.stream, samples=samples[:ns],
                    others=others[:no])
        return nf, sub, rounds[:nr], n, at

    def id_pos(self, ch: Chunk, sidx: np.ndarray) -> int:
        """Where the samples' id is (-1: one attr, no id needed)."""
        s = self.s
        if len(s.attrs) == 1:
            return -1
        id_pos = s.sid.sample_id_pos
        if id_pos is None:
            s.where.at(ch.base + int(ch.offs[sidx[0]]), ch.stream).fail(
                "several attrs but samples carry no PERF_SAMPLE_ID/IDENTIFIER")
        return id_pos

    def decode_samples(self, v: Views, ch: Chunk, sidx: np.ndarray, seq0: int, f: dict,
                       args: np.ndarray | None = None) -> dict:
        """SAMPLE records -> rows of frame f (uninitialised, n rows) in record order
        (perf_event.h field order); `args`: f's a0..a5 as the rows of one 2-D array.

        Attrs whose samples have a fixed layout (`samples.SampleLayout`: no callchain, no
        group read) have every field at a constant offset: one compiled pass
        (`kernels.decode_fixed_samples`) finds each record's attr and writes all their
        integer columns.  String fields (few records) and attrs with variable layouts are
        then filled per attr from their own rows, the latter field by field at per-record
        offsets (`decode_attr_samples`).
        """
        s = self.s
        n = len(sidx)
        if args is None:
            args = np.empty((len(COLS_U64), n), np.uint64)
            f.update(zip(COLS_U64, args))
        id_pos = self.id_pos(ch, sidx)
        lay, fields = self.sample_plan()
        attr = np.empty(n, np.int32)
        counts = np.zeros(len(lay), np.int64)
        decode_fixed_samples = aot.kernels().decode_fixed_samples
        status, i = decode_fixed_samples(*K.unaligned_views(v.buf), ch.offs, ch.sizes, sidx, seq0, id_pos, s.id_lut,
                                         lay, fields, attr, f["t_ns"], f["pid"], f["tid"], f["cpu"], f["ev"], args,
                                         f["ret"], f["seq"], f["comm"], counts)
        if status:
            off, size = int(ch.offs[sidx[i]]), int(ch.sizes[sidx[i]])
            s.where.at(ch.base + off, ch.stream).fail(self.sample_error(status, v, off, size, id_pos, attr[i]))
        need = [a for a in s.attrs if not lay[a.index, K.LAY_FIXED] or _string_fields(a)
                and lay[a.index, K.LAY_MIN_RAW] >= 0]
        for a in need:
            if not counts[a.index]:
                continue
            rows = np.flatnonzero(attr == a.index)
            offs = ch.offs[sidx[rows]]
            if not lay[a.index, K.LAY_FIXED]:
                self.decode_attr_samples(v, a, offs, ch.sizes[sidx[rows]], f, rows, ch)
                continue
            raw = offs + a.layout.raw
            for col, fld in _string_fields(a):
                put(f, col, rows, self.strings(v, raw, fld))
        return f

    def sample_plan(self) -> tuple[np.ndarray, np.ndarray]:
        """The per-attr layout and field tables of `decode_fixed_samples` (built once per attr set)."""
        s = self.s
        key = (len(s.attrs), id(s.id_lut))
        if self._plan_key == key:
            return self._plan
        lay = np.full((max(1, len(s.attrs)), K.LAY_COLUMNS), -1, np.int64)
        lay[:, K.LAY_NARROW] = 0
        fields = np.full((len(lay), K.FIELD_COLUMNS, 3), -1, np.int64)
        cols = {c: j for j, c in enumerate(COLS_U64)}
        cols["ret"] = 6
        for a in s.attrs:
            lo, row = a.layout, lay[a.index]
            ints = [(col, fld) for col, fld in a.plan or [] if fld.integer and not fld.string]
            row[K.LAY_FIXED] = int(lo is not None)
            row[K.LAY_EV] = s.event_code(a.event)
            row[K.LAY_NARROW] = int(self.narrow_faults and a.event in FAULT_EVENTS and not _string_fields(a))
            row[K.LAY_USER] = int(a.event == "page_fault_user")
            if lo is None:
                continue
            row[K.LAY_SIZE] = lo.size
            for bit, col in (("TID", K.LAY_TID), ("TIME", K.LAY_TIME), ("CPU", K.LAY_CPU)):
                if bit in lo.offsets:
                    row[col] = lo.offsets[bit]
            if lo.raw is not None:
                row[K.LAY_RAW] = lo.raw - 4
                if a.fmt is not None:
                    row[K.LAY_MIN_RAW], row[K.LAY_TYPE] = a.fmt.min_raw_size, a.fmt.id
                    for col, fld in ints:
                        fields[a.index, cols[col]] = (fld.offset, fld.size, int(fld.signed))
        self._plan_key, self._plan = key, (lay, fields)
        return self._plan

    def sample_error(self, status: int, v: Views, off: int, size: int, id_pos: int, k: int) -> str:
        """The message for a status of decode_fixed_samples at the record at `off`."""
        s = self.s
        if status == K.BAD_ID:
            if id_pos + 8 > size:
                return f"sample of {size} bytes too short to hold its id at byte {id_pos}"
            ident = int(v.u64(np.array([off + id_pos]))[0])
            return (f"sample id {ident} belongs to no perf_event_attr (known ids: "
                    f"{np.flatnonzero(s.id_lut >= 0).tolist()[:8]}...)")
        a = s.attrs[k]
        if status == K.SHORT_SAMPLE:
            return f"{a.full_name}: sample shorter than its {a.layout.size}-byte layout"
        if status == K.RAW_PAST_END:
            return "RAW data runs past the end of its record"
        if status == K.RAW_TOO_SMALL:
            return f"RAW size below the {a.fmt.min_raw_size} bytes of {a.full_name}'s format"
        return f"RAW common_type differs from {a.full_name}'s ID {a.fmt.id}"

    def decode_attr_samples(self, v: Views, a: Attr, offs, sizes, f: dict, rows, ch: Chunk) -> None:
        """Fill rows `rows` of frame f from the samples of attr `a` at `offs`."""
        g = Fields(v, offs)
        put(f, "ev", rows, self.s.event_code(a.event))

        def check(bad, msg):
            self.check(bad, offs, ch, msg)

        def visit(bit, k):                      # k: byte offset in the record, int or int64 array
            if bit == "TID":
                pt = g.at(k, "<u8")
                put(f, "pid", rows, pt.astype(np.uint32).view(np.int32))
                put(f, "tid", rows, (pt >> np.uint64(32)).astype(np.uint32).view(np.int32))
            elif bit == "TIME":
                put(f, "t_ns", rows, g.at(k, "<i8"))
            elif bit == "CPU":
                put(f, "cpu", rows, g.at(k, "<i4"))
            elif bit == "PERIOD" and not (a.dummy or a.sampled):   # sampled: see Session.validate()
                check(g.at(k, "<u8") != 1, f"{a.full_name}: a sample with period != 1 "
                                           "in a capture recorded with period 1")

        _, raw, _ = walk_fields(a, g, sizes, check, visit)
        if raw is None or not a.plan:
            return
        for col, fld in a.plan:
            if fld.string:
                put(f, col, rows, self.strings(v, offs + raw, fld))
            elif fld.integer:
                vals = g.field(raw + fld.offset, fld)
                put(f, col, rows, vals.view(np.int64) if col == "ret" else vals)

    def check(self, bad: np.ndarray, offs, ch: Chunk, msg: str):
        """Fail at the first record of `offs` where `bad` holds."""
        if bad.any():
            k = int(np.flatnonzero(bad)[0]) if np.ndim(bad) else 0
            self.s.where.at(ch.base + int(offs[k]), ch.stream).fail(msg)

    def strings(self, v: Views, raw: np.ndarray, fld) -> np.ndarray:
        """char[N] or __data_loc char[] field -> comm codes (few records: Python is fine)."""
        out = np.empty(len(raw), np.int32)
        buf = v.u8
        if fld.data_loc:
            loc = v.u32(raw + fld.offset).astype(np.int64)
            starts, lens = raw + (loc & 0xFFFF), loc >> 16
        else:
            starts, lens = raw + fld.offset, np.full(len(raw), fld.size, np.int64)
        for j, (s, n) in enumerate(zip(starts.tolist(), lens.tolist())):
            b = buf[s:s + n].tobytes().split(b"\0", 1)[0]
            out[j] = self.s.comm_code(b.decode("utf-8", "replace"))
        return out


def _round_max(t: np.ndarray, k: np.ndarray) -> np.ndarray:
    """For each round, the largest of t[:k] (the rows before it; k ascending), -1 if k is 0:
    the maxima of the segments between rounds, accumulated (no running maximum of every row)."""
    seg = np.full(len(k), -1, np.int64)
    if not len(k) or k[-1] <= 0:
        return seg
    bounds = np.concatenate([[0], k])
    full = np.flatnonzero(bounds[1:] > bounds[:-1])        # segments with rows: consecutive, from 0
    seg[full] = np.maximum.reduceat(t[:k[-1]], bounds[full])
    return np.maximum.accumulate(seg)


def _string_fields(a: Attr) -> list:
    return [(col, fld) for col, fld in a.plan or [] if fld.string]
