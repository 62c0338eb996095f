"""Replay throughput, by hand: `python benchmarks/bench_replay.py [--iters N]`.

1. numba compile time (first call; `cache=True` makes later runs load from cache:
   run with NUMBA_CACHE_DIR pointing at an empty directory to measure a cold compile).
2. The SYNTHETIC seed loop (replay.synth.seed_loop 50 GiB x 25,600 x 512 faults
   + MADV_DONTNEED, ~13.1 M events), split 1 and 2: final VmPTE and kernel
   events/s per policy.
3. benchmarks/_work/seed-full.events.parquet if present (a real ingested capture).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from replay import synth
from replay.engine import ReplayOptions, replay

POLICIES = "none,pt_reclaim,refcount,scan:1s,delayed:100ms,all_levels"


def report(name, res, seconds, n_events):
    print(f"\n{name}: {n_events:,} events, end-to-end {seconds:.2f} s (convert {res.metadata['convert_seconds']:.2f} s)")
    finals = {r["policy"]: r for r in res.summary.to_pylist()}
    for spec, ks in res.metadata["kernel_seconds"].items():
        r = finals.get(spec)
        vm = f"final VmPTE {r['final_vmpte_bytes'] // 1024:>9,} kB" if r else "(internal)"
        print(f"  {spec:<14} {vm}   {n_events / ks / 1e6:7.1f} M events/s (kernel {ks:.3f} s)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=25600)
    ap.add_argument("--gib", type=int, default=50)
    a = ap.parse_args()
    t0 = time.perf_counter()
    replay(synth.seed_loop(1, 2, 1), ReplayOptions(policies=POLICIES))
    print(f"compile/load of the kernels (first tiny replay): {time.perf_counter() - t0:.2f} s")
    for split in (1, 2):
        table = synth.seed_loop(a.gib, a.iters, split)
        t0 = time.perf_counter()
        res = replay(table, ReplayOptions(policies=POLICIES, thp="madvise"), capture=synth.capture_meta("seed"))
        report(f"synthetic seed_loop {a.gib} {a.iters} {split}", res, time.perf_counter() - t0, table.num_rows)
    real = Path(__file__).parent / "_work" / "seed-full.events.parquet"
    if real.exists():
        import pyarrow.parquet as pq
        n = pq.ParquetFile(real).metadata.num_rows
        t0 = time.perf_counter()
        res = replay(real, ReplayOptions(policies=POLICIES))
        report(str(real), res, time.perf_counter() - t0, n)
    else:
        print(f"\n{real} not present: real-capture benchmark skipped")


if __name__ == "__main__":
    main()
