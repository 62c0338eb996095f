"""The compiled line scanner of the text readers (perf script, ftrace, trace-cmd report).

All three formats print one event per line as ``<who> <cpu> <time>: <event> <payload>``;
only the `<who>` prefix and the event token differ.  Parsing them line by line in Python (or
with Arrow's RE2 `extract_regex`, about 2 s per million lines here) is far too slow, so one
compiled kernel (`scan`, numba) walks a whole block of bytes and fills plain arrays: time,
ids, cpu, the event name's hash and span, and the payload's integers for the event kinds the
replay needs (page faults, syscall enter/exit).  `reader.py` does the rest in Python.

Each line goes through the steps below, in order; the first that fails gives the line's
status (a reason code) and the scanner moves on to the next line:

    _find_timestamp   the first `digits[.digits]: ` token
    _parse_time       sec.usec -> t_ns (or a raw counter)
    _parse_prefix     right to left from the timestamp: [flags] [cpu] [(tgid)] comm-tid | [pid/]tid
    _parse_event      the event token after the timestamp, and where its payload starts
    _parse_payload    the integers of page faults and syscall enter/exit

Plain functions, compiled with numba on first use by `compile_scan()` (so importing a reader
compiles nothing); they take and return plain arrays and scalars only.
"""
from __future__ import annotations

import numpy as np

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

# name prefixes that decide an event's kind (module-level arrays are constants for numba)
_LIT_FAULT = np.frombuffer(b"page_fault_", np.uint8).copy()
_LIT_ENTER = np.frombuffer(b"sys_enter_", np.uint8).copy()
_LIT_EXIT = np.frombuffer(b"sys_exit_", np.uint8).copy()


# -------------------------------------------------------------------------------------------- numbers

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




# -------------------------------------------------------------------------------------------- line steps

def _count_lines(buf):
    n = 0
    for c in buf:
        if c == 10:
            n += 1
    return n


def _blank_or_comment(buf, s, e):
    """BLANK for a line of spaces, COMMENT for a '#' line, else OK."""
    b = s
    while b < e and buf[b] == 32:
        b += 1
    if b == e:
        return BLANK
    if buf[s] == 35:                                          # '#'
        return COMMENT
    return OK


def _find_timestamp(buf, s, e):
    """The timestamp: the first ': ' preceded by a ' '-separated token of digits[.digits].

    Returns (index of its ':', index of its first digit); the latter is -1 if there is none."""
    j = s
    while j < e:
        if buf[j] == 58 and (j + 1 == e or buf[j + 1] == 32) and j > s and 48 <= buf[j - 1] <= 57:
            k = j - 1
            dots = 0
            while k >= s and ((48 <= buf[k] <= 57) or buf[k] == 46):
                if buf[k] == 46:
                    dots += 1
                k -= 1
            if dots <= 1 and (k < s or buf[k] == 32) and 48 <= buf[k + 1] <= 57:
                return j, k + 1
        j += 1
    return j, -1


def _parse_time(buf, ts0, j):
    """`sec.frac` at buf[ts0:j] -> (t_ns, 0), or a raw counter without '.' -> (value, 1)."""
    sec = np.int64(0)
    k = ts0
    while k < j and buf[k] != 46:
        sec = sec * 10 + (buf[k] - 48)
        k += 1
    if k == j:
        return sec, 1
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
    return sec * 1000000000 + frac, 0


def _spaces_back(buf, s, h):
    """h moved left over the spaces just before it, not before s."""
    while h > s and buf[h - 1] == 32:
        h -= 1
    return h


def _parse_cpu(buf, s, h, style):
    """`[cpu]` ending just before h (ftrace: after skipping the irq-info flags).

    Returns (status, cpu or -1, index where the part before it ends)."""
    if style == STYLE_FTRACE:
        if h > s and buf[h - 1] != 93:                        # irq-info flags (not ']')
            while h > s and buf[h - 1] != 32:
                h -= 1
            h = _spaces_back(buf, s, h)
    if h > s and buf[h - 1] == 93:                            # [cpu]
        h -= 1
        v, first = _digits_back(buf, s, h)
        if first == h or first == s or buf[first - 1] != 91:  # '['
            return BAD_CPU, -1, h
        return OK, v, _spaces_back(buf, s, first - 1)
    if style == STYLE_FTRACE:
        return BAD_CPU, -1, h
    return OK, -1, h


def _parse_tgid(buf, s, h):
    """ftrace's `(tgid)` (options/record-tgid) ending just before h, if there is one.

    Returns (status, tgid or -1, index where the part before it ends)."""
    if h == s or buf[h - 1] != 41:                            # ')'
        return OK, -1, h
    h = _spaces_back(buf, s, h - 1)
    v, first = _digits_back(buf, s, h)
    pid = v if first < h else -1
    h = first
    while h > s and (buf[h - 1] == 45 or buf[h - 1] == 32):   # (-------): unknown
        h -= 1
    if h == s or buf[h - 1] != 40:                            # '('
        return BAD_WHO, pid, h
    return OK, pid, _spaces_back(buf, s, h - 1)


def _parse_who(buf, s, h, style):
    """`comm-tid` (ftrace) or `comm [pid/]tid` (perf) ending just before h.

    Returns (status, pid or -1, tid)."""
    v, first = _digits_back(buf, s, h)
    if first == h:
        return BAD_WHO, -1, -1
    tid = v
    h = first
    if style == STYLE_FTRACE:
        if h == s or buf[h - 1] != 45:                        # comm-tid
            return BAD_WHO, -1, tid
        return OK, -1, tid
    pid = -1
    if h > s and buf[h - 1] == 47:                            # pid/tid
        h -= 1
        v, first = _digits_back(buf, s, h)
        if first == h:
            return BAD_WHO, -1, tid
        pid = v
        h = first
    if h > s and buf[h - 1] != 32:                            # comm, then a space
        return BAD_WHO, pid, tid
    return OK, pid, tid


def _parse_prefix(buf, s, ts0, style):
    """Everything before the timestamp at ts0, right to left -> (status, pid, tid, cpu)."""
    st, cpu, h = _parse_cpu(buf, s, _spaces_back(buf, s, ts0), style)
    if st != OK:
        return st, -1, -1, cpu
    tgid = -1
    if style == STYLE_FTRACE:
        st, tgid, h = _parse_tgid(buf, s, h)
        if st != OK:
            return st, tgid, -1, cpu
    st, pid, tid = _parse_who(buf, s, h, style)
    return st, (tgid if style == STYLE_FTRACE else pid), tid, cpu


def _event_perf(buf, i, e):
    """perf script's `[period] system:event: ` at i -> (status, name start, name end,
    separator, payload start)."""
    k = i
    while k < e and 48 <= buf[k] <= 57:                       # optional period column
        k += 1
    if k > i and k < e and buf[k] == 32:
        i = k
        while i < e and buf[i] == 32:
            i += 1
    t0 = i
    while i < e and buf[i] != 32:
        i += 1
    if i - t0 < 2 or buf[i - 1] != 58:                        # 'system:event:'
        return BAD_EVENT, 0, 0, SEP_COLON, 0
    ns = t0
    while ns < i - 1 and buf[ns] != 58:
        ns += 1
    ns = t0 if ns == i - 1 else ns + 1
    ne = i - 1
    if i < e:
        i += 1
    return OK, ns, ne, SEP_COLON, i


def _event_ftrace(buf, i, e):
    """ftrace's `event: `, `sys_x(` or `sys_x -> ` at i -> (status, name start, name end,
    separator, payload start)."""
    ns = i
    while i < e and buf[i] != 58 and buf[i] != 40 and buf[i] != 32:
        i += 1
    ne = i
    if ne == ns:
        return BAD_EVENT, ns, ne, SEP_COLON, 0
    if i == e:
        return OK, ns, ne, SEP_COLON, e
    if buf[i] == 58:
        i += 1
        while i < e and buf[i] == 32:
            i += 1
        return OK, ns, ne, SEP_COLON, i
    if buf[i] == 40:                                          # ftrace: sys_mmap(addr: 0, ...)
        return OK, ns, ne, SEP_PAREN, i + 1
    if i + 2 < e and buf[i + 1] == 45 and buf[i + 2] == 62:   # ftrace: sys_mmap -> 0x..
        ps = i + 3
        while ps < e and buf[ps] == 32:
            ps += 1
        return OK, ns, ne, SEP_ARROW, ps
    return BAD_EVENT, ns, ne, SEP_COLON, 0


def _parse_event(buf, j, e, style):
    """The event token after the timestamp's ':' at j -> (status, name start, name end,
    separator, payload start)."""
    i = j + 1
    while i < e and buf[i] == 32:
        i += 1
    if style == STYLE_PERF:
        return _event_perf(buf, i, e)
    return _event_ftrace(buf, i, e)


def _parse_payload(buf, ns, ne, sp, ps, pe, args, row):
    """The payload buf[ps:pe], for the kinds the replay needs; integers into args[:, row].

    Returns (status, kind, nargs, ret)."""
    if sp == SEP_PAREN or _starts_with(buf, ns, ne, _LIT_ENTER):
        if sp == SEP_PAREN:
            if pe == ps or buf[pe - 1] != 41:                 # ')'
                return BAD_SYS_ENTER, K_SYS_ENTER, 0, np.int64(0)
            pe -= 1
        c = _parse_sys_enter(buf, ps, pe, args, row)
        if c < 0:
            return BAD_SYS_ENTER, K_SYS_ENTER, 0, np.int64(0)
        return OK, K_SYS_ENTER, c, np.int64(0)
    if sp == SEP_ARROW or _starts_with(buf, ns, ne, _LIT_EXIT):
        u, k, ok = _parse_num(buf, ps, pe, True)
        if not ok or k != pe:
            return BAD_SYS_EXIT, K_SYS_EXIT, 0, np.int64(0)
        return OK, K_SYS_EXIT, 0, np.int64(u)
    if _starts_with(buf, ns, ne, _LIT_FAULT):
        if not _parse_fault(buf, ps, pe, args, row):
            return BAD_FAULT, K_FAULT, 0, np.int64(0)
        return OK, K_FAULT, 3, np.int64(0)
    return OK, K_OTHER, 0, np.int64(0)


# -------------------------------------------------------------------------------------------- the scan

def _scan(buf, style):
    """Parse every line of `buf` (whole lines, each ending in '\\n'), one step after another.

    Returns per-line arrays: status (OK or a reason code), t_ns, pid, tid, cpu, name hash,
    name start/end, separator, kind, args (6 x n), nargs, ret, payload start/end, line start/end,
    and the number of timestamps that were raw counters (no '.')."""
    n = _count_lines(buf)
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
        st = _blank_or_comment(buf, s, e)
        if st != OK:
            status[li] = st
            continue
        j, ts0 = _find_timestamp(buf, s, e)
        if ts0 < 0:
            status[li] = NO_TIME
            continue
        t, counter = _parse_time(buf, ts0, j)
        t_ns[li] = t
        counters += counter
        st, p, t_id, c = _parse_prefix(buf, s, ts0, style)
        pid[li] = p
        tid[li] = t_id
        cpu[li] = c
        if st != OK:
            status[li] = st
            continue
        st, ns, ne, sp, ps = _parse_event(buf, j, e, style)
        if st != OK:
            status[li] = st
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
        st, kd, na, r = _parse_payload(buf, ns, ne, sp, ps, pe, args, li)
        status[li] = st
        kind[li] = kd
        nargs[li] = na
        ret[li] = r
    return (status, t_ns, pid, tid, cpu, name_hash, name_start, name_end, sep, kind, args,
            nargs, ret, pay_start, pay_end, line_start, line_end, counters)


# Helpers first, each after the helpers it calls; `_scan` last.
_JIT_ORDER = ("_hexval", "_parse_num", "_digits_back", "_starts_with", "_parse_fault", "_parse_sys_enter", "_fnv",
              "_count_lines", "_blank_or_comment", "_find_timestamp", "_parse_time", "_spaces_back", "_parse_cpu",
              "_parse_tgid", "_parse_who", "_parse_prefix", "_event_perf", "_event_ftrace", "_parse_event",
              "_parse_payload", "_scan")
# The line steps are inlined into `_scan` by numba, so splitting it into steps costs nothing.
_INLINE = ("_blank_or_comment", "_find_timestamp", "_parse_time", "_spaces_back", "_parse_cpu", "_parse_tgid",
           "_parse_who", "_parse_prefix", "_event_perf", "_event_ftrace", "_parse_event", "_parse_payload")


def compile_scan():
    """Compile the kernel with numba (cached on disk) the first time a text file is read;
    returns `_scan`.

    Helpers are compiled first and rebound in this module so that `_scan` calls compiled code."""
    g = globals()
    if not hasattr(g["_scan"], "py_func"):
        from ptreplay.replay.jit import njit
        for name in _JIT_ORDER:
            g[name] = njit(nogil=True, **({"inline": "always"} if name in _INLINE else {}))(g[name])
    return g["_scan"]
