"""The events/2 storage layout: fault rows in a narrow Parquet table, every other row beside them.

Readers always get the `events` table (EVENTS, one row per event, every column); an events/2
file stores it in two parts (see EVENT_FAULTS and EVENT_OTHERS in `schemas`):

    faults  the Parquet table: t_ns, pid, tid, cpu, addr, ip, error_code, user_mode of the rows
            whose kind is `fault` and whose other columns hold their EVENT_DEFAULTS values
    others  every other row with all the EVENTS columns and its `row` in the whole stream, kept
            in the file's key-value metadata (OTHERS_KEY)

The stream is rebuilt by putting each other row at its `row` and the faults, in file order, in
the rows left between them.  Nothing is lost: a fault row with any other column set (none comes
out of ingest) is stored among the others.  `split` and `join` are each other's inverse; this
module knows nothing of files beyond the Arrow tables (schemas.parquet_io reads and writes them).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyarrow as pa

from ptreplay.schemas import EVENT_DEFAULTS, EVENT_FAULTS, EVENT_KINDS, EVENT_OTHERS, EVENTS, conform

FAULT_COLUMNS = tuple(EVENT_FAULTS.schema.names)
_FAULT = EVENT_KINDS.index("fault")
# the EVENTS columns a stored fault row does not have, with their value (kind is `fault`)
_CONSTANT = {f.name: EVENT_DEFAULTS[f.name] for f in EVENTS.schema if f.name not in FAULT_COLUMNS and f.name != "kind"}


def _strings(texts: list[str]) -> pa.Array:
    """A string array built from buffers: `pa.array` imports pandas (0.3 s) on first use."""
    data = [t.encode() for t in texts]
    offsets = np.zeros(len(data) + 1, np.int32)
    np.cumsum([len(b) for b in data], out=offsets[1:])
    return pa.Array.from_buffers(pa.string(), len(data), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(data))])


_KINDS = _strings(list(EVENT_KINDS))
_FALSE = pa.Array.from_buffers(pa.bool_(), 1, [None, pa.py_buffer(np.zeros(1, np.uint8))])[0]
# Arrow types of the batches `join` makes: kind and comm dictionary-encoded, as replay reads events/1
KIND_TYPE = pa.dictionary(pa.int8(), pa.string())
COMM_TYPE = pa.dictionary(pa.int32(), pa.string())
JOINED = pa.schema([f.with_type(KIND_TYPE) if f.name == "kind" else f.with_type(COMM_TYPE) if f.name == "comm" else f
                    for f in EVENTS.schema], metadata=EVENTS.schema.metadata)


@dataclass
class EventParts:
    """A run of consecutive events in the events/2 layout: `faults` (EVENT_FAULTS columns) and
    `others` (EVENT_OTHERS: `row` counts from this run's first event)."""
    faults: pa.Table
    others: pa.Table

    @property
    def num_rows(self) -> int:
        return self.faults.num_rows + self.others.num_rows

    def to_table(self) -> pa.Table:
        """The events table of this run (EVENTS columns, kind and comm dictionary-encoded)."""
        return pa.Table.from_batches(list(join(self.faults, self.others)), schema=JOINED)

    def cut(self, t: int) -> tuple["EventParts", "EventParts"]:
        """This run as two: its events with t_ns <= t, and those after."""
        k = int(np.searchsorted(_numpy(self.faults.column("t_ns")), t, side="right"))
        j = int(np.searchsorted(_numpy(self.others.column("t_ns")), t, side="right"))
        return (EventParts(self.faults.slice(0, k), self.others.slice(0, j)),
                EventParts(self.faults.slice(k), shift_rows(self.others.slice(j), -(k + j))))


def split(table: pa.Table) -> EventParts:
    """An events table (EVENTS columns, any lossless string encoding) in the events/2 layout."""
    import pyarrow.compute as pc              # here only: its import costs every ingest ~30 ms
    table = conform(table, EVENTS, "<events table>")
    n = table.num_rows
    narrow = _numpy(pc.equal(table.column("kind"), _KINDS[_FAULT])) if n else np.zeros(0, bool)
    for name, value in _CONSTANT.items():
        if narrow.any():
            col = table.column(name)
            narrow &= _numpy(col.is_null() if value is None else
                             pc.fill_null(pc.equal(col, _scalar(value, col.type)), _FALSE))
    faults = table.filter(_arrow(narrow, pa.bool_())).select(list(FAULT_COLUMNS))
    rest = np.flatnonzero(~narrow).astype(np.int64)
    others = table.take(_arrow(rest, pa.int64())).add_column(0, "row", _arrow(rest, pa.int64()))
    return EventParts(conform(faults, EVENT_FAULTS, "<events table>"), conform(others, EVENT_OTHERS, "<events table>"))


def shift_rows(others: pa.Table, by: int) -> pa.Table:
    """`others` (EVENT_OTHERS) with `by` added to their rows (`pa.scalar` would import pandas)."""
    col = others.column("row").combine_chunks()
    rows = np.frombuffer(col.buffers()[1], np.int64, count=len(col), offset=col.offset * 8) + by
    return others.set_column(0, others.schema.field("row"), _arrow(rows, pa.int64()))


_CONSTANTS: dict[str, pa.Array] = {}


def _constant(f: pa.Field, n: int) -> pa.Array:
    """n rows of column f's stored-fault value, sliced from one cached array."""
    have = _CONSTANTS.get(f.name)
    if have is None or len(have) < n:
        size = max(n, 1 << 18)
        value = EVENT_DEFAULTS[f.name]
        have = (pa.nulls(size, COMM_TYPE) if value is None else
                pa.Array.from_buffers(f.type, size, [None, pa.py_buffer(_full(size, value, f.type))]))
        _CONSTANTS[f.name] = have
    return have.slice(0, n)


def _full(n: int, value, typ: pa.DataType) -> np.ndarray:
    if pa.types.is_boolean(typ):
        return np.full((n + 7) // 8, 0xFF if value else 0, np.uint8)
    return np.full(n, value, typ.to_pandas_dtype())


def _scalar(value, typ: pa.DataType) -> pa.Scalar:
    """`pa.scalar(value, typ)` for a number or boolean, built from a buffer (pa.scalar imports pandas)."""
    if pa.types.is_boolean(typ):
        return _arrow(np.array([bool(value)]), typ)[0]
    return _arrow(np.array([value], typ.to_pandas_dtype()), typ)[0]


def _numpy(col) -> np.ndarray:
    """A fixed-width column without nulls as numpy (booleans unpacked), read from its buffers:
    `to_numpy` of a chunked column imports pandas (0.3 s) on first use."""
    if not isinstance(col, (pa.Array, pa.ChunkedArray)):
        return col
    if isinstance(col, pa.ChunkedArray):
        col = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
    typ = col.type
    if col.null_count or not (pa.types.is_boolean(typ) or pa.types.is_integer(typ) or pa.types.is_floating(typ)):
        return col.to_numpy(zero_copy_only=False)
    data = col.buffers()[1]
    n, at = len(col), col.offset
    if pa.types.is_boolean(typ):
        if data is None or not n:
            return np.zeros(n, bool)
        bits = np.unpackbits(np.frombuffer(data, np.uint8), count=at + n, bitorder="little")
        return bits[at:].astype(bool)
    dtype = np.dtype(typ.to_pandas_dtype())
    return np.empty(0, dtype) if data is None or not n else np.frombuffer(data, dtype, count=n, offset=at * dtype.itemsize)


def _arrow(values: np.ndarray, typ: pa.DataType) -> pa.Array:
    if pa.types.is_boolean(typ):
        return pa.Array.from_buffers(typ, len(values), [None, pa.py_buffer(np.packbits(values, bitorder="little"))])
    return pa.Array.from_buffers(typ, len(values), [None, pa.py_buffer(np.ascontiguousarray(values))])


def join(faults, others: pa.Table, start: int = 0, batch_rows: int = 1 << 18,
         fault_batches: Iterator | None = None) -> Iterator[pa.RecordBatch]:
    """The events stream of `faults` and `others` (EVENT_OTHERS, `row` counted from `start`)
    as record batches of about `batch_rows` rows in the JOINED schema.

    `faults` is an EVENT_FAULTS table, or None with `fault_batches` yielding its record
    batches (a Parquet file read batch by batch)."""
    if fault_batches is None:
        fault_batches = iter(faults.to_batches(max_chunksize=batch_rows)) if faults.num_rows else iter(())
    others = conform(others, EVENT_OTHERS, "<events/2 others>")
    ocols = _other_columns(others)
    # faults before other k: others at or before a fault position come first
    before = ocols["row"] - start - np.arange(len(ocols["row"]), dtype=np.int64)
    if len(before) and ((before[1:] < before[:-1]).any() or before[0] < 0):
        raise ValueError("events/2: the other rows' `row` values are not increasing positions in the stream")
    f0 = k0 = 0
    for b in fault_batches:
        if not b.num_rows:
            continue
        nulls = [f"{n} has {b.column(n).null_count} nulls" for n in FAULT_COLUMNS if b.column(n).null_count]
        if nulls:
            raise ValueError(f"not a valid {EVENT_FAULTS.tag} table: " + "; ".join(nulls) + ", expected none")
        f1 = f0 + b.num_rows
        k1 = int(np.searchsorted(before, f1 - 1, side="right"))
        yield _batch(b, ocols, k0, k1, start + f0 + k0)
        f0, k0 = f1, k1
    while k0 < len(before):                          # after the last fault
        k1 = min(len(before), k0 + batch_rows)
        yield _batch(None, ocols, k0, k1, start + f0 + k0)
        k0 = k1


def _other_columns(others: pa.Table) -> dict:
    """The others as numpy columns (kind as codes into EVENT_KINDS, comm as an Arrow array)."""
    out = {}
    for f in others.schema:
        col = others.column(f.name)
        if f.name == "kind":
            import pyarrow.compute as pc
            codes = _numpy(pc.index_in(col, value_set=_KINDS))
            out["kind"] = codes.astype(np.int8)
        elif f.name == "comm":
            out["comm"] = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        else:
            out[f.name] = _numpy(col)
    return out


def _batch(fb: pa.RecordBatch | None, o: dict, k0: int, k1: int, row0: int) -> pa.RecordBatch:
    """The stream rows [row0, row0 + faults + (k1 - k0)) as one JOINED batch."""
    m = fb.num_rows if fb is not None else 0
    n = m + k1 - k0
    at = o["row"][k0:k1] - row0                      # the others' places in this batch
    if k1 == k0:
        cols = {name: fb.column(name) for name in FAULT_COLUMNS}
        cols["kind"] = pa.DictionaryArray.from_arrays(_constant_codes(n), _KINDS)
        arrays = [cols[f.name] if f.name in cols else _constant(f, n) for f in JOINED]
        return pa.RecordBatch.from_arrays(arrays, schema=JOINED)
    fault_at = None
    if m:
        gap = np.ones(n, bool)
        gap[at] = False
        fault_at = np.flatnonzero(gap)
    arrays = []
    for f in JOINED:
        name = f.name
        if name == "kind":
            codes = np.full(n, _FAULT, np.int8)
            codes[at] = o["kind"][k0:k1]
            arrays.append(pa.DictionaryArray.from_arrays(_arrow(codes, pa.int8()), _KINDS))
        elif name == "comm":
            arrays.append(_comm(o["comm"], k0, k1, at, n))
        elif name in FAULT_COLUMNS:
            vals = np.empty(n, o[name].dtype)
            if m:
                vals[fault_at] = _numpy(fb.column(name))
            vals[at] = o[name][k0:k1]
            arrays.append(_arrow(vals, f.type))
        else:
            mine = o[name][k0:k1]
            default = EVENT_DEFAULTS[name]
            if (mine == default).all():
                arrays.append(_constant(f, n))
                continue
            vals = np.full(n, default, mine.dtype)
            vals[at] = mine
            arrays.append(_arrow(vals, f.type))
    return pa.RecordBatch.from_arrays(arrays, schema=JOINED)


_CODES: list[np.ndarray] = []


def _constant_codes(n: int) -> pa.Array:
    if not _CODES or len(_CODES[0]) < n:
        _CODES[:] = [np.full(max(n, 1 << 18), _FAULT, np.int8)]
    return _arrow(_CODES[0][:n], pa.int8())


def _comm(comm: pa.Array, k0: int, k1: int, at: np.ndarray, n: int) -> pa.Array:
    """comm of a joined batch: the others' strings at their places, null elsewhere."""
    mine = comm.slice(k0, k1 - k0)
    if mine.null_count == len(mine):
        return _constant(JOINED.field("comm"), n)
    enc = mine.dictionary_encode() if not pa.types.is_dictionary(mine.type) else mine
    idx = np.zeros(n, np.int32)
    valid = np.zeros(n, bool)
    ok = ~_numpy(enc.indices.is_null())
    local = _numpy(enc.indices.fill_null(_scalar(0, enc.indices.type)))
    idx[at[ok]] = local[ok]
    valid[at[ok]] = True
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
    indices = pa.Array.from_buffers(pa.int32(), n, [bitmap, pa.py_buffer(idx)], null_count=n - int(valid.sum()))
    return pa.DictionaryArray.from_arrays(indices, enc.dictionary.cast(pa.string()))
