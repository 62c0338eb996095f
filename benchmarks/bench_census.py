"""PAGEMAP_SCAN against chunked pagemap reads, side by side, on census_target processes.

    sudo .venv/bin/python benchmarks/bench_census.py [--gib 50] [--pages 512] [--repeat 5]

Builds workloads/census_target.c, starts `census_target sparse GIB PAGES` (GIB GiB reserved, PAGES
pages touched), scans it with each method (best of --repeat) and checks that both give the same
runs and that the tables needed equal the kernel's VmPTE.  Needs root.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from ptreplay.pipeline.capture import pagemap as pm

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gib", type=int, default=50)
    ap.add_argument("--pages", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        exe = Path(d) / "census_target"
        subprocess.run(["gcc", "-O2", "-o", str(exe), str(REPO / "workloads/census_target.c")], check=True)
        p = subprocess.Popen([str(exe), "sparse", str(a.gib), str(a.pages)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
        for line in p.stdout:
            if line.strip() == "ready":
                break
        try:
            vmpte = int(re.search(r"VmPTE:\s+(\d+)", Path(f"/proc/{p.pid}/status").read_text()).group(1)) * 1024
            scans = {}
            for method in ("pagemap_scan", "pagemap_read"):
                best = float("inf")
                for _ in range(a.repeat):
                    t0 = time.perf_counter()
                    s = pm.scan(p.pid, method=method)
                    best = min(best, time.perf_counter() - t0)
                scans[method] = s
                t = pm.tables_needed(s)
                print(f"{method:<13} best {best * 1e3:8.1f} ms   runs {s.run_start.size:6d}   present "
                      f"{s.count(pm.F_PRESENT):6d}   needed {t.bytes // 1024} kB   VmPTE {vmpte // 1024} kB")
            x, y = scans.values()
            same = all(np.array_equal(getattr(x, n), getattr(y, n)) for n in ("run_start", "run_pages", "run_flags"))
            print(f"VIRT {a.gib} GiB, same runs from both methods: {same}")
        finally:
            p.stdin.close()
            p.wait()


if __name__ == "__main__":
    main()
