"""Scale benchmark, by hand: `python benchmarks/bench_scale.py [--scales 0.001,0.003,0.01] [--keep]`.

For each scale S, in fresh processes (wall time and peak RSS from os.wait4's rusage):

1. generation: `ptreplay synth production --scale S -o benchmarks/_work/production-S.events.parquet --force`
   (SYNTHETIC: the seed's production shape, VIRT 55 TiB x S, RES 590 GiB x S, see replay/synth.py);
2. replay of all six policies: `ptreplay replay EVENTS -o benchmarks/_work/production-S.out --force`;
3. the summary (OUT/summary.parquet, read in a child process; not timed).

This process imports nothing heavy, so the children's ru_maxrss is their own (an exec'd child's
maxrss starts at its parent's high-water mark).  Results: a markdown table on stdout and
benchmarks/_work/scale.json.  Event files are deleted afterwards unless --keep.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "benchmarks" / "_work"
BIN = Path(sys.executable).parent / "ptreplay"
READ_SUMMARY = "import json, sys, pyarrow.parquet as pq; print(json.dumps(pq.read_table(sys.argv[1]).to_pylist()))"


def timed(cmd: list[str]) -> dict:
    """Run cmd in a fresh process: wall seconds, peak RSS (MB, ru_maxrss), user+sys seconds."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {err.decode()[-2000:]}")
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(ru.ru_maxrss / 1024, 1),
            "cpu_s": round(ru.ru_utime + ru.ru_stime, 2), "stdout": out.decode().strip()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scales", default="0.001,0.003,0.01")
    ap.add_argument("--keep", action="store_true", help="keep the event files and replay outputs")
    ap.add_argument("--policy", default="all")
    a = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    results = []
    for s in [x.strip() for x in a.scales.split(",") if x.strip()]:
        events = WORK / f"production-{s}.events.parquet"
        out = WORK / f"production-{s}.out"
        gen_cmd = [str(BIN), "synth", "production", "--scale", s, "-o", str(events), "--force"]
        rep_cmd = [str(BIN), "replay", str(events), "-o", str(out), "--force", "--policy", a.policy]
        gen = timed(gen_cmd)
        size_mb = events.stat().st_size / 1e6
        rep = timed(rep_cmd)
        summary = json.loads(subprocess.run([sys.executable, "-c", READ_SUMMARY, str(out / "summary.parquet")],
                                            cwd=REPO, check=True, capture_output=True, text=True).stdout)
        rows = {r["policy"]: r for r in summary}
        rec = {"scale": s, "generate": gen, "replay": rep, "events_file_mb": round(size_mb, 1),
               "generate_cmd": " ".join(gen_cmd), "replay_cmd": " ".join(rep_cmd), "summary": rows}
        results.append(rec)
        print(json.dumps({k: v for k, v in rec.items() if k != "summary"}), flush=True)
        if not a.keep:
            events.unlink(missing_ok=True)
            shutil.rmtree(out, ignore_errors=True)
    (WORK / "scale.json").write_text(json.dumps(results, indent=1))
    print("| scale | events | file MB | generate s | gen peak RSS MB | replay s (6 policies) | replay peak RSS MB |"
          " VmPTE none | VmPTE pt_reclaim | ideal |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        sm = r["summary"]
        none, ptr = sm.get("none", {}), sm.get("pt_reclaim", {})
        print(f"| {r['scale']} | {none.get('events', '?')} | {r['events_file_mb']} | {r['generate']['wall_s']} | "
              f"{r['generate']['peak_rss_mb']} | {r['replay']['wall_s']} | {r['replay']['peak_rss_mb']} | "
              f"{none.get('final_vmpte_bytes', '?')} | {ptr.get('final_vmpte_bytes', '?')} | "
              f"{none.get('ideal_pte_bytes', '?')} |")


if __name__ == "__main__":
    main()
