"""`njit` for every compiled kernel of ptreplay, with numba's on-disk cache keyed on all of them.

numba's own cache (``cache=True``) is checked against the stamp of the one source file a
function lives in; a kernel that calls (or inlines) a helper from another file keeps
serving its old machine code after that helper changes, and cached code refers to its
helpers by module name, so a renamed module makes the cache fail to load.  Here the
cache directory is named after a hash of numba's version and of every ptreplay source
file that uses numba, so any change to any kernel source starts a fresh cache.

The directory is ``$NUMBA_CACHE_DIR/ptreplay-KEY`` when NUMBA_CACHE_DIR is set, else
``$XDG_CACHE_HOME/ptreplay/numba/KEY`` (``~/.cache``).  Only ptreplay's own functions are
affected: numba reads the cache directory when a function is decorated, and it is set
just for that.  Under NUMBA_DISABLE_JIT=1 the kernels stay plain Python.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numba

from ptreplay.replay import aot

_PACKAGE = Path(__file__).resolve().parents[1]
_SOURCES = ("replay", "pipeline", "schemas")


def _key() -> str:
    h = hashlib.sha256(numba.__version__.encode())
    for folder in _SOURCES:
        for path in sorted((_PACKAGE / folder).rglob("*.py")):
            text = path.read_bytes()
            if b"numba" in text or b"njit" in text:
                h.update(str(path.relative_to(_PACKAGE)).encode() + b"\0" + text)
    return h.hexdigest()[:16]


def cache_dir() -> str:
    """Where this set of kernel sources keeps its compiled code."""
    return str(aot.cache_dir("numba", _KEY))


_KEY = _key()
CACHE_DIR = cache_dir()


def njit(*args, **options):
    """numba.njit with cache=True into CACHE_DIR; use as ``@njit`` or ``@njit(nogil=True, ...)``."""
    options.setdefault("cache", True)

    def decorate(fn):
        saved = numba.config.CACHE_DIR
        numba.config.CACHE_DIR = CACHE_DIR
        try:
            return numba.njit(**options)(fn)
        finally:
            numba.config.CACHE_DIR = saved

    if args and callable(args[0]):
        return decorate(args[0])
    return decorate
