"""perf.data reader: file mode, pipe mode (`-o -`), `--threads` directories, `-z` compression.

Written against tools/perf/Documentation/perf.data-file-format.txt and
include/uapi/linux/perf_event.h (layouts in `_perf_layout.py`).  The data is
decoded in chunks of whole records:

1. bytes of the data section (or of each zstd stream, one decompressor per
   data file) -> a compiled walk over record headers (`_perf_kernels`) gives
   record offsets;
2. SAMPLE records are grouped by attr and decoded column-wise with numpy
   gathers at fixed or per-record byte positions (`_Views`);
3. the few side-band records (FORK, EXIT, COMM, MMAP2, LOST, ...) are decoded
   in Python;
4. rows are released in (t_ns, seq) order: perf reorders nothing across a
   FINISHED_ROUND, so after round k everything up to the largest time seen
   before round k-1 is final (the rule of perf's ordered_events).  A --threads
   directory has no rounds; its data.N files (one CPU's ring buffer each, in time
   order) are merged: rows older than every unfinished file's latest time are final.
"""
from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import zstandard

from ptreplay.schemas.errors import TraceFormatError
from ptreplay.pipeline.formats import RAW, Capture, RawColumns
from ptreplay.pipeline.formats import _perf_layout as L
from ptreplay.pipeline.formats._perf_tracing import TraceFormat, parse_tracing_data

NAME = "perf.data"
CHUNK_BYTES = 4 << 20           # decoded stream bytes per step: fits the L3 cache, bounds memory
BATCH_ROWS = 1 << 17             # rows per yielded table (about), and most rows normalize gets at once: bounds memory
AHEAD_FILES = 4                 # --threads data files decoded ahead on a thread each, up to this many files
_COLS_U64 = ("a0", "a1", "a2", "a3", "a4", "a5")


# ----------------------------------------------------------------------------- sniffing

def sniff(head: bytes) -> bool:
    """PERFILE2 magic in either byte order (file or pipe mode)."""
    return head[:8] in (L.MAGIC, L.MAGIC_SWAPPED)


def _data_files(path: Path) -> list[Path]:
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
    return sniff(head) and bool(_data_files(path))


# ----------------------------------------------------------------------------- errors

class _Where:
    """Current position for error messages: file plus a description of the offset."""

    def __init__(self, path):
        self.path = path
        self.what = "offset 0"

    def fail(self, msg: str):
        raise TraceFormatError(f"{self.path}: {self.what}: {msg}")

    def at(self, offset: int, stream: str = "") -> "_Where":
        self.what = f"{stream}offset {offset}"
        return self


def _fail(path, offset, msg):
    raise TraceFormatError(f"{path}: offset {offset}: {msg}")


# ----------------------------------------------------------------------------- attrs

class Attr:
    """One perf_event_attr (only the prefix in L.ATTR_FIELDS) plus its sample ids and names."""

    def __init__(self, raw: bytes, ids, index: int):
        for name, (off, code) in L.ATTR_FIELDS.items():
            if off + struct.calcsize(code) <= len(raw):
                setattr(self, name, struct.unpack_from("<" + code, raw, off)[0])
            else:
                setattr(self, name, 0)
        self.ids = list(ids)
        self.index = index
        self.name = ""            # 'system:event' from EVENT_DESC / EVENT_UPDATE
        self.fmt: TraceFormat | None = None
        self.plan = None          # [(column, Field)] for tracepoints

    def flag(self, name: str) -> bool:
        return bool(self.flags >> L.ATTR_FLAG_BITS[name] & 1)

    def has(self, bit: str) -> bool:
        return bool(self.sample_type & L.SAMPLE[bit])

    @property
    def dummy(self) -> bool:
        return self.type == L.PERF_TYPE_SOFTWARE and self.config == L.PERF_COUNT_SW_DUMMY

    @property
    def sampled(self) -> bool:
        """freq mode or a period above 1: not every event was recorded."""
        return not self.dummy and (self.flag("freq") or self.sample_period > 1)

    @property
    def event(self) -> str:
        """RAW `event`: the tracepoint name without its system."""
        if self.fmt is not None:
            return self.fmt.name
        return self.name.split(":")[-1] if self.name else f"attr{self.index}"

    @property
    def full_name(self) -> str:
        if self.fmt is not None:
            return f"{self.fmt.system}:{self.fmt.name}"
        return self.name or f"type{self.type}:config{self.config}"


def _column_plan(fmt: TraceFormat) -> list:
    """[(RAW column, Field)] for one tracepoint, per the table in pipeline/formats/__init__.py."""
    name = fmt.name
    fields = fmt.event_fields
    if name in L.EVENT_FIELDS:
        plan = [(col, fmt.get(fname)) for col, fname in L.EVENT_FIELDS[name].items()]
        return [(c, f) for c, f in plan if f is not None]
    if name.startswith("sys_enter_"):
        args = [f for f in fields if f.name != "__syscall_nr" and f.integer]
        return list(zip(_COLS_U64, args))
    if name.startswith("sys_exit_"):
        ret = fmt.get("ret")
        return [("ret", ret)] if ret is not None else []
    return list(zip(_COLS_U64, [f for f in fields if f.integer]))


# ----------------------------------------------------------------------------- numpy gathers

class _Views:
    """Typed little-endian views of one buffer at each byte residue, for unaligned gathers.

    perf records are not always 8-byte aligned (pipe mode puts the tracing data
    in between) and a tracepoint's u64 fields sit at 4 mod 8 in the record, so
    a u64 at byte position p is read as view_r[(p - r) // 8] with r = p % 8.
    """

    def __init__(self, buf):
        self.buf = buf
        self.u8 = np.frombuffer(buf, np.uint8)
        self._views = {}

    def view(self, dtype: str, r: int) -> np.ndarray:
        key = (dtype, r)
        if key not in self._views:
            size = np.dtype(dtype).itemsize
            # void items: numpy copies them fast at any alignment (unaligned u8 takes are slow)
            self._views[key] = np.frombuffer(self.buf, f"V{size}", count=(len(self.buf) - r) // size, offset=r)
        return self._views[key]

    def gather(self, pos: np.ndarray, dtype: str) -> np.ndarray:
        """Values of `dtype` at byte positions `pos` (any alignment)."""
        size = np.dtype(dtype).itemsize
        if size == 1:
            return self.u8[pos].view(dtype)
        if len(pos) == 0:
            return np.empty(0, dtype)
        res = pos & (size - 1)
        r0 = int(res[0])
        if (res == r0).all():
            return np.take(self.view(dtype, r0), pos >> _SHIFT[size]).view(dtype)
        out = np.empty(len(pos), dtype)
        for r in np.unique(res).tolist():
            m = res == r
            out[m] = np.take(self.view(dtype, r), pos[m] >> _SHIFT[size]).view(dtype)
        return out

    def u64(self, pos):
        return self.gather(pos, "<u8")

    def u32(self, pos):
        return self.gather(pos, "<u4")


_SHIFT = {2: 1, 4: 2, 8: 3}


class _Fields:
    """Gathers fields at `offs + k` for one group of records.

    When every record of the group starts at the same residue mod 8 (always,
    except in odd pipe-mode files), a field at a constant offset k is one
    np.take from the view at residue (r + k) % size with index q*8/size + c:
    no per-field division or residue test.
    """

    def __init__(self, v: _Views, offs: np.ndarray):
        self.v, self.offs = v, offs
        res = offs & 7
        self.r = int(res[0]) if len(offs) and (res == res[0]).all() else None
        self.q = offs >> 3 if self.r is not None else None
        self._qs = {}

    def at(self, k, dtype: str) -> np.ndarray:
        """`dtype` values at offs + k (k an int, or an int64 array per record)."""
        size = np.dtype(dtype).itemsize
        if self.r is None or isinstance(k, np.ndarray) or size == 1:
            return self.v.gather(self.offs + k, dtype)
        b = self.r + k                               # byte position relative to q * 8
        rr = b % size
        if size not in self._qs:
            self._qs[size] = self.q * (8 // size)
        # mode="clip": a field past the end of the buffer (a short record) is caught by
        # the size checks that follow every gather
        return np.take(self.v.view(dtype, rr), self._qs[size] + (b - rr) // size, mode="clip").view(dtype)

    def field(self, k, f) -> np.ndarray:
        """An integer tracepoint field as uint64 (signed ones sign-extended)."""
        vals = self.at(k, ("<i" if f.signed else "<u") + str(f.size))
        if f.size == 8:
            return vals.view(np.uint64)
        return vals.astype(np.int64 if f.signed else np.uint64).view(np.uint64)


# ----------------------------------------------------------------------------- frames

_COLUMNS = {"t_ns": (np.int64, 0), "pid": (np.int32, -1), "tid": (np.int32, -1), "cpu": (np.int32, -1),
            "ev": (np.int32, 0), **{c: (np.uint64, 0) for c in _COLS_U64}, "ret": (np.int64, 0),
            "comm": (np.int32, -1), "seq": (np.int64, 0)}      # working frame: dtype, default


def _frame(n: int) -> dict:
    """n rows in the reader's working form, at the defaults (event/comm as int codes, comm -1 = null)."""
    return _complete({"seq": np.zeros(n, np.int64)})


def _put(f: dict, col: str, rows, values) -> None:
    """f[col][rows] = values; a whole column (rows = all) is taken as is, without a copy."""
    dtype, default = _COLUMNS[col]
    n = len(f["seq"])
    if col not in f:
        if isinstance(rows, slice) and np.ndim(values):
            f[col] = np.asarray(values).astype(dtype, copy=False)    # C casts: signed -> u64 wraps
            return
        f[col] = np.full(n, default, dtype)
    f[col][rows] = values


def _complete(f: dict) -> dict:
    """Add the columns nobody wrote, at their defaults."""
    n = len(f["seq"])
    for col, (dtype, default) in _COLUMNS.items():
        if col not in f:
            f[col] = np.full(n, default, dtype) if default else np.zeros(n, dtype)
    return f


def _concat(frames: list[dict]) -> dict:
    if len(frames) == 1:
        return frames[0]
    return {k: np.concatenate([f[k] for f in frames]) for k in frames[0]}


def _take(frame: dict, idx) -> dict:
    return {k: v[idx] for k, v in frame.items()}


def _nrows(frame: dict) -> int:
    return len(frame["seq"])


class _Orderer:
    """Holds decoded rows until they are final, then releases them sorted by (t_ns, seq).

    The pending rows are rows [lo, hi) of one set of column buffers, and each
    chunk is decoded straight into the room after them (`room`): released rows
    are views of the buffers, so the rows of consecutive chunks are never joined.
    When a buffer is full the pending rows move to a new, larger one (they are
    few: only rows after the last round).  Rows arrive in seq order; while they
    also arrive in time order (the usual case) release is slicing, otherwise the
    pending rows are sorted first with a stable sort on t_ns, which keeps seq
    order among equal times.
    """

    def __init__(self):
        self.args = np.empty((len(_COLS_U64), 0), np.uint64)   # a0..a5 rows of cols, as decode_fixed_samples writes them
        self.cols = {**{c: np.empty(0, dtype) for c, (dtype, _) in _COLUMNS.items()}, **dict(zip(_COLS_U64, self.args))}
        self.lo = self.hi = 0
        self.in_order = True

    def room(self, n: int) -> tuple[dict, np.ndarray]:
        """Uninitialised rows for the next n rows (a frame, and its a0..a5 as one 2-D view)."""
        if self.hi + n > self.args.shape[1]:
            pending = self.hi - self.lo
            cap = max(4 * n, 2 * pending + n, 1 << 16)
            args = np.empty((len(_COLS_U64), cap), np.uint64)
            cols = {c: np.empty(cap, dtype) for c, (dtype, _) in _COLUMNS.items() if c not in _COLS_U64}
            cols.update(zip(_COLS_U64, args))
            for c, v in cols.items():
                if pending:
                    v[:pending] = self.cols[c][self.lo:self.hi]
            self.cols, self.args, self.lo, self.hi = cols, args, 0, pending
        end = self.hi + n
        return {c: v[self.hi:end] for c, v in self.cols.items()}, self.args[:, self.hi:end]

    def add(self, n: int):
        """The n rows of the last `room` hold the rows of one chunk (in seq order)."""
        t = self.cols["t_ns"][max(self.lo, self.hi - 1):self.hi + n]    # and the last pending row
        if n and self.in_order and not (t[1:] >= t[:-1]).all():
            self.in_order = False
        self.hi += n

    def release(self, limit: int | None) -> dict | None:
        """The rows with t_ns <= limit (all rows if limit is None), in order, or None."""
        if not self.in_order:
            order = np.argsort(self.cols["t_ns"][self.lo:self.hi], kind="stable") + self.lo
            for v in self.cols.values():
                v[self.lo:self.hi] = v[order]
            self.in_order = True
        t = self.cols["t_ns"]
        cut = self.hi if limit is None else self.lo + int(np.searchsorted(t[self.lo:self.hi], limit, side="right"))
        if cut == self.lo:
            return None
        out = {c: v[self.lo:cut] for c, v in self.cols.items()}
        self.lo = cut
        return out


# ----------------------------------------------------------------------------- the reader

class _PerfReader:
    """State of one capture: attrs, formats, interned strings, metadata, counters."""

    def __init__(self, path: Path, opener, allow_sampled: bool):
        self.path = path
        self.opener = opener or (lambda p: open(p, "rb"))
        self.allow_sampled = allow_sampled
        self.attrs: list[Attr] = []
        self.formats: dict[int, TraceFormat] = {}
        self.have_tracing = False
        self.events: list[str] = []          # interned event names (frame 'ev' codes)
        self._event_code: dict[str, int] = {}
        self.comms: list[str] = []           # interned comm strings (frame 'comm' codes)
        self._comm_code: dict[str, int] = {}
        self.meta = {"source_format": NAME, "host": None, "kernel_release": None, "arch": None,
                     "nr_cpus": None, "perf_version": None, "command_line": None, "clock": None,
                     "lost_events": 0, "lost_samples": 0, "sampled": False, "events_by_name": {},
                     "mmap2": [], "warnings": []}
        self._id_lut = np.full(1, -1, np.int64)
        self.validated = False
        self._sid = None
        self.seq = 0
        self.where = _Where(path)

    # ---- interning
    def event_code(self, name: str) -> int:
        if name not in self._event_code:
            self._event_code[name] = len(self.events)
            self.events.append(name)
        return self._event_code[name]

    def comm_code(self, s: str) -> int:
        if s not in self._comm_code:
            self._comm_code[s] = len(self.comms)
            self.comms.append(s)
        return self._comm_code[s]

    # ---- header pieces shared by file and pipe mode
    def add_attr(self, raw: bytes, ids, at: int):
        size = struct.unpack_from("<I", raw, 4)[0] if len(raw) >= 8 else 0
        if size < L.ATTR_SIZE_VER0 or size > len(raw):
            _fail(self.path, at, f"perf_event_attr size {size} does not fit its {len(raw)}-byte "
                                 f"entry (expected {L.ATTR_SIZE_VER0}..{len(raw)})")
        self.attrs.append(Attr(raw[:size], ids, len(self.attrs)))

    def feature(self, feat: int, blob: bytes, at: int):
        """Apply one header feature (file-mode section or pipe-mode HEADER_FEATURE payload)."""
        names = {v: k for k, v in L.FEAT.items()}
        name = names.get(feat)
        if name in L.FEAT_STRINGS:
            self.meta[L.FEAT_STRINGS[name]] = _header_string(blob, 0, self.path, at)[0]
        elif name == "NRCPUS" and len(blob) >= 8:
            online, avail = struct.unpack_from("<II", blob)
            self.meta["nr_cpus"] = avail or online
        elif name == "CMDLINE":
            self.meta["command_line"] = " ".join(_string_list(blob, self.path, at)).strip()
        elif name == "EVENT_DESC":
            self.event_desc(blob, at)
        elif name == "TRACING_DATA":
            self.tracing(blob, at)

    def event_desc(self, blob: bytes, at: int):
        """HEADER_EVENT_DESC: u32 nr, u32 attr_size, then {attr, u32 nr_ids, string, u64 ids[]}."""
        if len(blob) < 8:
            _fail(self.path, at, "EVENT_DESC feature shorter than its 8-byte header")
        nr, attr_size = struct.unpack_from("<II", blob)
        p, names = 8, {}
        for _ in range(nr):
            if p + attr_size + 4 > len(blob):
                _fail(self.path, at + p, "EVENT_DESC entry runs past the feature section")
            nr_ids = struct.unpack_from("<I", blob, p + attr_size)[0]
            name, p = _header_string(blob, p + attr_size + 4, self.path, at)
            if p + 8 * nr_ids > len(blob):
                _fail(self.path, at + p, f"EVENT_DESC lists {nr_ids} ids past the feature section")
            for i in struct.unpack_from(f"<{nr_ids}Q", blob, p):
                names[i] = name
            p += 8 * nr_ids
        for a in self.attrs:
            for i in a.ids:
                if i in names:
                    a.name = names[i]

    def tracing(self, blob: bytes, at: int):
        formats, info = parse_tracing_data(blob, self.path, at)
        self.formats.update(formats)
        self.have_tracing = True
        self.meta.setdefault("tracing", info)

    # ---- once all header information is known
    def validate(self):
        """Link attrs to formats, build the id -> attr index, refuse what cannot be replayed."""
        if self.validated:
            return
        self.validated = True
        path = self.path
        if not self.attrs:
            _fail(path, 0, "no perf_event_attr in the capture (expected an attrs section or HEADER_ATTR records)")
        arch = self.meta.get("arch")
        if arch and arch != "x86_64":
            _fail(path, 0, f"recorded on {arch}; ptreplay models x86_64 page tables only")
        tracepoints = [a for a in self.attrs if a.type == L.PERF_TYPE_TRACEPOINT]
        if tracepoints and not self.have_tracing:
            _fail(path, 0, "tracepoint events but no tracing data (feature TRACING_DATA / "
                           "HEADER_TRACING_DATA record); was the capture cut short?")
        for a in tracepoints:
            a.fmt = self.formats.get(a.config)
            if a.fmt is None:
                _fail(path, 0, f"attr {a.index} ({a.name or 'tracepoint'}) has config {a.config} "
                               f"but the tracing data has no format with that ID")
            a.plan = _column_plan(a.fmt)
        names = {a.full_name for a in self.attrs}
        if not any(n in names for n in L.FAULT_EVENTS):
            _fail(path, 0, "no page-fault events in the capture (found: "
                           f"{', '.join(sorted(names)) or 'none'}); record with "
                           "-e exceptions:page_fault_user -e exceptions:page_fault_kernel")
        sampled = [a for a in self.attrs if a.sampled]
        self.meta["sampled"] = bool(sampled)
        if sampled:
            msg = (f"sampled capture: {', '.join(a.full_name for a in sampled)} recorded with "
                   f"{'frequency' if sampled[0].flag('freq') else 'period'} {sampled[0].sample_period}, "
                   "not every event (record with -c 1, no -F)")
            if not self.allow_sampled:
                _fail(path, 0, msg + "; pass allow_sampled=True to read it anyway")
            self.meta["warnings"].append(msg)
        if any(a.flag("write_backward") for a in self.attrs):
            self.meta["warnings"].append("overwrite (write_backward) buffers: older events may be missing")
        a0 = self.attrs[0]
        self.meta["clock"] = (L.CLOCK_NAMES.get(a0.clockid, f"clockid {a0.clockid}")
                              if a0.flag("use_clockid") else "perf_clock")
        all_ids = [i for a in self.attrs for i in a.ids]
        if max(all_ids, default=0) > 1 << 24:
            _fail(path, 0, f"sample id {max(all_ids)} is implausibly large (perf numbers ids from 1)")
        self._id_lut = np.full(max(all_ids, default=0) + 1, -1, np.int64)
        for a in self.attrs:
            self._id_lut[a.ids] = a.index

    @property
    def sid(self) -> "_SampleIdLayout":
        if self._sid is None:
            if not self.attrs:
                self.where.fail("a record before any perf_event_attr (HEADER_ATTR) was seen")
            self._sid = _SampleIdLayout(self.attrs)
        return self._sid

    # ---- decoding one chunk of whole records
    def decode(self, ch: "_Chunk", orderer: _Orderer) -> tuple[int, np.ndarray]:
        """Decode one chunk into `orderer.room` (rows in seq order) -> (rows, largest time
        before each of its rounds)."""
        buf, offs, types = ch.buf, ch.offs, ch.types
        n = len(offs)
        seq0, self.seq = self.seq, self.seq + n
        is_sample = types == L.REC["SAMPLE"]
        sidx = np.flatnonzero(is_sample)
        # non-sample records are few (rounds excluded): pipe-mode header records first,
        # since the samples after them need their attrs and formats
        other = np.flatnonzero(~is_sample & (types != L.REC["FINISHED_ROUND"]))
        side = []
        for i in other.tolist():
            off = int(offs[i])
            self.where.at(ch.base + off, ch.stream)
            row = self.side_record(buf, int(types[i]), off, int(ch.sizes[i]), seq0 + i)
            if row is not None:
                side.append((i, row))
        nrows = len(sidx) + len(side)
        if not nrows:
            return 0, np.full(len(ch.rounds), -1, np.int64)
        rows, args = orderer.room(nrows)
        if side:                          # rare: samples and side rows into a frame, then in seq order
            f = _frame(len(side))
            for j, (_, row) in enumerate(side):
                for key, val in row.items():
                    f[key][j] = val
            if len(sidx):
                self.validate()
                f = _concat([self.decode_samples(_Views(buf), ch, sidx, seq0, _frame(len(sidx))), f])
            f = _take(f, np.argsort(f["seq"], kind="stable"))
            for c, v in rows.items():
                v[:] = f[c]
        else:
            self.validate()
            self.decode_samples(_Views(buf), ch, sidx, seq0, rows, args)
        # largest time before each round: records before it are samples or side rows
        t_cummax = np.maximum.accumulate(rows["t_ns"])
        kept = np.sort(np.concatenate([sidx, np.array([i for i, _ in side], np.int64)])) if side else sidx
        k = np.searchsorted(kept, ch.rounds)       # rows before each round
        round_max = np.where(k > 0, t_cummax[np.maximum(k - 1, 0)], -1)
        return nrows, round_max

    def decode_samples(self, v: _Views, ch: "_Chunk", sidx: np.ndarray, seq0: int, f: dict,
                       args: np.ndarray | None = None) -> dict:
        """SAMPLE records -> rows of frame f (uninitialised, n rows) in record order
        (perf_event.h field order); `args`: f's a0..a5 as the rows of one 2-D array.

        Attrs whose samples have a fixed layout (`_Layout`: no callchain, no group
        read) have every field at a constant offset: one compiled pass
        (`_perf_kernels.decode_fixed_samples`) finds each record's attr and writes
        all their integer columns.  String fields (few records) and attrs with
        variable layouts are then filled per attr from their own rows, the latter
        field by field from a per-record cursor (`decode_attr_samples`).
        """
        from ptreplay.pipeline.formats import _perf_kernels as K
        offs = ch.offs[sidx]
        sizes = ch.sizes[sidx]
        n = len(offs)
        np.add(sidx, seq0, out=f["seq"])
        f["comm"].fill(-1)
        if args is None:
            args = np.empty((len(_COLS_U64), n), np.uint64)
            f.update(zip(_COLS_U64, args))
        if len(self.attrs) == 1:
            id_pos = -1
        else:
            id_pos = self.sid.sample_id_pos
            if id_pos is None:
                self.where.at(ch.base + int(offs[0]), ch.stream).fail(
                    "several attrs but samples carry no PERF_SAMPLE_ID/IDENTIFIER")
        lay, fields = self.sample_plan()
        attr = np.empty(n, np.int32)
        status, i = K.decode_fixed_samples(*K.unaligned_views(v.buf), offs, sizes, id_pos, self._id_lut, lay, fields, attr,
                                           f["t_ns"], f["pid"], f["tid"], f["cpu"], f["ev"], args, f["ret"])
        if status:
            self.where.at(ch.base + int(offs[i]), ch.stream).fail(
                self._sample_error(K, status, v, int(offs[i]), int(sizes[i]), id_pos, attr[i]))
        need = [a for a in self.attrs if not lay[a.index, K.LAY_FIXED] or self._string_fields(a)
                and lay[a.index, K.LAY_MIN_RAW] >= 0]
        if need:
            counts = np.bincount(attr, minlength=len(self.attrs))
            for a in need:
                if not counts[a.index]:
                    continue
                rows = np.flatnonzero(attr == a.index)
                if not lay[a.index, K.LAY_FIXED]:
                    self.decode_attr_samples(v, a, offs[rows], sizes[rows], f, rows, ch)
                    continue
                raw = offs[rows] + self.layout(a).raw
                for col, fld in self._string_fields(a):
                    _put(f, col, rows, self.strings(v, raw, fld))
        return f

    def sample_plan(self) -> tuple[np.ndarray, np.ndarray]:
        """The per-attr layout and field tables of `decode_fixed_samples` (built once per attr set)."""
        from ptreplay.pipeline.formats import _perf_kernels as K
        key = (len(self.attrs), id(self._id_lut))
        if getattr(self, "_plan_key", None) == key:
            return self._plan
        lay = np.full((max(1, len(self.attrs)), K.LAY_COLUMNS), -1, np.int64)
        fields = np.full((len(lay), K.FIELD_COLUMNS, 3), -1, np.int64)
        cols = {c: j for j, c in enumerate(_COLS_U64)}
        cols["ret"] = 6
        for a in self.attrs:
            lo, row = self.layout(a), lay[a.index]
            ints = [(col, fld) for col, fld in a.plan or [] if fld.integer and not fld.string]
            row[K.LAY_FIXED] = int(lo is not None)
            row[K.LAY_EV] = self.event_code(a.event)
            if lo is None:
                continue
            row[K.LAY_SIZE] = lo.size
            for name, col in (("pid", K.LAY_TID), ("time", K.LAY_TIME), ("cpu", K.LAY_CPU)):
                if name in lo.fields:
                    row[col] = lo.fields[name][1]
            if lo.raw is not None:
                row[K.LAY_RAW] = lo.raw - 4
                if a.fmt is not None:
                    row[K.LAY_MIN_RAW], row[K.LAY_TYPE] = a.fmt.min_raw_size, a.fmt.id
                    for col, fld in ints:
                        fields[a.index, cols[col]] = (fld.offset, fld.size, int(fld.signed))
        self._plan_key, self._plan = key, (lay, fields)
        return self._plan

    @staticmethod
    def _string_fields(a: Attr) -> list:
        return [(col, fld) for col, fld in a.plan or [] if fld.string]

    def _sample_error(self, K, status: int, v: _Views, off: int, size: int, id_pos: int, k: int) -> str:
        """The message for a status of decode_fixed_samples at the record at `off`."""
        if status == K.BAD_ID:
            if id_pos + 8 > size:
                return f"sample of {size} bytes too short to hold its id at byte {id_pos}"
            ident = int(v.u64(np.array([off + id_pos]))[0])
            return (f"sample id {ident} belongs to no perf_event_attr (known ids: "
                    f"{np.flatnonzero(self._id_lut >= 0).tolist()[:8]}...)")
        a = self.attrs[k]
        if status == K.SHORT_SAMPLE:
            return f"{a.full_name}: sample shorter than its {self.layout(a).size}-byte layout"
        if status == K.RAW_PAST_END:
            return "RAW data runs past the end of its record"
        if status == K.RAW_TOO_SMALL:
            return f"RAW size below the {a.fmt.min_raw_size} bytes of {a.full_name}'s format"
        return f"RAW common_type differs from {a.full_name}'s ID {a.fmt.id}"

    def layout(self, a: Attr) -> "_Layout | None":
        if not hasattr(a, "_layout"):
            a._layout = _Layout.of(a)
        return a._layout

    def decode_attr_samples(self, v: _Views, a: Attr, offs, sizes, f: dict, rows, ch) -> None:
        """Fill rows `rows` of frame f from the samples of attr `a` at `offs`."""
        g = _Fields(v, offs)
        _put(f, "ev", rows, self.event_code(a.event))
        k = 8                                   # byte offset in the record, int or int64 array
        raw = None
        for bit, nbytes in L.SAMPLE_ORDER:
            if not a.has(bit):
                continue
            if bit == "TID":
                pt = g.at(k, "<u8")
                _put(f, "pid", rows, pt.astype(np.uint32).view(np.int32))
                _put(f, "tid", rows, (pt >> np.uint64(32)).astype(np.uint32).view(np.int32))
            elif bit == "TIME":
                _put(f, "t_ns", rows, g.at(k, "<i8"))
            elif bit == "CPU":
                _put(f, "cpu", rows, g.at(k, "<i4"))
            elif bit == "PERIOD" and not (a.dummy or a.sampled):   # sampled: see validate()
                self._check(g.at(k, "<u8") != 1, offs, ch, f"{a.full_name}: a sample with period != 1 "
                                                           "in a capture recorded with period 1")
            elif bit == "READ":
                k = k + _read_size(a.read_format, g, k)
                continue
            elif bit == "CALLCHAIN":
                nr = g.at(k, "<u8")
                self._check(nr > (sizes // 8).astype(np.uint64), offs, ch, "callchain longer than its record")
                k = k + 8 + 8 * nr.astype(np.int64)
                continue
            elif bit == "RAW":
                word = g.at(k, "<u8")          # u32 size, then the raw data: u16 common_type first
                raw_size = (word & np.uint64(0xFFFFFFFF)).astype(np.int64)
                raw = k + 4
                self._check(raw + raw_size > sizes, offs, ch, "RAW data runs past the end of its record")
                if a.fmt is not None:
                    self._check(raw_size < a.fmt.min_raw_size, offs, ch,
                                f"RAW size below the {a.fmt.min_raw_size} bytes of {a.full_name}'s format")
                    self._check((word >> np.uint64(32)) & np.uint64(0xFFFF) != a.fmt.id, offs, ch,
                                f"RAW common_type differs from {a.full_name}'s ID {a.fmt.id}")
                break
            k = k + nbytes
        self._check(np.asarray(k) > sizes, offs, ch, "sample fields run past the end of the record")
        if raw is None or not a.plan:
            return
        for col, fld in a.plan:
            if fld.string:
                _put(f, col, rows, self.strings(v, offs + raw, fld))
            elif fld.integer:
                vals = g.field(raw + fld.offset, fld)
                _put(f, col, rows, vals.view(np.int64) if col == "ret" else vals)

    def _check(self, bad: np.ndarray, offs, ch, msg: str):
        if bad.any():
            k = int(np.flatnonzero(bad)[0]) if np.ndim(bad) else 0
            self.where.at(ch.base + int(offs[k]), ch.stream).fail(msg)

    def strings(self, v: _Views, raw: np.ndarray, fld) -> np.ndarray:
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
            out[j] = self.comm_code(b.decode("utf-8", "replace"))
        return out

    # ---- non-sample records
    def side_record(self, buf, typ: int, off: int, size: int, seq: int) -> dict | None:
        """Decode one non-sample record; return a RAW row dict for FORK/EXIT/COMM, else None."""
        R = L.REC
        body = off + 8
        if typ in (R["FORK"], R["EXIT"], R["COMM"], R["MMAP2"]):
            tr = self.sid.trailer(buf, off, size)
        if typ in (R["FORK"], R["EXIT"]):
            pid, ppid, tid, ptid, t = L.TASK_BODY.unpack_from(buf, body)
            return {"t_ns": t, "pid": pid, "tid": tid, "cpu": tr.get("cpu", -1), "seq": seq,
                    "ev": self.event_code("perf_fork" if typ == R["FORK"] else "perf_exit"),
                    "a0": pid, "a1": tid, "a2": ppid, "a3": ptid}
        if typ == R["COMM"]:
            pid, tid = L.COMM_BODY.unpack_from(buf, body)
            end = off + size - tr["_size"]
            name = bytes(buf[body + 8:end]).split(b"\0", 1)[0].decode("utf-8", "replace")
            misc = struct.unpack_from("<H", buf, off + 4)[0]
            return {"t_ns": tr.get("time", -1), "pid": pid, "tid": tid, "cpu": tr.get("cpu", -1),
                    "seq": seq, "ev": self.event_code("perf_comm"), "a0": pid, "a1": tid,
                    "a2": int(bool(misc & L.PERF_RECORD_MISC_COMM_EXEC)), "comm": self.comm_code(name)}
        if typ == R["MMAP2"]:
            self.mmap2(buf, off, size, tr)
        elif typ == R["LOST"]:
            self.meta["lost_events"] += L.LOST_BODY.unpack_from(buf, body)[1]
        elif typ == R["LOST_SAMPLES"]:
            self.meta["lost_samples"] += L.LOST_SAMPLES_BODY.unpack_from(buf, body)[0]
        elif typ == R["HEADER_ATTR"]:
            attr_size = struct.unpack_from("<I", buf, body + 4)[0]
            if attr_size < L.ATTR_SIZE_VER0 or 8 + attr_size > size:
                self.where.fail(f"HEADER_ATTR with attr size {attr_size} in a {size}-byte record")
            nids = (size - 8 - attr_size) // 8
            ids = struct.unpack_from(f"<{nids}Q", buf, body + attr_size)
            self.add_attr(bytes(buf[body:body + attr_size]), ids, off)
        elif typ == R["HEADER_TRACING_DATA"]:
            payload = struct.unpack_from("<I", buf, body)[0]
            self.tracing(bytes(buf[off + size:off + size + payload]), off + size)
        elif typ == R["HEADER_FEATURE"]:
            feat = struct.unpack_from("<Q", buf, body)[0]
            self.feature(feat, bytes(buf[body + 8:off + size]), off + 16)
        elif typ == R["EVENT_UPDATE"]:
            kind, ident = struct.unpack_from("<QQ", buf, body)
            if kind == L.EVENT_UPDATE_NAME:
                name = bytes(buf[body + 16:off + size]).split(b"\0", 1)[0].decode("utf-8", "replace")
                for a in self.attrs:
                    if ident in a.ids:
                        a.name = name
        return None

    def mmap2(self, buf, off: int, size: int, tr: dict):
        """MMAP2 -> meta['mmap2'] (for attribution only; never a write path)."""
        body = off + 8
        pid, tid, addr, length, pgoff = L.MMAP2_BODY.unpack_from(buf, body)
        u = body + L.MMAP2_BODY.size
        rec = {"pid": pid, "tid": tid, "addr": addr, "len": length, "pgoff": pgoff}
        misc = struct.unpack_from("<H", buf, off + 4)[0]
        if misc & L.PERF_RECORD_MISC_MMAP_BUILD_ID:
            n, bid = L.MMAP2_BUILD_ID.unpack_from(buf, u)
            rec["build_id"] = bid[:n].hex()
        else:
            rec["maj"], rec["min"], rec["ino"], _ = L.MMAP2_INODE.unpack_from(buf, u)
        end = off + size - tr["_size"]
        rec["filename"] = bytes(buf[off + L.MMAP2_FILENAME_AT:end]).split(b"\0", 1)[0].decode("utf-8", "replace")
        rec["t_ns"] = tr.get("time", -1)
        self.meta["mmap2"].append(rec)

    # ---- turning rows into Arrow
    def count_events(self, rows: dict) -> None:
        counts = np.bincount(rows["ev"], minlength=len(self.events))
        by_name = self.meta["events_by_name"]
        for code in np.flatnonzero(counts).tolist():
            by_name[self.events[code]] = by_name.get(self.events[code], 0) + int(counts[code])

    def to_columns(self, rows: dict) -> RawColumns:
        self.count_events(rows)
        cols = {c: rows[c] for c in ("t_ns", "pid", "tid", "cpu", *_COLS_U64, "ret", "seq")}
        return RawColumns(cols, rows["ev"], list(self.events), rows["comm"], list(self.comms))

    def to_table(self, rows: dict) -> pa.Table:
        n = _nrows(rows)
        self.count_events(rows)
        event = pa.DictionaryArray.from_arrays(pa.array(rows["ev"], pa.int32()),
                                               pa.array(self.events, pa.string())).cast(pa.string())
        comm_codes = rows["comm"]
        if (comm_codes < 0).all():
            comm = pa.nulls(n, pa.string())
        else:
            idx = pa.array(comm_codes, pa.int32(), mask=comm_codes < 0)
            comm = pa.DictionaryArray.from_arrays(idx, pa.array(self.comms, pa.string())).cast(pa.string())
        cols = [rows["t_ns"], rows["pid"], rows["tid"], rows["cpu"], event,
                *(rows[c] for c in _COLS_U64), rows["ret"], comm, rows["seq"]]
        return pa.Table.from_arrays([c if isinstance(c, pa.Array) else pa.array(c, type=fld.type)
                                     for c, fld in zip(cols, RAW)], schema=RAW)


class _Layout:
    """Fixed byte layout of one attr's samples: field -> (numpy type, record offset) (perf_event.h order).

    Only for sample types without variable-length parts before RAW (CALLCHAIN,
    group READ); `size` is how many bytes of each record the layout needs.
    """

    def __init__(self, fields: dict, raw: int | None, size: int):
        self.fields, self.raw, self.size = fields, raw, size

    @classmethod
    def of(cls, a: Attr) -> "_Layout | None":
        fields, k, raw = {}, 8, None
        for bit, nbytes in L.SAMPLE_ORDER:
            if not a.has(bit):
                continue
            if bit == "CALLCHAIN" or bit == "READ" and a.read_format & L.READ_FORMAT["GROUP"]:
                return None
            if bit == "READ":
                nbytes = _read_size(a.read_format, None, 0)
            elif bit == "TID":
                fields["pid"], fields["tid"] = ("<i4", k), ("<i4", k + 4)
            elif bit == "TIME":
                fields["time"] = ("<i8", k)
            elif bit == "CPU":
                fields["cpu"] = ("<i4", k)
            elif bit == "RAW":
                fields["raw_word"] = ("<u8", k)
                raw = k + 4
                k = raw + (a.fmt.min_raw_size if a.fmt is not None else 4)
                for _, fld in a.plan or []:
                    if fld.integer:
                        fields["f_" + fld.name] = (("<i" if fld.signed else "<u") + str(fld.size),
                                                   raw + fld.offset)
                break
            k += nbytes
        return cls(fields, raw, max(k, 8 + 8 if raw is not None else k))


def _read_size(read_format: int, g: "_Fields", k):
    """Bytes of a PERF_SAMPLE_READ block at offs + k (per record when it is a GROUP block)."""
    if read_format & L.READ_FORMAT["GROUP"]:
        return L.read_block_size(read_format, g.at(k, "<u8").astype(np.int64))
    return L.read_block_size(read_format)


class _SampleIdLayout:
    """Where the id sits in samples and what the sample_id_all trailer holds (perf_event.h)."""

    def __init__(self, attrs: list[Attr]):
        a = attrs[0]
        self.attr = a
        self.sample_id_all = a.flag("sample_id_all")
        if a.has("IDENTIFIER"):
            self.sample_id_pos = 8
        elif a.has("ID"):
            before = ("IP", "TID", "TIME", "ADDR")
            self.sample_id_pos = 8 + 8 * sum(a.has(b) for b in before)
        else:
            self.sample_id_pos = None
        fields = [name for name, _ in L.SAMPLE_ID_ORDER if a.has(name)] if self.sample_id_all else []
        self.size = 8 * len(fields)
        self.fields = fields

    def trailer(self, buf, off: int, size: int) -> dict:
        """Decode the sample_id trailer at the end of a non-sample record."""
        out = {"_size": 0}
        if not self.size or size < 8 + self.size:
            return out
        p = off + size - self.size
        out["_size"] = self.size
        for name in self.fields:
            if name == "TID":
                out["pid"], out["tid"] = struct.unpack_from("<ii", buf, p)
            elif name == "TIME":
                out["time"] = struct.unpack_from("<q", buf, p)[0]
            elif name == "CPU":
                out["cpu"] = struct.unpack_from("<i", buf, p)[0]
            p += 8
        return out


def _header_string(blob: bytes, p: int, path, at: int) -> tuple[str, int]:
    """perf_header_string: u32 len (incl. NUL, padded) + bytes -> (text, next position)."""
    if p + 4 > len(blob):
        _fail(path, at + p, "header string length runs past its section")
    n = struct.unpack_from("<I", blob, p)[0]
    if p + 4 + n > len(blob):
        _fail(path, at + p, f"header string of {n} bytes runs past its section ({len(blob) - p - 4} left)")
    return blob[p + 4:p + 4 + n].split(b"\0", 1)[0].decode("utf-8", "replace"), p + 4 + n


def _string_list(blob: bytes, path, at: int) -> list[str]:
    if len(blob) < 4:
        _fail(path, at, "string list shorter than its u32 count")
    nr, p, out = struct.unpack_from("<I", blob)[0], 4, []
    for _ in range(nr):
        s, p = _header_string(blob, p, path, at)
        out.append(s)
    return out


# ----------------------------------------------------------------------------- byte streams

@dataclass
class _Chunk:
    """Whole records of one stream: bytes, per-record offset/type/size, and round marks."""
    buf: bytes
    offs: np.ndarray          # record starts in buf (int64)
    types: np.ndarray         # perf_event_header.type (int64)
    sizes: np.ndarray         # perf_event_header.size (int64)
    rounds: np.ndarray        # for each FINISHED_ROUND: how many records of this chunk precede it
    base: int                 # stream offset of buf[0], for messages
    stream: str               # '' (file offsets) or 'data.1 decompressed stream ' ...
    tail: int = 0             # bytes of a record cut off by the end of a zstd stream, dropped


_kernels = None


def _walk(buf, start: int, end: int):
    global _kernels
    if _kernels is None:
        from ptreplay.pipeline.formats import _perf_kernels
        _kernels = _perf_kernels
    return _kernels.walk_records(*_kernels.unaligned_views(buf), start, end)


def _chunk(buf, base: int, stream: str, where: "_Where", final: bool, extra_rounds=()) -> tuple:
    """Walk buf -> (_Chunk of its whole records or None, stop).  `final`: no more bytes follow."""
    offs, types, sizes, stop, status = _walk(buf, 0, len(buf))
    if status:
        where.at(base + stop, stream).fail("record header with size < 8 (expected a perf_event_header)")
    if final and stop < len(buf):
        need = _record_extent(buf, stop)
        where.at(base + stop, stream).fail(
            f"truncated record: expected {need if need else 'an 8-byte header'} bytes, {len(buf) - stop} remain")
    rounds = np.flatnonzero(types == L.REC["FINISHED_ROUND"])
    if len(extra_rounds):
        marks = np.searchsorted(offs, np.asarray(extra_rounds, np.int64), side="left")
        rounds = np.sort(np.concatenate([rounds, marks]))
    if not len(offs):
        return None, stop
    return _Chunk(buf, offs, types, sizes, rounds, base, stream), stop


def _record_chunks(f, start: int, length: int | None, label: str, where: "_Where") -> Iterator[_Chunk]:
    """Read [start, start+length) (to EOF if None) as chunks of whole records.

    A partial record is carried into the next chunk; a chunk grows when one record
    (pipe-mode tracing data) is larger than CHUNK_BYTES.
    """
    f.seek(start)
    pos, carry, want, remaining = start, b"", CHUNK_BYTES, length
    while True:
        n = want if remaining is None else min(want, remaining)
        data = f.read(n) if n > 0 else b""
        if remaining is not None:
            if len(data) < n:
                where.at(pos + len(carry) + len(data), label).fail(
                    f"file is truncated: the data section needs {remaining - len(data)} more bytes")
            remaining -= len(data)
        buf = carry + data if carry else data
        final = not data or remaining == 0
        if not buf:
            return
        ch, stop = _chunk(buf, pos, label, where, final)
        if ch is not None:
            yield ch
        if final:
            return
        carry, pos = buf[stop:], pos + stop
        want = max(CHUNK_BYTES, _record_extent(carry, 0) - len(carry))


def _record_extent(buf, p: int) -> int:
    if len(buf) - p < 8:
        return 0
    typ, _, size = L.EVENT_HEADER.unpack_from(buf, p)
    if typ == L.REC["HEADER_TRACING_DATA"] and len(buf) - p >= 12:
        return size + struct.unpack_from("<I", buf, p + 8)[0]
    return size


def _expand_compressed(chunks: Iterator[_Chunk], label: str, where: "_Where") -> Iterator[_Chunk]:
    """Replace COMPRESSED/COMPRESSED2 records by the records they hold, in place.

    One streaming zstd decompressor per data file (perf keeps one zstd stream per
    file and cuts it into records anywhere, so a record may span two of them).
    The payloads of consecutive compressed records are fed to it in groups of
    about CHUNK_BYTES of output; a partial record at the end is carried over.
    A group ends at its last FINISHED_ROUND, which becomes a round mark at that
    point of the output (the rounds inside a group are dropped: fewer rounds only
    make the flush limits more conservative), or, with no round in it (sparse
    rounds, --threads files), at its size; any other uncompressed record is
    passed on at its place.  Offsets in
    messages are decompressed-stream offsets.
    """
    dec = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True)
    stream = f"{label}decompressed stream "
    pending: list[bytes] = []
    st = {"n": 0, "base": 0, "marks": [], "ratio": 16.0}
    R = L.REC

    def emit(final: bool):
        buf = b"".join(pending)
        pending.clear()
        marks = st["marks"]
        ch, stop = _chunk(buf, st["base"], stream, where, False, marks)
        carry = buf[stop:]
        if final and carry:
            # the compressed records are whole but the stream they hold ends inside a
            # record (seen at the end of `perf record --threads -z` data files): perf's
            # reader drops such a tail silently; it is dropped here too, and reported
            ch = ch or _Chunk(buf, *(np.empty(0, np.int64) for _ in range(4)), st["base"], stream)
            ch.tail = len(carry)
        elif carry:
            pending.append(carry)
        st.update(n=len(carry), base=st["base"] + stop, marks=[m - stop for m in marks if m > stop])
        return ch

    def feed(data: bytes):
        out = dec.decompress(data)
        if out:
            pending.append(out)
            st["n"] += len(out)
            st["ratio"] = max(1.0, 0.9 * st["ratio"] + 0.1 * len(out) / max(1, len(data)))

    for ch in chunks:
        comp = (ch.types == R["COMPRESSED"]) | (ch.types == R["COMPRESSED2"])
        rounds = ch.types == R["FINISHED_ROUND"]
        if not comp.any() and not pending and not st["marks"]:
            yield ch
            continue
        start = ch.offs + 8
        stop = ch.offs + ch.sizes
        c2 = np.flatnonzero(ch.types == R["COMPRESSED2"])
        if len(c2):
            data_size = _Views(ch.buf).u64(ch.offs[c2] + 8).astype(np.int64)
            bad = data_size > ch.sizes[c2] - 16
            if bad.any():
                k = int(np.flatnonzero(bad)[0])
                where.at(ch.base + int(ch.offs[c2[k]]), ch.stream).fail(
                    f"COMPRESSED2 data_size {int(data_size[k])} exceeds its {int(ch.sizes[c2[k]])}-byte record")
            start[c2] += 8
            stop[c2] = start[c2] + data_size
        length = np.where(comp, stop - start, 0)
        other = np.flatnonzero(~comp & ~rounds)
        cuts = sorted({0, len(ch.offs), *other.tolist(), *(other + 1).tolist()})
        mv = memoryview(ch.buf)
        for a, b in zip(cuts[:-1], cuts[1:]):
            if b == a + 1 and not comp[a] and not rounds[a]:            # an uncompressed record
                if pending or st["marks"]:
                    inner = emit(False)
                    if inner is not None:
                        yield inner
                t = ch.types[a:b]
                yield _Chunk(ch.buf, ch.offs[a:b], t, ch.sizes[a:b], np.flatnonzero(t == R["FINISHED_ROUND"]),
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
                if st["n"] >= CHUNK_BYTES:
                    inner = emit(False)
                    if inner is not None:
                        yield inner
                g0 = g1
    if pending or st["marks"]:
        inner = emit(True)
        if inner is not None:
            yield inner


def _prefetch(items: Iterator, depth: int = 2) -> Iterator:
    """Run a chunk producer (file reads, zstd, the header walk: all release the GIL) in a
    background thread, `depth` chunks ahead of the decoder, on the machine's second core."""
    import queue
    import threading
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    DONE = object()

    def produce():
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(DONE)
        except BaseException as e:       # re-raised in the consumer
            q.put(e)

    t = threading.Thread(target=produce, name="perfdata-prefetch", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        t.join()


# ----------------------------------------------------------------------------- file layouts

def _open_header(r: _PerfReader, f, size: int) -> tuple[str, int, int]:
    """Parse the file or pipe header; return (mode, data offset, data size)."""
    path = r.path
    head = f.read(L.FILE_HEADER_SIZE)
    if not head:
        _fail(path, 0, "empty file, expected a perf.data header (magic PERFILE2)")
    if len(head) < 16:
        _fail(path, 0, f"truncated header: {len(head)} bytes, expected at least {L.PIPE_HEADER_SIZE}")
    magic, hsize = L.PIPE_HEADER.unpack_from(head)
    if magic == L.MAGIC_SWAPPED:
        _fail(path, 0, "byte-swapped PERFILE2 magic: recorded on a big-endian machine; "
                       "ptreplay models x86_64 (little-endian) only")
    if magic != L.MAGIC:
        _fail(path, 0, f"bad magic {magic!r}, expected {L.MAGIC!r}")
    if hsize == L.PIPE_HEADER_SIZE:
        return "pipe", L.PIPE_HEADER_SIZE, size - L.PIPE_HEADER_SIZE     # records run to the end
    if hsize != L.FILE_HEADER_SIZE or len(head) < L.FILE_HEADER_SIZE:
        _fail(path, 8, f"header size {hsize} with {len(head)} bytes present, expected "
                       f"{L.FILE_HEADER_SIZE} (file) or {L.PIPE_HEADER_SIZE} (pipe)")
    (_, _, attr_size, attrs_off, attrs_size, data_off, data_size,
     _, _, flags) = L.FILE_HEADER.unpack(head)
    for name, off, sz in (("attrs", attrs_off, attrs_size), ("data", data_off, data_size)):
        if off + sz > size:
            _fail(path, 24 if name == "attrs" else 40,
                  f"{name} section [{off}, {off + sz}) runs past the end of the {size}-byte file (truncated?)")
    if attr_size < L.ATTR_SIZE_VER0 + 16 or attrs_size % attr_size:
        _fail(path, 16, f"attr_size {attr_size} does not divide the {attrs_size}-byte attrs section "
                        f"(expected attr.size + 16 >= {L.ATTR_SIZE_VER0 + 16})")
    f.seek(attrs_off)
    attrs = f.read(attrs_size)
    for k in range(attrs_size // attr_size):
        at = attrs_off + k * attr_size
        entry = attrs[k * attr_size:(k + 1) * attr_size]
        attr_size_field = struct.unpack_from("<I", entry, 4)[0]
        if attr_size_field != attr_size - 16:
            _fail(path, at + 4, f"attr.size {attr_size_field} does not match header attr_size "
                                f"{attr_size} - 16")
        ids_off, ids_size = L.SECTION.unpack_from(entry, attr_size - 16)
        if ids_off + ids_size > size or ids_size % 8:
            _fail(path, at + attr_size - 16, f"attr ids section [{ids_off}, {ids_off + ids_size}) "
                                             f"outside the {size}-byte file")
        f.seek(ids_off)
        ids = struct.unpack(f"<{ids_size // 8}Q", f.read(ids_size))
        r.add_attr(entry[:attr_size - 16], ids, at)
    _read_features(r, f, flags, data_off + data_size, size)
    return "file", data_off, data_size


def _read_features(r: _PerfReader, f, flags: bytes, index_off: int, size: int):
    """Feature sections: one {offset, size} per set bit, ascending, right after the data section."""
    bits = [b for b in range(256) if flags[b // 8] >> (b % 8) & 1]
    if index_off + 16 * len(bits) > size:
        _fail(r.path, index_off, f"feature index of {len(bits)} entries runs past the end of the "
                                 f"{size}-byte file (truncated?)")
    f.seek(index_off)
    index = f.read(16 * len(bits))
    sections = [(b, *L.SECTION.unpack_from(index, 16 * k)) for k, b in enumerate(bits)]
    # EVENT_DESC names attrs by id; TRACING_DATA before validation; order otherwise irrelevant
    for feat, off, sz in sections:
        if off + sz > size:
            _fail(r.path, index_off, f"feature {feat} section [{off}, {off + sz}) runs past the "
                                     f"end of the {size}-byte file")
        f.seek(off)
        r.feature(feat, f.read(sz), off)
    r.meta["features"] = bits


def _file_size(f) -> int:
    try:
        return os.fstat(f.fileno()).st_size
    except (AttributeError, OSError, ValueError):
        here = f.tell()
        f.seek(0, 2)
        n = f.tell()
        f.seek(here)
        return n


def read(path, opener=None, allow_sampled: bool = False, columns: bool = False) -> Capture:
    """Read a perf.data file, pipe-mode stream or --threads directory as RAW batches.

    Header, attrs and features are parsed (and the capture validated) now for
    file mode; pipe mode learns them from its first records.  Batches are sorted
    by (t_ns, seq) and hold about BATCH_ROWS rows; `meta` is complete once the
    batches are exhausted.  `columns`: yield the same rows as `RawColumns` (numpy,
    event and comm as codes) instead of RAW tables, for `Normalizer.push`.
    """
    path = Path(path)
    r = _PerfReader(path, opener, allow_sampled)
    if path.is_dir():
        if not sniff_dir(path):
            _fail(path, 0, "directory is not a perf --threads capture (expected data with a "
                           "PERFILE2 header and data.N files)")
        header_file, extra = path / "data", _data_files(path)
    else:
        header_file, extra = path, []
    rpath = r.path
    try:
        f = r.opener(header_file)
    except OSError as e:
        raise TraceFormatError(f"{header_file}: offset 0: cannot open ({e.strerror})") from None
    r.path = header_file
    try:
        size = _file_size(f)
        mode, data_off, data_size = _guard(r, lambda: _open_header(r, f, size))
        if mode == "file":
            _guard(r, r.validate)
        r.meta["mode"] = "threads" if extra else mode
    except BaseException:
        f.close()
        raise
    r.path = rpath
    return Capture(batches=_batches(r, f, header_file, data_off, data_size, extra, columns), meta=r.meta)


_DECODE_ERRORS = (struct.error, ValueError, IndexError, OverflowError, KeyError, MemoryError,
                  zstandard.ZstdError)


def _low_level(where: _Where, e: Exception) -> TraceFormatError:
    return TraceFormatError(f"{where.path}: {where.what}: cannot decode "
                            f"({type(e).__name__}: {e})".replace("\n", " "))


def _guard(r: _PerfReader, fn):
    """Run fn, turning low-level decode errors into one-line TraceFormatErrors."""
    try:
        return fn()
    except TraceFormatError:
        raise
    except _DECODE_ERRORS as e:
        raise _low_level(r.where, e) from None


def _guarded(where: _Where, items: Iterator) -> Iterator:
    """`_guard` for a generator (the chunk producer runs in its own thread, with its own `where`)."""
    try:
        yield from items
    except TraceFormatError:
        raise
    except _DECODE_ERRORS as e:
        raise _low_level(where, e) from None


class _Stream:
    """One data file as chunks of whole records (produced `ahead` on a thread), and the
    latest time decoded from it so far."""

    def __init__(self, r: _PerfReader, path: Path, fh, start: int, length: int | None, label: str, ahead: bool):
        self.path = path
        if fh is None:
            try:
                fh = r.opener(path)
            except OSError as e:
                raise TraceFormatError(f"{path}: offset 0: cannot open ({e.strerror})") from None
            length = _file_size(fh)
        self.fh = fh
        where = _Where(path)
        chunks = _guarded(where, _expand_compressed(_record_chunks(fh, start, length, label, where), label, where))
        self.chunks = _prefetch(chunks) if ahead else chunks
        self.last = -1

    def decode_next(self, r: _PerfReader, orderer: _Orderer) -> tuple[int, np.ndarray] | None:
        """Decode this file's next chunk into `orderer` -> (rows, round maxima), None at its end."""
        ch = next(self.chunks, None)
        if ch is None:
            return None
        r.where.path = self.path
        if ch.tail:
            r.meta["dropped_tail_bytes"] = r.meta.get("dropped_tail_bytes", 0) + ch.tail
            r.meta["warnings"].append(f"{self.path}: its zstd stream ends {ch.tail} bytes into a record "
                                      "(perf's last flush); that record is dropped, as perf script does")
        n, round_max = _guard(r, lambda: r.decode(ch, orderer))
        if n:
            self.last = max(self.last, int(orderer.cols["t_ns"][orderer.hi:orderer.hi + n].max()))
        orderer.add(n)
        return n, round_max

    def close(self):
        self.chunks.close()
        self.fh.close()


def _by_rounds(r: _PerfReader, orderer: _Orderer, s: _Stream) -> Iterator[dict]:
    """One stream (file or pipe mode): release rows at perf's round marks (module docstring)."""
    maxes = [-1, -1]                     # largest time as of the previous round, as of the last round
    t_max = -1
    while (step := s.decode_next(r, orderer)) is not None:
        _, round_max = step
        if len(round_max):
            for m in np.maximum(round_max, t_max)[-2:].tolist():
                maxes = [maxes[1], max(m, maxes[1])]
            ready = orderer.release(maxes[0])
            if ready is not None:
                yield ready
        t_max = s.last


def _merged(r: _PerfReader, orderer: _Orderer, streams: list[_Stream]) -> Iterator[dict]:
    """A --threads directory: each data.N file holds one CPU's ring buffer, in time order
    (what perf itself assumes of directory data), and no rounds.  Decode next the file that
    is furthest behind; rows older than every unfinished file's latest time are final, so
    only rows near the files' common front are held (a file out of time order shows as
    clamped rows in the normalize statistics)."""
    live = list(streams)
    while live:
        s = min(live, key=lambda x: x.last)
        if s.decode_next(r, orderer) is None:
            live.remove(s)
        if live:
            ready = orderer.release(min(x.last for x in live) - 1)
            if ready is not None:
                yield ready


def _released(r: _PerfReader, f, header_file: Path, data_off: int, data_size: int,
              extra: list[Path]) -> Iterator[dict]:
    """Every row of the capture, as frames released in (t_ns, seq) order."""
    orderer = _Orderer()
    streams = []
    try:
        streams.append(_Stream(r, header_file, f, data_off, data_size, "" if not extra else "data ", True))
        ahead = len(extra) <= AHEAD_FILES    # a thread per file only for a few files
        streams += [_Stream(r, p, None, 0, None, f"{p.name} ", ahead) for p in extra]
        yield from _merged(r, orderer, streams) if extra else _by_rounds(r, orderer, streams[0])
    finally:
        for s in streams:
            s.close()
        if not streams:
            f.close()
    if not r.validated:
        r.where.path = header_file
        _guard(r, r.validate)
    rest = orderer.release(None)
    if rest is not None:
        yield rest


def _batches(r: _PerfReader, f, header_file: Path, data_off: int, data_size: int,
             extra: list[Path], columns: bool = False) -> Iterator[pa.Table | RawColumns]:
    """Decode every data stream, release rows in (t_ns, seq) order, yield ~BATCH_ROWS tables
    (or RawColumns)."""
    emit = r.to_columns if columns else r.to_table
    # RawColumns go out as soon as rows are released (tens of thousands, still in the
    # cache; no copy into bigger batches: the Parquet writer gathers its row groups)
    batch_rows = 1 if columns else BATCH_ROWS
    out, nout = [], 0
    for ready in _released(r, f, header_file, data_off, data_size, extra):
        for i in range(0, _nrows(ready), BATCH_ROWS):        # huge rounds (-m 256M) in pieces
            piece = {k: v[i:i + BATCH_ROWS] for k, v in ready.items()}
            out.append(piece)
            nout += _nrows(piece)
            if nout >= batch_rows:
                yield emit(_concat(out))
                out, nout = [], 0
    if out:
        yield emit(_concat(out))
    r.meta["events_total"] = sum(r.meta["events_by_name"].values())
