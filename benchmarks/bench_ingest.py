"""Ingest benchmark: perf.data reader vs `perf script` on the full-size seed capture.

Run by hand (root, perf installed), not under pytest:

    /opt/ptvenv/bin/python benchmarks/bench_ingest.py [--capture PATH] [--repeat N]

Records `workloads/seed_loop 50 25600 1` (about 13 M events, ~53 MB with zstd) with
`ptreplay record` into benchmarks/_work/seed-full/ if it is missing (perf.data plus the
kernel's truth, used by bench_replay.py too), then in the same run times `perf script`
(text to /dev/null), the reader alone (full decode into Arrow tables, and decode + Parquet
write) and the whole `ptreplay ingest` (decode + normalize + events Parquet), each in a
fresh process so peak RSS is its own, best of --repeat runs each (perf script too), and
prints the ratio `perf script` / `ptreplay ingest`.  Outputs go to a temporary directory.
Prints a Markdown table for benchmarks/README.md.

Then the floors: what no ingest of this capture into its events layout can go below on this
machine, each in a fresh process, best of --repeat: starting Python and importing
pyarrow.parquet; loading the ingest's compiled kernels after that (`replay.aot`: the module
compiled ahead of time; for comparison, numba's import and its first cached kernel's load, the
JIT start-up that an ingest through the JIT waits for); encoding the finished events table (the
last ingest's output, already in memory in the writer's types and row groups: for events/2 the
fault table) through `pyarrow.parquet.ParquetWriter` with its writer options (one writer per
file: pyarrow does not expose parallel column encoding); and decompressing the data section's
single zstd stream.  Start-up, the kernels' load and the writer are serial (no record is walked
before the kernels are loaded, and the writer cannot start before the first rows exist), so
their sum bounds the ratio this ingest could reach here.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# children import this checkout's code, whatever an editable install points at
CHILD_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
WORK = REPO / "benchmarks" / "_work"
PACKAGE = ("__init__.py", "__main__.py", "pipeline", "replay", "schemas")
CAPTURE = WORK / "seed-full" / "perf.data"
EVENTS = ["exceptions:page_fault_user", "exceptions:page_fault_kernel",
          *(f"syscalls:sys_{d}_{c}" for c in ("mmap", "munmap", "madvise", "brk", "mremap", "mprotect")
            for d in ("enter", "exit")),
          "syscalls:sys_enter_exit_group", "sched:sched_process_fork", "sched:sched_process_exec",
          "sched:sched_process_exit", "mmap:exit_mmap"]

# Runs in a child process: decode (and optionally write Parquet), report JSON on stdout.
CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from ptreplay.pipeline.formats.perf import reader as perfdata
from ptreplay.replay import aot
aot.kernels()                                          # the compiled kernels' load (or numba's JIT)
t1 = time.perf_counter()
path, parquet = sys.argv[1], sys.argv[2]
cap = perfdata.read(path)
rows = 0
if parquet != "-":
    import pyarrow.parquet as pq
    from ptreplay.pipeline.formats import RAW
    with pq.ParquetWriter(parquet, RAW) as w:
        for b in cap.batches:
            rows += b.num_rows
            w.write_table(b)
else:
    for b in cap.batches:
        rows += b.num_rows
t2 = time.perf_counter()
print(json.dumps({"seconds": t2 - t0, "imports": t1 - t0, "work": t2 - t1, "rows": rows,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "lost_events": cap.meta["lost_events"]}))
"""

# Floors, each in a child process printing JSON.
IMPORT_FLOOR = "import pyarrow.parquet"
WRITER_FLOOR = r"""
import json, sys, time
import pyarrow as pa, pyarrow.parquet as pq
from ptreplay.schemas.parquet_io import ROW_GROUP_ROWS, _for_writer, _writer_schema, writer_options
from ptreplay.schemas import EVENTS, EVENT_FAULTS
events, out = sys.argv[1], sys.argv[2]
tag = pq.read_metadata(events).metadata[b"ptreplay.schema"]
if tag == b"events/2":           # the fault table: the only part of an events/2 file the writer encodes
    art, table = EVENT_FAULTS, pq.read_table(events)
else:
    art, table = EVENTS, pq.read_table(events, read_dictionary=["kind"])
    table = table.set_column(table.schema.get_field_index("kind"), "kind",
                             table["kind"].cast(pa.dictionary(pa.int8(), pa.string())))
groups = [_for_writer(table.slice(i, ROW_GROUP_ROWS).combine_chunks(), art, events)
          for i in range(0, table.num_rows, ROW_GROUP_ROWS)]
c0, t0 = time.process_time(), time.perf_counter()
with pq.ParquetWriter(out, _writer_schema(art, None), **writer_options(art)) as w:
    for g in groups:
        w.write_table(g, row_group_size=g.num_rows)
print(json.dumps({"seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0, "tag": tag.decode()}))
"""
KERNELS_FLOOR = r"""
import json, sys, time
import pyarrow.parquet
t0 = time.perf_counter()
if sys.argv[1] == "jit":         # numba's import + the first cached kernel's load
    from ptreplay.pipeline.formats.perf import kernels
    from ptreplay.pipeline.formats.perf.kernel_abi import unaligned_views
    kernels.walk_records(*unaligned_views(bytes(16)), 0, 16)
    compiled = False
else:                            # what ingest loads: the compiled module (built if missing, before t0)
    from ptreplay.replay import aot
    compiled = aot.kernels().compiled
print(json.dumps({"seconds": time.perf_counter() - t0, "compiled": compiled}))
"""
ZSTD_FLOOR = r"""
import json, struct, sys, time, zstandard
data = open(sys.argv[1], "rb").read()
off, size = struct.unpack_from("<QQ", data, 40)          # perf_file_header.data
parts, p = [], off
while p < off + size:                                     # COMPRESSED (81), COMPRESSED2 (83)
    typ, _, rsize = struct.unpack_from("<IHH", data, p)
    if typ == 81:
        parts.append(data[p + 8:p + rsize])
    elif typ == 83:
        parts.append(data[p + 16:p + 16 + struct.unpack_from("<Q", data, p + 8)[0]])
    p += rsize
blob, buf = b"".join(parts), bytearray(4 << 20)
c0, t0, total = time.process_time(), time.perf_counter(), 0
reader = zstandard.ZstdDecompressor().stream_reader(blob)
while n := reader.readinto(buf):
    total += n
print(json.dumps({"seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0,
                  "compressed_mb": len(blob) / 1e6, "decompressed_mb": total / 1e6}))
"""


def record(capture: Path) -> None:
    """Build the seed loop and record it at full size with `ptreplay record` (root, perf)."""
    WORK.mkdir(parents=True, exist_ok=True)
    exe = WORK / "seed_loop"
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(REPO / "workloads" / "seed_loop.c")], check=True)
    cmd = [sys.executable, "-m", "ptreplay", "record", "-o", str(capture.parent), "--force",
           "--", str(exe), "50", "25600", "1"]
    print("recording:", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=REPO)


def run_measured(cmd: list[str]) -> dict:
    """Wall seconds and peak RSS of one child process (os.wait4: its own rusage only)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO, env=CHILD_ENV)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with status {status}")
    return {"seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024}


def time_perf_script(capture: Path) -> dict:
    return run_measured(["sh", "-c", f"exec perf script -i '{capture}' > /dev/null"])


def time_ingest(capture: Path, out: Path) -> dict:
    return run_measured([sys.executable, "-m", "ptreplay", "ingest", str(capture.parent if capture.name == "perf.data"
                         else capture), "-o", str(out), "--force"])


def time_reader(capture: Path, parquet: Path | None) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(capture), str(parquet) if parquet else "-"],
                         capture_output=True, text=True, check=True, cwd=REPO, env=CHILD_ENV)
    return json.loads(out.stdout.strip().splitlines()[-1])


def time_child(code: str, *args) -> dict:
    """Run `code` in a fresh interpreter (this checkout's code) -> its JSON line, or wall time."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                         check=True, cwd=REPO, env=CHILD_ENV)
    wall = time.perf_counter() - t0
    lines = out.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else {"seconds": wall}


def floors(capture: Path, events: Path, tmp: Path, repeat: int, script_s: float) -> None:
    """Print the floors (module docstring) and the ratio ceiling they imply."""
    best = lambda runs: min(runs, key=lambda r: r["seconds"])         # noqa: E731
    imp = best([time_child(IMPORT_FLOOR) for _ in range(repeat)])
    time_child(KERNELS_FLOOR, "aot")                       # builds the compiled module if it is missing
    kernels = best([time_child(KERNELS_FLOOR, "aot") for _ in range(repeat)])
    jit = best([time_child(KERNELS_FLOOR, "jit") for _ in range(repeat)])
    wr = best([time_child(WRITER_FLOOR, events, tmp / "floor.parquet") for _ in range(repeat)])
    z = best([time_child(ZSTD_FLOOR, capture) for _ in range(repeat)]) if capture.is_file() else None
    print("\nfloors (fresh process each, best of %d):\n" % repeat)
    print("| floor | wall s | CPU s |")
    print("|---|---:|---:|")
    print(f"| python + import pyarrow.parquet | {imp['seconds']:.2f} | |")
    how = "compiled ahead of time" if kernels["compiled"] else "not compiled: numba's JIT"
    print(f"| load the ingest kernels ({how}) | {kernels['seconds']:.3f} | |")
    print(f"| (for comparison) JIT start-up: import numba, load the first cached kernel | {jit['seconds']:.2f} | |")
    print(f"| ParquetWriter alone on the finished {wr['tag']} table (its writer options) | "
          f"{wr['seconds']:.2f} | {wr['cpu']:.2f} |")
    if z:
        print(f"| zstd: the data section's single stream ({z['compressed_mb']:.1f} MB -> "
              f"{z['decompressed_mb']:.0f} MB) | {z['seconds']:.2f} | {z['cpu']:.2f} |")
    bound = imp["seconds"] + kernels["seconds"] + wr["seconds"]
    print(f"\nno ingest of this design writing {wr['tag']} through pyarrow can take less than {bound:.2f} s here "
          f"(start-up + kernels + writer, serial): at most {script_s / bound:.1f}x vs perf script's {script_s:.2f} s; "
          f"with the JIT start-up instead {script_s / (bound - kernels['seconds'] + jit['seconds']):.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--capture", type=Path, default=CAPTURE)
    ap.add_argument("--repeat", type=int, default=3, help="reader runs per mode (best is reported)")
    a = ap.parse_args()
    if not a.capture.exists():
        if shutil.which("perf") is None:
            sys.exit("perf is not installed and the capture is missing")
        record(a.capture)
    size_mb = a.capture.stat().st_size / 1e6
    tmp = Path(tempfile.mkdtemp(prefix="bench_ingest."))
    # as `pip install` does: with PYTHONDONTWRITEBYTECODE set, every run would compile the
    # modules changed since their last .pyc (~40 ms of the ingest's start-up here)
    subprocess.run([sys.executable, "-m", "compileall", "-q", *(str(REPO / d) for d in PACKAGE)],
                   check=True, stdout=subprocess.DEVNULL)
    load0 = os.getloadavg()[0]
    time_reader(a.capture, None)                       # warm the numba cache and the page cache
    decode = min((time_reader(a.capture, None) for _ in range(a.repeat)), key=lambda r: r["seconds"])
    pq_path = tmp / "raw.parquet"
    parquet = min((time_reader(a.capture, pq_path) for _ in range(a.repeat)), key=lambda r: r["seconds"])
    runs = []
    for _ in range(a.repeat):                          # side by side: perf script, then ingest
        runs.append((time_perf_script(a.capture), time_ingest(a.capture, tmp / "events.parquet")))
    script = min((s for s, _ in runs), key=lambda r: r["seconds"])
    ingest = min((i for _, i in runs), key=lambda r: r["seconds"])
    rows = decode["rows"]
    load = os.getloadavg()[0]
    print(f"capture: {a.capture} ({size_mb:.1f} MB, {rows:,} rows, lost_events {decode['lost_events']}), "
          f"load average {load0:.2f} before / {load:.2f} after, {os.cpu_count()} CPUs\n")
    print("runs (perf script s, ingest s): " + ", ".join(f"({s['seconds']:.2f}, {i['seconds']:.2f})"
                                                          for s, i in runs) + "\n")
    print("| step | seconds (of which imports) | events/s | vs perf script | peak RSS MB |")
    print("|---|---:|---:|---:|---:|")
    for name, r in (("perf script > /dev/null", script), ("reader: decode to Arrow", decode),
                    ("reader: decode + write Parquet", parquet),
                    ("`ptreplay ingest` (decode + normalize + events Parquet)", ingest)):
        imports = f" ({r['imports']:.2f})" if "imports" in r else ""
        print(f"| {name} | {r['seconds']:.2f}{imports} | {rows / r['seconds'] / 1e6:.2f} M | "
              f"{script['seconds'] / r['seconds']:.1f}x | {r['peak_rss_mb']:.0f} |")
    ratios = sorted(s["seconds"] / i["seconds"] for s, i in runs)
    out_mb = (tmp / "events.parquet").stat().st_size / 1e6
    print(f"\nptreplay ingest vs perf script (best of {a.repeat} each): "
          f"{script['seconds']:.2f} s / {ingest['seconds']:.2f} s = {script['seconds'] / ingest['seconds']:.1f}x; "
          f"pair by pair (each perf script run / the ingest right after it): min {ratios[0]:.1f}x, "
          f"median {ratios[len(ratios) // 2]:.1f}x, max {ratios[-1]:.1f}x; events file {out_mb:.1f} MB")
    floors(a.capture, tmp / "events.parquet", tmp, a.repeat, script["seconds"])
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
