"""The kernel as oracle, at scale: `python benchmarks/bench_oracle.py [-n 1000] [--ops 60] [--batch 50]`.

Builds workloads/oracle.c, records the programs SEED = 1..N with `ptreplay record` in batches
of --batch programs (one recording each: a shell running them one after another), replays each
under `pt_reclaim` (and `none`) and tallies every operation boundary against the kernel's
/proc/self/status (pipeline/presentation/oracle.py): programs, boundaries, exact VmPTE, VmSize,
RssAnon, RssFile+RssShmem %, the named reasons of RSS mismatches and mismatches by op kind.
Needs root, perf and tracefs.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECORD_ATTEMPTS = 3      # a batch whose recording lost events is recorded again, up to this many times


def main(argv=None) -> int:
    from ptreplay.pipeline.presentation.oracle import LostEvents, run_programs

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--programs", type=int, default=1000)
    ap.add_argument("--ops", type=int, default=60, help="operations per program (default 60)")
    ap.add_argument("--batch", type=int, default=50, help="programs per recording (default 50)")
    ap.add_argument("--first-seed", type=int, default=1)
    a = ap.parse_args(argv)
    t0 = time.monotonic()
    from ptreplay.schemas.errors import PipelineError

    tallies: dict = {}
    failed: list = []
    retried: list = []
    with tempfile.TemporaryDirectory(prefix="bench-oracle-") as tmp:
        subprocess.run([str(REPO / "workloads" / "build.sh"), tmp], check=True, capture_output=True)
        for lo in range(a.first_seed, a.first_seed + a.programs, a.batch):
            hi = min(lo + a.batch, a.first_seed + a.programs)
            work = Path(tmp) / f"batch-{lo}"
            work.mkdir()
            for attempt in range(1, RECORD_ATTEMPTS + 1):
                try:
                    run_programs(str(Path(tmp) / "oracle"), range(lo, hi), a.ops, work, ("none", "pt_reclaim"),
                                 tallies)
                    break
                except LostEvents as e:  # perf's buffers overflowed: record the batch again
                    print(f"seeds {lo}..{hi - 1}: {e} (attempt {attempt})", file=sys.stderr, flush=True)
                    retried.append((lo, hi - 1, attempt))
                    if attempt == RECORD_ATTEMPTS:
                        failed.append((lo, hi - 1, str(e)))
                except PipelineError as e:   # e.g. lost events left a process alive: say so, go on
                    failed.append((lo, hi - 1, str(e).splitlines()[0][:200]))
                    break
            print(f"seeds {lo}..{hi - 1} done ({time.monotonic() - t0:.0f} s)", file=sys.stderr, flush=True)
    for policy in ("pt_reclaim", "none"):
        print(f"policy {policy}")
        print("\n".join(tallies[policy].lines()))
    print("first pt_reclaim mismatches (seed, pid, op, kind, memory, counter, model - kernel bytes):")
    for e in tallies["pt_reclaim"].examples:
        print(f"  {e}")
    for lo, hi, why in failed:
        print(f"batch {lo}..{hi} not tallied: {why}")
    for lo, hi, attempt in retried:
        print(f"batch {lo}..{hi}: recording {attempt} lost events" + (", recorded again" if attempt < RECORD_ATTEMPTS else ""))
    print(f"{time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
