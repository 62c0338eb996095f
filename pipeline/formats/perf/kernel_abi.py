"""The tables and views the perf.data reader's compiled kernels take (`kernels.py`), and their codes.

Importable without numba: the callers build these arguments, and the kernels themselves come
from `replay.aot.kernels()` (compiled ahead of time, or numba's JIT).
"""
from __future__ import annotations

import numpy as np

HEADER_TRACING_DATA = 66        # pipe mode: a record whose payload follows it (see walk_records)

# fixed-layout SAMPLE records (decode_fixed_samples)
# Columns of the per-attr layout table given to decode_fixed_samples (int64[n_attrs, LAY_COLUMNS]);
# offsets are from the record start, -1 = field absent.
LAY_FIXED, LAY_SIZE, LAY_TID, LAY_TIME, LAY_CPU, LAY_RAW, LAY_EV, LAY_MIN_RAW, LAY_TYPE, LAY_NARROW, LAY_USER = range(11)
LAY_COLUMNS = 11
# LAY_NARROW: rows of this attr (page faults, when the caller asks) get no a3..a5, ret and comm
# defaults: a third of the bytes written per row, for columns normalize never reads for them.
# LAY_USER: 1 for page_fault_user, 0 for page_fault_kernel (decode_fault_records' user_mode).
# Per-attr integer fields (int64[n_attrs, FIELD_COLUMNS, 3]), one row per output column
# (0..5 = a0..a5, 6 = ret): offset in the RAW data (-1: not set), size in bytes, signed.
FIELD_COLUMNS = 7
# Status codes of decode_fixed_samples and decode_fault_records (the caller turns them into
# messages); the latter's: a header with size < 8, a header record it was asked to stop at.
BAD_ID, SHORT_SAMPLE, RAW_PAST_END, RAW_TOO_SMALL, RAW_WRONG_TYPE = 1, 2, 3, 4, 5
HEADER_TOO_SMALL, HEADER_RECORD = 6, 7
SAMPLE, FINISHED_ROUND = 9, 68         # perf_event_header.type of these (layout.REC)


def unaligned_views(buf) -> tuple:
    """(u8, u32, u64) views of buf with a stride of one byte: element q is the value whose
    first byte is buf[q], at any alignment (one load; combining byte loads is several times
    slower in numba).  Lengths stop where a value would run past the end of buf."""
    def view(dtype, size):
        return np.ndarray(shape=(max(0, len(buf) - size + 1),), dtype=dtype, buffer=buf, strides=(1,))
    return np.frombuffer(buf, np.uint8), view(np.uint32, 4), view(np.uint64, 8)
