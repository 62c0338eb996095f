"""User call stacks of chosen samples of a perf.data capture (for attribution).

The events table keeps no call chains: they are needed only for the few
events that allocated or emptied a page table, and only when someone asks who
did it.  `read_stacks` makes a second pass over the capture and decodes, for
the samples asked for:

* the user part of PERF_SAMPLE_CALLCHAIN (frame-pointer chains, `--call-graph
  fp`): the ips after the PERF_CONTEXT_USER marker;
* PERF_SAMPLE_REGS_USER and PERF_SAMPLE_STACK_USER (`--call-graph dwarf`):
  the user registers and a copy of the top of the user stack, which
  `pipeline.attribution.symbols` walks with the binaries' DWARF CFI;

plus every MMAP2 record (address -> file, page offset, build id).  Samples are
asked for by (tid, time): an event row carries its thread and the time of the
record it came from (a syscall's is its sys_exit record's), which identifies
the sample.  Candidates are picked by time with numpy; only those are parsed.
The pass is the reader's record walk (`walk.py`) and field walk
(`samples.walk_fields`); only the fields after RAW are read here.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ptreplay.pipeline.formats.perf import layout as L
from ptreplay.pipeline.formats.perf.errors import guard
from ptreplay.pipeline.formats.perf.header import Session
from ptreplay.pipeline.formats.perf.samples import Fields, Views, fixed_offsets, walk_fields
from ptreplay.pipeline.formats.perf.walk import Chunk, DataFile, open_capture, split_records

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
    keys = {(int(tid), int(t)) for tid, t in keys}
    times = np.unique(np.array([t for _, t in keys], np.int64))
    pf = open_capture(Path(path), allow_sampled=True)
    r = pf.session
    out: dict[tuple, SampleStack] = {}
    found: set = set()
    try:
        for src in pf.sources():
            df = DataFile(*src, opener=r.opener)
            try:
                for ch in df.chunks:
                    r.where.path = df.path
                    guard(r.where, lambda: _scan_chunk(r, ch, times, keys, out, found))
            finally:
                df.close()
    finally:
        pf.fh.close()
    r.meta["times_found"] = len(found)
    return out, r.meta["mmap2"], r.meta


def _scan_chunk(r: Session, ch: Chunk, times: np.ndarray, keys: set, out: dict, found: set) -> None:
    samples, _ = split_records(r, ch, 0)
    if not len(samples) or not len(times):
        return
    r.validate()
    v = Views(ch.buf)
    t = _sample_times(r, v, ch, samples)
    hit = np.isin(t, times)
    found.update(t[hit].tolist())
    picked = samples[hit]
    if not len(picked):
        return
    attr = _attrs_of(r, v, ch, picked)
    got = []
    for k in np.unique(attr).tolist():
        got += _stacks(r, r.attrs[k], v, ch, picked[attr == k])
    for _, s in sorted(got, key=lambda item: item[0]):         # record order, as the capture has them
        if s is not None and (s.tid, s.t_ns) in keys:
            out[(s.tid, s.t_ns)] = s


def _sample_times(r: Session, v: Views, ch: Chunk, samples: np.ndarray) -> np.ndarray:
    """PERF_SAMPLE_TIME of each sample (-1 where its attr has none): TIME sits at a fixed
    offset per attr, since only fixed-size fields precede it."""
    offs = ch.offs[samples]
    at = np.array([fixed_offsets(a).get("TIME", -1) for a in r.attrs], np.int64)
    pos = r.sid.sample_id_pos
    if len(r.attrs) == 1 or pos is None:
        k = np.full(len(offs), at[0])
    else:                     # an unknown id reads as no time here; _attrs_of names it if it is picked
        ids = np.minimum(_u64s(v, offs + pos), len(r.id_lut) - 1).astype(np.int64)
        idx = r.id_lut[ids]
        k = np.where(idx >= 0, at[idx], -1)
    return np.where(k >= 0, _u64s(v, offs + np.maximum(k, 0)).astype(np.int64), -1)


def _u64s(v: Views, pos: np.ndarray) -> np.ndarray:
    """u64 at each position, read from at most the buffer's last 8 bytes (a short record reads garbage, not past the end)."""
    return v.u64(np.minimum(pos, len(v.u8) - 8))


def _attrs_of(r: Session, v: Views, ch: Chunk, picked: np.ndarray) -> np.ndarray:
    """The attr index of each picked sample, by its id (PERF_SAMPLE_IDENTIFIER or ID, where
    the reader finds it); fails at the first sample whose attr cannot be told."""
    offs = ch.offs[picked]
    pos = r.sid.sample_id_pos
    if pos is None or len(r.attrs) == 1:
        if len(r.attrs) > 1:
            r.where.at(ch.base + int(offs[0]), ch.stream).fail(
                "several perf_event_attrs and no sample id: cannot tell samples apart")
        return np.zeros(len(offs), np.int64)
    short = offs + pos + 8 > offs + ch.sizes[picked]
    ident = _u64s(v, offs + pos)
    inside = ident < len(r.id_lut)
    k = np.where(inside, r.id_lut[np.where(inside, ident, 0).astype(np.int64)], -1)
    bad = np.flatnonzero(short | (k < 0))
    if len(bad):
        j = int(bad[0])
        where = r.where.at(ch.base + int(offs[j]), ch.stream)
        if short[j]:
            where.fail("sample shorter than its id field")
        where.fail(f"sample id {int(ident[j])} belongs to no perf_event_attr")
    return k


def _stacks(r: Session, a, v: Views, ch: Chunk, idx: np.ndarray) -> list[tuple[int, SampleStack | None]]:
    """(record index, SampleStack or None when it holds no stack) of attr a's samples at idx."""
    offs, sizes = ch.offs[idx], ch.sizes[idx]
    g = Fields(v, offs)
    at: dict = {}

    def check(bad, msg):
        if bad.any():
            j = int(np.flatnonzero(bad)[0]) if np.ndim(bad) else 0
            r.where.at(ch.base + int(offs[j]), ch.stream).fail(msg)

    end, raw, raw_size = walk_fields(a, g, sizes, check, at.__setitem__)
    after = raw + raw_size if raw is not None else end          # where the fields after RAW start
    pt = g.at(at["TID"], "<u8").tolist() if "TID" in at else None
    t_ns = g.at(at["TIME"], "<u8").tolist() if "TIME" in at else None
    out = []
    for j, i in enumerate(idx.tolist()):
        off, size = int(offs[j]), int(sizes[j])
        r.where.at(ch.base + off, ch.stream)
        user_ips: list[int] = []
        if "CALLCHAIN" in at:
            p = off + _nth(at["CALLCHAIN"], j)
            nr = _U64.unpack_from(ch.buf, p)[0]
            user_ips = _user_part(struct.unpack_from(f"<{nr}Q", ch.buf, p + 8))
        regs, stack = _after_raw(a, _Cursor(r, ch.buf, off + _nth(after, j), off + size))
        if not user_ips and regs is None:
            out.append((i, None))
            continue
        pid, tid = (pt[j] & 0xFFFFFFFF, pt[j] >> 32) if pt is not None else (-1, -1)
        out.append((i, SampleStack(int(pid), int(tid), int(t_ns[j]) if t_ns is not None else -1, a.full_name,
                                   tuple(user_ips), regs, stack)))
    return out


def _nth(k, j: int) -> int:
    """Offset k for record j (k is an int when it is the same for every record)."""
    return int(k[j]) if isinstance(k, np.ndarray) else int(k)


class _Cursor:
    """Reads little-endian u64s from one record, failing with the record's offset past its end."""

    def __init__(self, r: Session, buf, p: int, end: int):
        self.r, self.buf, self.p, self.end = r, buf, p, end

    def need(self, n: int, what: str) -> int:
        if self.p + n > self.end:
            self.r.where.fail(f"{what} runs past the end of its {self.end - self.p}-byte remainder")
        at = self.p
        self.p += n
        return at

    def u64(self, what: str = "sample fields") -> int:
        return _U64.unpack_from(self.buf, self.need(8, what))[0]


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
