"""What a batch reads: captures and censuses, each with the host it belongs to.

Three ways to name them, all ending in a list of :class:`Item`:

- plain inputs (files, record directories, directories of captures, globs,
  pyarrow-filesystem URIs): the host is the capture's own (its machine
  metadata's hostname; a census row's ``host``), outputs ``trace_id=X/``;
- a fleet layout ``FLEET/HOST/...``: every folder below FLEET is one host, and
  holds that host's record directories (``record``, ``record -p``, ``record -a``:
  a directory with a perf.data, whatever number of processes it traced), capture
  files and ``ptreplay census`` outputs;
- a manifest: a CSV file with the columns ``host,path`` (paths relative to the
  manifest's folder, or URIs for captures).

With a layout or a manifest, the HOST label is the host: it replaces the capture's
own hostname (kept in the metadata as ``overridden.host``), because hostnames in
captures copied off machines are not always unique or set; the trace id becomes
``NAME@HOST`` so two hosts' ``cap/`` never collide, and outputs are partitioned
``host=HOST/trace_id=NAME@HOST/`` and ``host=HOST/census=NAME@HOST/``.
"""
from __future__ import annotations

import csv
import glob
import re
from dataclasses import dataclass
from pathlib import Path

from ptreplay.schemas import CENSUS
from ptreplay.schemas.errors import TraceFormatError, UsageError
from ptreplay.schemas.parquet_io import mark_of
from ptreplay.pipeline.events.ingest import trace_id_of

CAPTURE, CENSUS_KIND = "capture", "census"
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass(frozen=True)
class Item:
    """One task's input: a capture to ingest and replay, or a census to file under its host."""

    kind: str                # CAPTURE or CENSUS_KIND
    path: str                # local path, or a URI (captures only)
    host: str | None = None  # the fleet's host label; None: the input's own hostname

    @property
    def name(self) -> str:
        """The input's own name: the capture's trace id (trace_id_of), a census file's stem."""
        return Path(self.path).stem if self.kind == CENSUS_KIND else trace_id_of(self.path)

    @property
    def id(self) -> str:
        """The trace id (or census id) in the output: NAME, or NAME@HOST in a fleet."""
        return f"{self.name}@{self.host}" if self.host else self.name

    @property
    def partition(self) -> str:
        """The output folder, relative to the batch's output tree."""
        leaf = f"{'trace_id' if self.kind == CAPTURE else 'census'}={self.id}"
        return f"host={self.host}/{leaf}" if self.host else leaf


def is_uri(item: str) -> bool:
    return "://" in str(item)


def is_census_file(p: Path) -> bool:
    """A `ptreplay census` per-process file (by its schema mark; its _vmas sibling is not one)."""
    return p.suffix == ".parquet" and (mark_of(p) or "").startswith(f"{CENSUS.name}/")


def host_label(label: str, where: str) -> str:
    """A host label must be safe as a partition name."""
    if not _LABEL.match(label):
        raise UsageError(f"batch: {where}: host '{label}' must be letters, digits and _ . + - "
                         "(it names the output partition host=HOST)")
    return label


def classify(paths: list[Path | str], host: str | None = None) -> list[Item]:
    """Capture paths from expand_inputs -> Items (census files by their mark)."""
    return [Item(CENSUS_KIND if not is_uri(str(p)) and is_census_file(Path(p)) else CAPTURE, str(p), host)
            for p in paths]


def read_layout(fleet: Path) -> list[Item]:
    """FLEET/HOST/... : every visible folder of FLEET is a host; its captures and censuses."""
    fleet = Path(fleet)
    if not fleet.is_dir():
        raise UsageError(f"batch: --fleet {fleet}: not a directory (expected FLEET/HOST/<captures, censuses>)")
    hosts = sorted(d for d in fleet.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not hosts:
        raise UsageError(f"batch: --fleet {fleet}: holds no HOST folder")
    items = []
    for d in hosts:
        found = expand_inputs([str(d)])
        if not found:
            raise UsageError(f"batch: --fleet {fleet}: {d.name}/ holds no capture or census")
        items.extend(classify(found, host_label(d.name, f"--fleet {fleet}")))
    return items


def read_manifest(manifest: Path) -> list[Item]:
    """A CSV of host,path rows (a header line naming them); relative paths from its folder."""
    manifest = Path(manifest)
    try:
        with open(manifest, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UsageError(f"batch: --manifest {manifest}: cannot read ({e})") from None
    if not rows or not {"host", "path"} <= set(rows[0]):
        raise UsageError(f"batch: --manifest {manifest}: expected a CSV with a header line 'host,path' and rows")
    items = []
    for n, row in enumerate(rows, start=2):
        host, path = (row.get("host") or "").strip(), (row.get("path") or "").strip()
        if not host or not path:
            raise UsageError(f"batch: --manifest {manifest}: line {n}: empty host or path")
        label = host_label(host, f"--manifest {manifest} line {n}")
        if not is_uri(path) and not Path(path).is_absolute():
            path = str(manifest.parent / path)
        items.extend(classify(expand_inputs([path]), label))
    return items


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
    """A directory's child worth a task: a record directory, a census, or a file some reader
    claims (so READMEs and scripts beside the captures are passed over, not reported as failures)."""
    from ptreplay.pipeline.formats import detect
    if p.name.startswith("."):
        return False
    if p.is_dir():
        return (p / "perf.data").exists() or _is_thread_dir(p)
    if is_census_file(p):
        return True
    try:
        detect(p)
        return True
    except (TraceFormatError, OSError):
        return False


def _is_thread_dir(p: Path) -> bool:
    return any(p.glob("data.*"))
