"""Scale benchmark, by hand: `python benchmarks/bench_scale.py [--scales 0.001,0.003,0.01] [--keep]`.

For each scale S, in fresh processes (wall time and peak RSS from os.wait4's rusage):

1. generation: `ptreplay synth production --scale S -o benchmarks/_work/production-S.events.parquet --force`
   (SYNTHETIC: the seed's production shape, VIRT 55 TiB x S, RES 590 GiB x S, see replay/synth.py);
2. replay of all six policies: `ptreplay replay EVENTS -o benchmarks/_work/production-S.out --force`;
3. the summary (OUT/summary.parquet, read in a child process; not timed).

This process imports nothing heavy, so the children's ru_maxrss is their own (an exec'd child's
maxrss starts at its parent's high-water mark).  Results: a markdown table on stdout and
benchmarks/_work/scale.json.  Event files are deleted afterwards unless --keep.

`python benchmarks/bench_scale.py --many [--repeat 3] [--policy all] [--cases NAME,...]`: replay speed
with many processes (issues #12, #15), SYNTHETIC `ptreplay synth many-procs` streams (replay/synth.py
`many_procs_batches`), each case against its one-process baseline of the same events (`--one_pid 1`:
one process runs the same programs one after another, exec between two).  Each stream is written
once to benchmarks/_work/many-NAME.events.parquet; then, in one fresh process per case, the pair is
replayed alternately (baseline, many, baseline, ...) after one warm-up replay of each (kernel load,
first-use compiles), `--repeat` times: wall seconds of `replay()` from the Parquet file, kernel
seconds (metadata, summed over policies), timeseries rows.  The ratio many/one of the per-event
times is computed pair by pair (the machine's speed drifts less within a pair); min, median and max
are printed.  `--pythonpath DIR` replays with another checkout (e.g. the code before a change).
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


# name -> many-procs options (one_pid=1 added for the baseline); about the same events in each row
MANY = {
    "3000": dict(procs=3000, iters=4, outside=16),                 # 6.21 M events, all alive at once
    "5000": dict(procs=5000, iters=2, outside=214),                # 6.22 M events
    "3000-groups": dict(procs=3000, iters=4, outside=16, live=100),  # 100 alive at a time
    "outside-5000": dict(procs=5000, iters=0, outside=260),        # 1.31 M faults, all outside any VMA
}
PAIR = r"""
import json, sys, time
from ptreplay.replay.engine import ReplayOptions, replay
one, many, policy, repeat = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
def run(path):
    t0 = time.perf_counter()
    r = replay(path, ReplayOptions(policies=policy))
    return dict(wall_s=time.perf_counter() - t0, kernel_s=sum(r.metadata["kernel_seconds"].values()),
                events=r.metadata["events_in"], ts_rows=r.timeseries.num_rows, pids=r.summary.num_rows)
run(one), run(many)
print(json.dumps([(run(one), run(many)) for _ in range(repeat)]))
"""


def many_main(a) -> None:
    """The many-process cases (see the module docstring)."""
    import statistics
    sys.path.insert(0, str(REPO.parent))
    from ptreplay.replay.synth import write_stream
    WORK.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if a.pythonpath:
        env["PYTHONPATH"] = a.pythonpath
    names = [n for n in (a.cases or ",".join(MANY)).split(",") if n]
    results = []
    for name in names:
        paths = {}
        for tag, extra in (("one", {"one_pid": 1}), ("many", {})):
            paths[tag] = WORK / f"many-{name}-{tag}.events.parquet"
            if not paths[tag].exists():
                write_stream("many-procs", paths[tag], force=True, **MANY[name], **extra)
        out = subprocess.run([sys.executable, "-c", PAIR, str(paths["one"]), str(paths["many"]), a.policy,
                              str(a.repeat)], cwd="/", env=env, check=True, capture_output=True, text=True)
        pairs = json.loads(out.stdout)
        rec = {"case": name, "options": MANY[name], "policy": a.policy, "pairs": pairs}
        for key in ("wall_s", "kernel_s"):
            ratios = sorted(m[key] / m["events"] / (o[key] / o["events"]) for o, m in pairs)
            rec[f"{key}_ratio"] = (ratios[0], statistics.median(ratios), ratios[-1])
        results.append(rec)
        o, m = pairs[-1]
        print(f"| {name} | {m['pids']} | {m['events']:,} | "
              f"{min(p[0]['wall_s'] for p in pairs):.2f} / {min(p[1]['wall_s'] for p in pairs):.2f} | "
              f"{min(p[0]['kernel_s'] for p in pairs):.3f} / {min(p[1]['kernel_s'] for p in pairs):.3f} | "
              "{:.2f} ({:.2f}-{:.2f}) | ".format(*[rec["wall_s_ratio"][i] for i in (1, 0, 2)]) +
              "{:.2f} ({:.2f}-{:.2f}) | ".format(*[rec["kernel_s_ratio"][i] for i in (1, 0, 2)]) +
              f"{o['ts_rows']:,} / {m['ts_rows']:,} |", flush=True)
        if not a.keep:
            for path in paths.values():
                path.unlink(missing_ok=True)
    (WORK / "scale-many.json").write_text(json.dumps(results, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--many", action="store_true", help="the many-process cases instead of the scales")
    ap.add_argument("--cases", default="", help="--many: names among " + ", ".join(MANY))
    ap.add_argument("--repeat", type=int, default=3, help="--many: measured pairs per case")
    ap.add_argument("--pythonpath", default="", help="--many: PYTHONPATH of the replaying process")
    ap.add_argument("--scales", default="0.001,0.003,0.01")
    ap.add_argument("--keep", action="store_true", help="keep the event files and replay outputs")
    ap.add_argument("--policy", default="all")
    a = ap.parse_args()
    if a.many:
        print("| case | pids | events | wall s, one pid / many (best) | kernel s (best) | per-event wall ratio "
              "many/one, median (min-max) | kernel ratio | timeseries rows one / many |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        return many_main(a)
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
