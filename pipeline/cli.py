"""`ptreplay` command line: wires arguments to library calls, nothing more.

Every PipelineError is printed as one line (`ptreplay: error: ...`) and turns
into exit code 1 (2 for usage errors); no traceback reaches the user.
"""
from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
import threading
from pathlib import Path

# The command does no linear algebra; numpy's OpenBLAS starts a pool of threads at import that spin
# for a while (8% of an ingest's CPU on 2 cores, farm-bench median).  Set before numpy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from ptreplay.schemas.errors import PipelineError, UsageError
from ptreplay.schemas.units import parse_duration_ns
from ptreplay.pipeline.progress import route_warnings


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own usage errors: one line, exit 2
        raise UsageError(f"{self.prog}: {message}")


def version() -> str:
    """The installed distribution's version (pyproject.toml's), or '0+unknown' when run from a bare tree."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version
    try:
        return dist_version("ptreplay")
    except PackageNotFoundError:
        return "0+unknown"


class _Version(argparse.Action):
    """--version, with the version looked up only when asked (importlib.metadata costs every
    command ~10 ms to import and scan)."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"ptreplay {version()}")
        parser.exit()


def _duration_ns(option: str):
    """An argparse type for a duration option: schemas.units' one parser, errors naming the option."""
    return lambda text: parse_duration_ns(text, option)


def _cmd_record(a) -> int:
    from ptreplay.pipeline.capture.record import RecordOptions, record
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    if a.all_processes:
        if cmd or a.pid is not None:
            raise UsageError("record: -a records every process: give no -p PID and no command")
        if a.duration is None:
            raise UsageError("record: -a needs --duration SECONDS")
    elif a.comm or a.min_vmpte is not None:
        raise UsageError("record: --comm and --min-vmpte filter a host recording: add -a --duration SECONDS")
    elif bool(cmd) == (a.pid is not None):
        raise UsageError("record: give either -- CMD [ARGS...], -p PID --duration SECONDS or -a --duration SECONDS")
    elif a.pid is not None and a.duration is None:
        raise UsageError("record: -p PID needs --duration SECONDS")
    if a.freeze and a.pid is None:
        raise UsageError("record: --freeze needs -p PID (a launched command is already stopped at its exec)")
    duration_s = None if a.duration is None else a.duration / 1e9
    comm = tuple(n.strip() for c in (a.comm or []) for n in c.split(",") if n.strip())
    if a.comm and not comm:
        raise UsageError("record: --comm names no process (expected NAME[,NAME...])")
    opts = RecordOptions(out_dir=Path(a.output), command=cmd or None, pid=a.pid, duration_s=duration_s,
                         interval_ms=a.interval_ms, force=a.force, mmap_pages=a.mmap_pages,
                         callgraph=a.call_graph, threads=a.threads, all_processes=a.all_processes,
                         comm=comm, min_vmpte_bytes=a.min_vmpte or 0, freeze=a.freeze)
    if opts.all_processes:
        from ptreplay.pipeline.capture.host import record_host
        out = record_host(opts)
    else:
        out = record(opts)
    print(out)
    return 0


def _size_option(option: str):
    """An argparse type for a size option (schemas.units' parser: 64k, 1M, 4096), errors naming the option."""
    from ptreplay.schemas.units import parse_size
    return lambda text: parse_size(text, option)


def _cmd_census(a) -> int:
    from ptreplay.pipeline.capture.census import census_to_file, check_output, summary_line
    from ptreplay.schemas.parquet_io import check_writable
    if a.plot:
        if Path(a.plot).suffix.lower() != ".png":
            raise UsageError(f"census: --plot {a.plot}: expected a FILE.png name")
        check_writable(Path(a.plot), a.force)
    check_output(Path(a.output), a.force)
    c = census_to_file(Path(a.output), pids=a.pid or None, force=a.force, method=a.method)
    print(summary_line(c, Path(a.output)), file=sys.stderr)
    if a.report:
        from ptreplay.pipeline.presentation.census_report import census_report
        sys.stdout.write(census_report(Path(a.output), fmt=a.format))
    if a.plot:
        from ptreplay.pipeline.presentation.census_report import write_census_png
        print(write_census_png(Path(a.output), Path(a.plot), force=a.force))
    return 0


def _cmd_ingest(a) -> int:
    from ptreplay.pipeline.events.ingest import ingest
    result = ingest([Path(p) for p in a.inputs], Path(a.output), force=a.force,
                    allow_sampled=a.allow_sampled)
    print(result)
    return 0


def _cmd_replay(a) -> int:
    from ptreplay.replay.engine import ReplayOptions, replay_to_dir
    opts = ReplayOptions(policies=a.policy, thp=a.thp, interval_ns=a.interval, la57=a.la57, timeseries=a.timeseries)
    out = replay_to_dir(Path(a.events), Path(a.output), opts, force=a.force)
    print(out)
    return 0


def _cmd_report(a) -> int:
    from ptreplay.pipeline.presentation.report import report
    sys.stdout.write(report(Path(a.path), fmt=a.format, by=a.by))
    return 0


def _cmd_attribute(a) -> int:
    from ptreplay.pipeline.attribution.attribute import attribute_to_dir
    from ptreplay.pipeline.presentation.sites import check_policies, top_sites
    from ptreplay.pipeline.presentation.tables import format_table
    check_policies(Path(a.replay_dir), a.policy)
    attribute_to_dir(Path(a.capture), Path(a.replay_dir), [Path(b) for b in a.binaries] or None,
                     Path(a.events) if a.events else None)
    sys.stdout.write(format_table(top_sites(Path(a.replay_dir), a.policy, a.top, human=a.format in ("table", "md")),
                                  a.format))
    return 0


def _cmd_sql(a) -> int:
    from ptreplay.pipeline.warehouse import connect, execute
    from ptreplay.pipeline.presentation.tables import format_table
    params = {}
    for item in a.param or []:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            raise UsageError(f"sql: --param '{item}' is not NAME=VALUE")
        params[name] = _typed(value)
    table = execute(connect(Path(a.path)), a.query, params)
    sys.stdout.write(format_table(table, a.format))
    return 0


def _typed(value: str):
    """--param values: integers and floats bind as numbers, everything else as text."""
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def _cmd_batch(a) -> int:
    from ptreplay.pipeline.fleet.batch import batch
    if a.workers < 1:
        raise UsageError("batch: --workers must be at least 1")
    res = batch(a.inputs, Path(a.output), policies=a.policy, workers=a.workers, scheduler=a.scheduler,
                force=a.force, fleet=a.fleet, manifest=a.manifest, connect_timeout_s=a.connect_timeout / 1e9)
    censuses = f"{len(res.censuses)} censuses filed, " if res.censuses else ""
    print(f"batch: {len(res.done)} replayed, {censuses}{len(res.skipped)} already done, {len(res.failed)} failed")
    for tid, err in sorted(res.failed.items()):
        print(f"batch: failed {tid}: {err}", file=sys.stderr)
    return 1 if res.failed else 0


def _cmd_plot(a) -> int:
    from ptreplay.pipeline.presentation.plot import plot
    print(plot(Path(a.path), Path(a.output), pid=a.pid, force=a.force, policies=a.policy, trace=a.trace,
               heatmap_only=a.heatmap_only))
    return 0


def _policy_list(text: str) -> list[str]:
    """--policy none,pt_reclaim -> ['none', 'pt_reclaim'] (replayed specs, checked against the output later)."""
    names = [p.strip() for p in text.split(",") if p.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"'{text}' names no policy")
    return names


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"'{text}' must be at least 1")
    return value


def _cmd_demo(a) -> int:
    from ptreplay.pipeline.demo import demo
    demo(Path(a.capture) if a.capture else None, Path(a.output), force=a.force)
    return 0


def _cmd_schema(a) -> int:
    from ptreplay.schemas import ARTIFACTS, describe
    names = [a.name] if a.name else list(ARTIFACTS)
    for n in names:
        if n not in ARTIFACTS:
            raise UsageError(f"schema: unknown artifact '{n}' (expected one of {', '.join(ARTIFACTS)})")
        print(describe(ARTIFACTS[n]))
    return 0


def _cmd_synth(a) -> int:
    from ptreplay.replay.synth import KINDS, write_stream
    spec = KINDS[a.kind][2]
    params = {name: getattr(a, name) for name, _, _, _ in spec}
    if a.step_ns <= 0:
        raise UsageError("synth: --step-ns must be positive")
    opts = " ".join(f"--{n.replace('_', '-')} {v}" for n, v in params.items())
    command_line = f"ptreplay synth {a.kind} {opts} --seed {a.seed} --step-ns {a.step_ns} -o {a.output}"
    rows, _ = write_stream(a.kind, Path(a.output), force=a.force, step_ns=a.step_ns, seed=a.seed,
                           command_line=command_line, **params)
    print(f"{a.output}: {rows} events (synthetic {a.kind})")
    return 0


def _add_record_parser(sub) -> None:
    r = sub.add_parser("record", help="capture a workload with perf plus the kernel's own /proc truth")
    r.add_argument("-o", "--output", required=True, help="capture directory (must be empty unless --force)")
    r.add_argument("-p", "--pid", type=int, help="attach to a running process")
    r.add_argument("-a", "--all-processes", action="store_true",
                   help="every process on the host (perf -a) for --duration: running ones from their start "
                        "snapshot, those born during the capture from their fork or exec; kernel threads and "
                        "ptreplay's own processes are left out (counted in record.json host)")
    r.add_argument("--duration", type=_duration_ns("--duration"), help="how long to record with -p, or with -a after the host's start snapshot "
                        "(8, 8s, 500ms)")
    r.add_argument("--comm", action="append", metavar="NAME[,NAME]",
                   help="-a only: keep only processes of these names (/proc/PID/comm; repeatable): running ones "
                        "by their name at the snapshot, later ones by their name at fork or exec")
    r.add_argument("--min-vmpte", type=_size_option("--min-vmpte"), metavar="SIZE",
                   help="-a only: keep only processes whose VmPTE reaches SIZE (64k, 1M): running ones by their "
                        "VmPTE at the snapshot (the others are not snapshotted), later ones by their largest "
                        "sampled VmPTE")
    r.add_argument("--interval-ms", type=float, default=1.0, help="/proc/PID/status sampling period (default 1 ms; -a: the adaptive "
                        "sampler's shortest, see record.json host.sampler)")
    r.add_argument("--mmap-pages", default="16M", help="perf ring buffer size per CPU (default 16M)")
    r.add_argument("--freeze", action="store_true",
                   help="with -p: stop the target's threads while its start state is read (ptrace, no "
                        "signal; tens of ms), so the snapshot is one instant instead of a server changing "
                        "under the scan")
    r.add_argument("--call-graph", action="store_true", help="also record user call chains (for attribution)")
    r.add_argument("--threads", action="store_true",
                   help="perf record --threads: a writer thread and data file per CPU (fewer lost events "
                        "on many-CPU machines); perf.data is then a directory")
    r.add_argument("--force", action="store_true", help="record into a non-empty directory, replacing a previous "
                   "record's files there (only when ptreplay wrote them; other files are left alone)")
    r.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    r.set_defaults(func=_cmd_record)


def _add_census_parser(sub) -> None:
    ce = sub.add_parser("census", help="no trace: every process's VmPTE against the page tables its present and "
                                       "swapped pages need (pagemap), the waste, per VMA and as an occupancy histogram")
    ce.add_argument("-p", "--pid", type=int, action="append", help="process to scan (repeatable; default: all)")
    ce.add_argument("-o", "--output", default="census.parquet", help="FILE.parquet for the per-process rows "
                    "(default census.parquet); the per-VMA rows go beside it as FILE_vmas.parquet")
    ce.add_argument("--report", action="store_true", help="print the processes ranked by waste")
    ce.add_argument("--format", choices=["table", "md", "json", "csv"], default="table", help="of --report")
    ce.add_argument("--plot", help="also draw FILE.png: top processes by waste, PTE-table occupancy histogram")
    ce.add_argument("--method", choices=["auto", "pagemap_scan", "pagemap_read"], default="auto",
                    help="PAGEMAP_SCAN ioctl (Linux 6.7+), chunked pagemap reads, or the first that works (default)")
    ce.add_argument("--force", action="store_true", help="replace existing outputs (only ones ptreplay wrote)")
    ce.set_defaults(func=_cmd_census)


def _add_batch_parser(sub) -> None:
    b = sub.add_parser("batch", help="ingest + replay many captures (and file censuses) in parallel on dask "
                                     "(Hive-partitioned output)")
    b.add_argument("inputs", nargs="*", help="captures: files, record directories, directories of them, globs, "
                                             "URIs; census .parquet files (each keeps its own hostname)")
    b.add_argument("--fleet", action="append", metavar="FLEET", help="a fleet layout FLEET/HOST/<record "
                   "directories, captures, census.parquet>: the HOST folder names the host (repeatable)")
    b.add_argument("--manifest", action="append", metavar="FILE.csv", help="a CSV with the header host,path: "
                   "each row a capture or census of that host (repeatable)")
    b.add_argument("--connect-timeout", type=_duration_ns("--connect-timeout"), default=10_000_000_000,
                   help="how long to try reaching --scheduler (default 10s)")
    b.add_argument("-o", "--output", required=True, help="output tree (trace_id=X/ partitions)")
    b.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes (default 2)")
    b.add_argument("--scheduler", help="address of a running dask scheduler (instead of a LocalCluster)")
    b.add_argument("--policy", default="all", help="policies as for replay (default all)")
    b.add_argument("--force", action="store_true", help="replay traces already done again, replacing their "
                   "partitions (only ones holding nothing but ptreplay's outputs); default: skip them")
    b.set_defaults(func=_cmd_batch)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ptreplay", description=__doc__.splitlines()[0])
    p.add_argument("--version", action=_Version, nargs=0, help="show the program's version number and exit")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    _add_record_parser(sub)

    _add_census_parser(sub)

    i = sub.add_parser("ingest", help="turn captures into an events Parquet file")
    i.add_argument("inputs", nargs="+", help="perf.data, perf script text, ftrace text, trace-cmd report, or a record directory")
    i.add_argument("-o", "--output", required=True, help="events Parquet file to write")
    i.add_argument("--force", action="store_true", help="replace an existing output (only one ptreplay wrote)")
    i.add_argument("--allow-sampled", action="store_true", help="accept sampled captures (results will undercount)")
    i.set_defaults(func=_cmd_ingest)

    rp = sub.add_parser("replay", help="replay events under page-table reclaim policies")
    rp.add_argument("events", help="events Parquet file (from ingest)")
    rp.add_argument("-o", "--output", required=True, help="output directory for timeseries, summary, effects and occupancy .parquet")
    rp.add_argument("--policy", default="all", help="comma-separated: none,pt_reclaim,refcount,scan[:INTERVAL],delayed[:HOLD],all_levels (default all)")
    rp.add_argument("--thp", choices=["never", "madvise", "always"], default=None, help="THP mode (default: the capture's)")
    rp.add_argument("--interval", type=_duration_ns("--interval"), default=10_000_000, help="timeseries step (default 10ms)")
    rp.add_argument("--timeseries", choices=["changes", "ticks"], default="changes",
                    help="timeseries rows: at each step only for processes whose values changed (default), "
                    "or for every live process")
    rp.add_argument("--la57", action="store_true", help="5-level paging (default: the capture's)")
    rp.add_argument("--force", action="store_true", help="replace existing outputs (only ones ptreplay wrote; "
                    "other files in the directory are left alone)")
    rp.set_defaults(func=_cmd_replay)

    rep = sub.add_parser("report", help="savings per process and policy from a replay output")
    rep.add_argument("path", help="replay output directory, or a batch tree of them")
    rep.add_argument("--format", choices=["table", "md", "json", "csv", "html"], default="table")
    rep.add_argument("--by", choices=["process", "comm", "host", "kernel", "rank"], default=None,
                     help="one row per process and policy (the default), rolled up per command, host or kernel, "
                          "or one row per process ranked by what each policy saves (rank: the default for a host "
                          "recording, record -a); a fleet output shows its host and command rankings")
    rep.set_defaults(func=_cmd_report)

    at = sub.add_parser("attribute", help="call sites that allocate PTE tables and leave them empty "
                                          "(capture made with record --call-graph)")
    at.add_argument("capture", help="the perf.data (or record directory) the replay output came from")
    at.add_argument("replay_dir", help="its `ptreplay replay` output directory (gets attribution.parquet)")
    at.add_argument("--binaries", action="append", default=[], metavar="DIR",
                    help="where to look first for the capture's binaries: DIR/<recorded path> or "
                         "DIR/<file name> (repeatable); then the recorded path, then perf's build-id cache")
    at.add_argument("--events", help="the events Parquet the replay read (default: the path the replay "
                                     "output recorded)")
    at.add_argument("--policy", type=_policy_list, default=["none", "pt_reclaim"],
                    help="policies to list (comma-separated; default none,pt_reclaim)")
    at.add_argument("--top", type=_positive_int, default=10, help="sites per policy (default 10)")
    at.add_argument("--format", choices=["table", "md", "json", "csv"], default="table")
    at.set_defaults(func=_cmd_attribute)

    _add_batch_parser(sub)

    q = sub.add_parser("sql", help="run a read query against the DuckDB views of an output tree")
    q.add_argument("path", help="output directory or tree of them")
    q.add_argument("query", help="SELECT ... (views: events, truth, timeseries, summary, metadata, savings, policy_costs, census_*, fleet_by_*, fleet_runs)")
    q.add_argument("--param", action="append", help="NAME=VALUE bound as $NAME (repeatable)")
    q.add_argument("--format", choices=["table", "csv", "json", "md"], default="table")
    q.set_defaults(func=_cmd_sql)

    pl = sub.add_parser("plot", help="VIRT/RES/VmPTE per policy (truth overlaid), PTE-table occupancy heatmap, "
                                     "cost vs savings (PNG or interactive HTML)")
    pl.add_argument("path", help="replay output directory, or a batch tree of them")
    pl.add_argument("-o", "--output", required=True, help="FILE.png (matplotlib) or FILE.html (plotly, self-contained)")
    pl.add_argument("--pid", type=int, help="process to plot (default: the largest potential savings)")
    pl.add_argument("--trace", help="trace_id of the process (needed when --pid occurs in several traces of a tree)")
    pl.add_argument("--policy", type=_policy_list, help="comma-separated policies to draw heatmaps for, side by side "
                    "(default: none, plus pt_reclaim when replayed)")
    pl.add_argument("--heatmap-only", action="store_true", help="draw only the occupancy heatmap(s)")
    pl.add_argument("--force", action="store_true", help="replace an existing file (only a plot ptreplay wrote)")
    pl.set_defaults(func=_cmd_plot)

    d = sub.add_parser("demo", help="ingest -> replay -> report on a bundled real capture")
    d.add_argument("capture", nargs="?", help="capture directory (default: data/seed-2m)")
    d.add_argument("-o", "--output", default="out/demo", help="output directory (default out/demo)")
    d.add_argument("--force", action="store_true", help="replace a previous output in another directory than "
                   "out/demo (out/demo, the default, is replaced on every run; only files ptreplay wrote, ever)")
    d.set_defaults(func=_cmd_demo)

    from ptreplay.replay.synth_kinds import KIND_OPTIONS
    sy = sub.add_parser("synth", help="write a SYNTHETIC events Parquet (production, jemalloc, swapout, ...)")
    sk = sy.add_subparsers(dest="kind", required=True, parser_class=_Parser, metavar="KIND")
    for kind, (khelp, spec) in KIND_OPTIONS.items():
        k = sk.add_parser(kind, help=khelp)
        for name, typ, default, ohelp in spec:
            k.add_argument(f"--{name.replace('_', '-')}", dest=name, type=typ, default=default,
                           help=f"{ohelp} (default {default})")
        k.add_argument("-o", "--output", required=True, help="events Parquet file to write")
        k.add_argument("--force", action="store_true", help="replace an existing output (only one ptreplay wrote)")
        k.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        k.add_argument("--step-ns", type=int, default=1000, help="ns between events (default 1000)")
        k.set_defaults(func=_cmd_synth)

    s = sub.add_parser("schema", help="print the artifacts' schemas with units")
    s.add_argument("name", nargs="?")
    s.set_defaults(func=_cmd_schema)
    return p


def _terminate(signum, frame):
    """SIGTERM unwinds like Ctrl-C, so atomic writers drop their temporaries."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    route_warnings()
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except PipelineError as e:
        print(f"ptreplay: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("ptreplay: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # the file system refused (permission, read-only, full, a file where a directory goes)
        if os.environ.get("PTREPLAY_DEBUG"):
            raise
        where = f"{e.filename}: " if e.filename else ""
        print(f"ptreplay: error: {where}{e.strerror or str(e).splitlines()[0]}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as e:  # an optional dependency: name the extra that brings it
        from ptreplay.pipeline.extras import missing_extra
        error = missing_extra(e)
        if error is None or os.environ.get("PTREPLAY_DEBUG"):
            raise
        print(f"ptreplay: error: {error}", file=sys.stderr)
        return error.exit_code
    except Exception as e:  # a bug, not bad input: still one line unless asked for the traceback
        if os.environ.get("PTREPLAY_DEBUG"):
            raise
        print(f"ptreplay: internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} "
              f"(set PTREPLAY_DEBUG=1 for a traceback)", file=sys.stderr)
        return 1


def run() -> None:
    """The `ptreplay` command and `python -m ptreplay`: main(), then the process ends.  After a
    command that succeeded, gc.freeze() tells the interpreter's last collections to skip every
    object alive by then: they walked all of numpy's and pyarrow's objects, ~20 ms of every
    command's exit (an ingest's exit 39-47 -> 21-26 ms).  After an error or an interrupt they run
    as usual (whatever was cut short is closed and cleaned up).  Not in main(), which tests call in
    their own process."""
    code = main()
    if code == 0:
        gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    run()
