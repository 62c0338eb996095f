"""The replay against the kernel at every operation boundary of workloads/oracle.c programs.

The model's state at a boundary is the timeseries row at or before the boundary's truth time
(as tests/test_kernel_truth.py reads it); the program leaves GAP_NS without events before
each read, so with a tick shorter than that the row falls after the operation's last event.

- **VmPTE**: model == kernel, absolute.
- **VmSize, RssAnon, RssFile+RssShmem**: model - kernel equals its value at the process's
  first row (the program's start, or a fork child's first row).  The constant is what no
  tracepoint shows (execve's mappings and GUP-populated pages, docs/MODEL.md D18).
- An RSS mismatch is charged to the operation that changed model - kernel; its reason names
  what the tracepoints cannot see there (REASONS).
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ptreplay.pipeline.capture.oracle import GAP_NS, OracleLog
from ptreplay.schemas.errors import PipelineError

# (model column, truth column) per compared counter; rss_file is RssFile + RssShmem (D19)
COUNTERS = {"vmpte": ("vmpte_bytes", "vmpte_bytes"), "vmsize": ("virt_bytes", "vmsize_bytes"),
            "rss_anon": ("rss_anon_bytes", "rss_anon_bytes"), "rss_file": ("rss_file_bytes", None)}
# memory kind of the operation that introduced an RSS mismatch -> the invisible effect
REASONS = {"file_private": "file fault-around / large folios (D8)",
           "file_shared": "file fault-around / large folios (D8)",
           "shared_anon": "shmem fault-around (D9)",
           "fork": "a fork child's MADV_REMOVE unmapped the parent's shared pages (D16)"}


class LostEvents(PipelineError):
    """The recording of a batch of programs lost events: the batch cannot judge the model."""


@dataclass
class Tally:
    """Boundaries compared, exact per counter, and where the others went wrong: the RSS
    reasons and the mismatches grouped by the kind of the operation that introduced them."""
    programs: int = 0
    boundaries: int = 0
    unaligned: int = 0                               # no tick in the quiet gap (tick too long)
    untraced_pids: int = 0                           # processes of the log with no row in the replay
    exact: Counter = field(default_factory=Counter)  # counter -> boundaries exact
    rss_reasons: Counter = field(default_factory=Counter)
    mismatches: dict = field(default_factory=lambda: defaultdict(Counter))  # counter -> introducing op -> n
    seeds_missed: dict = field(default_factory=lambda: defaultdict(set))  # counter -> seeds with a mismatch
    examples: list = field(default_factory=list)     # first mismatches per counter (seed, pid, op, kind, mem, counter, model-kernel)

    def pct(self, name: str) -> float:
        return 100.0 * self.exact[name] / self.boundaries if self.boundaries else 0.0

    def lines(self) -> list[str]:
        out = [f"programs {self.programs:,}  boundaries {self.boundaries:,}  unaligned {self.unaligned}"
               + (f"  processes never in the replay {self.untraced_pids}" if self.untraced_pids else "")]
        for name in COUNTERS:
            out.append(f"  {name:9s} exact {self.exact[name]:,}/{self.boundaries:,} ({self.pct(name):.2f}%)")
        for reason, n in self.rss_reasons.most_common():
            out.append(f"  rss not exact, {reason}: {n:,} boundaries")
        for name, by_kind in self.mismatches.items():
            if by_kind:
                out.append(f"  {name} mismatches by the op that introduced them: " + ", ".join(f"{k} {n}" for k, n in by_kind.most_common()))
                seeds = sorted(self.seeds_missed[name])
                out.append(f"  {name} mismatches in {len(seeds)} programs, seeds {seeds[:12]}{' ...' if len(seeds) > 12 else ''}")
        return out


def _truth_value(truth: pa.Table, col: str | None, rows: np.ndarray) -> np.ndarray:
    if col is None:
        return (truth.column("rss_file_bytes").to_numpy() + truth.column("rss_shmem_bytes").to_numpy())[rows]
    return truth.column(col).to_numpy()[rows]


def compare(log: OracleLog, timeseries: pa.Table, policy: str = "pt_reclaim", tally: Tally | None = None,
            examples: int = 8, first_seed: int = 1) -> Tally:
    """Tally every boundary of `log` against `policy`'s rows of `timeseries`.  The programs ran
    one after another from `first_seed`: a process belongs to the last start before its first row."""
    tally = tally or Tally()
    ts = timeseries.filter(pc.equal(timeseries.column("policy"), policy))
    truth = log.truth
    pids = truth.column("pid").to_numpy()
    t_truth = truth.column("t_ns").to_numpy()
    ts_pid = ts.column("pid").to_numpy()
    starts = t_truth[[i for i, k in enumerate(log.op_kind) if k == "start"]]
    for pid in np.unique(pids):
        rows = np.nonzero(pids == pid)[0]
        seed = first_seed + int(np.searchsorted(starts, t_truth[rows[0]], side="right")) - 1
        sel = np.nonzero(ts_pid == pid)[0]
        tally.boundaries += len(rows)
        tally.programs += log.op_kind[rows[0]] == "start"
        if not len(sel):        # no event of this process in the trace (lost, or never traced): unaligned
            tally.unaligned += len(rows)
            tally.untraced_pids += 1
            continue
        t_model = ts.column("t_ns").to_numpy()[sel]
        at = np.searchsorted(t_model, t_truth[rows], side="right") - 1
        ok = (at >= 0) & (t_truth[rows] - t_model[np.maximum(at, 0)] < GAP_NS)
        tally.unaligned += int((~ok).sum())
        for name, (m_col, t_col) in COUNTERS.items():
            model = ts.column(m_col).to_numpy()[sel][np.maximum(at, 0)]
            diff = model - _truth_value(truth, t_col, rows)
            base = 0 if name == "vmpte" else diff[0]
            good = ok & (diff == base)
            tally.exact[name] += int(good.sum())
            for j in np.nonzero(~good)[0]:
                r = rows[j]
                cause = _introduced_at(diff, j)
                kind, mem = log.op_kind[rows[cause]], log.mem[rows[cause]]
                tally.mismatches[name][kind] += 1
                tally.seeds_missed[name].add(seed)
                if name.startswith("rss"):
                    reason = REASONS.get(kind if kind == "fork" else mem, f"{kind} on {mem}")
                    tally.rss_reasons[f"{name}: {reason}"] += 1
                if sum(e[5] == name for e in tally.examples) < examples:
                    tally.examples.append((seed, int(pid), log.op_index[r], log.op_kind[r], log.mem[r], name,
                                           int(diff[j] - base)))
    return tally


def _introduced_at(diff: np.ndarray, j: int) -> int:
    """Index of the boundary whose operation last changed model - kernel, up to j."""
    k = j
    while k > 0 and diff[k - 1] == diff[k]:
        k -= 1
    return k


TICK_NS = 100_000   # timeseries step: shorter than GAP_NS, so one tick falls in every quiet gap


def driver_command(oracle_bin: str, seeds: range, nops: int, log: str) -> list[str]:
    """One shell running the programs one after another (separate processes, one log)."""
    loop = f'for s in $(seq {seeds.start} {seeds.stop - 1}); do "$0" "$s" {nops} "$1" || exit 1; done'
    return ["/bin/sh", "-c", loop, oracle_bin, log]


def run_programs(oracle_bin: str, seeds: range, nops: int, work, policies=("pt_reclaim",),
                 tallies: dict | None = None) -> dict:
    """`ptreplay record` the programs `seeds` (each `oracle SEED NOPS LOG`), ingest, replay
    with a TICK_NS timeseries, and tally every boundary: {policy: Tally} (`none` is always
    replayed, so it may be asked for too)."""
    from pathlib import Path

    from ptreplay.pipeline.capture.oracle import read_log
    from ptreplay.pipeline.capture.record import RecordOptions, record
    from ptreplay.pipeline.events.ingest import ingest
    from ptreplay.replay.engine import ReplayOptions, replay
    from ptreplay.schemas.parquet_io import read_capture

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    log = work / "oracle.log"
    log.unlink(missing_ok=True)
    rec = record(RecordOptions(out_dir=work / "capture", command=driver_command(oracle_bin, seeds, nops, str(log)),
                               interval_ms=50.0, force=True))
    events = ingest([rec], work / "events.parquet", force=True)
    meta = read_capture(events)
    lost = max(int(meta.get("lost_events") or 0), int(meta.get("lost_samples") or 0))
    if lost:   # a rule is judged on every event or not at all
        raise LostEvents(f"{rec}: perf lost {lost} events (machine busy?): record these programs again")
    if meta.get("dropped_tail_bytes"):   # perf's last write was cut: what it had still to drain is gone
        raise LostEvents(f"{rec}: its zstd stream ends {meta['dropped_tail_bytes']} bytes into a record "
                         "(perf's last write cut short): record these programs again")
    result = replay(events, ReplayOptions(policies=",".join(policies), interval_ns=TICK_NS, occupancy_snapshots=0,
                                          timeseries="ticks"))  # a row in every quiet gap, changed or not
    oracle_log = read_log(log)
    tallies = tallies if tallies is not None else {}
    for policy in policies:
        tallies[policy] = compare(oracle_log, result.timeseries, policy, tallies.get(policy), first_seed=seeds.start)
    return tallies
