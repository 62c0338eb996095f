"""Fleet engine: ingest + replay many captures in parallel on dask.distributed.

One task per trace.  Each task builds its outputs in a hidden temporary
directory beside the destination and renames it to ``OUTDIR/trace_id=X/``
only when complete, so a finished trace is exactly a visible partition:
a rerun skips those (`force` replaces them, when they hold only ptreplay's
outputs), and a killed run never leaves partial outputs visible.  Each
partition is self-contained: its events.parquet (named by the summary's
metadata, for `ptreplay attribute`), the replay outputs and the truth.
The DuckDB views (`pipeline.warehouse.connect(OUTDIR)`) read the tree as one.

By default a LocalCluster on loopback with `workers` processes runs the
tasks; `scheduler` names a running dask scheduler (a real cluster) instead.
"""
from __future__ import annotations

import glob
import shutil
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from ptreplay.schemas.errors import PipelineError, UsageError
from ptreplay.schemas.parquet_io import check_replaceable, output_dir, publish, write_error
from ptreplay.pipeline.events.ingest import trace_id_of
from ptreplay.pipeline.progress import progress


@dataclass
class BatchResult:
    done: list[str] = field(default_factory=list)       # trace ids finished in this run
    skipped: list[str] = field(default_factory=list)    # already complete before this run
    failed: dict[str, str] = field(default_factory=dict)  # trace id -> one-line error


def is_uri(item: str) -> bool:
    return "://" in str(item)


def expand_uri(uri: str) -> list[str]:
    """A pyarrow-filesystem URI (file://, s3://, gs://, hdfs:// ...): a capture file,
    a record directory, or a directory of them (one level)."""
    from pyarrow import fs
    try:
        filesystem, path = fs.FileSystem.from_uri(uri)
        info = filesystem.get_file_info(path)
    except Exception as e:  # pyarrow raises several types for bad URIs and unreachable stores
        raise UsageError(f"batch: {uri}: {str(e).splitlines()[0]}") from None
    if info.type == fs.FileType.NotFound:
        raise UsageError(f"batch: {uri}: no such file or directory")
    if info.type == fs.FileType.File:
        return [uri]
    scheme = uri.split("://", 1)[0]
    children = filesystem.get_file_info(fs.FileSelector(path))
    if any(c.base_name == "perf.data" for c in children):
        return [uri.rstrip("/")]
    return sorted(f"{scheme}://{c.path}" for c in children if not c.base_name.startswith("."))


def fetch(uri: str, into: Path) -> Path:
    """Copy a capture (file or record directory) behind `uri` to the local folder `into`."""
    from pyarrow import fs
    filesystem, path = fs.FileSystem.from_uri(uri)
    name = path.rstrip("/").rsplit("/", 1)[-1]
    local = into / name
    fs.copy_files(path, str(local), source_filesystem=filesystem, destination_filesystem=fs.LocalFileSystem())
    return local


def expand_inputs(inputs: list[str]) -> list[Path | str]:
    """Files, record directories, directories of captures, globs and URIs -> capture paths."""
    found: list[Path | str] = []
    for item in inputs:
        if is_uri(item):
            found.extend(expand_uri(item))
            continue
        matches = sorted(glob.glob(item)) if any(c in item for c in "*?[") else [item]
        if not matches:
            raise UsageError(f"batch: '{item}' matches no file")
        for m in matches:
            p = Path(m)
            if not p.exists():
                raise UsageError(f"batch: {p}: no such file or directory")
            if p.is_dir() and not (p / "perf.data").exists() and not _is_thread_dir(p):
                found.extend(sorted(c for c in p.iterdir() if _looks_like_capture(c)))
            else:
                found.append(p)
    return found


def _looks_like_capture(p: Path) -> bool:
    """A directory's child worth a task: a record directory, or a file some reader claims
    (so READMEs and scripts beside the captures are passed over, not reported as failures)."""
    from ptreplay.schemas.errors import TraceFormatError
    from ptreplay.pipeline.formats import detect
    if p.name.startswith("."):
        return False
    if p.is_dir():
        return (p / "perf.data").exists() or _is_thread_dir(p)
    try:
        detect(p)
        return True
    except (TraceFormatError, OSError):
        return False


def _is_thread_dir(p: Path) -> bool:
    return any(p.glob("data.*"))


def run_one(path: str, out_dir: str, policies: str, force: bool = False) -> str:
    """The task: ingest + replay one capture into out_dir/trace_id=X (atomically). Returns X.

    The partition holds events.parquet, the replay outputs and, for a record
    directory, its truth.parquet (carried by ingest and replay like any output's).
    An existing partition is kept (a resumed run) unless `force` replaces it.
    """
    from ptreplay.pipeline.events.ingest import ingest
    from ptreplay.replay.engine import ReplayOptions, replay_to_dir

    tid = trace_id_of(path)
    final = Path(out_dir) / f"trace_id={tid}"
    if final.exists() and not force:
        return tid
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".trace_id={tid}.", dir=out_dir))
    except OSError as e:
        raise write_error(final, e) from None
    try:
        if is_uri(path):
            (tmp / "_input").mkdir()
            src = fetch(path, tmp / "_input")
        else:
            src = Path(path)
        events = tmp / "events.parquet"
        ingest([src], events, force=True)
        # the metadata names the events file where it will be once published, for `ptreplay attribute`
        replay_to_dir(events, tmp, ReplayOptions(policies=policies), force=True, events_as=final / "events.parquet")
        shutil.rmtree(tmp / "_input", ignore_errors=True)
        publish(tmp, final)   # a directory's mode from the umask; a forced rerun replaces ptreplay's partition
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return tid


def batch(inputs: list[str], out_dir: Path, policies: str = "all", workers: int = 2,
          scheduler: str | None = None, force: bool = False) -> BatchResult:
    """Replay every capture in `inputs` into the Hive-partitioned tree `out_dir`.

    Inputs, policies and the partitions to replace are checked before a cluster
    starts; traces already done are skipped unless `force` (which replaces a
    partition only when it holds nothing but ptreplay's outputs).  An output
    tree this run created is removed again when nothing was published into it.
    """
    from ptreplay.replay.policies import parse_policies
    parse_policies(policies)     # a bad --policy is a usage error, not one failure per trace
    out_dir = Path(out_dir)
    paths = expand_inputs(inputs)
    ids = [trace_id_of(p) for p in paths]
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise UsageError(f"batch: several inputs share the trace id(s) {', '.join(sorted(dupes))}: rename them")
    created = [d for d in (out_dir, *out_dir.parents) if not d.exists()]   # deepest first
    output_dir(out_dir)
    try:
        return _run(paths, ids, out_dir, policies, workers, scheduler, force)
    finally:
        for d in created:   # only directories this run made, and only while empty
            try:
                d.rmdir()
            except OSError:
                break


def _run(paths, ids, out_dir: Path, policies: str, workers: int, scheduler: str | None, force: bool) -> BatchResult:
    _remove_stale_temporaries(out_dir)
    result = BatchResult()
    done = [tid for tid in ids if (out_dir / f"trace_id={tid}").exists()]
    if force:
        for tid in done:
            check_replaceable(out_dir / f"trace_id={tid}")
    else:
        result.skipped = done
    todo = [p for p, tid in zip(paths, ids) if tid not in result.skipped]
    if not todo:
        return result

    from dask.distributed import Client, LocalCluster, as_completed
    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None, silence_logs=50)
        client = Client(cluster)
    try:
        where = str(out_dir.absolute())   # workers may run elsewhere: give them (and the metadata) a full path
        futures = {client.submit(run_one, str(p), where, policies, force, key=f"replay-{trace_id_of(p)}",
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
