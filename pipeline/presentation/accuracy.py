"""The replay against the kernel's own /proc truth: final and timeline errors per process.

A process's timeline error for one measure (VmPTE, VIRT, RSS) is the mean absolute difference
between the model and the kernel over the truth samples taken while the process was replayed, as
a share of the kernel's peak.  The model's value at a sample is its state after its last
timeseries row at or before the sample, so rows must be fine enough for the process at hand: at
1 ms a loop that faults and zaps 2 MiB every 64 us is compared with a state up to 1 ms old
(replay with `interval_ns` of a few us for such loops).

`in_call` errors also judge the samples that no trace can place: one taken while the process was
inside a syscall that changes its memory (between its enter and exit, events `dur_ns`) is compared
with the model before that call and after it, whichever is nearer.  The trace says that the kernel's counters changed somewhere inside
the call, not when (a MADV_DONTNEED drops RSS at its zap, microseconds before its exit).  Overlapping
calls of the process's threads count as one.  A huge-page fault with a traced end is no such call:
its effect is at its end, when the kernel mapped the page (pipeline/events/fault_ends.py).  Samples outside every call are compared as above.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# measure -> (timeseries column, truth column)
MEASURES = {"vmpte": ("vmpte_bytes", "vmpte_bytes"), "virt": ("virt_bytes", "vmsize_bytes"),
            "rss": ("rss_bytes", "vmrss_bytes")}


def calls(events: pa.Table, pid: int) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the process's syscalls with a duration, overlapping ones merged, sorted."""
    mine = events.filter(pc.and_(pc.and_(pc.equal(events.column("pid"), pid), pc.greater(events.column("dur_ns"), 0)),
                                 pc.not_equal(events.column("kind"), "fault")))
    end = mine.column("t_ns").to_numpy()
    start = end - mine.column("dur_ns").to_numpy()
    if not len(end):
        return start, end
    order = np.argsort(start, kind="stable")
    start, end = start[order], np.maximum.accumulate(end[order])
    new = np.ones(len(start), bool)
    new[1:] = start[1:] > end[:-1]
    last = np.append(np.flatnonzero(new)[1:] - 1, len(end) - 1)   # each merged call's last member
    return start[new], end[last]


def process_errors(t_model: np.ndarray, model: dict, t_truth: np.ndarray, truth: dict, end_ns: int,
                   windows: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """Timeline errors of one process replayed until end_ns: per measure its mae, peak and first
    (model, kernel) pair and, with `windows` (calls()), its in-call mae.  `model`/`truth`: measure
    -> values at t_model/t_truth (samples before the first model row or after end_ns are not judged)."""
    at = np.searchsorted(t_model, t_truth, side="right") - 1
    live = (at >= 0) & (t_truth <= end_ns)
    out = {"samples": int(live.sum())}
    if not live.any():
        return out
    ts, at = t_truth[live], at[live]
    inside = before = after = None
    if windows is not None:
        out["in_call_samples"] = 0
    if windows is not None and len(windows[0]):
        lo, hi = windows
        k = np.searchsorted(lo, ts, side="right") - 1          # the last call starting at or before ts
        inside = (k >= 0) & (ts <= hi[np.maximum(k, 0)])
        kk = np.maximum(k, 0)
        before = np.maximum(np.searchsorted(t_model, lo[kk], side="right") - 1, 0)
        after = np.minimum(np.searchsorted(t_model, hi[kk], side="right"), len(t_model) - 1)
        out["in_call_samples"] = int(inside.sum())
    for name in MEASURES:
        m, t = model[name], truth[name][live]
        err = np.abs(m[at] - t).astype(np.float64)
        out[f"{name}_mae"] = float(err.mean())
        out[f"{name}_peak"] = int(truth[name].max())
        out[f"{name}_first"] = (int(m[at[0]]), int(t[0]))
        if inside is not None:
            near = np.minimum(np.abs(m[before] - t), np.abs(m[after] - t))
            out[f"{name}_mae_in_call"] = float(np.where(inside, np.minimum(err, near), err).mean())
        elif windows is not None:
            out[f"{name}_mae_in_call"] = out[f"{name}_mae"]
    return out


def errors(result, truth: pa.Table, policy: str, events: pa.Table | None = None) -> list[dict]:
    """Per truth pid: final VmPTE (model, kernel) and timeline errors of `policy` (a ReplayResult).
    With `events` (the replayed events table), the in-call errors too."""
    ts = result.timeseries.filter(pc.equal(result.timeseries.column("policy"), policy))
    summary = result.summary.filter(pc.equal(result.summary.column("policy"), policy))
    out = []
    for pid in sorted(set(truth.column("pid").to_pylist())):
        tr = truth.filter(pc.equal(truth.column("pid"), pid))
        model = ts.filter(pc.equal(ts.column("pid"), pid))
        srow = summary.filter(pc.equal(summary.column("pid"), pid)).to_pylist()
        e = {"pid": pid, "replayed": bool(srow)}
        if srow:
            e.update(model_final=srow[0]["final_vmpte_bytes"], kernel_final=int(tr.column("vmpte_bytes").to_numpy()[-1]))
            e.update(process_errors(
                model.column("t_ns").to_numpy(), {k: model.column(c).to_numpy() for k, (c, _) in MEASURES.items()},
                tr.column("t_ns").to_numpy(), {k: tr.column(c).to_numpy() for k, (_, c) in MEASURES.items()},
                srow[0]["end_ns"], None if events is None else calls(events, pid)))
        out.append(e)
    return out
