"""Fleet engine: ingest + replay many captures, and file censuses, in parallel on dask.distributed.

One task per input (pipeline/fleet/inputs.py: plain inputs, a fleet layout
``FLEET/HOST/...`` or a manifest).  Each task builds its outputs in a hidden
temporary directory beside the destination and renames it to its partition
(``trace_id=X/``; in a fleet ``host=H/trace_id=X@H/`` and ``host=H/census=C@H/``)
only when complete, so a finished input is exactly a visible partition: a rerun
skips those (`force` replaces them, when they hold only ptreplay's outputs), and
a killed run never leaves partial outputs visible.  Each partition is
self-contained: its events.parquet (named by the summary's metadata, for
`ptreplay attribute`), the replay outputs and the truth; a census partition its
census.parquet and census_vmas.parquet with the host label in their rows.
Every task records where it ran (worker address, pid, hostname) in its
outputs' metadata (``fleet``: the capture metadata's, ``ptreplay.fleet`` a
census's), read back by the ``fleet_runs`` view.  The DuckDB views
(`pipeline.warehouse.connect(OUTDIR)`) read the tree as one.

By default a LocalCluster on loopback with `workers` processes runs the
tasks; `scheduler` names a running dask scheduler (a real cluster) instead.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from ptreplay.schemas import CENSUS, CENSUS_VMAS
from ptreplay.schemas.errors import PipelineError, UsageError
from ptreplay.schemas.parquet_io import check_replaceable, output_dir, publish, read_table, write_error, write_table
from ptreplay.pipeline.fleet.inputs import CAPTURE, Item, classify, expand_inputs, is_uri, read_layout, read_manifest
from ptreplay.pipeline.progress import progress
from ptreplay.pipeline.warehouse import FLEET_KEY   # a census partition's record: where and from what it was filed



@dataclass
class BatchResult:
    done: list[str] = field(default_factory=list)       # trace ids replayed in this run
    censuses: list[str] = field(default_factory=list)   # census ids filed in this run
    skipped: list[str] = field(default_factory=list)    # already complete before this run
    failed: dict[str, str] = field(default_factory=dict)  # id -> one-line error


def worker_info() -> dict:
    """Where this task runs: the dask worker's address ('' outside a worker), pid and hostname."""
    info = {"address": "", "pid": os.getpid(), "hostname": socket.gethostname()}
    try:
        from distributed import get_worker
        info["address"] = get_worker().address
    except (ImportError, ValueError):
        pass
    return info


def _fleet_record(item: Item) -> dict:
    return {"kind": item.kind, "id": item.id, "host": item.host, "input": item.path, "worker": worker_info()}


def fetch(uri: str, into: Path) -> Path:
    """Copy a capture (file or record directory) behind `uri` to the local folder `into`."""
    from pyarrow import fs
    filesystem, path = fs.FileSystem.from_uri(uri)
    name = path.rstrip("/").rsplit("/", 1)[-1]
    local = into / name
    fs.copy_files(path, str(local), source_filesystem=filesystem, destination_filesystem=fs.LocalFileSystem())
    return local


def _temporary(final: Path) -> Path:
    try:
        final.parent.mkdir(exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    except OSError as e:
        raise write_error(final, e) from None


def run_one(item: Item, out_dir: str, policies: str, force: bool = False) -> str:
    """The capture task: ingest + replay one capture into its partition (atomically). Returns its id.

    The partition holds events.parquet, the replay outputs and, for a record
    directory, its truth.parquet (carried by ingest and replay like any output's).
    In a fleet the host label and NAME@HOST trace id are laid over the capture
    metadata.  An existing partition is kept (a resumed run) unless `force` replaces it.
    """
    from ptreplay.pipeline.events.ingest import ingest
    from ptreplay.replay.engine import ReplayOptions, replay_to_dir

    final = Path(out_dir) / item.partition
    if final.exists() and not force:
        return item.id
    tmp = _temporary(final)
    try:
        if is_uri(item.path):
            (tmp / "_input").mkdir()
            src = fetch(item.path, tmp / "_input")
        else:
            src = Path(item.path)
        events = tmp / "events.parquet"
        over = {"trace_id": item.id, "fleet": _fleet_record(item), **({"host": item.host} if item.host else {})}
        ingest([src], events, force=True, capture=over)
        # the metadata names the events file where it will be once published, for `ptreplay attribute`
        replay_to_dir(events, tmp, ReplayOptions(policies=policies), force=True, events_as=final / "events.parquet")
        shutil.rmtree(tmp / "_input", ignore_errors=True)
        publish(tmp, final)   # a directory's mode from the umask; a forced rerun replaces ptreplay's partition
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return item.id


def file_census(item: Item, out_dir: str, force: bool = False) -> str:
    """The census task: copy a `ptreplay census` output (and its _vmas sibling) into its partition,
    its rows' host set to the fleet's label (the census's own hostname kept in ptreplay.fleet)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from ptreplay.pipeline.capture.census import CENSUS_KEY, vmas_path

    final = Path(out_dir) / item.partition
    if final.exists() and not force:
        return item.id
    src = Path(item.path)
    processes = read_table(src, CENSUS)
    side = vmas_path(src)
    vmas = read_table(side, CENSUS_VMAS) if side.exists() else CENSUS_VMAS.schema.empty_table()
    tally = json.loads((pq.read_schema(src).metadata or {}).get(CENSUS_KEY.encode(), b"{}"))
    record = {**_fleet_record(item), "recorded_host": sorted(set(processes.column("host").to_pylist()))}
    if item.host:
        def relabel(t):
            return t.set_column(t.schema.get_field_index("host"), "host", pa.array([item.host] * t.num_rows))
        processes, vmas = relabel(processes), relabel(vmas)
    extra = {CENSUS_KEY: tally, FLEET_KEY: record}
    tmp = _temporary(final)
    try:
        write_table(vmas, tmp / "census_vmas.parquet", CENSUS_VMAS, extra=extra)
        write_table(processes, tmp / "census.parquet", CENSUS, extra=extra)
        publish(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return item.id


def gather_items(inputs: list[str], fleet: list[str] | None = None, manifest: list[str] | None = None) -> list[Item]:
    """Every input as an Item: plain inputs (their own host), fleet layouts, manifests."""
    if not (inputs or fleet or manifest):
        raise UsageError("batch: give captures, --fleet FLEET or --manifest FILE.csv")
    items = classify(expand_inputs(inputs)) if inputs else []
    for f in fleet or []:
        items.extend(read_layout(Path(f)))
    for m in manifest or []:
        items.extend(read_manifest(Path(m)))
    parts = [i.partition for i in items]
    dupes = sorted({p for p in parts if parts.count(p) > 1})
    if dupes:
        raise UsageError(f"batch: several inputs would share the partition(s) {', '.join(dupes)}: rename them")
    return items


def batch(inputs: list[str], out_dir: Path, policies: str = "all", workers: int = 2,
          scheduler: str | None = None, force: bool = False, fleet: list[str] | None = None,
          manifest: list[str] | None = None, connect_timeout_s: float = 10.0) -> BatchResult:
    """Replay every capture and file every census of `inputs`, `fleet` layouts and `manifest`s
    into the Hive-partitioned tree `out_dir`.

    Inputs, policies and the partitions to replace are checked before a cluster
    starts; inputs already done are skipped unless `force` (which replaces a
    partition only when it holds nothing but ptreplay's outputs).  Directories this
    run created (the tree, host=H folders) are removed again when nothing was
    published into them, so an unreachable scheduler leaves no output tree.
    """
    from ptreplay.replay.policies import parse_policies
    parse_policies(policies)     # a bad --policy is a usage error, not one failure per trace
    out_dir = Path(out_dir)
    items = gather_items(inputs, fleet, manifest)
    created = [d for d in (out_dir, *out_dir.parents) if not d.exists()]   # deepest first
    hosts = {out_dir / i.partition.split("/")[0] for i in items if i.host}
    created = [h for h in hosts if not h.exists()] + created
    output_dir(out_dir)
    try:
        return _run(items, out_dir, policies, workers, scheduler, force, connect_timeout_s)
    finally:
        for d in created:   # only directories this run made, and only while empty
            try:
                d.rmdir()
            except OSError:
                if d in hosts:
                    continue
                break


def open_client(scheduler: str | None, workers: int, timeout_s: float):
    """(client, cluster or None): the scheduler at `scheduler`, else a LocalCluster on loopback.
    An unreachable or silent scheduler is one line, within about `timeout_s`."""
    from dask.distributed import Client, LocalCluster
    if not scheduler:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None, silence_logs=50)
        return Client(cluster), cluster
    error = _probe(scheduler, timeout_s)
    if error is None:
        try:
            return Client(scheduler, timeout=timeout_s), None
        except (OSError, ValueError, TimeoutError) as e:   # went away between the probe and now
            error = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise PipelineError(f"batch: cannot reach the dask scheduler at {scheduler} ({error}); start one with "
                        "`dask scheduler`, or leave out --scheduler for a local cluster")


def _probe(scheduler: str, timeout_s: float) -> str | None:
    """Ask `scheduler` who it is, within `timeout_s`: None when a dask scheduler answers, else why not.
    (A Client would wait forever on a port that accepts and never speaks.)"""
    import asyncio
    from distributed.comm import connect as comm_connect

    async def identity():
        comm = await comm_connect(scheduler, timeout=timeout_s)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()
    host, _, port = scheduler.partition("://")[2].rstrip("/").rpartition(":")
    if scheduler.startswith("tcp://") and port.isdigit():   # refused at once, not after dask's retries
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
        except OSError as e:
            return e.strerror or str(e) or type(e).__name__
    try:
        answer = asyncio.run(asyncio.wait_for(identity(), timeout_s))
    except (asyncio.TimeoutError, TimeoutError):
        return f"no answer within {timeout_s:g} s"
    except Exception as e:  # whatever else listens there (an HTTP proxy's reply decodes as a huge frame)
        return f"not a dask scheduler: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    if not isinstance(answer, dict) or answer.get("type") != "Scheduler":
        return "not a dask scheduler"
    return None


def _run(items: list[Item], out_dir: Path, policies: str, workers: int, scheduler: str | None, force: bool,
         timeout_s: float) -> BatchResult:
    _remove_stale_temporaries(out_dir)
    result = BatchResult()
    done = [i for i in items if (out_dir / i.partition).exists()]
    if force:
        for i in done:
            check_replaceable(out_dir / i.partition)
    else:
        result.skipped = [i.id for i in done]
    todo = [i for i in items if force or i not in done]
    if not todo:
        return result
    client, cluster = open_client(scheduler, workers, timeout_s)
    from dask.distributed import as_completed
    try:
        where = str(out_dir.absolute())   # workers may run elsewhere: give them (and the metadata) a full path
        futures = {}
        for i in todo:
            if i.kind == CAPTURE:
                fut = client.submit(run_one, i, where, policies, force, key=f"replay-{i.id}", pure=False)
            else:
                fut = client.submit(file_census, i, where, force, key=f"census-{i.id}", pure=False)
            futures[fut] = i
        with progress("batch", total=len(futures), unit="inputs") as advance:
            for fut in as_completed(futures):
                i = futures[fut]
                try:
                    fut.result()
                    (result.done if i.kind == CAPTURE else result.censuses).append(i.id)
                except PipelineError as e:
                    result.failed[i.id] = str(e)
                except Exception as e:  # a worker crash or a bug: report it, keep going
                    last = traceback.format_exception_only(type(e), e)[-1].strip()
                    result.failed[i.id] = last
                advance(1)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return result


def _remove_stale_temporaries(out_dir: Path) -> None:
    """Temporaries left by a killed run are never visible to readers; clear them before resuming."""
    for pattern in (".trace_id=*", ".census=*", "host=*/.trace_id=*", "host=*/.census=*"):
        for p in out_dir.glob(pattern):
            shutil.rmtree(p, ignore_errors=True)
