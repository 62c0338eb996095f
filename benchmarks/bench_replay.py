"""Replay throughput, by hand: `python benchmarks/bench_replay.py [--repeat N] [--cold] [--captures]`.

1. Kernel load time from numba's cache (first tiny replay); with --cold, the
   compile of every kernel in a fresh process with an empty NUMBA_CACHE_DIR.
2. The SYNTHETIC seed loop (replay.synth.seed_loop 50 GiB x 25,600 x 512 write
   faults + MADV_DONTNEED, ~13.1 M events), split 1 and 2, all six policies:
   final VmPTE and kernel events/s per policy (best of N, kernel time only:
   `metadata["kernel_seconds"]`), Arrow -> numpy conversion, end-to-end wall
   time (from the Arrow table; policies in parallel threads, and in one thread),
   and the same replay from a Parquet file in a fresh process (wall time with
   imports, peak RSS).
3. Baseline side by side: the same stream through the generic per-event path
   only (ReplayOptions(fast_path=False), policy none), i.e. without the batched
   fault fast path.
4. --captures: the bundled real captures (data/*, ingested to a temp dir), fast
   vs generic path, kernel events/s per policy.
5. --perf-script: `perf script` over benchmarks/_work/seed_full.data (the real
   recording of the same workload, see bench_ingest.py) for scale.
6. benchmarks/_work/seed-full.events.parquet if present (a real ingested capture).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ptreplay.replay import synth  # noqa: E402
from ptreplay.replay.engine import ReplayOptions, replay  # noqa: E402

POLICIES = "none,pt_reclaim,refcount,scan:1s,delayed:100ms,all_levels"
WORK = REPO / "benchmarks" / "_work"

# Peak RSS from VmHWM: ru_maxrss of an exec'd child starts at its forking parent's high-water mark.
FRESH = r"""
import json, sys, time
t0 = time.perf_counter()
from ptreplay.replay.engine import ReplayOptions, replay
res = replay(sys.argv[1], ReplayOptions(policies=sys.argv[2], thp="madvise"))
hwm = [int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM:")][0]
print(json.dumps({"wall": time.perf_counter() - t0, "maxrss_kb": hwm,
                  "kernel": res.metadata["kernel_seconds"], "convert": res.metadata["convert_seconds"]}))
"""

COLD = r"""
import time
t0 = time.perf_counter()
from ptreplay.replay import synth
from ptreplay.replay.engine import ReplayOptions, replay
t1 = time.perf_counter()
replay(synth.random_stream(1, 200, pids=(100, 101, 102)), ReplayOptions(policies="all", thp="always"))
print(time.perf_counter() - t1, t1 - t0)
"""


def best_of(n, fn):
    """(best wall seconds, result of that run, first-run wall seconds)."""
    best, res, first = None, None, None
    for _ in range(n):
        t0 = time.perf_counter()
        r = fn()
        dt = time.perf_counter() - t0
        first = dt if first is None else first
        if best is None or dt < best:
            best, res = dt, r
    return best, res, first


def kernel_best(runs):
    """Per policy, the smallest kernel time over several replays' metadata."""
    out = {}
    for meta in runs:
        for spec, s in meta["kernel_seconds"].items():
            out[spec] = min(out.get(spec, float("inf")), s)
    return out


def synthetic(gib, iters, split, repeat, baseline):
    table = synth.seed_loop(gib, iters, split)
    n = table.num_rows
    cap = synth.capture_meta("seed")
    metas = []

    def run(threads=None, policies=POLICIES, fast=True):
        r = replay(table, ReplayOptions(policies=policies, thp="madvise", threads=threads, fast_path=fast),
                   capture=cap)
        metas.append(r.metadata)
        return r

    e2e, res, first = best_of(repeat, run)
    kb = kernel_best(metas)
    e2e_1, _, _ = best_of(repeat, lambda: run(threads=1))
    kb1 = kernel_best(metas)  # threads=1 runs included: per-policy best of both
    finals = {r["policy"]: r for r in res.summary.to_pylist()}
    print(f"\nsynthetic seed_loop {gib} {iters} {split}: {n:,} events")
    print(f"  end-to-end (Arrow table in, 6 policies): {e2e:.2f} s best of {repeat} (first {first:.2f} s), "
          f"one thread {e2e_1:.2f} s; convert {res.metadata['convert_seconds']:.2f} s")
    print(f"  {'policy':<14} {'final VmPTE':>14} {'kernel M ev/s':>14} {'kernel s':>9}")
    for spec in kb:
        vm = f"{finals[spec]['final_vmpte_bytes'] // 1024:,} kB" if spec in finals else "(internal)"
        print(f"  {spec:<14} {vm:>14} {n / kb1[spec] / 1e6:14.1f} {kb1[spec]:9.3f}")
    if baseline:
        metas.clear()
        best_of(1, lambda: run(threads=1, policies="none", fast=False))
        ks = metas[0]["kernel_seconds"]["none"]
        print(f"  baseline, generic per-event path only (fast_path=False), none: {n / ks / 1e6:.1f} M ev/s "
              f"(kernel {ks:.2f} s) -> fast path {ks / kb1['none']:.0f}x")
    with tempfile.TemporaryDirectory() as tmp:
        import pyarrow.parquet as pq
        path = Path(tmp) / "seed.events.parquet"
        pq.write_table(table.replace_schema_metadata(
            {**(table.schema.metadata or {}), b"ptreplay.capture": json.dumps(cap).encode()}), path)
        table = res = None     # free them before the fresh processes run (run() is not called again)
        walls = []
        for _ in range(repeat):
            out = subprocess.run([sys.executable, "-c", FRESH, str(path), POLICIES], cwd=REPO, capture_output=True,
                                 text=True, check=True)
            walls.append(json.loads(out.stdout))
        w = min(walls, key=lambda x: x["wall"])
        print(f"  fresh process, from Parquet, 6 policies: {w['wall']:.2f} s wall incl. imports and cache load "
              f"(convert {w['convert']:.2f} s), peak RSS {w['maxrss_kb'] / 1024:.0f} MB")


def captures(repeat):
    from ptreplay.pipeline.events.ingest import ingest
    data = REPO / "data"
    print("\nreal captures (data/*), kernel M events/s per policy: fast path / generic path only")
    with tempfile.TemporaryDirectory() as tmp:
        for cap in sorted(p for p in data.iterdir() if (p / "truth.parquet").exists()):
            ev = ingest([cap], Path(tmp) / f"{cap.name}.parquet", force=True)
            import pyarrow.parquet as pq
            n = pq.ParquetFile(ev).metadata.num_rows
            cols = []
            for fast in (True, False):
                metas = [replay(ev, ReplayOptions(policies=POLICIES, fast_path=fast, threads=1)).metadata
                         for _ in range(repeat)]
                cols.append({k: n / v / 1e6 for k, v in kernel_best(metas).items()})
            cells = "  ".join(f"{k.split(':')[0]} {cols[0][k]:.0f}/{cols[1][k]:.1f}" for k in cols[0])
            print(f"  {cap.name:<15} {n:>8,} events  {cells}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=25600)
    ap.add_argument("--gib", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cold", action="store_true", help="also time a cold compile (empty NUMBA_CACHE_DIR, ~40 s)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the generic-path baseline (~4 s per split)")
    ap.add_argument("--captures", action="store_true", help="also replay the bundled real captures (data/)")
    ap.add_argument("--perf-script", action="store_true", help="also time perf script on _work/seed_full.data")
    a = ap.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    if a.cold:
        with tempfile.TemporaryDirectory() as cache:
            out = subprocess.run([sys.executable, "-c", COLD], cwd=REPO, capture_output=True, text=True, check=True,
                                 env=dict(os.environ, NUMBA_CACHE_DIR=cache))
            comp, imp = (float(x) for x in out.stdout.split())
            print(f"cold compile of all kernels (empty NUMBA_CACHE_DIR): {comp:.1f} s (+ imports {imp:.1f} s)")
    t0 = time.perf_counter()
    replay(synth.seed_loop(1, 2, 1), ReplayOptions(policies=POLICIES))
    print(f"compile/load of the kernels (first tiny replay): {time.perf_counter() - t0:.2f} s")
    for split in (1, 2):
        synthetic(a.gib, a.iters, split, a.repeat, not a.no_baseline)
    if a.captures:
        captures(a.repeat)
    perf_data = WORK / "seed_full.data"
    if a.perf_script and perf_data.exists() and shutil.which("perf"):
        t0 = time.perf_counter()
        subprocess.run(["perf", "script", "-i", str(perf_data)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print(f"\nperf script -i {perf_data.name} > /dev/null (decode only, same workload recorded): "
              f"{time.perf_counter() - t0:.2f} s")
    real = WORK / "seed-full.events.parquet"
    if real.exists():
        import pyarrow.parquet as pq
        n = pq.ParquetFile(real).metadata.num_rows
        metas = []
        e2e, _, first = best_of(a.repeat, lambda: metas.append(replay(real, ReplayOptions(policies=POLICIES)).metadata))
        print(f"\n{real.name} (real capture of the same workload): {n:,} events, end-to-end {e2e:.2f} s "
              f"best of {a.repeat} (first {first:.2f} s, from Parquet, warm process)")
        for spec, ks in kernel_best(metas).items():
            print(f"  {spec:<14} {n / ks / 1e6:7.1f} M events/s (kernel {ks:.3f} s)")
    print(f"\npeak RSS of this process (13 M-row tables built in memory): "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
