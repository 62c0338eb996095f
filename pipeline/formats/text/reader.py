"""The Python side of the three text readers (perf script, ftrace, trace-cmd report).

`read_text` reads a capture in blocks of whole lines, runs the compiled scanner (`scan.py`)
on each block (cut into one piece per core: the kernel releases the GIL), then names the
events (one decode per distinct name), parses the rare sched_process_* payloads with `re`,
checks the lines the kernel could not read (comments, lost-event markers, headers: each
format decides via `TextFormat.special_line`), and builds RAW tables.

Error policy (the same for every text format): a line that is neither an event nor an allowed
special line is an error naming the file and line; so is a last line without a newline
(a truncated file) and an empty file.  Blank lines are skipped.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa

from ptreplay.schemas.errors import TraceFormatError
from ptreplay.pipeline.formats.base import RAW, Capture
from ptreplay.pipeline.formats.text.scan import (BAD_FAULT, COMMENT, K_SYS_EXIT, OK, REASONS, SEP_ARROW, SEP_PAREN,
                                                 compile_scan)

CHUNK_BYTES = 96 << 20          # ~1 M lines of typical trace text per read
BATCH_ROWS = 1 << 20            # at most this many rows per yielded table


@dataclass
class TextFormat:
    """What differs between the text formats."""
    name: str                                   # Capture.meta['source_format']
    style: int                                  # scan.STYLE_FTRACE or scan.STYLE_PERF
    expected: str                               # the event line layout, for error messages
    # special_line(text, meta) -> True if a non-event line is allowed here (lost markers,
    # headers); it may update meta.  comment_line(text, meta) sees every '#' line.
    special_line: Callable[[str, dict], bool]
    comment_line: Callable[[str, dict], None] = lambda text, meta: None


_SCHED = {
    "sched_process_fork": re.compile(r"comm=(.*) pid=(\d+) child_comm=(.*) child_pid=(\d+)$"),
    "sched_process_exec": re.compile(r"filename=(.*) pid=(\d+) old_pid=(\d+)$"),
    "sched_process_exit": re.compile(r"comm=(.*) pid=(\d+) prio=(-?\d+)(?: group_dead=\w+)?$"),
}


def _show(raw: bytes) -> str:
    """A short printable excerpt of a line, for error messages."""
    text = raw[:80].decode("utf-8", "backslashreplace")
    return repr(text + ("..." if len(raw) > 80 else ""))


def _fill(f, view: memoryview, path: Path, line_no: int) -> int:
    """Read into `view` until it is full or the file ends; bytes read."""
    total = 0
    while total < len(view):
        try:
            got = f.readinto(view[total:])
        except Exception as e:      # a corrupt .gz/.xz/.bz2/.zst stream raises many types
            raise TraceFormatError(f"{path}:{line_no}: cannot decompress the file: {e}") from None
        if not got:
            break
        total += got
    return total


def _blocks(f, path: Path) -> Iterator[tuple[np.ndarray, int]]:
    """Yield (block of whole lines as a uint8 array, number of its first line).

    One bytearray is reused: the tail after a block's last newline moves to its front and the
    next read fills the rest, so the block itself is never copied.  A block must be consumed
    before the next one is requested."""
    store = bytearray(CHUNK_BYTES)
    have = 0
    line_no = 1
    while True:
        if have == len(store):                       # a line longer than the buffer: grow it
            store = store + bytearray(len(store))
        with memoryview(store) as view:
            got = _fill(f, view[have:], path, line_no)
        have += got
        cut = store.rfind(b"\n", 0, have) + 1
        if got == 0 and cut < have:
            bad = line_no + store.count(b"\n", 0, cut)
            raise TraceFormatError(f"{path}:{bad}: truncated last line (no newline at end of file): "
                                   f"{_show(bytes(store[cut:have]))}")
        if cut == 0:
            if got == 0:
                return
            continue
        yield np.frombuffer(store, dtype=np.uint8, count=cut), line_no
        line_no += store.count(b"\n", 0, cut)
        store[:have - cut] = store[cut:have]
        have -= cut


def _split(buf: np.ndarray, parts: int) -> list[np.ndarray]:
    """Cut a block of lines into about `parts` pieces at line ends (for parallel scanning)."""
    pieces, start = [], 0
    for k in range(1, parts):
        nl = np.flatnonzero(buf[len(buf) * k // parts:] == 10)
        if not len(nl):
            break
        end = len(buf) * k // parts + int(nl[0]) + 1
        if end > start:
            pieces.append(buf[start:end])
            start = end
    if start < len(buf):
        pieces.append(buf[start:])
    return pieces


def read_text(path, opener, fmt: TextFormat) -> Capture:
    """Read a text capture in format `fmt` into lazy RAW batches plus metadata.

    Each block is cut into one piece per core and the (GIL-free) kernel runs on the pieces in
    parallel; tables come out in file order."""
    path = Path(path)
    meta = {"source_format": fmt.name, "lost_events": 0, "clock": None, "warnings": []}

    def batches() -> Iterator[pa.Table]:
        from concurrent.futures import ThreadPoolExecutor
        scan = compile_scan()
        workers = max(1, min(4, os.cpu_count() or 1))
        blocks = rows = 0
        try:
            f = opener(path)
        except OSError as e:
            raise TraceFormatError(f"{path}:1: cannot open: {e}") from None
        with f, ThreadPoolExecutor(workers) as pool:
            for block, first_line in _blocks(f, path):
                blocks += 1
                pieces = _split(block, workers) if len(block) > (4 << 20) else [block]
                results = pool.map(lambda piece: scan(piece, fmt.style), pieces)
                for piece, res in zip(pieces, results):
                    table = _to_table(path, piece, first_line, res, fmt, meta)
                    first_line += len(res[0])
                    rows += table.num_rows
                    for start in range(0, table.num_rows, BATCH_ROWS):
                        yield table.slice(start, BATCH_ROWS)
        if blocks == 0:
            raise TraceFormatError(f"{path}:1: empty file, expected {fmt.expected}")
        if rows == 0:
            meta["warnings"].append("the file holds no events")

    return Capture(batches=batches(), meta=meta)


def _fail(path, line_no: int, fmt: TextFormat, why: str, raw: bytes):
    raise TraceFormatError(f"{path}:{line_no}: expected {fmt.expected}: {why}, found {_show(raw)}")


def _to_table(path, buf, first_line: int, res, fmt: TextFormat, meta: dict) -> pa.Table:
    """Check the kernel's results for one block and turn its event lines into a RAW table."""
    (status, t_ns, pid, tid, cpu, name_hash, name_start, name_end, sep, kind, args, nargs, ret,
     pay_start, pay_end, line_start, line_end, counters) = res
    if counters:
        meta["warnings"].append(f"{counters} timestamps are raw counter values, not seconds")
    for li in np.flatnonzero(status >= COMMENT):          # few in a valid file
        raw = bytes(buf[line_start[li]:line_end[li]])
        st = int(status[li])
        if st == COMMENT:
            fmt.comment_line(raw.decode("utf-8", "replace"), meta)
        elif st >= BAD_FAULT or not fmt.special_line(raw.decode("utf-8", "replace"), meta):
            _fail(path, first_line + int(li), fmt, REASONS[st], raw)

    rows = np.flatnonzero(status == OK)
    n = len(rows)
    if n == len(status):                                   # every line an event: no gather
        rows = slice(None)
        row_no = np.arange(n, dtype=np.int64)
    else:
        row_no = rows
    # event names: one decode per distinct (name, separator)
    codes, uniq_hash = pd_factorize(name_hash[rows])
    first = np.zeros(len(uniq_hash), np.int64)
    first[codes[::-1]] = row_no[::-1]                      # first line of each distinct name
    names = []
    for r in first:
        name = bytes(buf[name_start[r]:name_end[r]]).decode("utf-8", "replace")
        if sep[r] == SEP_PAREN:
            name = "sys_enter_" + name.removeprefix("sys_")
        elif sep[r] == SEP_ARROW:
            name = "sys_exit_" + name.removeprefix("sys_")
        names.append(name)
    event = pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), pa.array(names, pa.string()))

    a = args[:, rows]
    na = nargs[rows]
    comm_idx = np.full(n, -1, np.int32)
    comms: list[str] = []
    for code, name in enumerate(names):                    # sched_process_*: rare, parse in Python
        pattern = _SCHED.get(name)
        if pattern is None:
            continue
        for i in np.flatnonzero(codes == code):
            r = row_no[i]
            text = bytes(buf[pay_start[r]:pay_end[r]]).decode("utf-8", "replace")
            m = pattern.match(text)
            if m is None:
                _fail(path, first_line + int(r), fmt, f"{name} payload is not '{pattern.pattern}'",
                      bytes(buf[line_start[r]:line_end[r]]))
            if name == "sched_process_fork":
                a[0, i], na[i], comm = int(m.group(4)), 1, m.group(3)
            elif name == "sched_process_exec":
                a[0, i], a[1, i], na[i], comm = int(m.group(2)), int(m.group(3)), 2, m.group(1)
            else:
                comm = m.group(1)
                # group_dead came with the tracepoint's move before exit_mm() (normalize: exit)
                meta.setdefault("exit_traced_first", " group_dead=" in text)
            comm_idx[i] = len(comms)
            comms.append(comm)

    k = kind[rows]
    columns = {
        "t_ns": pa.array(t_ns[rows], pa.int64()),
        "pid": pa.array(pid[rows], pa.int32()),
        "tid": pa.array(tid[rows], pa.int32()),
        "cpu": pa.array(cpu[rows], pa.int32()),
        "event": event.cast(pa.string()),
    }
    for j in range(6):
        columns[f"a{j}"] = pa.array(a[j], pa.uint64(), mask=na <= j)
    columns["ret"] = pa.array(ret[rows], pa.int64(), mask=k != K_SYS_EXIT)
    columns["comm"] = pa.DictionaryArray.from_arrays(
        pa.array(comm_idx, pa.int32(), mask=comm_idx < 0), pa.array(comms, pa.string())).cast(pa.string())
    columns["seq"] = pa.array(row_no + first_line, pa.int64())
    return pa.Table.from_pydict(columns, schema=RAW)


def pd_factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codes, uniques) in order of first appearance (pandas' hash table: fast)."""
    import pandas as pd
    codes, uniques = pd.factorize(values)
    return codes.astype(np.int32, copy=False), np.asarray(uniques)
