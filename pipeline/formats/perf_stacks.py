"""User call stacks of chosen samples of a perf.data capture (for attribution).

The events table keeps no call chains: they are needed only for the few
events that allocated or emptied a page table, and only when someone asks who
did it.  `read_stacks` makes a second pass over the capture and decodes, for
the samples asked for:

* the user part of PERF_SAMPLE_CALLCHAIN (frame-pointer chains, `--call-graph
  fp`): the ips after the PERF_CONTEXT_USER marker;
* PERF_SAMPLE_REGS_USER and PERF_SAMPLE_STACK_USER (`--call-graph dwarf`):
  the user registers and a copy of the top of the user stack, which
  `pipeline.symbols.unwind` walks with the binaries' DWARF CFI;

plus every MMAP2 record (address -> file, page offset, build id).  Samples are
asked for by (tid, time): an event row carries its thread and the time of the
record it came from (a syscall's is its sys_exit record's), which identifies
the sample.  Candidates are picked by time with numpy; only those are parsed,
one by one.  The record walk is the main reader's (`_record_chunks`,
`_expand_compressed`).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ptreplay.schemas.errors import TraceFormatError
from ptreplay.pipeline.formats import _perf_layout as L
from ptreplay.pipeline.formats.perfdata import (_Where, _data_files, _expand_compressed, _file_size, _guard,
                                       _guarded, _open_header, _PerfReader, _record_chunks)

_U64 = struct.Struct("<Q")


@dataclass
class SampleStack:
    """What one sample says about the user stack at the event."""
    pid: int
    tid: int
    t_ns: int
    event: str
    user_ips: tuple            # frame-pointer chain, innermost first (empty without CALLCHAIN user part)
    regs: dict | None          # x86 register name -> value (REGS_USER), None when not recorded
    stack: bytes               # user stack copy starting at regs['sp'] (STACK_USER), b"" when none


def read_stacks(path, keys) -> tuple[dict[tuple, SampleStack], list[dict], dict]:
    """Stacks of the samples whose (tid, time) is in `keys`; all MMAP2 records; capture meta.

    Returns ({(tid, t_ns): SampleStack}, mmap2 records as dicts (pid, addr, len,
    pgoff, filename, build_id or inode, t_ns), reader metadata).  Samples without
    any stack information are left out; the metadata's ``times_found`` counts the
    distinct key times that some sample of the capture has (with a stack or not).
    """
    path = Path(path)
    keys = {(int(tid), int(t)) for tid, t in keys}
    times = np.unique(np.array([t for _, t in keys], np.int64))
    r = _PerfReader(path, None, allow_sampled=True)
    header_file, extra = (path / "data", _data_files(path)) if path.is_dir() else (path, [])
    try:
        f = open(header_file, "rb")
    except OSError as e:
        raise TraceFormatError(f"{header_file}: offset 0: cannot open ({e.strerror})") from None
    out: dict[tuple, SampleStack] = {}
    found: set = set()
    with f:
        size = _file_size(f)
        mode, data_off, data_size = _guard(r, lambda: _open_header(r, f, size))
        sources = [(header_file, f, data_off, data_size)] + [(p, None, 0, None) for p in extra]
        for fpath, fh, start, length in sources:
            own = fh is None
            if own:
                fh = open(fpath, "rb")
                length = _file_size(fh)
            label = "" if not extra else f"{fpath.name} "
            where = _Where(fpath)
            try:
                for ch in _guarded(where, _expand_compressed(_record_chunks(fh, start, length, label, where),
                                                             label, where)):
                    _guard(r, lambda: _scan_chunk(r, ch, times, keys, out, found))
            finally:
                if own:
                    fh.close()
    r.meta["times_found"] = len(found)
    return out, r.meta["mmap2"], r.meta


def _scan_chunk(r: _PerfReader, ch, times: np.ndarray, keys: set, out: dict, found: set) -> None:
    types = ch.types
    for i in np.flatnonzero((types != L.REC["SAMPLE"]) & (types != L.REC["FINISHED_ROUND"])).tolist():
        r.where.at(ch.base + int(ch.offs[i]), ch.stream)
        r.side_record(ch.buf, int(types[i]), int(ch.offs[i]), int(ch.sizes[i]), -1)
    samples = np.flatnonzero(types == L.REC["SAMPLE"])
    if not len(samples) or not len(times):
        return
    r.validate()
    t = _sample_times(r, ch, samples)
    hit = np.isin(t, times)
    found.update(t[hit].tolist())
    for i in samples[hit].tolist():
        off = int(ch.offs[i])
        r.where.at(ch.base + off, ch.stream)
        s = _sample(r, ch.buf, off, int(ch.sizes[i]))
        if s is not None and (s.tid, s.t_ns) in keys:
            out[(s.tid, s.t_ns)] = s


def _sample_times(r: _PerfReader, ch, samples: np.ndarray) -> np.ndarray:
    """PERF_SAMPLE_TIME of each sample (-1 where its attr has none): TIME sits at a fixed
    offset per attr, since only fixed-size fields precede it."""
    offs = ch.offs[samples]
    at = np.full(len(r.attrs), -1, np.int64)
    for a in r.attrs:
        k = 8
        for bit, nbytes in L.SAMPLE_ORDER:
            if bit == "TIME":
                at[a.index] = k if a.has("TIME") else -1
                break
            k += nbytes if a.has(bit) else 0
    pos = r.sid.sample_id_pos
    if len(r.attrs) == 1 or pos is None:
        k = np.full(len(offs), at[0])
    else:                     # an unknown id reads as no time here; _attr_of names it if it is picked
        ids = np.minimum(_u64s(ch.buf, offs + pos), len(r._id_lut) - 1).astype(np.int64)
        idx = r._id_lut[ids]
        k = np.where(idx >= 0, at[idx], -1)
    return np.where(k >= 0, _u64s(ch.buf, offs + np.maximum(k, 0)).astype(np.int64), -1)


def _u64s(buf, pos: np.ndarray) -> np.ndarray:
    u8 = np.frombuffer(buf, np.uint8)
    pos = np.minimum(pos, len(u8) - 8)
    return np.ascontiguousarray(u8[pos[:, None] + np.arange(8)]).view("<u8").ravel()


class _Cursor:
    """Reads little-endian u64s from one record, failing with the record's offset past its end."""

    def __init__(self, r: _PerfReader, buf, p: int, end: int):
        self.r, self.buf, self.p, self.end = r, buf, p, end

    def need(self, n: int, what: str) -> int:
        if self.p + n > self.end:
            self.r.where.fail(f"{what} runs past the end of its {self.end - self.p}-byte remainder")
        at = self.p
        self.p += n
        return at

    def u64(self, what: str = "sample fields") -> int:
        return _U64.unpack_from(self.buf, self.need(8, what))[0]


def _sample(r: _PerfReader, buf, off: int, size: int) -> SampleStack | None:
    """Parse one SAMPLE record up to STACK_USER (perf_event.h field order)."""
    c = _Cursor(r, buf, off + 8, off + size)
    a = _attr_of(r, buf, off, off + size)
    pid = tid = t_ns = -1
    user_ips: list[int] = []
    for bit, _ in L.SAMPLE_ORDER:
        if not a.has(bit):
            continue
        if bit == "TID":
            v = c.u64()
            pid, tid = v & 0xFFFFFFFF, v >> 32
        elif bit == "TIME":
            t_ns = c.u64()
        elif bit == "READ":
            _skip_read(a.read_format, c)
        elif bit == "CALLCHAIN":
            nr = c.u64()
            at = c.need(8 * nr, f"callchain of {nr} entries")
            user_ips = _user_part(struct.unpack_from(f"<{nr}Q", buf, at))
        elif bit == "RAW":
            raw_size = struct.unpack_from("<I", buf, c.need(4, "RAW size"))[0]
            c.need(raw_size, "RAW data")
        else:
            c.u64()
    regs, stack = _after_raw(a, c)
    if not user_ips and regs is None:
        return None
    return SampleStack(int(pid), int(tid), int(t_ns), a.full_name, tuple(user_ips), regs, stack)


def _attr_of(r: _PerfReader, buf, off: int, end: int):
    """The attr of a sample, by its id (PERF_SAMPLE_IDENTIFIER or ID, where the main reader finds it)."""
    pos = r.sid.sample_id_pos
    if pos is None or len(r.attrs) == 1:
        if len(r.attrs) > 1:
            r.where.fail("several perf_event_attrs and no sample id: cannot tell samples apart")
        return r.attrs[0]
    if off + pos + 8 > end:
        r.where.fail("sample shorter than its id field")
    ident = _U64.unpack_from(buf, off + pos)[0]
    k = int(r._id_lut[ident]) if ident < len(r._id_lut) else -1
    if k < 0:
        r.where.fail(f"sample id {ident} belongs to no perf_event_attr")
    return r.attrs[k]


def _skip_read(read_format: int, c: _Cursor) -> None:
    if read_format & L.READ_FORMAT["GROUP"]:
        nr = c.u64("PERF_SAMPLE_READ nr")
        c.need(L.read_block_size(read_format, nr) - 8, "PERF_SAMPLE_READ block")
    else:
        c.need(L.read_block_size(read_format), "PERF_SAMPLE_READ block")


def _user_part(ips) -> list[int]:
    """The ips after PERF_CONTEXT_USER (kernel frames and other contexts dropped)."""
    out, user = [], False
    for ip in ips:
        if ip >= L.PERF_CONTEXT_MAX:
            user = ip == L.PERF_CONTEXT_USER
        elif user:
            out.append(ip)
    return out


def _after_raw(a, c: _Cursor) -> tuple[dict | None, bytes]:
    """BRANCH_STACK (skipped), REGS_USER and STACK_USER, which follow RAW in a sample."""
    regs, stack = None, b""
    if a.has("BRANCH_STACK"):
        nr = c.u64()
        hw_idx = bool(a.branch_sample_type & L.PERF_SAMPLE_BRANCH_HW_INDEX)
        c.need(8 * hw_idx + nr * L.BRANCH_ENTRY_SIZE, "branch stack")
    if a.has("REGS_USER"):
        if c.u64("REGS_USER abi"):
            names = [n for b, n in enumerate(L.X86_PERF_REGS) if a.sample_regs_user >> b & 1]
            regs = {n: c.u64("REGS_USER registers") for n in names}
    if a.has("STACK_USER"):
        dump = c.u64("STACK_USER size")
        if dump:
            at = c.need(dump, "STACK_USER data")
            dyn = c.u64("STACK_USER dyn_size")
            stack = bytes(c.buf[at:at + min(dyn, dump)])
    return regs, stack
