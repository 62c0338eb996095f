"""The ingest kernels compiled ahead of time (replay/aot.py) against numba's JIT ones.

The compiled module is built from the same functions, so these tests check the build and the
call path, not the rules: every bundled capture ingests to the same events with either set
(the rules are checked against the kernel and perf script elsewhere); an argument of another
dtype goes to the JIT function instead of being read as raw memory; the compiled functions
release the GIL; ingest with them imports no numba; a build that fails leaves the JIT in use.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from ptreplay.pipeline.events.ingest import read_events
from ptreplay.pipeline.formats.perf.kernel_abi import unaligned_views
from ptreplay.replay import aot
from ptreplay.schemas import EVENTS
from ptreplay.schemas.parquet_io import read_table

REPO = Path(__file__).resolve().parents[1]
PERF_DIR = REPO / "tests" / "data" / "perf"


@pytest.fixture(scope="module")
def compiled():
    k = aot.kernels()
    if not k.compiled:
        pytest.fail(f"the ingest kernels were not compiled ahead of time (see {aot.module_dir()})")
    return k


def _jit_kernels() -> SimpleNamespace:
    return SimpleNamespace(**{name: aot._jit(name) for name in aot.SIGNATURES}, compiled=False)


def _events(path: Path) -> list:
    it, _ = read_events(path, parts=False)
    return list(it)


def _inputs() -> list[Path]:
    data = REPO / "data"
    dirs = sorted(p for p in data.iterdir() if (p / "perf.data").exists())
    return dirs + sorted(p for p in PERF_DIR.glob("*.data") if p.name not in ("sampled.data", "nofault.data"))


@pytest.mark.parametrize("path", _inputs(), ids=lambda p: p.name)
def test_compiled_kernels_ingest_what_the_jit_ingests(path, compiled, monkeypatch):
    got = _events(path)
    monkeypatch.setattr(aot, "_loaded", _jit_kernels())
    want = _events(path)
    assert sum(b.num_rows for b in got) > 0
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.equals(w)


def test_walk_and_index_on_a_real_capture_equal_the_jit(compiled):
    data = (PERF_DIR / "seed_pipe.data").read_bytes()[16:]
    views = unaligned_views(data)
    got = compiled.walk_records(*views, 0, len(data))
    want = aot._jit("walk_records")(*views, 0, len(data))
    assert len(got[0]) > 1000
    for g, w in zip(got[:3], want[:3]):
        assert np.array_equal(g, w)
    assert got[3:] == want[3:]
    for g, w in zip(compiled.index_records(got[1], 9, 68), aot._jit("index_records")(got[1], 9, 68)):
        assert np.array_equal(g, w)


def test_an_argument_of_another_dtype_goes_to_the_jit(compiled):
    types = np.array([9, 68, 3, 9, 9], np.int32)           # the signature says int64
    samples, rounds, others = compiled.index_records(types, 9, 68)
    assert samples.tolist() == [0, 3, 4] and rounds.tolist() == [1] and others.tolist() == [2]


def test_compiled_kernels_release_the_gil(compiled):
    buf = np.zeros(64 << 20, np.uint8)
    buf.view(np.uint64)[:] = np.uint64(8) << np.uint64(48) | np.uint64(9)   # 8 M empty 8-byte SAMPLE records
    views = unaligned_views(buf)
    ticks, done = [0], threading.Event()

    def count():
        while not done.is_set():
            ticks[0] += 1

    t = threading.Thread(target=count)
    t.start()
    time.sleep(0.01)
    before = ticks[0]
    t0 = time.perf_counter()
    n = len(compiled.walk_records(*views, 0, len(buf))[0])
    seconds = time.perf_counter() - t0
    during = ticks[0] - before
    done.set()
    t.join()
    assert n == len(buf) // 8
    # holding the GIL, the counter could not move at all while the walk runs
    assert during > 1000, f"{during} ticks in {seconds:.3f} s"


def test_ingest_with_compiled_kernels_imports_no_numba(compiled, tmp_path):
    code = ("import sys\nfrom pathlib import Path\nfrom ptreplay.pipeline.events.ingest import ingest\n"
            f"ingest([Path({str(REPO / 'data' / 'seed-2m')!r})], Path({str(tmp_path / 'ev.parquet')!r}))\n"
            "print('numba' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert read_table(tmp_path / "ev.parquet", EVENTS).num_rows > 0


def test_a_failed_build_leaves_the_jit_in_use(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), "CC": "/nonexistent/cc"}
    code = ("from ptreplay.replay import aot\nfrom pathlib import Path\n"
            "k = aot.kernels()\nprint(k.compiled, (aot.module_dir() / 'failed.txt').exists())\n"
            f"from ptreplay.pipeline.events.ingest import ingest\n"
            f"ingest([Path({str(REPO / 'data' / 'seed-2m')!r})], Path({str(tmp_path / 'ev.parquet')!r}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]
    assert "numba's JIT is used" in out.stderr
    assert read_table(tmp_path / "ev.parquet", EVENTS).num_rows > 0
