"""One zstd stream decompressed into the caller's buffers (the `-z` data of a perf.data file).

python-zstandard's `decompressobj` returns fresh `bytes` per call, joined from 128 KiB pieces,
and the reader joined those again: two copies of 1.2 GB of records into fresh pages for the
full-size seed capture (~0.4 s of CPU).  Here libzstd's streaming decoder (`ZSTD_decompressStream`,
through ctypes: the call releases the GIL) writes straight into a numpy buffer the caller reuses.
Without a loadable libzstd the same interface copies python-zstandard's output (as before).

Both decode every frame of the stream in turn (perf writes many; python-zstandard's
`read_across_frames=True`) and, given room, return all the output the input consumed so far
determines, so the records and round marks come out at the same places either way.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

import numpy as np
import zstandard


class _InBuffer(ctypes.Structure):
    _fields_ = [("src", ctypes.c_void_p), ("size", ctypes.c_size_t), ("pos", ctypes.c_size_t)]


class _OutBuffer(ctypes.Structure):
    _fields_ = [("dst", ctypes.c_void_p), ("size", ctypes.c_size_t), ("pos", ctypes.c_size_t)]


def _load():
    """libzstd's streaming decoder functions, or None when no libzstd can be loaded."""
    # the soname first: find_library runs `ldconfig -p` in a child process (~10 ms at every start)
    for name in ("libzstd.so.1", None):
        try:
            lib = ctypes.CDLL(name or ctypes.util.find_library("zstd") or "libzstd.so")
            fns = lib.ZSTD_createDStream, lib.ZSTD_decompressStream, lib.ZSTD_isError, lib.ZSTD_getErrorName
            break
        except (OSError, AttributeError):
            continue
    else:
        return None
    create, stream, is_error, error_name = fns
    create.restype = ctypes.c_void_p
    stream.restype = ctypes.c_size_t
    stream.argtypes = [ctypes.c_void_p, ctypes.POINTER(_OutBuffer), ctypes.POINTER(_InBuffer)]
    is_error.restype = ctypes.c_uint
    is_error.argtypes = [ctypes.c_size_t]
    error_name.restype = ctypes.c_char_p
    error_name.argtypes = [ctypes.c_size_t]
    lib.ZSTD_freeDStream.argtypes = [ctypes.c_void_p]
    return lib


_LIB = _load()


class BufferPool:
    """uint8 buffers for decompressed chunks, each reused once nothing refers to it any more
    (no chunk, view or array made from it is alive: its reference count is back to the pool's
    own), so the buffers the decoder still reads are never written.  Fresh pages cost page
    faults: reused ones are already mapped."""

    def __init__(self, limit: int = 8):
        self.buffers: list[np.ndarray] = []
        self.limit = limit

    def get(self, size: int) -> np.ndarray:
        for b in self.buffers:
            # references: the list, `b`, getrefcount's argument
            if len(b) >= size and sys.getrefcount(b) <= 3:
                return b
        b = np.empty(size, np.uint8)
        if len(self.buffers) < self.limit:
            self.buffers.append(b)
        return b


class Decompressor:
    """A zstd stream decompressed piece by piece into `out` buffers (`into`)."""

    def __init__(self):
        self._lib = _LIB
        if self._lib is not None:
            self._ds = ctypes.c_void_p(self._lib.ZSTD_createDStream())
            if not self._ds:
                self._lib = None
        if self._lib is None:
            self._obj = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True)
        self._in = _InBuffer()
        self._out = _OutBuffer()

    def into(self, data, out: np.ndarray, pos: int, grow) -> tuple[np.ndarray, int]:
        """Decompress `data` (bytes-like) after out[:pos] -> (buffer, bytes filled).  When the
        output does not fit, `grow(buffer, filled, more)` returns a larger buffer holding
        the filled bytes (and more room)."""
        if self._lib is None:
            got = self._obj.decompress(data)
            if pos + len(got) > len(out):
                out = grow(out, pos, len(got))
            out[pos:pos + len(got)] = np.frombuffer(got, np.uint8)
            return out, pos + len(got)
        src = np.frombuffer(data, np.uint8)
        self._in.src, self._in.size, self._in.pos = src.ctypes.data, len(src), 0
        o = self._out
        while True:
            o.dst, o.size, o.pos = out.ctypes.data, len(out), pos
            ret = self._lib.ZSTD_decompressStream(self._ds, ctypes.byref(o), ctypes.byref(self._in))
            if self._lib.ZSTD_isError(ret):
                name = self._lib.ZSTD_getErrorName(ret).decode("ascii", "replace")
                raise zstandard.ZstdError(f"zstd decompress error: {name}")
            pos = o.pos
            if pos < len(out) and self._in.pos == self._in.size:
                return out, pos          # all input taken, and all it gives is out: no more to flush
            if pos == len(out):
                out = grow(out, pos, max(1 << 20, 4 * (len(src) - self._in.pos)))

    def close(self):
        if self._lib is not None and self._ds:
            self._lib.ZSTD_freeDStream(self._ds)
            self._ds = ctypes.c_void_p()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
