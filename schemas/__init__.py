"""What data exists: one versioned Arrow schema per Parquet artifact.

Every artifact carries its schema name and version in the Parquet key-value
metadata (``ptreplay.schema`` = ``"events/2"``).  :func:`conform` is called on
every write and every read; it names missing, extra and mistyped columns.

Artifacts (data flow order):

===============  ==============================================================
``capture``      one row of capture metadata (host, kernel, THP, PT_RECLAIM ...)
``truth``        the kernel's own /proc/PID/status numbers sampled while recording
``events``       one row per page fault and per syscall, normalized from any reader
``timeseries``   replay output: VIRT/RES/VmPTE per process and policy over time (a step function)
``summary``      replay output: one row per (trace, process, policy)
``effects``      replay output: PTE tables each event allocated, emptied, freed
``occupancy``    replay output: live PTE tables and entries per 1 GiB region, sampled
``attribution``  `ptreplay attribute`: effects summed per call site (perf call chains)
``census``       `ptreplay census` (no trace): per process, VmPTE against the tables its pages need
``census_vmas``  `ptreplay census`: per VMA, its pages and its share of those tables
===============  ==============================================================

Key-value metadata beside ``ptreplay.schema`` (JSON unless said otherwise):
``ptreplay.capture`` the capture's row (trace_id, host, kernel ...) in every
artifact made from it; ``ptreplay.replay`` the replay engine's options and
counts in its outputs; ``ptreplay.truth`` in an events file ingested from a
`ptreplay record` directory: that directory's ``truth`` table (base64 of a
zstd Arrow IPC stream), so the kernel's own numbers travel with the events
and `ptreplay replay` writes them out as ``truth.parquet`` beside its outputs;
``ptreplay.events_other`` in an events/2 file: its non-fault rows (EVENT_OTHERS,
the same encoding; see EVENT_FAULTS and schemas.events_layout).

Figures carry the mark too: a PNG has a tEXt chunk ``ptreplay.schema`` =
``plot/1``, an HTML page ``HTML_MARK`` in its head.  `--force` replaces only
files with the mark (and directories holding nothing else): see
``schemas.parquet_io.check_writable``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import pyarrow as pa

from ptreplay.schemas.errors import SchemaError

SCHEMA_KEY = b"ptreplay.schema"
CAPTURE_KEY = b"ptreplay.capture"
REPLAY_KEY = b"ptreplay.replay"     # replay outputs: the engine's options and counts (JSON)
TRUTH_KEY = b"ptreplay.truth"       # events from a record directory: its truth/1 table (base64 Arrow IPC)
PLOT_TAG = "plot/1"                 # the ptreplay.schema mark of figures (PNG tEXt chunk, HTML <meta>)
HTML_MARK = f'<meta name="{SCHEMA_KEY.decode()}" content="{PLOT_TAG}">'


@dataclass(frozen=True)
class Artifact:
    name: str
    version: int
    schema: pa.Schema

    @property
    def tag(self) -> str:
        return f"{self.name}/{self.version}"


def _f(name: str, typ: pa.DataType, doc: str, nullable: bool = False) -> pa.Field:
    return pa.field(name, typ, nullable=nullable, metadata={"doc": doc})


# Event kinds, as stored in events.kind (lowercase strings).
EVENT_KINDS = (
    "fault",      # exceptions:page_fault_user / page_fault_kernel on a user address
    "mmap", "munmap", "mremap", "brk", "mprotect",
    "madvise",    # also process_madvise on the caller's own mm (pidfd of another process: flagged)
    "fork",       # a new process (thread-group leader) was created: child_pid
    "clone",      # a new thread inside pid: child_pid is its tid
    "exec",       # pid's address space replaced by a fresh one
    "exit",       # address space torn down (exit_group, last thread exit, mmap:exit_mmap)
    # The start state of a process already running when the trace began (`record -p`'s
    # snapshot.parquet), at the snapshot time, before that process's first traced event:
    "snapshot_vma",     # one VMA of /proc/PID/maps: addr, len, prot, flags (MAP_SHARED/PRIVATE,
                        # MAP_ANONYMOUS, MAP_GROWSDOWN for smaps gd: the stack), fd (-1 anonymous,
                        # 0 file), pgoff, advice 14/15 (smaps hg/nh)
    "snapshot_pages",   # a run of pages [addr, addr+len) of one class, in flags (SNAP_*)
    "snapshot_brk",     # the heap's current end (the break): ret
    "snapshot_tables",  # the kernel's VmPTE at the snapshot, in len; comm: the process's name
)

# snapshot_pages: the page class in `flags` (from /proc/PID/pagemap and /proc/kpageflags).
SNAP_ANON, SNAP_FILE, SNAP_ZERO, SNAP_SWAP, SNAP_THP, SNAP_HUGE_ZERO = range(6)
SNAP_CLASSES = ("anon", "file", "zero", "swap", "thp", "huge_zero")  # file: page cache or shmem

EVENTS = Artifact("events", 1, pa.schema([
    _f("t_ns", pa.int64(), "event time in ns on the capture's own clock (CLOCK_MONOTONIC for `ptreplay record`); never rebased. Syscalls carry their sys_exit time (effect complete, result known); a huge-page fault whose end the trace has (record.json fault_ends) carries that end (the page mapped)"),
    _f("pid", pa.int32(), "thread-group id (process id); -1 when it cannot be known"),
    _f("tid", pa.int32(), "thread id"),
    _f("cpu", pa.int32(), "CPU the event fired on; -1 when the format has no CPU column"),
    _f("kind", pa.string(), "one of: " + ", ".join(EVENT_KINDS)),
    _f("addr", pa.uint64(), "bytes (virtual address): fault address; mmap result address; munmap/madvise/mprotect/mremap start; brk: the requested break"),
    _f("len", pa.uint64(), "bytes: length of the range (mmap/munmap/madvise/mprotect; mremap old_len); 0 where meaningless"),
    _f("prot", pa.int32(), "PROT_* bits (mmap, mprotect); -1 otherwise"),
    _f("flags", pa.int64(), "MAP_* flags (mmap) or MREMAP_* flags (mremap); -1 otherwise"),
    _f("fd", pa.int32(), "file descriptor of mmap (-1 for anonymous)"),
    _f("pgoff", pa.uint64(), "bytes: file offset of mmap"),
    _f("advice", pa.int32(), "MADV_* value (madvise); -1 otherwise"),
    _f("error_code", pa.int32(), "x86 page-fault error code (bit 0 present, 1 write, 2 user, 4 instruction fetch); -1 for non-faults"),
    _f("ip", pa.uint64(), "bytes (address): instruction pointer of the fault; 0 when unknown"),
    _f("user_mode", pa.bool_(), "fault: True for page_fault_user, False for page_fault_kernel (kernel touching a user address)"),
    _f("new_addr", pa.uint64(), "bytes (address): mremap result address (the new_addr argument when the call failed)"),
    _f("new_len", pa.uint64(), "bytes: mremap new_len"),
    _f("ret", pa.int64(), "syscall return value (negative errno on failure; mmap/mremap address; brk: the new break); 0 for faults"),
    _f("dur_ns", pa.int64(), "ns: syscall duration (sys_exit - sys_enter); for a fault, end - entry where the trace has its end (a huge page mapped; a THP write fault without one fell back to 4 KiB when the capture traces ends); 0 otherwise and for unfinished calls"),
    _f("req_addr", pa.uint64(), "bytes (address): mmap's requested address argument (the hint or MAP_FIXED target)"),
    _f("child_pid", pa.int32(), "fork/clone: pid (fork) or tid (clone) of the new task; -1 otherwise"),
    _f("failed", pa.bool_(), "syscall returned an error: kept for the record, never applied by the replayer"),
    _f("unfinished", pa.bool_(), "sys_enter seen but no sys_exit before the capture ended (applied with its arguments when safe; see docs)"),
    _f("comm", pa.string(), "command name for fork/exec/exit events (null otherwise)", nullable=True),
]))

# events/2: how an events file is stored (readers return the EVENTS table above, events/1 files
# are read as they are).  Faults are nearly every row of a capture and set only a few columns:
# they are the Parquet table of the file, in a narrow layout (EVENT_FAULTS, their kind is
# `fault` and every other column its EVENT_DEFAULTS value); the other rows (syscalls,
# lifecycle, snapshot) keep every EVENTS column plus their place in the whole stream, in the
# file's key-value metadata (OTHERS_KEY: base64 of a zstd Arrow IPC stream of EVENT_OTHERS).
# The stream is the fault rows in file order with each other row at its `row`.
EVENTS_LAYOUT_VERSION = 2
EVENT_FAULTS = Artifact("events", EVENTS_LAYOUT_VERSION, pa.schema([
    _f("t_ns", pa.int64(), "fault time in ns on the capture's own clock (as events/1 t_ns)"),
    _f("pid", pa.int32(), "thread-group id (process id)"),
    _f("tid", pa.int32(), "thread id"),
    _f("cpu", pa.int32(), "CPU the fault fired on; -1 when the format has no CPU column"),
    _f("addr", pa.uint64(), "bytes (virtual address): the faulting address"),
    _f("ip", pa.uint64(), "bytes (address): instruction pointer of the fault; 0 when unknown"),
    _f("error_code", pa.int32(), "x86 page-fault error code (bit 0 present, 1 write, 2 user, 4 instruction fetch)"),
    _f("user_mode", pa.bool_(), "True for page_fault_user, False for page_fault_kernel (kernel touching a user address)"),
]))
OTHERS_KEY = b"ptreplay.events_other"   # events/2: the non-fault rows (EVENT_OTHERS, base64 Arrow IPC)
EVENT_OTHERS = Artifact("events", EVENTS_LAYOUT_VERSION, pa.schema(
    [_f("row", pa.int64(), "0-based row of this event in the whole stream (faults and others, time order)")]
    + list(EVENTS.schema)))

# Neutral values of the EVENTS columns a row does not set (tid: the row's pid).
EVENT_DEFAULTS = dict(cpu=-1, addr=0, len=0, prot=-1, flags=-1, fd=-1, pgoff=0, advice=-1, error_code=-1, ip=0,
                      user_mode=False, new_addr=0, new_len=0, ret=0, dur_ns=0, req_addr=0, child_pid=-1,
                      failed=False, unfinished=False, comm=None)


def events_from_rows(rows: list[dict]) -> pa.Table:
    """An EVENTS table from dicts holding at least kind, t_ns and pid; every other column
    takes its EVENT_DEFAULTS value."""
    cols = {f.name: [] for f in EVENTS.schema}
    for r in rows:
        full = {**EVENT_DEFAULTS, "tid": r["pid"], **r}
        if full["tid"] == -1:
            full["tid"] = full["pid"]
        for name in cols:
            cols[name].append(full[name])
    return pa.Table.from_pydict(cols, schema=EVENTS.schema)


TRUTH = Artifact("truth", 1, pa.schema([
    _f("t_ns", pa.int64(), "sample time in ns, CLOCK_MONOTONIC (same clock as the capture)"),
    _f("pid", pa.int32(), "process id whose /proc/PID/status was read"),
    _f("vmsize_bytes", pa.int64(), "bytes: VmSize"),
    _f("vmrss_bytes", pa.int64(), "bytes: VmRSS"),
    _f("rss_anon_bytes", pa.int64(), "bytes: RssAnon"),
    _f("rss_file_bytes", pa.int64(), "bytes: RssFile"),
    _f("rss_shmem_bytes", pa.int64(), "bytes: RssShmem"),
    _f("vmpte_bytes", pa.int64(), "bytes: VmPTE (PTE + PMD + PUD tables, 4 KiB each)"),
]))

CAPTURE = Artifact("capture", 1, pa.schema([
    _f("trace_id", pa.string(), "stable identifier of the capture (directory or file stem)"),
    _f("host", pa.string(), "hostname of the traced machine"),
    _f("kernel_release", pa.string(), "uname -r"),
    _f("arch", pa.string(), "uname -m (only x86_64 is replayed)"),
    _f("page_size_bytes", pa.int32(), "bytes: base page size"),
    _f("paging_levels", pa.int32(), "4, or 5 when la57 is active"),
    _f("thp_mode", pa.string(), "transparent_hugepage/enabled at capture time: always, madvise, never (empty when unknown)"),
    _f("pt_reclaim", pa.string(), "CONFIG_PT_RECLAIM: 'y', 'n' or 'unknown'"),
    _f("clock", pa.string(), "clock of t_ns: 'CLOCK_MONOTONIC', 'perf' (perf_clock), 'local', ..."),
    _f("perf_version", pa.string(), "perf --version of the recorder (empty when not perf)"),
    _f("command_line", pa.string(), "command line that produced the capture"),
    _f("source_format", pa.string(), "perf.data, perf-script, ftrace, trace-cmd, synthetic"),
    _f("lost_events", pa.int64(), "events the tracer reported lost (LOST records, ftrace LOST/overrun)"),
    _f("lost_samples", pa.int64(), "LOST_SAMPLES count (perf)"),
    _f("synthetic", pa.bool_(), "True for streams made by a generator, never for a real capture"),
    _f("start_ns", pa.int64(), "ns on the capture clock: first event time"),
    _f("end_ns", pa.int64(), "ns on the capture clock: last event time"),
]))

_COUNTS = [
    ("virt_bytes", "bytes: VIRT (sum of VMA sizes, as VmSize)"),
    ("rss_bytes", "bytes: RES (rss_anon + rss_file + rss_shmem)"),
    ("rss_anon_bytes", "bytes: anonymous resident pages"),
    ("rss_file_bytes", "bytes: file-backed and shmem resident pages"),
    ("vmpte_bytes", "bytes: VmPTE (4 KiB x (PTE + PMD + PUD tables))"),
    ("pte_tables", "count: live PTE tables"),
    ("pmd_tables", "count: live PMD tables"),
    ("pud_tables", "count: live PUD tables"),
    ("empty_pte_tables", "count: live PTE tables with no present entry"),
]

TIMESERIES = Artifact("timeseries", 1, pa.schema(
    [
        _f("trace_id", pa.string(), "capture identifier"),
        _f("pid", pa.int32(), "process id"),
        _f("policy", pa.string(), "reclaim policy spec, e.g. none, pt_reclaim, scan:1s"),
        _f("t_ns", pa.int64(), "ns on the capture clock: state after the last event at or before t_ns; a "
           "process's values hold until its next row (rows: its start, each --interval step at which its "
           "values changed, or every step with --timeseries ticks, its exit or the trace end)"),
    ]
    + [_f(n, pa.int64(), d) for n, d in _COUNTS]
))

SUMMARY = Artifact("summary", 2, pa.schema([
    _f("trace_id", pa.string(), "capture identifier"),
    _f("pid", pa.int32(), "process id"),
    _f("comm", pa.string(), "command name (last seen)"),
    _f("policy", pa.string(), "reclaim policy spec"),
    _f("start_ns", pa.int64(), "ns: first event of the address space"),
    _f("end_ns", pa.int64(), "ns: teardown or trace end"),
    _f("final_virt_bytes", pa.int64(), "bytes: VIRT just before teardown (or at trace end)"),
    _f("final_rss_bytes", pa.int64(), "bytes: RES just before teardown (or at trace end)"),
    _f("final_vmpte_bytes", pa.int64(), "bytes: VmPTE just before teardown (or at trace end)"),
    _f("peak_virt_bytes", pa.int64(), "bytes: maximum VIRT"),
    _f("peak_rss_bytes", pa.int64(), "bytes: maximum RES"),
    _f("peak_vmpte_bytes", pa.int64(), "bytes: maximum VmPTE"),
    _f("mean_vmpte_bytes", pa.float64(), "bytes: time-weighted mean VmPTE over [start_ns, end_ns]"),
    _f("ideal_pte_bytes", pa.int64(), "bytes: tables needed to map the final resident pages (distinct 2 MiB regions with a present PTE, plus their PMD/PUD tables)"),
    _f("empty_pte_tables_final", pa.int64(), "count: empty PTE tables at the final instant"),
    _f("inherited_empty_tables", pa.int64(), "count: empty tables the process already held when an attach-mode trace began (kernel VmPTE minus the tables its present and swapped pages need; location unknown): kept under none/pt_reclaim, freed at once by refcount/all_levels, after the hold by delayed, at the first scan by scan"),
    _f("pte_tables_allocated", pa.int64(), "count: PTE tables allocated"),
    _f("pte_tables_freed", pa.int64(), "count: PTE tables freed (any cause)"),
    _f("refaults", pa.int64(), "count: PTE tables re-allocated for a 2 MiB region freed less than 1 s earlier"),
    _f("scan_entries", pa.int64(), "count: PTE entries a scanner policy examined"),
    _f("extra_atomics", pa.int64(), "count: extra atomic operations (2 per PTE map/unmap for refcount-like policies)"),
    _f("vmpte_saved_bytes", pa.int64(), "bytes: final VmPTE under `none` minus this policy's"),
    _f("vmpte_saved_pct", pa.float64(), "percent: vmpte_saved_bytes / final VmPTE under `none` x 100"),
    _f("events", pa.int64(), "count: events applied to this address space"),
    _f("lost_events", pa.int64(), "count: events the tracer lost in the whole capture (the larger of perf's LOST and LOST_SAMPLES totals, ftrace overruns); results undercount when > 0"),
]))

EFFECTS = Artifact("effects", 1, pa.schema([
    _f("trace_id", pa.string(), "capture identifier"),
    _f("policy", pa.string(), "reclaim policy spec"),
    _f("pid", pa.int32(), "process whose page tables changed (for fork: the child)"),
    _f("event_row", pa.int64(), "0-based row of the event in the events input (join key to events); one row per "
                                "(event, process) whose counts are not all 0"),
    _f("t_ns", pa.int64(), "ns on the capture clock: the event's t_ns"),
    _f("kind", pa.string(), "the event's kind (fault, madvise, munmap, exit, ...)"),
    _f("pte_tables_allocated", pa.int32(), "count: PTE tables this event allocated (faults, fault-around, populate, "
                                           "mremap destinations, a fork child's copies)"),
    _f("upper_tables_allocated", pa.int32(), "count: PMD and PUD tables this event allocated"),
    _f("pte_tables_emptied", pa.int32(), "count: PTE tables this event left allocated and empty (it cleared their "
                                         "last entry, or allocated them without one, e.g. a fork child's copy of an "
                                         "empty table); tables emptied and freed or refilled within the same event "
                                         "are not counted"),
    _f("pte_tables_freed", pa.int32(), "count: PTE tables freed by this event (zap, munmap, exit, exec), plus, for "
                                       "scan and delayed, the tables the policy freed later because this event left "
                                       "them empty"),
    _f("empty_table_ns", pa.int64(), "ns: summed over the tables this event left empty, how long each then stayed "
                                     "allocated and empty (until refilled, freed, or the trace end); x 4096 / 1e9 = "
                                     "byte-seconds of page-table memory wasted"),
]))

OCCUPANCY = Artifact("occupancy", 1, pa.schema([
    _f("trace_id", pa.string(), "capture identifier"),
    _f("policy", pa.string(), "reclaim policy spec"),
    _f("pid", pa.int32(), "process id"),
    _f("t_ns", pa.int64(), "ns on the capture clock: snapshot time (every k-th timeseries tick, at most "
                           "occupancy_snapshots per trace including one at the trace end); state after the last "
                           "event at or before t_ns"),
    _f("region_start", pa.uint64(), "bytes (virtual address): start of the 1 GiB region (one PMD table's span); only "
                                    "regions with a live PTE table have a row"),
    _f("pte_tables", pa.int32(), "count: live PTE tables in the region"),
    _f("empty_pte_tables", pa.int32(), "count: live PTE tables with no present entry"),
    _f("live_entries", pa.int64(), "count: present PTEs in those tables (zero-page entries included; a THP's "
                                   "deposited table counts 512); occupancy = live_entries / (pte_tables x 512)"),
    _f("full_pte_tables", pa.int32(), "count: live PTE tables with all 512 entries present"),
]))

ATTRIBUTION = Artifact("attribution", 1, pa.schema([
    _f("trace_id", pa.string(), "capture identifier"),
    _f("policy", pa.string(), "reclaim policy spec"),
    _f("pid", pa.int32(), "process whose page tables changed"),
    _f("kind", pa.string(), "event kind (fault allocates tables; madvise, munmap, mremap, exit ... empty or free them)"),
    _f("site", pa.string(), "call site: the function of the innermost frame outside the C runtime (libc, ld.so, "
                            "vdso), or FILE+0xOFFSET when it has no symbol; '(no call chain)' when the sample "
                            "carries none"),
    _f("site_dso", pa.string(), "file name of the binary holding the site"),
    _f("caller", pa.string(), "who called into the site's binary: the next frame in another binary outside the C "
                              "runtime (for an allocator's purge, the application function); '' when none"),
    _f("stack", pa.string(), "the whole user stack, innermost first, frames joined by ' <- ' "
                             "(function+0xoff (file+0xoffset), or file+0xoffset [why no symbol])"),
    _f("unwind", pa.string(), "how the stack was found: dwarf (user stack + CFI), fp (frame pointers), ip, none"),
    _f("note", pa.string(), "symbolization caveats per binary: 'build id mismatch', 'binary not found', "
                            "'unverified build id', 'stripped: .dynsym only'"),
    _f("events", pa.int64(), "count: events of this process, kind and stack with a page-table effect"),
    _f("pte_tables_allocated", pa.int64(), "count: PTE tables they allocated"),
    _f("pte_tables_emptied", pa.int64(), "count: PTE tables they emptied and the policy left allocated"),
    _f("pte_tables_freed", pa.int64(), "count: PTE tables freed because of them"),
    _f("empty_pte_bytes", pa.int64(), "bytes: pte_tables_emptied x 4 KiB, the empty page tables left behind"),
    _f("empty_byte_seconds", pa.float64(), "byte-seconds: those tables x how long each stayed empty"),
]))

# `ptreplay census`: no trace, one look at every process's page tables (pipeline/capture/census.py).
# Measured columns are null in a row whose state is 'vanished' (the process exited mid-read).
_PAGE_COUNTS = [
    ("present_pages", "count: present 4 KiB pages (a PMD-mapped THP counts 512; zero-page entries included)"),
    ("swapped_pages", "count: swap-type PTEs that are not guard markers (swapped out, migrating, uffd-wp markers)"),
    ("guard_pages", "count: MADV_GUARD_INSTALL markers (no page, but they hold a PTE table)"),
    ("file_pages", "count: present pages of files or shared anonymous memory (pagemap bit 61, PAGE_IS_FILE)"),
    ("anon_pages", "count: present private anonymous pages (zero-page entries included)"),
    ("exclusive_pages", "count: present pages mapped by this process only (pagemap bit 56)"),
    ("zero_pages", "count: present entries of the shared zero page (4 KiB or huge): no RSS"),
    ("thp_pages", "count: present pages in PMD-mapped transparent huge pages (512 each)"),
    ("hugetlb_pages", "count: present pages of hugetlb mappings, in 4 KiB units"),
]

CENSUS = Artifact("census", 1, pa.schema(
    [
        _f("host", pa.string(), "hostname the census was taken on"),
        _f("kernel_release", pa.string(), "uname -r"),
        _f("t_ns", pa.int64(), "ns, CLOCK_MONOTONIC: when this process's scan started"),
        _f("pid", pa.int32(), "process id (kernel threads, which have no mm, get no row)"),
        _f("comm", pa.string(), "Name: of /proc/PID/status"),
        _f("state", pa.string(), "ok (VmPTE, VmSize and maps the same before and after the scan, every page seen "
                                 "in a VMA and still there when re-read), changed (any of those moved: the row is "
                                 "kept, its numbers are one moment's), vanished (exited during the census), denied "
                                 "(maps and pagemap refused by ptrace_may_access: only the status columns are filled)"),
        _f("method", pa.string(), "pagemap_scan (the PAGEMAP_SCAN ioctl) or pagemap_read (chunked pagemap reads)", True),
        _f("vmpte_bytes", pa.int64(), "bytes: the kernel's VmPTE (/proc/PID/status) read right before the scan", True),
        _f("vmpte_after_bytes", pa.int64(), "bytes: the kernel's VmPTE read right after the scan", True),
        _f("needed_bytes", pa.int64(), "bytes: 4 KiB x (needed_pte_tables + needed_pmd_tables + needed_pud_tables)", True),
        _f("needed_pte_tables", pa.int64(), "count: 2 MiB regions holding a present or swapped 4 KiB-mapped page or an "
                                            "anonymous THP (whose deposited table counts in VmPTE)", True),
        _f("needed_pmd_tables", pa.int64(), "count: 1 GiB regions holding any page", True),
        _f("needed_pud_tables", pa.int64(), "count: 512 GiB regions holding any page", True),
        _f("waste_bytes", pa.int64(), "bytes: vmpte_bytes - needed_bytes: page tables the kernel holds that no page "
                                      "needs (empty PTE tables, and PMD/PUD tables with nothing below)", True),
        _f("pte_entries", pa.int64(), "count: entries in use in the needed PTE tables (a THP's deposit counts 512); "
                                      "occupancy = pte_entries / (needed_pte_tables x 512)", True),
        _f("pte_occupancy", pa.list_(pa.int32()), "count per entries in use: element i (0-based) = needed PTE "
                                                  "tables with i + 1 of their 512 entries in use", True),
        _f("pfnmap_regions", pa.int64(), "count: 2 MiB regions overlapped only by VM_PFNMAP mappings ([vvar], "
                                         "[vvar_vclock]) with no visible page: pagemap cannot see their PTEs, so "
                                         "up to this many waste tables may be in use", True),
        _f("vmsize_bytes", pa.int64(), "bytes: VmSize before the scan", True),
        _f("rss_anon_bytes", pa.int64(), "bytes: RssAnon before the scan", True),
        _f("rss_file_bytes", pa.int64(), "bytes: RssFile before the scan", True),
        _f("rss_shmem_bytes", pa.int64(), "bytes: RssShmem before the scan", True),
    ]
    + [_f(n, pa.int64(), d, True) for n, d in _PAGE_COUNTS]
    + [
        _f("vmas", pa.int32(), "count: VMAs in /proc/PID/maps (the kernel half left out)", True),
        _f("outside_pages", pa.int64(), "count: pages found in no VMA of the maps read before the scan (mapped "
                                        "meanwhile)", True),
        _f("changed_pages", pa.int64(), "count: pages present in the scan but gone when re-read for bit 56", True),
        _f("scan_ns", pa.int64(), "ns: how long the scan of this process took", True),
    ]
))

CENSUS_VMAS = Artifact("census_vmas", 1, pa.schema(
    [
        _f("host", pa.string(), "hostname the census was taken on"),
        _f("t_ns", pa.int64(), "ns, CLOCK_MONOTONIC: when the process's scan started (join key with census: host, pid, t_ns)"),
        _f("pid", pa.int32(), "process id"),
        _f("vma_index", pa.int32(), "0-based position of the VMA in /proc/PID/maps"),
        _f("start", pa.uint64(), "bytes (virtual address): VMA start"),
        _f("end", pa.uint64(), "bytes (virtual address): VMA end (exclusive)"),
        _f("perms", pa.string(), "rwxp/rwxs as in /proc/PID/maps"),
        _f("offset", pa.uint64(), "bytes: file offset"),
        _f("inode", pa.uint64(), "inode of the file (0 for anonymous memory)"),
        _f("name", pa.string(), "the maps pathname: a file, [heap], [stack], [vdso], [anon:NAME] ..., or '' (anonymous)"),
        _f("kind", pa.string(), "file (a path), anon (no name or [anon:...]), special ([heap], [stack], [vdso] ...)"),
        _f("size_bytes", pa.int64(), "bytes: end - start"),
    ]
    + [_f(n, pa.int64(), d) for n, d in _PAGE_COUNTS]
    + [
        _f("pte_tables", pa.int64(), "count: needed PTE tables whose first page lies in this VMA (they sum to the "
                                     "process's needed_pte_tables)"),
        _f("pte_entries", pa.int64(), "count: entries in use in those tables"),
        _f("pte_regions", pa.int64(), "count: 2 MiB regions the VMA overlaps (the most PTE tables it can have)"),
        _f("pagefree_regions", pa.int64(), "count: of those, regions holding no page of the process: the only places "
                                           "an empty PTE table of this VMA can be (the kernel does not say which hold "
                                           "one; the process's waste is spread over these and the upper levels)"),
    ]
))

ARTIFACTS = {a.name: a for a in (EVENTS, TRUTH, CAPTURE, TIMESERIES, SUMMARY, EFFECTS, OCCUPANCY, ATTRIBUTION,
                                 CENSUS, CENSUS_VMAS)}


def conform(table: pa.Table, artifact: Artifact, source: str = "<table>",
            physical: dict[str, pa.DataType] | None = None) -> pa.Table:
    """Return `table` with exactly `artifact`'s columns in order, or raise SchemaError.

    Missing, extra and mistyped columns are all named in one message.  Only
    lossless differences are tolerated: column order, and dictionary- or
    large-string encodings of string columns (which are cast back).
    `physical` names string columns to return in another lossless encoding
    instead (the Parquet writer takes events.kind dictionary-encoded).
    """
    want = artifact.schema
    if physical:
        want = pa.schema([f.with_type(physical[f.name]) if f.name in physical else f for f in want],
                         metadata=want.metadata)
    if table.schema.equals(want):       # as built by ptreplay itself (every batch of ingest): nulls only
        if all(field.nullable or not table.column(field.name).null_count for field in want):
            return table
    have = {f.name: f.type for f in table.schema}
    missing = [n for n in want.names if n not in have]
    extra = [n for n in have if n not in want.names]
    wrong = []
    columns = []
    for field in want:
        if field.name not in have:
            continue
        col = table.column(field.name)
        if col.type != field.type:
            if _lossless(col.type, field.type):
                col = col.cast(field.type)
            else:
                wrong.append(f"{field.name} is {col.type}, expected {field.type}")
                continue
        if not field.nullable and col.null_count:
            wrong.append(f"{field.name} has {col.null_count} nulls, expected none")
        columns.append(col)
    problems = []
    if missing:
        problems.append("missing column(s) " + ", ".join(missing))
    if extra:
        problems.append("extra column(s) " + ", ".join(extra))
    if wrong:
        problems.append("; ".join(wrong))
    if problems:
        raise SchemaError(f"{source}: not a valid {artifact.tag} table: " + "; ".join(problems))
    return pa.Table.from_arrays(columns, schema=want)


def _lossless(have: pa.DataType, want: pa.DataType) -> bool:
    if pa.types.is_dictionary(have):
        have = have.value_type
    if pa.types.is_dictionary(want):
        want = want.value_type
    return pa.types.is_string(want) and (pa.types.is_string(have) or pa.types.is_large_string(have))


def schema_metadata(artifact: Artifact, capture: dict | None = None) -> dict[bytes, bytes]:
    """Key-value metadata stored in every Parquet file of `artifact`."""
    meta = {SCHEMA_KEY: artifact.tag.encode()}
    if capture is not None:
        meta[CAPTURE_KEY] = json.dumps(capture, sort_keys=True).encode()
    return meta


def empty(artifact: Artifact) -> pa.Table:
    return artifact.schema.empty_table()


def describe(artifact: Artifact) -> str:
    """Human-readable field list (name, type, doc): used by `ptreplay schema`.  For events, the
    table every reader returns, then how an events/2 file stores it."""
    lines = [f"{artifact.tag}" + (": the table every reader returns" if artifact is EVENTS else "")]
    lines += _fields(artifact.schema)
    if artifact is EVENTS:
        lines.append(f"\nstored as {EVENT_FAULTS.tag} (what ingest writes; {artifact.tag} files are read as they are):")
        lines.append("  Parquet table: the fault rows (kind fault, every other column at its neutral value)")
        lines += _fields(EVENT_FAULTS.schema)
        lines.append(f"  key-value metadata {OTHERS_KEY.decode()}: every other row (base64 of a zstd Arrow IPC "
                     f"stream), all the {artifact.tag} columns plus")
        lines += _fields(pa.schema([EVENT_OTHERS.schema.field("row")]))
    return "\n".join(lines)


def _fields(schema: pa.Schema) -> list[str]:
    return [f"  {f.name:<24} {str(f.type):<8} {f.metadata[b'doc'].decode()}" for f in schema]
