"""`perf script` text (tracepoint events).

Lines: ``comm [pid/]tid [[cpu]] sec.usec[nsec]: [period] system:event: payload``, columns per
`-F` (pid/tid or tid only: RAW pid -1 then; [cpu] optional; `--ns` gives 9 digits).  comm may
contain spaces, so the prefix is parsed from the right of the timestamp.  The payload is the
tracepoint's print fmt: ``addr: 0x00000000, len: 0x00002000, ...`` for syscall entries (RAW
a0..a5 in order), ``0x7f..`` for exits (unsigned hex, 0xfffffffffffffff4 -> ret -12),
``address=0x.. ip=0x.. error_code=0x6`` for faults (ip may be a kernel symbol -> 0).
perf script prints no lost-event records by default, so lost_events stays 0 (see warnings).
"""
from __future__ import annotations

import re

from ptreplay.pipeline.formats.base import Capture
from ptreplay.pipeline.formats.text.reader import TextFormat, read_text
from ptreplay.pipeline.formats.text.scan import STYLE_PERF

NAME = "perf-script"

_EVENT = re.compile(rb"^ *(?:\S.*? +)?\d+(?:/\d+)? +(?:\[\d+\] +)?\d+\.\d+: +(?:\d+ +)?[\w-]+:[\w-]+: ")


def sniff(head: bytes) -> bool:
    """True if the first non-comment line is a perf script tracepoint line."""
    for line in head.split(b"\n")[:50]:
        if not line.strip() or line.startswith(b"#"):
            continue
        return bool(_EVENT.match(line))
    return False


FORMAT = TextFormat(
    name=NAME, style=STYLE_PERF,
    expected="'comm [pid/]tid [[cpu]] sec.usec: system:event: payload' (perf script text)",
    special_line=lambda text, meta: False)


def read(path, opener) -> Capture:
    """Read `perf script` output into RAW batches."""
    cap = read_text(path, opener, FORMAT)
    cap.meta["warnings"].append("perf script text does not report lost events (PERF_RECORD_LOST)")
    return cap
