"""Where each field of a SAMPLE record sits, and numpy gathers at those positions.

A sample holds the fields its attr's sample_type selects, in perf_event.h order
(`layout.SAMPLE_ORDER`).  `walk_fields` is the one walk over that order: without
records it gives the offsets that are the same in every sample (up to the first
field whose length varies: a callchain, a group read), with records (`Fields`)
it gives per-record offsets and checks that they fit.  The reader's fast path
(`SampleLayout`, decoded by `kernels.decode_fixed_samples`), its per-record path
(`decode.Decoder.decode_attr_samples`), the sample id position (`SampleIdLayout`)
and the stack pass (`stacks`) all take their offsets from it.
"""
from __future__ import annotations

import struct
from typing import Callable

import numpy as np

from ptreplay.pipeline.formats.perf import layout as L

_SHIFT = {2: 1, 4: 2, 8: 3}


class Views:
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


class Fields:
    """Gathers fields at `offs + k` for one group of records.

    When every record of the group starts at the same residue mod 8 (always,
    except in odd pipe-mode files), a field at a constant offset k is one
    np.take from the view at residue (r + k) % size with index q*8/size + c:
    no per-field division or residue test.
    """

    def __init__(self, v: Views, offs: np.ndarray):
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


# ----------------------------------------------------------------------------- the field walk

Check = Callable[[np.ndarray, str], None]       # check(bad per record, message): raise for the first bad one


def walk_fields(a, g: Fields | None = None, sizes=None, check: Check | None = None,
                visit: Callable[[str, object], None] | None = None):
    """Walk the fields of attr `a`'s SAMPLE records in perf_event.h order, up to RAW.

    `visit(bit, k)` is called for each field present, in order, with its byte offset k from
    the record start: an int while every field before it has a fixed size, else an int64
    array (one per record of `g`).  Without records (`g` None) the walk stops at the first
    field whose length varies per record (CALLCHAIN, a GROUP read) and returns None.  With
    records, `check(bad, msg)` tests each length against the records' `sizes`.

    Returns (k, raw, raw_size): k is the offset of RAW's u32 size (or of the end of the
    fields, without RAW); raw the offset of the RAW data (None without RAW); raw_size the
    RAW sizes per record (None without records or RAW).
    """
    k, raw, raw_size = 8, None, None
    for bit, nbytes in L.SAMPLE_ORDER:
        if not a.has(bit):
            continue
        if visit is not None:
            visit(bit, k)
        if bit == "READ":
            if a.read_format & L.READ_FORMAT["GROUP"]:
                if g is None:
                    return None
                nbytes = L.read_block_size(a.read_format, g.at(k, "<u8").astype(np.int64))
            else:
                nbytes = L.read_block_size(a.read_format)
        elif bit == "CALLCHAIN":
            if g is None:
                return None
            nr = g.at(k, "<u8")
            check(nr > (sizes // 8).astype(np.uint64), "callchain longer than its record")
            nbytes = 8 + 8 * nr.astype(np.int64)
        elif bit == "RAW":
            raw = k + 4
            if g is not None:
                word = g.at(k, "<u8")          # u32 size, then the raw data: u16 common_type first
                raw_size = (word & np.uint64(0xFFFFFFFF)).astype(np.int64)
                check(raw + raw_size > sizes, "RAW data runs past the end of its record")
                if a.fmt is not None:
                    check(raw_size < a.fmt.min_raw_size,
                          f"RAW size below the {a.fmt.min_raw_size} bytes of {a.full_name}'s format")
                    check((word >> np.uint64(32)) & np.uint64(0xFFFF) != a.fmt.id,
                          f"RAW common_type differs from {a.full_name}'s ID {a.fmt.id}")
            break
        k = k + nbytes
    if g is not None:
        check(np.asarray(k) > sizes, "sample fields run past the end of the record")
    return k, raw, raw_size


def fixed_offsets(a) -> dict[str, int]:
    """{SAMPLE bit: offset} of the fields of `a`'s samples that sit at the same offset in
    every sample (all those up to the first field of variable length, that one included)."""
    out: dict[str, int] = {}
    walk_fields(a, visit=out.__setitem__)
    return out


class SampleLayout:
    """Fixed byte layout of one attr's samples: the offsets of its fields (`offsets`, by
    SAMPLE bit), of the RAW data (`raw`, None without RAW) and how many bytes of each record
    the layout needs (`size`).  None (`of`) for sample types with variable-length parts
    before RAW (CALLCHAIN, group READ)."""

    def __init__(self, offsets: dict, raw: int | None, size: int):
        self.offsets, self.raw, self.size = offsets, raw, size

    @classmethod
    def of(cls, a) -> "SampleLayout | None":
        offsets: dict[str, int] = {}
        walked = walk_fields(a, visit=offsets.__setitem__)
        if walked is None:
            return None
        k, raw, _ = walked
        if raw is not None:
            k = max(raw + (a.fmt.min_raw_size if a.fmt is not None else 4), 8 + 8)
        return cls(offsets, raw, k)


class SampleIdLayout:
    """Where the id sits in samples and what the sample_id_all trailer holds (perf_event.h).

    Each attr has its own trailer (its sample_type's TID, TIME, ID, STREAM_ID, CPU,
    IDENTIFIER): perf's tracking event of a `-p` recording has no CPU where the
    tracepoints have one.  With IDENTIFIER (the trailer's last u64) a record names its
    attr; without it every attr's trailer is taken to be the first attr's.
    """

    def __init__(self, attrs: list):
        a = attrs[0]
        self.attr = a
        self.sample_id_all = a.flag("sample_id_all")
        offsets = fixed_offsets(a)
        self.sample_id_pos = offsets.get("IDENTIFIER", offsets.get("ID"))
        self.fields, self.size = self._layout(a)
        self._by_id = {}
        if self.fields and self.fields[-1] == "IDENTIFIER":
            self._by_id = {i: self._layout(x) for x in attrs for i in x.ids}

    def _layout(self, a) -> tuple[list, int]:
        fields = [name for name, _ in L.SAMPLE_ID_ORDER if a.has(name)] if a.flag("sample_id_all") else []
        return fields, 8 * len(fields)

    def trailer(self, buf, off: int, size: int) -> dict:
        """Decode the sample_id trailer at the end of a non-sample record."""
        out = {"_size": 0}
        fields, tsize = self.fields, self.size
        if self._by_id and size >= 16:
            fields, tsize = self._by_id.get(struct.unpack_from("<Q", buf, off + size - 8)[0], (fields, tsize))
        if not tsize or size < 8 + tsize:
            return out
        p = off + size - tsize
        out["_size"] = tsize
        for name in fields:
            if name == "TID":
                out["pid"], out["tid"] = struct.unpack_from("<ii", buf, p)
            elif name == "TIME":
                out["time"] = struct.unpack_from("<q", buf, p)[0]
            elif name == "CPU":
                out["cpu"] = struct.unpack_from("<i", buf, p)[0]
            p += 8
        return out
