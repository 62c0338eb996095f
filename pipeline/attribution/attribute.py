"""Page-table waste attributed to code: which call sites allocate PTE tables and leave them empty.

    replay output (effects.parquet: per event, tables allocated / emptied / freed)
      + the capture's call chains for those events (pipeline.formats.perf.stacks)
      + MMAP2 + ELF symbols + DWARF CFI (pipeline.symbols)
      --> attribution.parquet: per policy and call site, tables and empty bytes

The *site* of an event is its innermost frame outside the C runtime: for a
madvise() that is the function that called glibc's wrapper (found by DWARF
unwinding of the user stack the capture holds), for a fault the function whose
instruction touched the page.  Faults allocate tables; madvise/munmap/mremap
calls empty them.  Events whose sample carries no call chain (a capture made
without `record --call-graph`) are grouped under '(no call chain)'.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ptreplay.schemas.errors import PipelineError
from ptreplay.pipeline.events.ingest import resolve_input
from ptreplay.schemas.parquet_io import open_artifact, read_table, write_table
from ptreplay.pipeline.progress import warn
from ptreplay.pipeline.attribution.symbols import Symbolizer, caller, site
from ptreplay.schemas import ATTRIBUTION, EFFECTS, EVENTS, REPLAY_KEY, SUMMARY

PTE_TABLE_BYTES = 4096
NO_CHAIN = "(no call chain)"


def attribute(capture: Path, replay_dir: Path, binaries: list[Path] | None = None,
              events: Path | None = None) -> pa.Table:
    """The `attribution` table for one capture and its replay output directory.

    `events` is the events Parquet the replay read (default: the one recorded in
    the replay output's metadata); it gives each effect row its thread and time.
    """
    replay_dir = Path(replay_dir)
    effects_file = replay_dir / "effects.parquet"
    if not effects_file.exists():
        raise PipelineError(f"{replay_dir}: no effects.parquet (replay it again with this version)")
    effects = read_table(effects_file, EFFECTS)
    file, _ = resolve_input(Path(capture))
    from ptreplay.pipeline.formats import detect
    if detect(file).NAME != "perf.data":
        raise PipelineError(f"{file}: attribution needs a perf.data capture (call chains and MMAP2 records)")
    tid, t_ns = _threads_and_times(effects, _events_path(replay_dir, events))
    keys = list(zip(tid.tolist(), t_ns.tolist()))
    from ptreplay.pipeline.formats.perf.stacks import read_stacks
    stacks, mmaps, meta = read_stacks(file, set(keys))
    times = len(set(t_ns.tolist()))
    if times and meta["times_found"] < times / 2:
        raise PipelineError(f"{file}: only {meta['times_found']} of the {times} event times of {replay_dir} "
                            f"are samples of this capture: the replay was made from another capture")
    if not stacks:
        warn(f"{file}: no call chains in the capture; record with `ptreplay record --call-graph`")
    sym = Symbolizer(mmaps, roots=binaries or [])
    sites, unresolved, frames, unnamed = {}, {}, 0, 0
    for key, s in stacks.items():
        sites[key], stack = _site_of(sym, s)
        frames += len(stack)
        for f in stack:
            if f.function is None:
                unnamed += 1
                unresolved.setdefault(f.note or "no symbol covers it", set()).add(Path(f.dso).name or "[anon]")
    if unresolved:
        why = "; ".join(f"{note}: {', '.join(sorted(dsos))}" for note, dsos in sorted(unresolved.items()))
        warn(f"{file}: {unnamed} of {frames} frames could not be named ({why}); --binaries DIR adds a place to look")
    where = [sites.get(k, _NO_SITE) for k in keys]
    return _aggregate(effects, where)


_NO_SITE = (NO_CHAIN, "", "", "", "none", "")


def _events_path(replay_dir: Path, events: Path | None) -> Path:
    if events is None:
        meta = open_artifact(replay_dir / "summary.parquet", SUMMARY).schema_arrow.metadata or {}
        info = json.loads(meta.get(REPLAY_KEY, b"{}"))
        events = info.get("events_path")
        if not events:
            raise PipelineError(f"{replay_dir}: the replay output does not say which events file it read; "
                                f"pass --events")
    events = Path(events)
    if not events.exists():
        raise PipelineError(f"{events}: no such events file (the replay of {replay_dir} read it; pass --events)")
    return events


def _threads_and_times(effects: pa.Table, events: Path) -> tuple[np.ndarray, np.ndarray]:
    """tid and t_ns of each effect row's event (rows of the events file by `event_row`)."""
    ev = read_table(events, EVENTS, columns=["tid", "t_ns"])
    rows = effects.column("event_row").to_numpy()
    if len(rows) and rows.max() >= ev.num_rows:
        raise PipelineError(f"{events}: has {ev.num_rows} rows but the replay output refers to row "
                            f"{int(rows.max())}: not the events file this replay read")
    t = ev.column("t_ns").to_numpy()[rows]
    if not np.array_equal(t, effects.column("t_ns").to_numpy()):
        raise PipelineError(f"{events}: event times differ from the replay output's: not the events file "
                            f"this replay read")
    return ev.column("tid").to_numpy()[rows], t


def _site_of(sym: Symbolizer, sample) -> tuple[tuple, list]:
    """(the _SITE_COLUMNS tuple of one sample, its frames)."""
    frames, how = sym.stack(sample)
    at = site(frames)
    if at is None:
        return _NO_SITE, frames
    up = caller(frames, at)
    notes = sorted({f"{Path(f.dso).name}: {f.note}" for f in frames if f.note and f.dso})
    return (at.name, Path(at.dso).name, up.name if up else "", " <- ".join(str(f) for f in frames), how,
            "; ".join(notes)), frames


_SITE_COLUMNS = ("site", "site_dso", "caller", "stack", "unwind", "note")   # _site_of's tuple, in order
_COUNTS = ("pte_tables_allocated", "pte_tables_emptied", "pte_tables_freed", "empty_table_ns")


def _aggregate(effects: pa.Table, where: list[tuple]) -> pa.Table:
    """Effects summed per (trace, policy, process, kind, call site and stack); most empty tables first."""
    t = effects.select(["trace_id", "policy", "pid", "kind", *_COUNTS])
    for i, name in enumerate(_SITE_COLUMNS):
        t = t.append_column(name, pa.array([w[i] for w in where], pa.string()))
    keys = ["trace_id", "policy", "pid", "kind", *_SITE_COLUMNS]
    g = t.group_by(keys, use_threads=False).aggregate(
        [("pte_tables_allocated", "count")] + [(c, "sum") for c in _COUNTS])
    g = g.sort_by([("policy", "ascending"), ("pte_tables_emptied_sum", "descending"),
                   ("empty_table_ns_sum", "descending"), ("pte_tables_allocated_sum", "descending"),
                   ("site", "ascending"), ("trace_id", "ascending"), ("pid", "ascending"),
                   ("kind", "ascending"), ("stack", "ascending")])
    cols = {k: g.column(k) for k in keys}
    cols["events"] = g.column("pte_tables_allocated_count")
    for c in _COUNTS[:3]:
        cols[c] = g.column(f"{c}_sum")
    cols["empty_pte_bytes"] = pc.multiply(cols["pte_tables_emptied"], PTE_TABLE_BYTES)
    empty_ns = pc.cast(g.column("empty_table_ns_sum"), pa.float64())
    cols["empty_byte_seconds"] = pc.divide(pc.multiply(empty_ns, PTE_TABLE_BYTES), 1e9)
    return pa.table([cols[f.name] for f in ATTRIBUTION.schema], schema=ATTRIBUTION.schema)


def attribute_to_dir(capture: Path, replay_dir: Path, binaries: list[Path] | None = None,
                     events: Path | None = None, force: bool = True) -> Path:
    """attribute() written to REPLAY_DIR/attribution.parquet (atomically)."""
    table = attribute(capture, replay_dir, binaries, events)
    out = Path(replay_dir) / "attribution.parquet"
    write_table(table, out, ATTRIBUTION, force=force)
    return out
