"""Capture metadata read from the machine that records.

The replayer needs to know what the traced kernel would have done: page size,
4- or 5-level paging, the THP mode and whether CONFIG_PT_RECLAIM was built in.
Each reader takes the path it reads so tests can point it at fixture files,
and answers "unknown"/empty rather than failing: metadata must never stop a
recording.
"""
from __future__ import annotations

import gzip
import os
import platform
import re
import shutil
import socket
import subprocess
from pathlib import Path


def paging_levels(cpuinfo: Path = Path("/proc/cpuinfo")) -> int:
    """5 when the CPU flags list ``la57`` (5-level paging in use), else 4.

    /proc/cpuinfo drops the flag when the kernel runs 4-level (no5lvl), so
    the flag means the kernel really uses 5 levels.
    """
    try:
        text = cpuinfo.read_text()
    except OSError:
        return 4
    for line in text.splitlines():
        if line.startswith("flags"):
            return 5 if "la57" in line.split(":", 1)[1].split() else 4
    return 4


def thp_mode(path: Path = Path("/sys/kernel/mm/transparent_hugepage/enabled")) -> str:
    """The bracketed word of ``always [madvise] never`` (empty when unknown)."""
    try:
        m = re.search(r"\[(\w+)\]", path.read_text())
    except OSError:
        return ""
    return m.group(1) if m else ""


def pt_reclaim(release: str | None = None, proc_config: Path = Path("/proc/config.gz"),
               boot_dir: Path = Path("/boot")) -> str:
    """CONFIG_PT_RECLAIM as 'y', 'n' or 'unknown'.

    Reads /proc/config.gz first (the running kernel's own config), then
    /boot/config-RELEASE.  An option absent from a readable config is 'n'.
    """
    release = release or platform.release()
    candidates = [(proc_config, True), (boot_dir / f"config-{release}", False)]
    for path, zipped in candidates:
        try:
            raw = gzip.decompress(path.read_bytes()) if zipped else path.read_bytes()
        except (OSError, EOFError, gzip.BadGzipFile):
            continue
        m = re.search(rb"^CONFIG_PT_RECLAIM=(\w)", raw, re.M)
        return m.group(1).decode() if m else "n"
    return "unknown"


def vm_event_item(name: str, vmstat: Path = Path("/proc/vmstat")) -> int | None:
    """The `enum vm_event_item` value of a /proc/vmstat event counter, as the memcg tracepoint
    `count_memcg_events` gives it (`item`): /proc/vmstat lists the events in enum order after
    the zone, node and writeback items, starting with pgpgin (vmstat_text, mm/vmstat.c), so it
    is the counter's line minus pgpgin's.  None when either is absent."""
    try:
        names = [line.split(" ", 1)[0] for line in vmstat.read_text().splitlines()]
    except OSError:
        return None
    if name not in names or "pgpgin" not in names:
        return None
    return names.index(name) - names.index("pgpgin")


def perf_version(perf: str | None = None) -> str:
    """``perf --version`` output, e.g. 'perf version 6.1.187' (empty if perf is missing)."""
    perf = perf or shutil.which("perf")
    if not perf:
        return ""
    try:
        out = subprocess.run([perf, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip()


def machine_info(perf: str | None = None) -> dict:
    """The machine-dependent fields of the CAPTURE schema, as a dict."""
    uname = os.uname()
    return {
        "host": socket.gethostname(),
        "kernel_release": uname.release,
        "arch": uname.machine,
        "page_size_bytes": os.sysconf("SC_PAGE_SIZE"),
        "paging_levels": paging_levels(),
        "thp_mode": thp_mode(),
        "pt_reclaim": pt_reclaim(uname.release),
        "perf_version": perf_version(perf),
    }
