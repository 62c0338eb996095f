"""The ingest kernels compiled ahead of time, so that `ptreplay ingest` starts without numba's JIT.

Before it can walk one record, an ingest through numba's JIT waits ~0.3 s for numba's import and
its first cached kernel's load (`benchmarks/bench_ingest.py`: the JIT start-up floor).  Here
numba's own ahead-of-time compiler (`numba.pycc`) turns the same kernel functions (their source in
pipeline/formats/perf/kernels.py and pipeline/events/fault_merge.py is the one truth) into a C
extension module, once per version of their sources, in the cache directory; importing it takes
under a millisecond and imports no numba.

    K = aot.kernels()          # walk_records, index_records, decode_fixed_samples, decode_fault_records, ...
    K.walk_records(...)        # the compiled module's function, or numba's JIT one

The module is built the first time it is missing (in a child process, `python -m
ptreplay.replay.aot`: ~6 s here with a C compiler; numba's JIT would compile these kernels anyway on
first use).  Where it cannot be built (no C compiler, no numba.pycc) the JIT functions are used and
the reason is kept in the cache directory, so later runs do not retry.  PTREPLAY_AOT=0 selects the
JIT functions (the tests compare both), and so does NUMBA_DISABLE_JIT=1 (plain Python, for coverage).

Two things numba's JIT does that pycc's exported functions do not, done here: they release the GIL
(the reader's threads overlap: `nogil=True` under the JIT; the build sets numba's `release_gil`
flag), and they check their arguments (pycc's do not: an array of another dtype would be read as
raw memory).  Each compiled function is called through a guard that checks every array's dtype,
dimensions and contiguity against its signature and otherwise calls the JIT function.  numba.pycc
is pending deprecation (numba 0.57); should it go, ingest keeps working on the JIT.
"""
from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np

MODULE = "ptreplay_ingest_kernels"
_PACKAGE = Path(__file__).resolve().parents[1]
_READER = "ptreplay.pipeline.formats.perf.kernels"
_NORMALIZE = "ptreplay.pipeline.events.fault_merge"
# The source files whose text the compiled code depends on (kernels, the constants they freeze, this file).
_SOURCES = ("pipeline/formats/perf/kernels.py", "pipeline/formats/perf/kernel_abi.py",
            "pipeline/events/fault_merge.py", "pipeline/formats/base.py", "replay/aot.py")

# name: (module, return type, argument types), in numba's signature notation ([::1]: C-contiguous,
# as the callers' arrays are, which lets the compiler drop stride arithmetic; [:]: any strides)
SIGNATURES = {
    "walk_records": (_READER, "Tuple((i8[::1], i8[::1], i8[::1], i8, i8))", "u1[::1] u4[:] u8[:] i8 i8"),
    "index_records": (_READER, "UniTuple(i8[::1], 3)", "i8[::1] i8 i8"),
    "decode_fixed_samples": (
        _READER, "UniTuple(i8, 2)",
        "u1[::1] u4[:] u8[:] i8[::1] i8[::1] i8[::1] i8 i8 i8[::1] i8[:,::1] i8[:,:,::1] "    # buffer, records, plan
        "i4[::1] i8[::1] i4[::1] i4[::1] i4[::1] i4[::1] u8[:,:] i8[::1] i8[::1] i4[::1] i8[::1]"),  # RAW columns
    "decode_fault_records": (
        _READER, "UniTuple(i8, 7)",
        "u1[::1] u4[:] u8[:] i8 i8 i8[::1] i8 i8 i8 i8[::1] i8[:,::1] i8[:,:,::1] "    # buffer, plan
        "i8[::1] i4[::1] i4[::1] i4[::1] u8[::1] u8[::1] i4[::1] b1[::1] i8[::1] "    # fault columns
        "i8[::1] i8[::1] i8[::1] i8[::1] i8[::1] i8[::1] i8[::1]"),                   # other records, counts
    "split_faults": (
        _NORMALIZE, "UniTuple(i8, 2)",
        "i8[::1] i8[::1] i4[::1] i4[::1] i4[::1] u8[::1] u8[::1] u8[::1] i4[::1] i1[::1] u8 i8[::1] f8[::1] "
        "i8[::1] i4[::1] i4[::1] i4[::1] u8[::1] u8[::1] i4[::1] b1[::1] i8[::1]"),
    "merge_faults": (
        _NORMALIZE, "UniTuple(i8, 2)",
        "i8[::1] i8[::1] i4[::1] i4[::1] i4[::1] u8[::1] u8[::1] u8[::1] i4[::1] i1[::1] u8 i1 i8[::1] f8[::1] "
        "i8[::1] f8[::1] i4[::1] i4[::1] i4[::1] i1[::1] u8[::1] u8[::1] i4[::1] b1[::1] i8[::1]"),
}
_DTYPES = {"i1": np.int8, "i4": np.int32, "i8": np.int64, "u1": np.uint8, "u4": np.uint32, "u8": np.uint64,
           "f8": np.float64, "b1": np.bool_}

_lock = threading.Lock()
_loaded: SimpleNamespace | None = None


def kernels() -> SimpleNamespace:
    """The ingest kernels: compiled ahead of time when that module is (or can now be) built,
    else numba's JIT functions."""
    global _loaded
    with _lock:
        if _loaded is None:
            jit = os.environ.get("PTREPLAY_AOT") == "0" or os.environ.get("NUMBA_DISABLE_JIT") == "1"
            module = None if jit else _compiled()
            _loaded = SimpleNamespace(**{name: _jit(name) if module is None else
                                         _guarded(name, getattr(module, name)) for name in SIGNATURES},
                                      compiled=module is not None)
        return _loaded


def _jit(name: str):
    return getattr(importlib.import_module(SIGNATURES[name][0]), name)


def _guarded(name: str, fast):
    """`fast` called only with arrays of its signature's dtypes, dimensions and (where it says
    [::1]) contiguity; anything else goes to the JIT function (pycc's functions do not check)."""
    arrays = [(i, np.dtype(_DTYPES[t[:2]]), t.count(",") + 1, t.endswith("::1]"))
              for i, t in enumerate(SIGNATURES[name][2].split()) if "[" in t]

    def call(*args):
        for i, dtype, ndim, contiguous in arrays:
            a = args[i]
            if not (isinstance(a, np.ndarray) and a.dtype == dtype and a.ndim == ndim
                    and (not contiguous or a.flags.c_contiguous)):
                return _jit(name)(*args)
        return fast(*args)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"{name}, compiled ahead of time (numba.pycc), its arguments checked"
    return call


# ----------------------------------------------------------------------------- where and when it is built

def source_key() -> str:
    """A hash of what the compiled code depends on: the kernel sources, numba, numpy, Python and the CPU."""
    h = hashlib.sha256()
    for dist in ("numba", "numpy"):
        h.update(_installed(dist))
    h.update(sys.version.encode())
    h.update(_cpu())
    for rel in _SOURCES:
        h.update(rel.encode() + b"\0" + (_PACKAGE / rel).read_bytes())
    return h.hexdigest()[:16]


def _installed(package: str) -> bytes:
    """Which install of `package` is importable: its __init__.py's path, size and modification
    time, without importing it (numba's import takes ~0.3 s) and without importlib.metadata (whose
    import and directory scan cost every ingest ~15 ms).  Any reinstall or upgrade changes it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.origin:
        return b"-"
    st = os.stat(spec.origin)
    return f"{spec.origin}\0{st.st_size}\0{st.st_mtime_ns}".encode()


def _cpu() -> bytes:
    """This machine's CPU model and features (the module is compiled for them): /proc/cpuinfo's
    first processor, without its per-core and per-moment lines."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace").split("\n\n", 1)[0]
    except OSError:
        import platform
        return f"{platform.machine()} {platform.processor()}".encode()
    keep = ("vendor_id", "cpu family", "model", "model name", "stepping", "flags")
    return "\n".join(line for line in text.splitlines() if line.split(":")[0].strip() in keep).encode()


def cache_dir(kind: str, key: str) -> Path:
    """Where compiled code of one kind ('numba': the JIT's cache, 'aot': this module) and one
    source key goes: $NUMBA_CACHE_DIR/ptreplay[-KIND]-KEY when NUMBA_CACHE_DIR is set, else
    $XDG_CACHE_HOME/ptreplay/KIND/KEY (~/.cache)."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        name = f"ptreplay-{key}" if kind == "numba" else f"ptreplay-{kind}-{key}"
        return Path(os.environ["NUMBA_CACHE_DIR"]) / name
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ptreplay" / kind / key


def module_dir() -> Path:
    return cache_dir("aot", source_key())


def _compiled():
    """The compiled module, built now if it is missing; None where it cannot be built."""
    where = module_dir()
    failed = where / "failed.txt"
    if not _built(where) and not failed.exists():
        _build_in_child(where, failed)
    path = _built(where)
    if path is None:
        return None
    spec = importlib.util.spec_from_file_location(MODULE, path,
                                                  loader=importlib.machinery.ExtensionFileLoader(MODULE, str(path)))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _module_path(where: Path) -> Path:
    return where / f"{MODULE}{importlib.machinery.EXTENSION_SUFFIXES[0]}"


def _built(where: Path) -> Path | None:
    path = _module_path(where)
    return path if path.exists() else None


def _build_in_child(where: Path, failed: Path) -> None:
    """Build the module in a child process (numba's compiler stays out of this one); a failure is
    written to `failed` (and said once on stderr), so that later runs use the JIT without retrying."""
    try:     # the child imports ptreplay as this process does (same interpreter and environment)
        done = subprocess.run([sys.executable, "-m", "ptreplay.replay.aot", str(where)], capture_output=True,
                              text=True, timeout=600)
        error = "" if done.returncode == 0 else (done.stderr.strip().splitlines() or ["exit status %d" %
                                                                                     done.returncode])[-1]
    except (OSError, subprocess.SubprocessError) as e:
        error = str(e)
    if error and _built(where) is None:
        where.mkdir(parents=True, exist_ok=True)
        failed.write_text(error + "\n")
        print(f"ptreplay: the ingest kernels could not be compiled ahead of time ({error}); "
              f"numba's JIT is used (the reason is kept in {failed})", file=sys.stderr)


def build(where: Path) -> Path:
    """Compile the kernels of SIGNATURES into `where` (atomically: other processes may build too)."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")            # numba.pycc's pending-deprecation warning
        from llvmlite import binding as llvm
        from numba.pycc import CC
        from numba.pycc import compiler as pycc_compiler

    class ReleaseGil(pycc_compiler.Flags):         # the exported wrappers release the GIL (nogil=True)
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.release_gil = True

    pycc_compiler.Flags = ReleaseGil
    where.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=where, prefix=".build.") as tmp:
        cc = CC(MODULE)
        cc.output_dir = tmp
        cc.verbose = False
        cc.target_cpu = llvm.get_host_cpu_name()   # as the JIT does (the key names this machine's CPU)
        for name, (_, ret, args) in SIGNATURES.items():
            fn = _jit(name)
            cc.export(name, f"{ret}({', '.join(args.split())})")(fn.py_func)
        cc.compile()
        built = next(Path(tmp).glob(f"{MODULE}*.so"))
        os.replace(built, _module_path(where))
    return _module_path(where)


if __name__ == "__main__":
    build(Path(sys.argv[1]) if len(sys.argv) > 1 else module_dir())
