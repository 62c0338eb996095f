"""Capture readers: one module per format behind one interface (`base`), and the registry.

    base.py           the interface: Capture, RawColumns, the RAW schema, open_binary
    perf/             perf.data (file, pipe, --threads, -z): reader.py, plus stacks.py for attribution
    text/             perf script, ftrace and trace-cmd report text: one compiled line scanner

This module only picks a reader for a capture (`detect`); readers import `base`, never this
module, so the imports run one way.  `RAW`, `Capture`, `RawColumns`, `open_binary` and
`Opener` are re-exported here for callers.
"""
from __future__ import annotations

from pathlib import Path

from ptreplay.pipeline.formats.base import RAW, Capture, Opener, RawColumns, open_binary

__all__ = ["RAW", "Capture", "Opener", "RawColumns", "open_binary", "readers", "detect"]


def readers() -> list:
    """All readers, binary formats first (their magic is unambiguous)."""
    from ptreplay.pipeline.formats.perf import reader as perfdata
    from ptreplay.pipeline.formats.text import ftrace, perf_script, tracecmd
    return [perfdata, tracecmd, ftrace, perf_script]


def detect(path: Path):
    """The reader module for `path`, chosen from its content, never its name."""
    from ptreplay.schemas.errors import TraceFormatError
    path = Path(path)
    if path.is_dir():
        from ptreplay.pipeline.formats.perf import reader as perfdata
        if perfdata.sniff_dir(path):
            return perfdata
        raise TraceFormatError(f"{path}: directory is not a perf --threads capture (no data.N files with a PERFILE2 header)")
    with open_binary(path) as f:
        head = f.read(64 * 1024)
    if not head:
        raise TraceFormatError(f"{path}: offset 0: empty file, expected a perf.data, perf script, ftrace or trace-cmd capture")
    for reader in readers():
        if reader.sniff(head):
            return reader
    raise TraceFormatError(
        f"{path}: offset 0: unknown format (expected perf.data magic PERFILE2, trace-cmd .dat, "
        f"or perf script / ftrace / trace-cmd report text)")
