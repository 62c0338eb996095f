"""Text readers: decode speed in lines per second.

    python benchmarks/bench_text.py [--lines N]

Inputs (in benchmarks/_work/, git-ignored, made on first run):
  * perf script: real `perf script` output of `perf record -z -k CLOCK_MONOTONIC` on
    `seed_loop 8 8000 1` (about 4.1 M lines; needs root and perf);
  * ftrace and trace-cmd: the real samples data/text/seed-64.{ftrace,trace-cmd}.txt.zst with
    their event lines repeated up to --lines lines (same per-line cost as a long capture).
Each reader is warmed up once (numba kernel loaded from its cache) and then timed over the
whole file from the page cache; the figure is lines read / wall seconds.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ptreplay.pipeline.formats import open_binary  # noqa: E402
from ptreplay.pipeline.formats.text import ftrace, perf_script, tracecmd  # noqa: E402

WORK = ROOT / "benchmarks" / "_work"
DATA = ROOT / "data" / "text"
EVENTS = ",".join(["exceptions:page_fault_user", "exceptions:page_fault_kernel"]
                  + [f"syscalls:sys_{d}_{s}" for s in ("mmap", "munmap", "brk", "madvise") for d in ("enter", "exit")]
                  + ["sched:sched_process_exec", "sched:sched_process_exit"])


def perf_text() -> Path:
    """Real perf script text of a big seed-loop capture (made once)."""
    out = WORK / "big.perf-script.txt"
    if not out.exists():
        seed = WORK / "seed_loop"
        subprocess.run(["gcc", "-O2", "-o", str(seed), str(ROOT / "workloads" / "seed_loop.c")], check=True)
        data = WORK / "big.perf.data"
        subprocess.run(["perf", "record", "-q", "-z", "-k", "CLOCK_MONOTONIC", "-m", "16M", "-e", EVENTS,
                        "-o", str(data), "--", str(seed), "8", "8000", "1"], check=True)
        with open(out, "wb") as f:
            subprocess.run(["perf", "script", "-i", str(data)], stdout=f, check=True)
    return out


def repeated(sample: Path, name: str, lines: int) -> Path:
    """The sample's header lines once, then its event lines repeated to about `lines` lines."""
    out = WORK / f"big.{name}.txt"
    if not out.exists():
        with open_binary(sample) as f:
            text = f.read().splitlines(keepends=True)
        head = [ln for ln in text if ln.startswith(b"#") or ln.startswith(b"cpus=")]
        body = b"".join(ln for ln in text if ln not in head)
        reps = max(1, lines // (len(text) - len(head)))
        with open(out, "wb") as f:
            f.write(b"".join(head))
            for _ in range(reps):
                f.write(body)
    return out


def timed(reader, path: Path, warm: Path) -> tuple[int, float]:
    for _ in reader.read(warm, open_binary).batches:
        pass
    nlines = sum(1 for _ in open(path, "rb"))
    t = time.perf_counter()
    for _ in reader.read(path, open_binary).batches:
        pass
    return nlines, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=4_000_000, help="size of the repeated ftrace/trace-cmd inputs")
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    cases = [
        ("perf-script", perf_script, perf_text(), DATA / "seed-64.perf-script.txt.zst", "real perf script output"),
        ("ftrace", ftrace, repeated(DATA / "seed-64.ftrace.txt.zst", "ftrace", args.lines),
         DATA / "seed-64.ftrace.txt.zst", "real sample, repeated"),
        ("trace-cmd", tracecmd, repeated(DATA / "seed-64.trace-cmd.txt.zst", "trace-cmd", args.lines),
         DATA / "seed-64.trace-cmd.txt.zst", "real sample, repeated"),
    ]
    print(f"## Text readers ({os.cpu_count()} cores, {os.uname().release})")
    print(f"{'reader':<12} {'lines':>10} {'MB':>7} {'seconds':>8} {'M lines/s':>10}  input")
    for name, reader, path, warm, what in cases:
        n, dt = timed(reader, path, warm)
        mb = path.stat().st_size / 1e6
        print(f"{name:<12} {n:>10,} {mb:>7.0f} {dt:>8.2f} {n / dt / 1e6:>10.2f}  {what}")


if __name__ == "__main__":
    main()
