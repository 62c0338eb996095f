"""HEADER_TRACING_DATA: the tracepoint format texts perf stores with a capture.

Layout (tools/perf/util/trace-event-read.c, trace-event-info.c): magic
``\\x17\\x08\\x44tracing``, NUL-terminated version, u8 big_endian, u8 long_size,
u32 page_size; ``header_page`` + u64 size + text; ``header_event`` + u64
size + text; u32 count of ftrace formats, each u64 size + text; u32 count of
systems, each a NUL-terminated name, u32 count and u64 size + text per event;
then kallsyms, printk formats and (0.6) saved cmdlines, which are not needed.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

from ptreplay.schemas.errors import TraceFormatError
from ptreplay.pipeline.formats.perf.layout import TRACING_MAGIC

_FIELD_RE = re.compile(r"field:(?P<decl>[^;]*);\s*offset:(?P<offset>\d+);\s*size:(?P<size>\d+);"
                       r"\s*signed:(?P<signed>\d+);")


@dataclass(frozen=True)
class Field:
    """One `field:` line of a tracepoint format (trace_output.c prints them)."""
    name: str
    decl: str
    offset: int
    size: int
    signed: bool

    @property
    def data_loc(self) -> bool:
        """`__data_loc char[] x`: u32 holding offset | length << 16 within the raw data."""
        return self.decl.startswith("__data_loc")

    @property
    def array(self) -> bool:
        return "[" in self.decl

    @property
    def integer(self) -> bool:
        return not self.data_loc and not self.array and self.size in (1, 2, 4, 8)

    @property
    def string(self) -> bool:
        return "char" in self.decl and (self.data_loc or self.array)


@dataclass
class TraceFormat:
    """A tracepoint's `format` file: name, ID (== attr.config), fields by offset."""
    system: str
    name: str
    id: int
    fields: list[Field] = field(default_factory=list)

    @property
    def event_fields(self) -> list[Field]:
        """Fields after the common_* header, in format order."""
        return [f for f in self.fields if not f.name.startswith("common_")]

    def get(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)

    @property
    def min_raw_size(self) -> int:
        return max((f.offset + f.size for f in self.fields), default=0)


def parse_format(text: str, system: str) -> TraceFormat:
    """Parse one format text (`name:`, `ID:`, `format:` field lines, `print fmt:`)."""
    name = re.search(r"^name:\s*(\S+)", text, re.M)
    ident = re.search(r"^ID:\s*(\d+)", text, re.M)
    if not name or not ident:
        raise ValueError(f"format text without name/ID: {text[:60]!r}")
    fmt = TraceFormat(system, name.group(1), int(ident.group(1)))
    for m in _FIELD_RE.finditer(text.split("print fmt:")[0]):
        decl = m.group("decl").strip()
        fname = re.sub(r"\[.*\]$", "", decl.split()[-1])
        fmt.fields.append(Field(fname, decl, int(m.group("offset")), int(m.group("size")),
                                m.group("signed") == "1"))
    return fmt


class _Cursor:
    """Bounds-checked reads over the tracing-data blob; errors name the absolute offset."""

    def __init__(self, blob: bytes, path, base: int):
        self.blob, self.path, self.base, self.p = blob, path, base, 0

    def fail(self, what: str):
        raise TraceFormatError(f"{self.path}: offset {self.base + self.p}: tracing data: {what}")

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.p + n > len(self.blob):
            self.fail(f"expected {n} bytes of {what}, only {len(self.blob) - self.p} remain")
        out = self.blob[self.p:self.p + n]
        self.p += n
        return out

    def cstring(self, what: str) -> str:
        end = self.blob.find(b"\0", self.p)
        if end < 0:
            self.fail(f"expected a NUL-terminated {what}")
        s = self.blob[self.p:end].decode("utf-8", "replace")
        self.p = end + 1
        return s

    def uint(self, fmt: str, what: str) -> int:
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt), what))[0]


def parse_tracing_data(blob: bytes, path, base: int) -> tuple[dict[int, TraceFormat], dict]:
    """Tracepoint formats by ID, plus {'tracing_version', 'long_size', 'page_size'}."""
    c = _Cursor(blob, path, base)
    if c.take(len(TRACING_MAGIC), "magic") != TRACING_MAGIC:
        c.p = 0
        c.fail(f"bad magic, expected {TRACING_MAGIC!r}")
    version = c.cstring("version")
    big_endian, long_size = c.take(2, "endianness and long size")
    page_size = c.uint("I", "page size")
    if big_endian or long_size != 8:
        c.fail(f"recorded on a {'big' if big_endian else 'little'}-endian {long_size * 8}-bit "
               f"machine; ptreplay models x86_64 only (little-endian, 64-bit)")
    for label in ("header_page", "header_event"):
        got = c.cstring(label)
        if got != label:
            c.fail(f"expected {label!r}, found {got!r}")
        c.take(c.uint("Q", f"{label} size"), label)
    for _ in range(c.uint("I", "ftrace format count")):
        c.take(c.uint("Q", "ftrace format size"), "ftrace format")
    formats: dict[int, TraceFormat] = {}
    for _ in range(c.uint("I", "system count")):
        system = c.cstring("system name")
        for _ in range(c.uint("I", "event count")):
            text = c.take(c.uint("Q", "format size"), "format text").decode("utf-8", "replace")
            try:
                fmt = parse_format(text, system)
            except ValueError as e:
                c.fail(str(e))
            formats[fmt.id] = fmt
    return formats, {"tracing_version": version, "long_size": long_size, "page_size": page_size}
