"""Shared machinery of the three text readers (perf script, ftrace, trace-cmd report).

All three print one event per line as ``<who> <cpu> <time>: <event> <payload>``; only the
`<who>` prefix and the event token differ.  Parsing them line by line in Python (or with
Arrow's RE2 `extract_regex`, about 2 s per million lines here) is far too slow, so one
compiled kernel (`_scan`, numba) walks a whole block of bytes and fills plain arrays: time,
ids, cpu, the event name's hash and span, and the payload's integers for the event kinds the
replay needs (page faults, syscall enter/exit).  Python then names the events (one decode per
distinct name), parses the rare sched_process_* payloads with `re`, checks the lines the kernel
could not read (comments, lost-event markers, headers: each format decides via
`TextFormat.special_line`), and builds RAW tables.

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
from ptreplay.pipeline.formats import RAW, Capture

CHUNK_BYTES = 96 << 20          # ~1 M lines of typical trace text per read
BATCH_ROWS = 1 << 20            # at most this many rows per yielded table

# How the prefix is laid out: ftrace and trace-cmd write `comm-tid [(tgid)] [cpu] [flags]`,
# perf script writes `comm [pid/]tid [[cpu]]`.
STYLE_FTRACE = 0
STYLE_PERF = 1

# Line status codes written by the kernel.
OK, BLANK, COMMENT = 0, 1, 2
NO_TIME, BAD_CPU, BAD_WHO, BAD_EVENT = 3, 4, 5, 6          # prefix errors: maybe a special line
BAD_FAULT, BAD_SYS_ENTER, BAD_SYS_EXIT = 7, 8, 9           # payload errors: always an error
REASONS = {
    NO_TIME: "no timestamp 'sec.usec: '",
    BAD_CPU: "no '[cpu]'",
    BAD_WHO: "no thread id",
    BAD_EVENT: "no event name",
    BAD_FAULT: "page fault payload is not 'address=0x.. ip=.. error_code=0x..'",
    BAD_SYS_ENTER: "syscall arguments are not 'name: value, ...' (at most 6)",
    BAD_SYS_EXIT: "syscall return value is not a number",
}

# Event kinds (decided in the kernel from the name bytes).
K_OTHER, K_FAULT, K_SYS_ENTER, K_SYS_EXIT = 0, 1, 2, 3
# Separator after the event name: `name: ...`, ftrace's `sys_x(...)` and `sys_x -> ret`.
SEP_COLON, SEP_PAREN, SEP_ARROW = 0, 1, 2


# --------------------------------------------------------------------------------------------
# The kernel.  Plain functions, compiled with numba on first use by `_compile()` (so importing a
# reader compiles nothing); they take and return plain arrays and scalars only.
# --------------------------------------------------------------------------------------------

# name prefixes that decide an event's kind (module-level arrays are constants for numba)
_LIT_FAULT = np.frombuffer(b"page_fault_", np.uint8).copy()
_LIT_ENTER = np.frombuffer(b"sys_enter_", np.uint8).copy()
_LIT_EXIT = np.frombuffer(b"sys_exit_", np.uint8).copy()


def _hexval(c):
    """Value of an ASCII hex digit, -1 if `c` is not one."""
    if 48 <= c <= 57:
        return c - 48
    if 97 <= c <= 102:
        return c - 87
    if 65 <= c <= 70:
        return c - 55
    return -1


def _parse_num(buf, i, end, hex_default):
    """Integer at buf[i:end]: `0x` hex, `-` decimal, else digits in the default base.

    Returns (value as uint64, two's complement if negative; index after it; ok)."""
    neg = False
    base = 16 if hex_default else 10
    if i < end and buf[i] == 45:            # '-'
        neg = True
        base = 10
        i += 1
    if i + 1 < end and buf[i] == 48 and (buf[i + 1] == 120 or buf[i + 1] == 88):   # 0x
        base = 16
        i += 2
    start = i
    v = np.uint64(0)
    while i < end:
        d = _hexval(buf[i])
        if d < 0 or d >= base:
            break
        v = v * np.uint64(base) + np.uint64(d)
        i += 1
    if neg:
        v = np.uint64(0) - v
    return v, i, i > start


def _digits_back(buf, s, h):
    """Decimal digits ending just before h, read right to left but not before s.

    Returns (value, index of the first digit); that index == h when there are none."""
    v = 0
    mul = 1
    while h > s and 48 <= buf[h - 1] <= 57:
        v += (int(buf[h - 1]) - 48) * mul
        mul *= 10
        h -= 1
    return v, h


def _starts_with(buf, i, end, lit):
    """True if buf[i:end] starts with the bytes of `lit` (a uint8 array)."""
    if end - i < len(lit):
        return False
    for k in range(len(lit)):
        if buf[i + k] != lit[k]:
            return False
    return True


def _parse_fault(buf, i, end, args, row):
    """`address=0x.. ip=0x..|symbol error_code=0x..` -> args[0:3, row]; False if malformed."""
    nf = 0
    while i < end:
        while i < end and buf[i] == 32:
            i += 1
        if i >= end:
            break
        k = i
        while k < end and buf[k] != 61 and buf[k] != 32:     # '=' or ' '
            k += 1
        if k >= end or buf[k] != 61 or nf >= 3:
            return False
        v, j, ok = _parse_num(buf, k + 1, end, False)
        if ok and (j == end or buf[j] == 32):
            args[nf, row] = v
            i = j
        elif nf == 1:                    # ip printed as a kernel symbol (elf_load): no address
            args[nf, row] = np.uint64(0)
            i = k + 1
            while i < end and buf[i] != 32:
                i += 1
        else:
            return False
        nf += 1
    return nf == 3


def _parse_sys_enter(buf, i, end, args, row):
    """`name: value, name: value, ...` (values hex, `0x` optional) -> args[:, row]; count or -1."""
    nf = 0
    while i < end:
        while i < end and buf[i] != 58:                       # ':'
            i += 1
        if i + 1 >= end or buf[i + 1] != 32 or nf >= 6:
            return -1
        v, i, ok = _parse_num(buf, i + 2, end, True)
        if not ok:
            return -1
        args[nf, row] = v
        nf += 1
        if i == end:
            break
        if i + 1 >= end or buf[i] != 44 or buf[i + 1] != 32:  # ', '
            return -1
        i += 2
    return nf


def _fnv(buf, i, end, salt):
    """64-bit FNV-1a hash of buf[i:end] mixed with `salt` (the separator kind)."""
    h = np.uint64(14695981039346656037)
    for k in range(i, end):
        h = (h ^ np.uint64(buf[k])) * np.uint64(1099511628211)
    return (h ^ np.uint64(salt + 1)) * np.uint64(1099511628211)


def _scan(buf, style):
    """Parse every line of `buf` (whole lines, each ending in '\\n').

    Returns per-line arrays: status (OK or a reason code), t_ns, pid, tid, cpu, name hash,
    name start/end, separator, kind, args (6 x n), nargs, ret, payload start/end, line start/end,
    and the number of timestamps that were raw counters (no '.')."""
    n = 0
    for c in buf:
        if c == 10:
            n += 1
    status = np.zeros(n, np.int8)
    t_ns = np.zeros(n, np.int64)
    pid = np.full(n, -1, np.int32)
    tid = np.full(n, -1, np.int32)
    cpu = np.full(n, -1, np.int32)
    name_hash = np.zeros(n, np.uint64)
    name_start = np.zeros(n, np.int64)
    name_end = np.zeros(n, np.int64)
    sep = np.zeros(n, np.int8)
    kind = np.zeros(n, np.int8)
    args = np.zeros((6, n), np.uint64)
    nargs = np.zeros(n, np.int8)
    ret = np.zeros(n, np.int64)
    pay_start = np.zeros(n, np.int64)
    pay_end = np.zeros(n, np.int64)
    line_start = np.zeros(n, np.int64)
    line_end = np.zeros(n, np.int64)
    counters = 0
    pos = 0
    for li in range(n):
        s = pos
        e = s
        while buf[e] != 10:
            e += 1
        pos = e + 1
        if e > s and buf[e - 1] == 13:                       # CRLF
            e -= 1
        line_start[li] = s
        line_end[li] = e
        # blank and comment lines
        b = s
        while b < e and buf[b] == 32:
            b += 1
        if b == e:
            status[li] = BLANK
            continue
        if buf[s] == 35:                                      # '#'
            status[li] = COMMENT
            continue
        # the timestamp: the first ': ' preceded by a ' '-separated token of digits[.digits]
        j = s
        ts0 = -1
        while j < e:
            if buf[j] == 58 and (j + 1 == e or buf[j + 1] == 32) and j > s and 48 <= buf[j - 1] <= 57:
                k = j - 1
                dots = 0
                while k >= s and ((48 <= buf[k] <= 57) or buf[k] == 46):
                    if buf[k] == 46:
                        dots += 1
                    k -= 1
                if dots <= 1 and (k < s or buf[k] == 32) and 48 <= buf[k + 1] <= 57:
                    ts0 = k + 1
                    break
            j += 1
        if ts0 < 0:
            status[li] = NO_TIME
            continue
        sec = np.int64(0)
        k = ts0
        while k < j and buf[k] != 46:
            sec = sec * 10 + (buf[k] - 48)
            k += 1
        if k < j:
            frac = np.int64(0)
            nd = 0
            k += 1
            while k < j:
                if nd < 9:
                    frac = frac * 10 + (buf[k] - 48)
                    nd += 1
                k += 1
            while nd < 9:
                frac *= 10
                nd += 1
            t_ns[li] = sec * 1000000000 + frac
        else:
            t_ns[li] = sec
            counters += 1
        # the prefix, right to left from the timestamp
        h = ts0
        while h > s and buf[h - 1] == 32:
            h -= 1
        if style == STYLE_FTRACE:
            if h > s and buf[h - 1] != 93:                    # irq-info flags (not ']')
                while h > s and buf[h - 1] != 32:
                    h -= 1
                while h > s and buf[h - 1] == 32:
                    h -= 1
        if h > s and buf[h - 1] == 93:                        # [cpu]
            h -= 1
            v, first = _digits_back(buf, s, h)
            if first == h or first == s or buf[first - 1] != 91:   # '['
                status[li] = BAD_CPU
                continue
            cpu[li] = v
            h = first - 1
            while h > s and buf[h - 1] == 32:
                h -= 1
        elif style == STYLE_FTRACE:
            status[li] = BAD_CPU
            continue
        if style == STYLE_FTRACE and h > s and buf[h - 1] == 41:   # (tgid) from record-tgid
            h -= 1
            while h > s and buf[h - 1] == 32:
                h -= 1
            v, first = _digits_back(buf, s, h)
            if first < h:
                pid[li] = v
            h = first
            while h > s and (buf[h - 1] == 45 or buf[h - 1] == 32):   # (-------): unknown
                h -= 1
            if h == s or buf[h - 1] != 40:                    # '('
                status[li] = BAD_WHO
                continue
            h -= 1
            while h > s and buf[h - 1] == 32:
                h -= 1
        v, first = _digits_back(buf, s, h)
        if first == h:
            status[li] = BAD_WHO
            continue
        tid[li] = v
        h = first
        if style == STYLE_FTRACE:
            if h == s or buf[h - 1] != 45:                    # comm-tid
                status[li] = BAD_WHO
                continue
        else:
            if h > s and buf[h - 1] == 47:                    # pid/tid
                h -= 1
                v, first = _digits_back(buf, s, h)
                if first == h:
                    status[li] = BAD_WHO
                    continue
                pid[li] = v
                h = first
            if h > s and buf[h - 1] != 32:                    # comm, then a space
                status[li] = BAD_WHO
                continue
        # the event token after the timestamp
        i = j + 1
        while i < e and buf[i] == 32:
            i += 1
        sp = SEP_COLON
        if style == STYLE_PERF:
            k = i
            while k < e and 48 <= buf[k] <= 57:               # optional period column
                k += 1
            if k > i and k < e and buf[k] == 32:
                i = k
                while i < e and buf[i] == 32:
                    i += 1
            t0 = i
            while i < e and buf[i] != 32:
                i += 1
            if i - t0 < 2 or buf[i - 1] != 58:                # 'system:event:'
                status[li] = BAD_EVENT
                continue
            ns = t0
            while ns < i - 1 and buf[ns] != 58:
                ns += 1
            ns = t0 if ns == i - 1 else ns + 1
            ne = i - 1
            if i < e:
                i += 1
            ps = i
        else:
            ns = i
            while i < e and buf[i] != 58 and buf[i] != 40 and buf[i] != 32:
                i += 1
            ne = i
            if ne == ns:
                status[li] = BAD_EVENT
                continue
            if i == e:
                ps = e
            elif buf[i] == 58:
                i += 1
                while i < e and buf[i] == 32:
                    i += 1
                ps = i
            elif buf[i] == 40:                                # ftrace: sys_mmap(addr: 0, ...)
                sp = SEP_PAREN
                ps = i + 1
            elif i + 2 < e and buf[i + 1] == 45 and buf[i + 2] == 62:   # ftrace: sys_mmap -> 0x..
                sp = SEP_ARROW
                ps = i + 3
                while ps < e and buf[ps] == 32:
                    ps += 1
            else:
                status[li] = BAD_EVENT
                continue
        pe = e
        while pe > ps and buf[pe - 1] == 32:
            pe -= 1
        name_start[li] = ns
        name_end[li] = ne
        name_hash[li] = _fnv(buf, ns, ne, sp)
        sep[li] = sp
        pay_start[li] = ps
        pay_end[li] = pe
        # the payload, for the kinds the replay needs
        if sp == SEP_PAREN or _starts_with(buf, ns, ne, _LIT_ENTER):
            kind[li] = K_SYS_ENTER
            if sp == SEP_PAREN:
                if pe == ps or buf[pe - 1] != 41:             # ')'
                    status[li] = BAD_SYS_ENTER
                    continue
                pe -= 1
            c = _parse_sys_enter(buf, ps, pe, args, li)
            if c < 0:
                status[li] = BAD_SYS_ENTER
                continue
            nargs[li] = c
        elif sp == SEP_ARROW or _starts_with(buf, ns, ne, _LIT_EXIT):
            kind[li] = K_SYS_EXIT
            u, k, ok = _parse_num(buf, ps, pe, True)
            if not ok or k != pe:
                status[li] = BAD_SYS_EXIT
                continue
            ret[li] = np.int64(u)
        elif _starts_with(buf, ns, ne, _LIT_FAULT):
            kind[li] = K_FAULT
            if not _parse_fault(buf, ps, pe, args, li):
                status[li] = BAD_FAULT
                continue
            nargs[li] = 3
    return (status, t_ns, pid, tid, cpu, name_hash, name_start, name_end, sep, kind, args,
            nargs, ret, pay_start, pay_end, line_start, line_end, counters)


_JIT_ORDER = ("_hexval", "_parse_num", "_digits_back", "_starts_with", "_parse_fault", "_parse_sys_enter", "_fnv", "_scan")


def _compile():
    """Compile the kernel with numba (cached on disk) the first time a text file is read.

    Helpers are compiled first and rebound in this module so that `_scan` calls compiled code."""
    g = globals()
    if not hasattr(g["_scan"], "py_func"):
        from ptreplay.replay.jit import njit
        for name in _JIT_ORDER:
            g[name] = njit(nogil=True)(g[name])
    return g["_scan"]


# --------------------------------------------------------------------------------------------
# Python side: blocks of lines in, RAW tables out.
# --------------------------------------------------------------------------------------------

@dataclass
class TextFormat:
    """What differs between the text formats."""
    name: str                                   # Capture.meta['source_format']
    style: int                                  # STYLE_FTRACE or STYLE_PERF
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
        scan = _compile()
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
