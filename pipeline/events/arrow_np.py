"""numpy <-> Arrow for the columns of a batch, zero-copy where the layouts agree.

`pa.array(ndarray)` and `Array.to_numpy()` go through pyarrow's pandas shim,
which imports pandas on first use (about 0.3 s, a third of a whole `ptreplay
ingest`).  The ingest path builds and reads its columns with these instead;
they handle exactly what it needs: fixed-width numbers, booleans, strings
with nulls, and dictionary-encoded strings.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa


def to_arrow(values: np.ndarray, typ: pa.DataType) -> pa.Array:
    """A numpy column as an Arrow array of `typ` (numbers: no copy when the dtype matches)."""
    n = len(values)
    if pa.types.is_boolean(typ):
        bits = np.packbits(np.asarray(values, bool), bitorder="little")
        return pa.Array.from_buffers(typ, n, [None, pa.py_buffer(bits)])
    values = np.ascontiguousarray(values, dtype=typ.to_pandas_dtype())
    return pa.Array.from_buffers(typ, n, [None, pa.py_buffer(values)])


def to_numpy(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A fixed-width Arrow column without nulls as numpy (zero-copy for one chunk)."""
    if isinstance(col, pa.ChunkedArray):
        if col.num_chunks != 1:
            parts = [to_numpy(c) for c in col.chunks]
            return np.concatenate(parts) if parts else np.empty(0, col.type.to_pandas_dtype())
        col = col.chunk(0)
    if col.null_count:
        raise ValueError("to_numpy: column has nulls")
    dtype = np.dtype(col.type.to_pandas_dtype())
    data = col.buffers()[1]
    if data is None:
        return np.empty(0, dtype)
    return np.frombuffer(data, dtype, count=len(col), offset=col.offset * dtype.itemsize)


def strings(n: int, rows: np.ndarray, texts: list) -> pa.Array:
    """A string column of n rows: texts[j] at row rows[j] (None: null), null everywhere else."""
    valid = np.zeros(n, bool)
    lengths = np.zeros(n, np.int32)
    chunks = []
    for r, text in sorted(zip(np.asarray(rows).tolist(), texts)):
        if text is not None:
            b = text.encode()
            valid[r] = True
            lengths[r] = len(b)
            chunks.append(b)
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(pa.string(), n, [bitmap, pa.py_buffer(offsets), pa.py_buffer(b"".join(chunks))],
                                 null_count=n - int(valid.sum()))


def dictionary(codes: np.ndarray, values: pa.Array, index_type: pa.DataType = pa.int32()) -> pa.DictionaryArray:
    """A dictionary column: codes index `values`, a negative code is null."""
    null = codes < 0
    idx = np.where(null, 0, codes) if null.any() else codes
    bitmap = pa.py_buffer(np.packbits(~null, bitorder="little")) if null.any() else None
    indices = pa.Array.from_buffers(index_type, len(codes),
                                    [bitmap, pa.py_buffer(np.ascontiguousarray(idx, index_type.to_pandas_dtype()))],
                                    null_count=int(null.sum()))
    return pa.DictionaryArray.from_arrays(indices, values)
