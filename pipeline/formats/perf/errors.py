"""Where the perf.data reader is, for error messages, and the one place low-level decode
errors (struct, numpy, zstd) become one-line `TraceFormatError`s naming file and offset."""
from __future__ import annotations

import struct
from typing import Iterator

import zstandard

from ptreplay.schemas.errors import TraceFormatError


class Where:
    """Current position for error messages: file plus a description of the offset."""

    def __init__(self, path):
        self.path = path
        self.what = "offset 0"

    def fail(self, msg: str):
        raise TraceFormatError(f"{self.path}: {self.what}: {msg}")

    def at(self, offset: int, stream: str = "") -> "Where":
        self.what = f"{stream}offset {offset}"
        return self


def fail(path, offset, msg):
    """Raise the TraceFormatError `path: offset N: msg`."""
    raise TraceFormatError(f"{path}: offset {offset}: {msg}")


DECODE_ERRORS = (struct.error, ValueError, IndexError, OverflowError, KeyError, MemoryError,
                 zstandard.ZstdError)


def low_level(where: Where, e: Exception) -> TraceFormatError:
    return TraceFormatError(f"{where.path}: {where.what}: cannot decode "
                            f"({type(e).__name__}: {e})".replace("\n", " "))


def guard(where: Where, fn):
    """Run fn, turning low-level decode errors into one-line TraceFormatErrors at `where`."""
    try:
        return fn()
    except TraceFormatError:
        raise
    except DECODE_ERRORS as e:
        raise low_level(where, e) from None


def guarded(where: Where, items: Iterator) -> Iterator:
    """`guard` for a generator (a chunk producer may run in its own thread, with its own `where`)."""
    try:
        yield from items
    except TraceFormatError:
        raise
    except DECODE_ERRORS as e:
        raise low_level(where, e) from None
