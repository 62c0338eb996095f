"""Compiled kernels of the perf.data reader: plain arrays in, plain arrays out.

`walk_records` (each record's position depends on the previous record's size) and
`decode_fixed_samples` (every integer column of fixed-layout samples in one pass).  Kept
apart so importing the reader compiles nothing; callers take them from `replay.aot.kernels()`
(these functions compiled ahead of time, or as they are here under numba's JIT) and build their
arguments with `kernel_abi`.
"""
from __future__ import annotations

from ptreplay.replay.jit import njit
import numpy as np

from ptreplay.pipeline.formats.perf.kernel_abi import (
    BAD_ID, HEADER_TRACING_DATA, LAY_CPU, LAY_EV, LAY_FIXED, LAY_MIN_RAW, LAY_NARROW, LAY_RAW, LAY_SIZE, LAY_TID,
    LAY_TIME, LAY_TYPE, RAW_PAST_END, RAW_TOO_SMALL, RAW_WRONG_TYPE, SHORT_SAMPLE)


@njit(nogil=True)
def walk_records(u8, u32, u64, start, end):
    """Offsets, types and sizes of the complete records in buf[start:end] (perf_event_header).

    The buffer comes as `unaligned_views(buf)` (u8, u32, u64): a header is one
    64-bit load (u32 type, u16 misc, u16 size).
    Returns (offsets, types, sizes (int64[n] each), stop, status): `stop` is where the first record
    that is not complete starts (the caller carries buf[stop:end] over), and
    status is 0 (ok), 1 (a header with size < 8 at `stop`).  A
    HEADER_TRACING_DATA record (pipe mode) is followed by its payload outside
    the record: header.size is 12 and the u32 after the header gives the
    payload size, so its extent is 12 + payload.
    """
    cap = (end - start) // 8 + 1              # records are at least 8 bytes
    offsets = np.empty(cap, np.int64)         # untouched pages cost nothing
    types = np.empty(cap, np.int64)
    sizes = np.empty(cap, np.int64)
    n = 0
    p = start
    status = 0
    while p + 8 <= end:
        head = u64[p]
        size = np.int64(head >> np.uint64(48))
        if size < 8:
            status = 1
            break
        extent = size
        typ = np.int64(head & np.uint64(0xFFFFFFFF))
        if typ == HEADER_TRACING_DATA and size >= 12:
            if p + 12 > end:
                break
            extent = size + np.int64(u32[p + 8])
        if p + extent > end:
            break
        offsets[n] = p
        types[n] = typ
        sizes[n] = size
        n += 1
        p += extent
    return offsets[:n], types[:n], sizes[:n], p, status


@njit(nogil=True)
def index_records(types, sample, finished_round):
    """Indices of the SAMPLE records, of the FINISHED_ROUND marks and of every other record
    (`types` as walk_records gives them): one pass, on the producer thread, instead of the
    decoder's numpy comparisons over every record of each chunk."""
    n = len(types)
    samples = np.empty(n, np.int64)
    rounds = np.empty(n, np.int64)
    others = np.empty(n, np.int64)
    ns = nr = no = 0
    for i in range(n):
        t = types[i]
        if t == sample:
            samples[ns] = i
            ns += 1
        elif t == finished_round:
            rounds[nr] = i
            nr += 1
        else:
            others[no] = i
            no += 1
    return samples[:ns], rounds[:nr], others[:no]


# ---- fixed-layout SAMPLE records: one pass writes every RAW column

@njit(nogil=True, inline="always")
def _load(u8, u32, u64, q, size):
    """Unsigned little-endian integer of `size` (1, 2, 4 or 8) bytes at byte q, as uint64."""
    if size == 8:
        return u64[q]
    if size == 4:
        return np.uint64(u32[q])
    if size == 2:
        return np.uint64(u8[q]) | np.uint64(u8[q + 1]) << np.uint64(8)
    return np.uint64(u8[q])


@njit(nogil=True, inline="always")
def _signed(v, size):
    """Sign-extend the low `size` bytes of v (as numpy's astype(int64) of an int<size*8>)."""
    if size < 8:
        bits = np.uint64(8 * size)
        if (v >> (bits - np.uint64(1))) & np.uint64(1):
            v |= ~np.uint64(0) << bits
    return v


@njit(nogil=True, inline="always")
def _i32(u8, u32, u64, q):
    return np.int32(np.int64(_signed(_load(u8, u32, u64, q, 4), 4)))


@njit(nogil=True, inline="always")
def _field(u8, u32, u64, q, size, signed):
    """An integer tracepoint field at byte q as uint64, sign-extended if signed (as numpy casts)."""
    if size == 8:                               # constant sizes: each read is one load
        v = _load(u8, u32, u64, q, 8)
    elif size == 4:
        v = _load(u8, u32, u64, q, 4)
    elif size == 2:
        v = _load(u8, u32, u64, q, 2)
    else:
        v = _load(u8, u32, u64, q, 1)
    return _signed(v, size) if signed else v


@njit(nogil=True)
def decode_fixed_samples(u8, u32, u64, offs, sizes, sidx, seq0, id_pos, id_lut, lay, fields,
                         attr, t_ns, pid, tid, cpu, ev, args, ret, seq, comm, counts):
    """Decode the SAMPLE records sidx of a chunk (record j at offs[j], of sizes[j] bytes) into
    RAW columns, row i = record sidx[i]: seq[i] = seq0 + sidx[i], comm -1 (strings are the
    caller's), counts[k] += 1 for each row of attr k.  Rows of attrs with lay[k, LAY_NARROW]
    get t_ns, pid, tid, cpu, ev, a0..a2, seq and their fields only: a3..a5, ret and comm are
    left as they were (see RawColumns).

    The buffer comes as `unaligned_views(buf)` (u8, u32, u64).
    The attr of a record is id_lut[u64 at offs + id_pos] (attr 0 when id_pos < 0);
    for attrs with lay[k, LAY_FIXED] every field sits at a constant offset (see
    samples.SampleLayout) and is written here; rows of other attrs get the defaults
    (the caller decodes them).  Every output row is written (fields a record does
    not have: t_ns 0, pid/tid/cpu -1, args and ret 0), so the outputs may come
    uninitialised; `args` is uint64[6, n] (a0..a5).  Returns (status, row): status
    0, or the first bad record and what is wrong with it (BAD_ID, SHORT_SAMPLE, ...).
    """
    n = len(sidx)
    for i in range(n):
        j = sidx[i]
        p = offs[j]
        size = sizes[j]
        seq[i] = seq0 + j
        k = 0
        if id_pos >= 0:
            if id_pos + 8 > size:
                return BAD_ID, i
            ident = _load(u8, u32, u64, p + id_pos, 8)
            if ident >= np.uint64(len(id_lut)):
                return BAD_ID, i
            k = id_lut[ident]
            if k < 0:
                return BAD_ID, i
        attr[i] = k
        counts[k] += 1
        t_ns[i] = 0                          # the defaults, overwritten by the fields present
        pid[i] = -1
        tid[i] = -1
        cpu[i] = -1
        ev[i] = lay[k, LAY_EV]
        if lay[k, LAY_NARROW]:
            for c in range(3):
                args[c, i] = 0
        else:
            comm[i] = -1
            for c in range(6):
                args[c, i] = 0
            ret[i] = 0
        if lay[k, LAY_FIXED] == 0:
            continue
        if size < lay[k, LAY_SIZE]:
            return SHORT_SAMPLE, i
        o = lay[k, LAY_TID]
        if o >= 0:
            pid[i] = _i32(u8, u32, u64, p + o)
            tid[i] = _i32(u8, u32, u64, p + o + 4)
        o = lay[k, LAY_TIME]
        if o >= 0:
            t_ns[i] = np.int64(_load(u8, u32, u64, p + o, 8))
        o = lay[k, LAY_CPU]
        if o >= 0:
            cpu[i] = _i32(u8, u32, u64, p + o)
        o = lay[k, LAY_RAW]
        if o < 0:
            continue
        raw_size = np.int64(_load(u8, u32, u64, p + o, 4))
        if o + 4 + raw_size > size:
            return RAW_PAST_END, i
        if lay[k, LAY_MIN_RAW] < 0:
            continue
        if raw_size < lay[k, LAY_MIN_RAW]:
            return RAW_TOO_SMALL, i
        if np.int64(_load(u8, u32, u64, p + o + 4, 2)) != lay[k, LAY_TYPE]:
            return RAW_WRONG_TYPE, i
        data = p + o + 4
        for c in range(6):                   # constant trip counts: unrolled
            if fields[k, c, 0] >= 0:
                args[c, i] = _field(u8, u32, u64, data + fields[k, c, 0], fields[k, c, 1], fields[k, c, 2])
        if fields[k, 6, 0] >= 0:
            ret[i] = np.int64(_field(u8, u32, u64, data + fields[k, 6, 0], fields[k, 6, 1], fields[k, 6, 2]))
    return 0, n
