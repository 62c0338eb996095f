"""Fleet engine: ingest + replay many captures in parallel on dask.distributed.

One task per trace.  Each task builds its outputs in a hidden temporary
directory beside the destination and renames it to ``OUTDIR/trace_id=X/``
only when complete, so a finished trace is exactly a visible partition:
a rerun skips those, and a killed run never leaves partial outputs visible.
The DuckDB views (`pipeline.warehouse.connect(OUTDIR)`) read the tree as one.

By default a LocalCluster on loopback with `workers` processes runs the
tasks; `scheduler` names a running dask scheduler (a real cluster) instead.
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import PipelineError, UsageError
from pipeline.progress import progress


@dataclass
class BatchResult:
    done: list[str] = field(default_factory=list)       # trace ids finished in this run
    skipped: list[str] = field(default_factory=list)    # already complete before this run
    failed: dict[str, str] = field(default_factory=dict)  # trace id -> one-line error


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files, record directories, directories of captures and globs -> capture paths."""
    found: list[Path] = []
    for item in inputs:
        matches = sorted(glob.glob(item)) if any(c in item for c in "*?[") else [item]
        if not matches:
            raise UsageError(f"batch: '{item}' matches no file")
        for m in matches:
            p = Path(m)
            if not p.exists():
                raise UsageError(f"batch: {p}: no such file or directory")
            if p.is_dir() and not (p / "perf.data").exists() and not _is_thread_dir(p):
                found.extend(sorted(c for c in p.iterdir() if not c.name.startswith(".")))
            else:
                found.append(p)
    return found


def _is_thread_dir(p: Path) -> bool:
    return any(p.glob("data.*"))


def trace_id_of(path: Path) -> str:
    """Partition-safe identifier: the record directory or file stem, unsafe characters replaced."""
    stem = path.name if path.is_dir() else path.name.split(".")[0]
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", stem) or "trace"


def run_one(path: str, out_dir: str, policies: str) -> str:
    """The task: ingest + replay one capture into out_dir/trace_id=X (atomically). Returns X."""
    from pipeline.ingest import ingest
    from replay.engine import ReplayOptions, replay_to_dir

    src = Path(path)
    tid = trace_id_of(src)
    final = Path(out_dir) / f"trace_id={tid}"
    if final.exists():
        return tid
    tmp = Path(tempfile.mkdtemp(prefix=f".trace_id={tid}.", dir=out_dir))
    try:
        events = tmp / "events.parquet"
        ingest([src], events, force=True)
        replay_to_dir(events, tmp, ReplayOptions(policies=policies), force=True)
        if src.is_dir() and (src / "truth.parquet").exists():
            shutil.copyfile(src / "truth.parquet", tmp / "truth.parquet")
        os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return tid


def batch(inputs: list[str], out_dir: Path, policies: str = "all", workers: int = 2,
          scheduler: str | None = None) -> BatchResult:
    """Replay every capture in `inputs` into the Hive-partitioned tree `out_dir`."""
    from dask.distributed import Client, LocalCluster, as_completed

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(out_dir)
    paths = expand_inputs(inputs)
    ids = [trace_id_of(p) for p in paths]
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise UsageError(f"batch: several inputs share the trace id(s) {', '.join(sorted(dupes))}: rename them")
    result = BatchResult()
    result.skipped = [tid for tid in ids if (out_dir / f"trace_id={tid}").exists()]
    todo = [p for p, tid in zip(paths, ids) if tid not in result.skipped]
    if not todo:
        return result

    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None, silence_logs=50)
        client = Client(cluster)
    try:
        futures = {client.submit(run_one, str(p), str(out_dir), policies, key=f"replay-{trace_id_of(p)}",
                                 pure=False): trace_id_of(p) for p in todo}
        with progress("batch", total=len(futures), unit="traces") as advance:
            for fut in as_completed(futures):
                tid = futures[fut]
                try:
                    fut.result()
                    result.done.append(tid)
                except PipelineError as e:
                    result.failed[tid] = str(e)
                except Exception as e:  # a worker crash or a bug: report it, keep going
                    last = traceback.format_exception_only(type(e), e)[-1].strip()
                    result.failed[tid] = last
                advance(1)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return result


def _remove_stale_temporaries(out_dir: Path) -> None:
    """Temporaries left by a killed run are never visible to readers; clear them before resuming."""
    for p in out_dir.glob(".trace_id=*"):
        shutil.rmtree(p, ignore_errors=True)
