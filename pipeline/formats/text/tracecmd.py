"""`trace-cmd report` text.

First line ``cpus=N`` (or ``version = N``), then ``comm-tid [cpu] sec.usec: event: payload`` with
the payload printed by libtraceevent from the event's print fmt (syscalls: ``sys_enter_mmap:
addr: 0x00000000, len: ...``, ``sys_exit_mmap: 0x7f..``).  When trace.dat holds an instance
buffer (trace-cmd record/extract -B) every line starts with ``<instance>: ``.  Loss:
``CPU:N [EVENTS DROPPED]`` (count unknown: counted as 1) or ``CPU:N [M EVENTS DROPPED]``.
Only the text is read here; trace.dat itself is another reader's business.
"""
from __future__ import annotations

import re

from ptreplay.pipeline.formats.base import Capture
from ptreplay.pipeline.formats.text.reader import TextFormat, read_text
from ptreplay.pipeline.formats.text.scan import STYLE_FTRACE

NAME = "trace-cmd"

_HEADER = re.compile(r"(?:cpus=(\d+)|version = \d+)$")
_DROPPED = re.compile(r"(?:\S+: +)?CPU:(\d+) \[(?:(\d+) )?EVENTS DROPPED\]$")


def sniff(head: bytes) -> bool:
    """True if the text starts with trace-cmd report's `cpus=N` or `version = N` line."""
    first = head.split(b"\n", 1)[0].strip()
    return bool(re.fullmatch(rb"cpus=\d+|version = \d+", first))


def _special(text: str, meta: dict) -> bool:
    text = text.strip()
    m = _HEADER.match(text)
    if m:
        if m.group(1):
            meta["nr_cpus"] = int(m.group(1))
        return True
    m = _DROPPED.match(text)
    if m:
        if m.group(2) is None:
            meta["lost_events"] += 1
            meta["warnings"].append(f"CPU {m.group(1)}: events dropped, count unknown (counted as 1)")
        else:
            meta["lost_events"] += int(m.group(2))
        return True
    return False


FORMAT = TextFormat(
    name=NAME, style=STYLE_FTRACE,
    expected="'[instance: ]comm-pid [cpu] sec.usec: event: payload' (trace-cmd report text)",
    special_line=_special)


def read(path, opener) -> Capture:
    """Read `trace-cmd report` output into RAW batches."""
    return read_text(path, opener, FORMAT)
