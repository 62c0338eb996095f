"""Shared fixtures and the `live` marker.

Tests marked ``@pytest.mark.live`` drive the real `perf` on this machine; they
are skipped, with the reason, unless we are root and perf, tracefs and every
required tracepoint are available.  With PTREPLAY_REQUIRE_LIVE=1 (set by
.ci/run where it is root) a test that would skip for a missing tool fails
instead: CI must compare with the kernel, not silently stop doing so.
"""
from __future__ import annotations

import os
import pickle
import shutil
import signal
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"


@lru_cache(maxsize=1)
def launch_mode(cap: Path) -> str:
    """How `record` started a capture: "attach" (-p), "exec_stop" (the command stopped at its
    exec, its start state read, then run) or "perf" (perf launched it: no start state)."""
    import json
    info = json.loads((cap / "record.json").read_text())
    return info.get("launch") or ("attach" if (cap / "snapshot.parquet").exists() else "perf")


def live_skip_reason() -> str | None:
    """Why live recording tests cannot run here, or None when they can."""
    from ptreplay.schemas.errors import RecordError
    from ptreplay.pipeline.capture.record import check_tracepoints, find_perf, find_tracefs
    if os.geteuid() != 0:
        return "live: needs root"
    try:
        find_perf()
        check_tracepoints(find_tracefs())
    except RecordError as e:
        return f"live: {e}"
    return None


def require(ok: bool, reason: str) -> None:
    """Skip with `reason` unless `ok`; under PTREPLAY_REQUIRE_LIVE=1 fail instead."""
    if ok:
        return
    if os.environ.get("PTREPLAY_REQUIRE_LIVE") == "1":
        pytest.fail(f"PTREPLAY_REQUIRE_LIVE=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def perf_oracle() -> str:
    """`perf` on PATH: the oracle of the tests that compare with `perf script`."""
    perf = shutil.which("perf")
    require(perf is not None, "perf is not installed: no oracle")
    return perf


def pytest_runtest_setup(item):
    if item.get_closest_marker("live") is not None:
        reason = live_skip_reason()
        require(reason is None, reason or "")


@pytest.fixture(scope="session")
def workload_bin(tmp_path_factory) -> Path:
    """workloads/*.c compiled by workloads/build.sh into a temporary directory."""
    require(shutil.which("gcc") is not None, "gcc not found: cannot build the workloads")
    out = tmp_path_factory.mktemp("workloads-bin")
    subprocess.run([str(REPO / "workloads" / "build.sh"), str(out)], check=True, capture_output=True)
    return out


def run_cli(*args: str, env: dict | None = None, timeout: float = 120, prefix: list[str] | None = None,
            **kw) -> subprocess.CompletedProcess:
    """`python -m ptreplay ARGS` as a subprocess, from the repository root."""
    argv = (prefix or []) + [sys.executable, "-m", "ptreplay", *args]
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, **kw)


def in_child(fn, seconds: int):
    """Run fn() in a forked child within `seconds`: ((status, value), peak RSS above the child's start).

    status is "ok" (value: fn's result), "error" (a PipelineError: its message) or "crash" (any
    other exception, a timeout, a signal).  The peak is the kernel's VmHWM after resetting it
    (/proc/self/clear_refs 5) to the child's RSS at the start: every allocator counts (Arrow's
    pool, numpy, numba), unlike tracemalloc."""
    from ptreplay.schemas.errors import PipelineError
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: reset the high-water mark to the current RSS, run, report
        os.close(r)
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            start = _status_kb("VmRSS")
            signal.alarm(seconds)
            try:
                out = ("ok", fn())
            except PipelineError as e:
                out = ("error", str(e))
            except BaseException as e:  # noqa: BLE001  (reported as the case's failure)
                out = ("crash", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            signal.alarm(0)
            payload = pickle.dumps((out, (_status_kb("VmHWM") - start) << 10))
        except BaseException as e:  # noqa: BLE001
            payload = pickle.dumps((("crash", f"harness: {e!r}"), 0))
        os.write(w, payload)
        os._exit(0)
    os.close(w)
    chunks = []
    while (b := os.read(r, 1 << 16)):
        chunks.append(b)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if not chunks:
        return ("crash", f"child died (wait status {status}: signal {status & 0x7f})"), 0
    return pickle.loads(b"".join(chunks))


def _status_kb(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)
