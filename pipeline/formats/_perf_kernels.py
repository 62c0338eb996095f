"""Compiled kernels for the perf.data reader: plain arrays in, plain arrays out.

Only the record-header walk needs a compiled loop (each record's position
depends on the previous record's size); everything else is numpy gathers in
`perfdata.py`.  Kept apart so importing the reader compiles nothing.
"""
from __future__ import annotations

import numba
import numpy as np

HEADER_TRACING_DATA = 66


@numba.njit(cache=True, nogil=True)
def _u16(buf, p):
    return np.int64(buf[p]) | (np.int64(buf[p + 1]) << 8)


@numba.njit(cache=True, nogil=True)
def _u32(buf, p):
    return _u16(buf, p) | (_u16(buf, p + 2) << 16)


@numba.njit(cache=True, nogil=True)
def walk_records(buf, start, end):
    """Offsets, types and sizes of the complete records in buf[start:end] (perf_event_header).

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
        size = _u16(buf, p + 6)
        if size < 8:
            status = 1
            break
        extent = size
        typ = _u32(buf, p)
        if typ == HEADER_TRACING_DATA and size >= 12:
            if p + 12 > end:
                break
            extent = size + _u32(buf, p + 8)
        if p + extent > end:
            break
        offsets[n] = p
        types[n] = typ
        sizes[n] = size
        n += 1
        p += extent
    return offsets[:n], types[:n], sizes[:n], p, status
