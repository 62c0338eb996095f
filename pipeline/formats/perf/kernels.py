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
    BAD_ID, FINISHED_ROUND, HEADER_RECORD, HEADER_TOO_SMALL, HEADER_TRACING_DATA, LAY_CPU, LAY_EV, LAY_FIXED,
    LAY_MIN_RAW, LAY_NARROW, LAY_RAW, LAY_SIZE, LAY_TID, LAY_TIME, LAY_TYPE, LAY_USER, RAW_PAST_END, RAW_TOO_SMALL,
    RAW_WRONG_TYPE, SAMPLE, SHORT_SAMPLE)


@njit(nogil=True, inline="always")
def _tracing_extent(u32, p, end, size):
    """The bytes a pipe-mode HEADER_TRACING_DATA record at p takes (its size plus the payload
    after it), or -1 when the payload size is past `end`.

    The walks call it only for that record type.  An inlined helper that takes an array holds a
    reference to it (numba's NRT_incref and NRT_decref, two atomic calls), and the walks' loops
    would make those calls on every record; in the rare branch they cost nothing."""
    if size < 12:
        return size
    if p + 12 > end:
        return -1
    return size + np.int64(u32[p + 8])


@njit(nogil=True, inline="always")
def _s32(v):
    """A uint32 read as int32 (a pid, tid or cpu)."""
    x = np.int64(v)
    return np.int32(x - (np.int64(1) << 32) if x >= np.int64(1) << 31 else x)


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
        typ = np.int64(head & np.uint64(0xFFFFFFFF))
        extent = _tracing_extent(u32, p, end, size) if typ == HEADER_TRACING_DATA else size
        if extent < 0 or p + extent > end:
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
            pid[i] = _s32(u32[p + o])
            tid[i] = _s32(u32[p + o + 4])
        o = lay[k, LAY_TIME]
        if o >= 0:
            t_ns[i] = np.int64(_load(u8, u32, u64, p + o, 8))
        o = lay[k, LAY_CPU]
        if o >= 0:
            cpu[i] = _s32(u32[p + o])
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


ZERO = np.uint64(0)


@njit(nogil=True, inline="always")
def _arg(u8, u32, u64, data, offset, size, signed):
    """A fault's a0..a2 at data + offset (0 when offset < 0): one load for the unsigned 8-byte
    fields of x86's faults."""
    if offset < 0:
        return ZERO
    if size == 8 and signed == 0:
        return u64[data + offset]
    return _field(u8, u32, u64, data + offset, size, signed)


@njit(nogil=True)
def decode_fault_records(u8, u32, u64, start, end, marks, headers_stop, seq0, id_pos, id_lut, lay, fields,
                         f_t_ns, f_pid, f_tid, f_cpu, f_addr, f_ip, f_error_code, f_user_mode, f_seq,
                         offs, types, sizes, samples, others, rounds, counts):
    """The whole records of buf[start:end] in one pass, the page faults apart: the SAMPLE records
    whose attr is narrow and fixed (lay[k, LAY_NARROW] and lay[k, LAY_FIXED]: the page-fault attrs
    when the caller asks) go into the fault columns f_*, in record order, as normalize stores them:
    addr (a0), ip (a1), error_code (a2's low 32 bits, signed), user_mode (lay[k, LAY_USER]), seq
    (seq0 + the record's index); counts[k] += 1 for each.  Every other record j gets offs[j],
    types[j] and sizes[j] (as walk_records) and its index in `samples` (other SAMPLE records) or
    `others` (neither SAMPLE nor FINISHED_ROUND); `rounds` gets, for each FINISHED_ROUND and each
    byte offset in `marks` (sorted), how many records precede it (as index_records and the
    caller's marks).  The same fields, defaults and checks as decode_fixed_samples; the attr's plan
    is read into locals when it changes (runs of one attr).  headers_stop: stop at perf's header
    records (type >= 64 but FINISHED_ROUND: pipe mode's attrs and formats, which samples after them
    need applied first) with status HEADER_RECORD.  Returns (status, at, records, faults, samples,
    others, rounds): status 0, or what is wrong with the record at byte `at` (BAD_ID, SHORT_SAMPLE,
    ...; then `faults` is its attr)."""
    p, n, nf, ns, no, nr, mk, last, fast, user, plain = start, 0, 0, 0, 0, 0, 0, -1, False, False, False
    need = o_tid = o_time = o_cpu = o_raw = min_raw = typ = a_o = i_o = e_o = np.int64(-1)
    a_s = i_s = e_s = np.int64(8)
    a_g = i_g = e_g = np.int64(0)
    while p + 8 <= end:
        while mk < len(marks) and marks[mk] <= p:
            rounds[nr] = n
            nr += 1
            mk += 1
        head = u64[p]
        size = np.int64(head >> np.uint64(48))
        kind = np.int64(head & np.uint64(0xFFFFFFFF))
        if size < 8:
            return HEADER_TOO_SMALL, p, n, nf, ns, no, nr
        extent = _tracing_extent(u32, p, end, size) if kind == HEADER_TRACING_DATA else size
        if extent < 0 or p + extent > end:
            break
        if kind == SAMPLE:
            k = 0
            if id_pos >= 0:
                if id_pos + 8 > size:
                    return BAD_ID, p, n, 0, 0, 0, 0
                ident = u64[p + id_pos]
                if ident >= np.uint64(len(id_lut)):
                    return BAD_ID, p, n, 0, 0, 0, 0
                k = id_lut[ident]
                if k < 0:
                    return BAD_ID, p, n, 0, 0, 0, 0
            if k != last:                    # the attr's plan, in locals
                last = k
                fast = lay[k, LAY_NARROW] != 0 and lay[k, LAY_FIXED] != 0
                user = lay[k, LAY_USER] != 0
                need, o_tid, o_time, o_cpu = lay[k, LAY_SIZE], lay[k, LAY_TID], lay[k, LAY_TIME], lay[k, LAY_CPU]
                o_raw, min_raw, typ = lay[k, LAY_RAW], lay[k, LAY_MIN_RAW], lay[k, LAY_TYPE]
                a_o, a_s, a_g = fields[k, 0, 0], fields[k, 0, 1], fields[k, 0, 2]
                i_o, i_s, i_g = fields[k, 1, 0], fields[k, 1, 1], fields[k, 1, 2]
                e_o, e_s, e_g = fields[k, 2, 0], fields[k, 2, 1], fields[k, 2, 2]
                plain = (min(a_o, i_o, e_o) >= 0 and a_s == 8 and i_s == 8 and e_s == 8
                         and a_g == 0 and i_g == 0 and e_g == 0)
            # the fault's fields are read straight from the views: see _tracing_extent
            if fast:
                if size < need:
                    return SHORT_SAMPLE, p, n, k, 0, 0, 0
                t, pid, tid, cpu, addr, ip, err = np.int64(0), np.int32(-1), np.int32(-1), np.int32(-1), ZERO, ZERO, ZERO
                if o_tid >= 0:
                    pid = _s32(u32[p + o_tid])
                    tid = _s32(u32[p + o_tid + 4])
                if o_time >= 0:
                    t = np.int64(u64[p + o_time])
                if o_cpu >= 0:
                    cpu = _s32(u32[p + o_cpu])
                if o_raw >= 0:
                    raw_size = np.int64(u32[p + o_raw])
                    if o_raw + 4 + raw_size > size:
                        return RAW_PAST_END, p, n, k, 0, 0, 0
                    if min_raw >= 0:
                        if raw_size < min_raw:
                            return RAW_TOO_SMALL, p, n, k, 0, 0, 0
                        q = p + o_raw + 4
                        if np.int64(u8[q]) | np.int64(u8[q + 1]) << 8 != typ:
                            return RAW_WRONG_TYPE, p, n, k, 0, 0, 0
                        if plain:                # x86's faults: three unsigned 8-byte fields
                            addr, ip, err = u64[q + a_o], u64[q + i_o], u64[q + e_o]
                        else:
                            addr = _arg(u8, u32, u64, q, a_o, a_s, a_g)
                            ip = _arg(u8, u32, u64, q, i_o, i_s, i_g)
                            err = _arg(u8, u32, u64, q, e_o, e_s, e_g)
                f_t_ns[nf] = t
                f_pid[nf] = pid
                f_tid[nf] = tid
                f_cpu[nf] = cpu
                f_addr[nf] = addr
                f_ip[nf] = ip
                f_error_code[nf] = _s32(err & np.uint64(0xFFFFFFFF))
                f_user_mode[nf] = user
                f_seq[nf] = seq0 + n
                counts[k] += 1
                nf += 1
                n += 1
                p += extent
                continue
            samples[ns] = n
            ns += 1
        elif kind == FINISHED_ROUND:
            rounds[nr] = n
            nr += 1
        else:
            if headers_stop and kind >= 64:
                return HEADER_RECORD, p, n, nf, ns, no, nr
            others[no] = n
            no += 1
        offs[n] = p
        types[n] = kind
        sizes[n] = size
        n += 1
        p += extent
    while mk < len(marks):
        rounds[nr] = n
        nr += 1
        mk += 1
    return 0, p, n, nf, ns, no, nr
