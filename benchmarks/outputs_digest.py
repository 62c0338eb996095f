"""Digest of every output ptreplay makes from the bundled captures: to show a change kept them identical.

    python benchmarks/outputs_digest.py --ptreplay '.venv/bin/ptreplay' -o after.json
    python benchmarks/outputs_digest.py --compare before.json after.json

It runs the command line only (`ingest`, then `replay` under every policy) on
every capture in data/ (record directories, the text captures, the perf.data
files), so the same script digests an older checkout (pass its command, e.g.
`python -m pipeline` run from there).  Each Parquet table is digested column by
column (SHA-256 of its Arrow IPC bytes, schema metadata left out: it holds paths
and timings); an events/2 file is digested as the events table it stores (as
`ptreplay.schemas.parquet_io.read_table` returns it), so it compares with events/1
(events columns stored dictionary-encoded are digested as their values).  `--compare` prints each table that differs and exits 1 if any does.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
TABLES = ("events", "summary", "timeseries", "effects", "occupancy")


def captures() -> list[Path]:
    data = REPO / "data"
    dirs = sorted(p for p in data.iterdir() if (p / "perf.data").exists())
    text = sorted(p for p in (data / "text").iterdir() if p.suffix in (".txt", ".zst", ".data"))
    return dirs + text


def digest_table(path: Path) -> dict:
    t = pq.read_table(path)
    if (pq.read_metadata(path).metadata or {}).get(b"ptreplay.schema") == b"events/2":
        # the events table it stores (digested like an events/1 file's): this checkout's reader
        from ptreplay.schemas import EVENTS
        from ptreplay.schemas.parquet_io import read_table
        t = read_table(path, EVENTS)
    if path.name == "events.parquet":     # the events table's values: kind as strings in either layout
        t = pa.table({n: c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c
                      for n, c in zip(t.column_names, t.columns)})
    t = t.replace_schema_metadata(None)
    out = {"rows": t.num_rows}
    for name in t.column_names:
        col = pa.table({name: t.column(name).combine_chunks()})
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, col.schema) as w:
            w.write_table(col)
        out[name] = hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()[:16]
    return out


def run(cmd: list[str], *args) -> None:
    r = subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"outputs_digest: {' '.join(cmd)} {' '.join(map(str, args))} failed: {r.stderr.strip()}")


def digest_all(cmd: list[str]) -> dict:
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        for cap in captures():
            name = cap.name
            work = Path(tmp) / name
            work.mkdir()
            run(cmd, "ingest", cap, "-o", work / "events.parquet")
            run(cmd, "replay", work / "events.parquet", "-o", work / "out", "--policy", "all")
            tables = {"events": digest_table(work / "events.parquet")}
            for t in TABLES[1:]:
                tables[t] = digest_table(work / "out" / f"{t}.parquet")
            result[name] = tables
            print(f"{name}: {tables['events']['rows']} events, {tables['summary']['rows']} summary rows",
                  file=sys.stderr)
    return result


def compare(a: Path, b: Path) -> int:
    before, after = json.loads(a.read_text()), json.loads(b.read_text())
    bad = 0
    for cap in sorted(set(before) | set(after)):
        for table in TABLES:
            x, y = before.get(cap, {}).get(table), after.get(cap, {}).get(table)
            if x != y:
                cols = sorted(k for k in set(x or {}) | set(y or {}) if (x or {}).get(k) != (y or {}).get(k))
                print(f"{cap} {table}: differs in {', '.join(cols)}")
                bad += 1
    n = sum(len(v) for v in after.values())
    print(f"{n - bad} of {n} tables identical" if bad else f"all {n} tables identical ({len(after)} captures)")
    return 1 if bad else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ptreplay", default=f"{sys.executable} -m ptreplay",
                    help="the command line to run (default: this Python's ptreplay)")
    ap.add_argument("-o", "--output", type=Path, help="write the digest JSON here")
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    a = ap.parse_args()
    if a.compare:
        return compare(*a.compare)
    d = digest_all(shlex.split(a.ptreplay))
    text = json.dumps(d, indent=1, sort_keys=True)
    if a.output:
        a.output.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
