"""ftrace text: the tracefs `trace` file (with its `#` header) or `trace_pipe` output.

Event lines: ``comm-tid [(tgid)] [cpu] [irq flags] sec.usec: event: payload``.  `(tgid)` is
there with options/record-tgid (RAW pid = tgid; else -1; `(-------)` = unknown), the 4- or
5-char flags with options/irq-info.  Syscall events use ftrace's own printer (kernel/trace/
trace_syscalls.c): ``sys_mmap(addr: 0, len: 0x2000, ...)`` (hex; this kernel prints values
below 10 without `0x`, older ones never print `0x`) and ``sys_mmap -> 0x7f..``; they become
sys_enter_mmap / sys_exit_mmap.  Lost data: ``CPU:N [LOST M EVENTS]`` lines, and in `trace`
the header's entries-in-buffer/entries-written difference (overwritten events).
"""
from __future__ import annotations

import re

from ptreplay.pipeline.formats.base import Capture
from ptreplay.pipeline.formats.text.reader import TextFormat, read_text
from ptreplay.pipeline.formats.text.scan import STYLE_FTRACE

NAME = "ftrace"

_EVENT = re.compile(rb"^ *\S.*-\d+ +(?:\( *(?:\d+|-+)\) +)?\[\d+\] +(?:\S{4,5} +)?\d+(?:\.\d+)?: \w+(?:: |\(| -> )")
_LOST = re.compile(r"CPU:(\d+) \[LOST (\d+) EVENTS\]$")
_ENTRIES = re.compile(r"# entries-in-buffer/entries-written: (\d+)/(\d+)\s+#P:(\d+)")


def sniff(head: bytes) -> bool:
    """True if the first non-comment line is an ftrace event (or the `trace` header starts it)."""
    if head.startswith(b"# tracer: "):
        return True
    for line in head.split(b"\n")[:50]:
        if not line.strip() or line.startswith(b"#") or _LOST.match(line.decode("latin-1")):
            continue
        return bool(_EVENT.match(line))
    return False


def _special(text: str, meta: dict) -> bool:
    m = _LOST.match(text.strip())
    if m:
        meta["lost_events"] += int(m.group(2))
        return True
    return False


def _comment(text: str, meta: dict) -> None:
    m = _ENTRIES.match(text)
    if m:
        in_buffer, written = int(m.group(1)), int(m.group(2))
        meta["nr_cpus"] = int(m.group(3))
        if written > in_buffer:
            meta["lost_events"] += written - in_buffer
            meta["warnings"].append(f"ring buffer overwrote {written - in_buffer} events "
                                    f"(entries-in-buffer/entries-written: {in_buffer}/{written})")


FORMAT = TextFormat(
    name=NAME, style=STYLE_FTRACE,
    expected="'comm-pid [(tgid)] [cpu] [flags] sec.usec: event: payload' (ftrace text)",
    special_line=_special, comment_line=_comment)


def read(path, opener) -> Capture:
    """Read a tracefs `trace` / `trace_pipe` text file into RAW batches."""
    return read_text(path, opener, FORMAT)
