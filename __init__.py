"""ptreplay: what each PTE page-table reclaim policy would save, replayed from traces of real processes.

The few calls a notebook needs (each imports what it uses only when called, so
``import ptreplay`` stays light)::

    import ptreplay
    cap = ptreplay.record("cap/", command=["./my_server"])     # perf + the kernel's /proc truth (root)
    events = ptreplay.ingest(cap, "events.parquet")           # any capture format -> events Parquet
    out = ptreplay.replay(events, "out/", policies="all")     # -> out/{summary,timeseries,...}.parquet
    con = ptreplay.connect(out)                               # DuckDB views: summary, savings, truth, ...
    con.sql("SELECT * FROM savings").df()
    ptreplay.plot(out, "out/vmpte.png")
    ptreplay.attribute(cap, out)                              # call sites (capture made with callgraph=True)

The layers under it, in data-flow order: ``ptreplay.schemas`` (artifacts, Parquet
I/O, errors, units), ``ptreplay.replay`` (the page-table model) and
``ptreplay.pipeline`` (capture, formats, events, warehouse, presentation,
attribution, fleet, cli); see docs/ARCHITECTURE.md.
"""
from __future__ import annotations

from pathlib import Path

from ptreplay import replay  # the package is callable: ptreplay.replay(events, out, ...)

__all__ = ["record", "ingest", "replay", "connect", "plot", "attribute", "__version__"]


def __getattr__(name):  # ptreplay.__version__, read from the installed distribution when asked
    if name == "__version__":
        from ptreplay.pipeline.cli import version  # one definition (also `ptreplay --version`)
        return version()
    raise AttributeError(f"module 'ptreplay' has no attribute {name!r}")


def record(out_dir, command: list[str] | None = None, pid: int | None = None, duration_s: float | None = None,
           **options) -> Path:
    """Record `command` (or attach to `pid` for `duration_s`, or every process on the host with
    all_processes=True for `duration_s`) into `out_dir` with perf, plus the kernel's own /proc
    truth; needs root.  `options`: the fields of
    :class:`ptreplay.pipeline.capture.record.RecordOptions` (force, callgraph, threads, comm, ...)."""
    from ptreplay.pipeline.capture.record import RecordOptions
    from ptreplay.pipeline.capture.record import record as _record
    opts = RecordOptions(out_dir=Path(out_dir), command=command, pid=pid, duration_s=duration_s, **options)
    if opts.all_processes:
        from ptreplay.pipeline.capture.host import record_host
        return record_host(opts)
    return _record(opts)


def ingest(inputs, output, force: bool = False, allow_sampled: bool = False) -> Path:
    """Turn one capture (a path) or several (a list) into one time-ordered events Parquet file."""
    from ptreplay.pipeline.events.ingest import ingest as _ingest
    paths = [Path(p) for p in inputs] if isinstance(inputs, (list, tuple)) else [Path(inputs)]
    return _ingest(paths, Path(output), force=force, allow_sampled=allow_sampled)


def connect(path):
    """A DuckDB connection with ptreplay's views over a replay output (or a tree of them)."""
    from ptreplay.pipeline.warehouse import connect as _connect
    return _connect(Path(path))


def plot(path, output, **options) -> Path:
    """Draw a replay output to `output` (.png, or .html for interactive plotly); `options` as for
    :func:`ptreplay.pipeline.presentation.plot.plot` (pid, policies, trace, force, heatmap_only)."""
    from ptreplay.pipeline.presentation.plot import plot as _plot
    return _plot(Path(path), Path(output), **options)


def attribute(capture, replay_dir, binaries=None, events=None) -> Path:
    """Attribute a replay output's page-table effects to the call sites of its capture (recorded
    with call chains); writes REPLAY_DIR/attribution.parquet (view `top_sites`).  `binaries`:
    folders to look in first for the traced binaries."""
    from ptreplay.pipeline.attribution.attribute import attribute_to_dir
    return attribute_to_dir(Path(capture), Path(replay_dir), [Path(b) for b in binaries or []],
                            Path(events) if events else None)
