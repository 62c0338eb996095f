"""SYNTHETIC event streams (EVENTS schema) for tests and benchmarks.

Nothing here comes from a real capture: every table is marked synthetic in
its capture metadata (`capture_meta`).  Times advance by `step_ns` per event.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa

from ptreplay.replay.synth_kinds import KIND_OPTIONS
from ptreplay.schemas import EVENTS, events_from_rows
from ptreplay.schemas.units import parse_size

SEED_BASE = 0x7F0000000000  # 512 GiB aligned, like a large anonymous mmap result
_I32, _I64, _U64 = np.int32, np.int64, np.uint64


def capture_meta(trace_id: str, thp_mode: str = "madvise", n_events: int = 0, step_ns: int = 1000) -> dict:
    """Capture metadata of a synthetic stream (synthetic=True, source_format='synthetic')."""
    return {"trace_id": trace_id, "host": "synthetic", "kernel_release": "", "arch": "x86_64",
            "page_size_bytes": 4096, "paging_levels": 4, "thp_mode": thp_mode, "pt_reclaim": "unknown",
            "clock": "synthetic", "perf_version": "", "command_line": "ptreplay.replay.synth", "source_format": "synthetic",
            "lost_events": 0, "lost_samples": 0, "synthetic": True, "start_ns": 0, "end_ns": n_events * step_ns}


def events_table(rows: list[dict], start_ns: int = 1_000_000, step_ns: int = 1000) -> pa.Table:
    """Build an EVENTS table from short dicts; missing fields get neutral values.

    Each dict needs `kind`; `t_ns` defaults to start_ns + i * step_ns, `pid` to 100, and faults
    come from user mode unless a row says otherwise.
    """
    return events_from_rows([{"pid": 100, "user_mode": True, "t_ns": start_ns + i * step_ns, **r}
                             for i, r in enumerate(rows)])


def seed_loop(gib: int = 50, iters: int = 25600, split: int = 1, pid: int = 100, step_ns: int = 1000,
              base: int = SEED_BASE) -> pa.Table:
    """SYNTHETIC version of workloads/seed_loop.c: mmap GIB GiB anonymous,
    then ITERS times write-fault 512 pages of a 2 MiB chunk and MADV_DONTNEED
    it in SPLIT pieces; then exit.  Built with numpy (13 M rows at full size)."""
    chunk = 2 << 20
    size = gib << 30
    per = 512 + split
    n = 2 + iters * per
    kind = np.empty(n, dtype=object)
    addr = np.zeros(n, _U64)
    length = np.zeros(n, _U64)
    ecode = np.full(n, -1, _I32)
    advice = np.full(n, -1, _I32)
    prot = np.full(n, -1, _I32)
    flags = np.full(n, -1, _I64)
    ret = np.zeros(n, _I64)
    kind[0] = "mmap"
    addr[0] = base
    length[0] = size
    prot[0] = 3
    flags[0] = 0x02 | 0x20 | 0x4000
    ret[0] = base
    body = np.arange(iters * per).reshape(iters, per)
    starts = base + (np.arange(iters, dtype=np.int64) * chunk) % size
    fault_rows = (1 + body[:, :512]).ravel()
    kind[fault_rows] = "fault"
    addr[fault_rows] = (starts[:, None] + np.arange(512) * 4096).ravel().astype(_U64)
    ecode[fault_rows] = 0x6  # user write, not present
    for s in range(split):
        rows = 1 + body[:, 512 + s]
        kind[rows] = "madvise"
        addr[rows] = (starts + s * (chunk // split)).astype(_U64)
        length[rows] = chunk // split
        advice[rows] = 4
    kind[n - 1] = "exit"
    comm = np.full(n, None, dtype=object)
    comm[n - 1] = "seed_loop"
    t = 1_000_000 + np.arange(n, dtype=_I64) * step_ns
    return pa.table({
        "t_ns": t, "pid": np.full(n, pid, _I32), "tid": np.full(n, pid, _I32), "cpu": np.zeros(n, _I32),
        "kind": pa.array(kind, pa.string()), "addr": addr, "len": length, "prot": prot, "flags": flags,
        "fd": np.full(n, -1, _I32), "pgoff": np.zeros(n, _U64), "advice": advice, "error_code": ecode,
        "ip": np.zeros(n, _U64), "user_mode": np.ones(n, bool), "new_addr": np.zeros(n, _U64),
        "new_len": np.zeros(n, _U64), "ret": ret, "dur_ns": np.zeros(n, _I64), "req_addr": np.zeros(n, _U64), "child_pid": np.full(n, -1, _I32),
        "failed": np.zeros(n, bool), "unfinished": np.zeros(n, bool), "comm": pa.array(comm, pa.string()),
    }, schema=EVENTS.schema)


_ADVICES = (4, 4, 4, 8, 9, 10, 14, 15, 18, 22, 23, 24)


def random_stream(seed: int, n: int = 60, pids=(100, 101)) -> pa.Table:
    """SYNTHETIC random stream of every event kind over a small address window
    (16 MiB around a 1 GiB boundary, so tables, PMDs and THP all get exercised).
    Times step by random 0..3 ms so ticks, scans and holds fire; some rows failed."""
    rng = np.random.default_rng(seed)
    base = (1 << 39) - (8 << 20)
    span = 16 << 20
    rows = []
    t = 1_000_000
    live = [pids[0]]
    for _ in range(n):
        t += int(rng.integers(0, 4)) * 1_000_000 + int(rng.integers(0, 2))
        pid = int(rng.choice(live))
        a = base + int(rng.integers(0, span // 4096)) * 4096
        ln = int(rng.choice([4096, 65536, 1 << 20, 2 << 20, 4 << 20]))
        if rng.random() < 0.5:
            a &= ~((2 << 20) - 1)
        r = int(rng.integers(0, 100))
        row: dict = dict(t_ns=t, pid=pid)
        if r < 45:
            row.update(kind="fault", addr=a + int(rng.integers(0, 4096)), error_code=int(rng.choice([4, 6, 7, 5])))
        elif r < 58:
            flags = int(rng.choice([0x22, 0x21, 0x02, 0x01])) | 0x10
            if rng.random() < 0.15:
                flags |= 0x8000
            fd = -1 if flags & 0x20 else 3
            row.update(kind="mmap", addr=a, len=ln, prot=int(rng.choice([1, 3])), flags=flags, fd=fd, ret=a)
        elif r < 66:
            row.update(kind="munmap", addr=a, len=ln)
        elif r < 80:
            row.update(kind="madvise", addr=a, len=ln, advice=int(rng.choice(_ADVICES)))
        elif r < 85:
            na = base + int(rng.integers(0, span // 4096)) * 4096
            if rng.random() < 0.5:
                na &= ~((2 << 20) - 1)
            nl = int(rng.choice([4096, 1 << 20, 2 << 20]))
            row.update(kind="mremap", addr=a, len=ln, new_len=nl, flags=int(rng.choice([3, 7, 1])), new_addr=na,
                       ret=na)
        elif r < 88:
            row.update(kind="brk", addr=int(rng.choice([0, base + (20 << 20), base + (18 << 20)])),
                       ret=base + (19 << 20))
        elif r < 92:
            row.update(kind="mprotect", addr=a, len=ln, prot=int(rng.choice([1, 3])))
        elif r < 94 and len(live) < len(pids):
            child = pids[len(live)]
            live.append(child)
            row.update(kind="fork", child_pid=child, comm="child")
        elif r < 96:
            row.update(kind="clone", child_pid=pid + 1000)
        elif r < 98:
            row.update(kind="exec", comm="exe")
        else:
            row.update(kind="exit")
        if row["kind"] != "exit" and rng.random() < 0.05:
            row["failed"] = True
        rows.append(row)
    table = events_table(rows)
    return table


# ============================================================================= streamed generators
#
# Everything below makes SYNTHETIC streams of any size batch by batch (numpy, no per-event Python):
# each generator takes a `_Clock` (one timestamp per row, `step_ns` apart, increasing) and yields
# EVENTS tables of about `block_events` rows.  `write_stream` writes them with StreamWriter
# (atomic, batch by batch), so a stream never sits in memory as a whole.

PAGE = 4096
REGION = 2 << 20  # bytes mapped by one PTE table
TOP = 0x7F0000000000  # streams are laid out below this (1 GiB aligned, like mmap_base)
MAX_VIRT = 120 << 40  # 4-level user space is 128 TiB
MADV_DONTNEED = 4
MAP_ANON_NORESERVE = 0x02 | 0x20 | 0x4000  # MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE
_KIND_NAMES = ("fault", "mmap", "munmap", "mremap", "brk", "mprotect", "madvise", "fork", "clone", "exec", "exit")
_K_FAULT, _K_MMAP, _K_MADVISE, _K_FORK, _K_CLONE, _K_EXEC, _K_EXIT = 0, 1, 6, 7, 8, 9, 10


@lru_cache(maxsize=1)
def _kind_dict() -> pa.Array:
    return pa.array(_KIND_NAMES, pa.string())


class _Clock:
    """Timestamps of consecutive rows: t0, t0 + step, ... (never reused)."""

    def __init__(self, t0: int = 1_000_000, step_ns: int = 1000):
        self.t0, self.step, self.rows = int(t0), int(step_ns), 0

    def take(self, n: int) -> np.ndarray:
        t = self.t0 + (self.rows + np.arange(n, dtype=_I64)) * self.step
        self.rows += n
        return t

    @property
    def last(self) -> int:
        return self.t0 + max(self.rows - 1, 0) * self.step


def _table(clock: _Clock, kind, addr, length=None, advice=None, ecode=None, tid=None, pid: int = 100,
           prot=None, flags=None, ret=None, child=None, comm: dict | None = None, cpu: int = -1) -> pa.Table:
    """An EVENTS table from numpy columns (kind as int8 codes into _KIND_DICT); neutral defaults."""
    n = len(kind)

    def full(v, dtype, default):
        return np.full(n, default, dtype) if v is None else np.asarray(v, dtype)

    comm_col = pa.nulls(n, pa.string())
    if comm:
        vals = np.full(n, None, dtype=object)
        for row, name in comm.items():
            vals[row] = name
        comm_col = pa.array(vals, pa.string())
    return pa.table({
        "t_ns": clock.take(n), "pid": np.full(n, pid, _I32), "tid": full(tid, _I32, pid), "cpu": np.full(n, cpu, _I32),
        "kind": pa.DictionaryArray.from_arrays(pa.array(np.asarray(kind, np.int8)), _kind_dict()).cast(pa.string()),
        "addr": full(addr, _U64, 0), "len": full(length, _U64, 0), "prot": full(prot, _I32, -1),
        "flags": full(flags, _I64, -1), "fd": np.full(n, -1, _I32), "pgoff": np.zeros(n, _U64),
        "advice": full(advice, _I32, -1), "error_code": full(ecode, _I32, -1), "ip": np.zeros(n, _U64),
        "user_mode": np.ones(n, bool), "new_addr": np.zeros(n, _U64), "new_len": np.zeros(n, _U64),
        "ret": full(ret, _I64, 0), "dur_ns": np.zeros(n, _I64), "req_addr": np.zeros(n, _U64),
        "child_pid": full(child, _I32, -1), "failed": np.zeros(n, bool), "unfinished": np.zeros(n, bool),
        "comm": comm_col,
    }, schema=EVENTS.schema)


def _mmaps(clock: _Clock, starts, lengths, pid: int, cpu: int = -1) -> pa.Table:
    """Anonymous private MAP_NORESERVE mmaps (PROT_READ|PROT_WRITE) at the given addresses."""
    starts = np.asarray(starts, _U64)
    n = len(starts)
    return _table(clock, np.full(n, _K_MMAP, np.int8), starts, lengths, prot=np.full(n, 3),
                  flags=np.full(n, MAP_ANON_NORESERVE), ret=starts.astype(_I64), pid=pid, cpu=cpu)


def _exit(clock: _Clock, pid: int, comm: str) -> pa.Table:
    return _table(clock, np.array([_K_EXIT], np.int8), None, pid=pid, comm={0: comm})


def _items(clock: _Clock, nf, fault_addr, m_addr, m_len, m_n, pid: int, fault_tid=None, m_tid=None,
           cpu: int = -1) -> pa.Table:
    """Rows of N items in order; item i = its nf[i] write faults (the next nf[i] entries of the
    flat `fault_addr`, `fault_tid`), then its m_n[i] MADV_DONTNEED rows (m_addr[i, k], m_len[i, k])."""
    nf = np.asarray(nf, _I64)
    m_n = np.asarray(m_n, _I64)
    c = nf + m_n
    n = int(c.sum())
    start = np.cumsum(c) - c
    kind = np.full(n, _K_MADVISE, np.int8)
    addr = np.zeros(n, _U64)
    length = np.zeros(n, _U64)
    advice = np.full(n, MADV_DONTNEED, _I32)
    ecode = np.full(n, -1, _I32)
    tid = np.full(n, pid, _I32)
    nfault = int(nf.sum())
    frow = np.repeat(start - (np.cumsum(nf) - nf), nf) + np.arange(nfault, dtype=_I64)
    kind[frow] = _K_FAULT
    addr[frow] = fault_addr
    advice[frow] = -1
    ecode[frow] = 0x6  # user write, not present
    if fault_tid is not None:
        tid[frow] = fault_tid
    for k in range(m_addr.shape[1] if m_addr.ndim == 2 else 0):
        sel = m_n > k
        rows = start[sel] + nf[sel] + k
        addr[rows] = m_addr[sel, k]
        length[rows] = m_len[sel, k]
        if m_tid is not None:
            tid[rows] = np.broadcast_to(m_tid, (len(sel),))[sel]
    return _table(clock, kind, addr, length, advice, ecode, tid=tid, pid=pid, cpu=cpu)


def _runs(starts, counts) -> np.ndarray:
    """Concatenated page-address runs: starts[i] + 4096 * arange(counts[i])."""
    counts = np.asarray(counts, _I64)
    total = int(counts.sum())
    first = np.cumsum(counts) - counts
    within = np.arange(total, dtype=_I64) - np.repeat(first, counts)
    return (np.repeat(np.asarray(starts, _U64), counts) + (within * PAGE).astype(_U64)).astype(_U64)


def _layout(sizes, gap: int = 0) -> np.ndarray:
    """1 GiB-aligned start addresses, ascending below TOP, for mappings of `sizes` bytes."""
    sizes = np.asarray(sizes, _I64)
    span = ((sizes + gap + (1 << 30) - 1) >> 30) << 30
    total = int(span.sum())
    if total > MAX_VIRT:
        from ptreplay.schemas.errors import UsageError
        raise UsageError(f"synthetic address space of {total >> 40} TiB does not fit in 4-level paging "
                         f"(at most {MAX_VIRT >> 40} TiB here)")
    return (TOP - total + np.cumsum(span) - span).astype(_U64)


# ----------------------------------------------------------------------------- kinds

def seed_loop_batches(clock: _Clock, gib: int = 50, iters: int = 25600, split: int = 1, pid: int = 100,
                      base: int = SEED_BASE, block_events: int = 1 << 20):
    """seed_loop() streamed: the same rows (given the same clock), in batches."""
    chunk, size = 2 << 20, gib << 30
    yield _mmaps(clock, [base], [size], pid, cpu=0)
    per_block = max(1, block_events // (512 + split))
    for i0 in range(0, iters, per_block):
        it = np.arange(i0, min(iters, i0 + per_block), dtype=_I64)
        starts = (base + (it * chunk) % size).astype(_U64)
        piece = chunk // split
        m_addr = starts[:, None] + (np.arange(split, dtype=_U64) * np.uint64(piece))[None, :]
        m_len = np.full((len(it), split), piece, _U64)
        yield _items(clock, np.full(len(it), 512), _runs(starts, np.full(len(it), 512)), m_addr, m_len,
                     np.full(len(it), split), pid, cpu=0)
    yield _table(clock, np.array([_K_EXIT], np.int8), None, pid=pid, comm={0: "seed_loop"}, cpu=0)


@dataclass
class ProductionPlan:
    """The arithmetic of `production` (all counts exact for the generated stream)."""

    regions: int            # 2 MiB regions of VIRT (each gets a PTE table under `none`)
    virt_bytes: int         # regions x 2 MiB
    resident_pages: int     # pages faulted and never released: RES at the end
    resident_regions: int   # ceil(resident_pages / 512): the ideal's PTE tables
    chunks: int             # mmaps
    sweeps: float           # churn
    touch: int              # pages faulted per non-resident region per sweep
    aligned: float          # share of purges that are one aligned 2 MiB DONTNEED
    churn_visits: int       # non-resident region visits (touch + purge)
    faults: int
    events_approx: int      # faults + ~madvises + mmaps + exit (madvise count is random)


def production_plan(virt=55 << 40, res=590 << 30, churn: float = 1.0, scale: float = 1.0, touch: int = 464,
                    aligned: float = 0.5, chunk=64 << 30) -> ProductionPlan:
    from ptreplay.schemas.errors import UsageError
    virt, res, chunk = parse_size(virt), parse_size(res), parse_size(chunk)
    if not 1 <= touch <= 512:
        raise UsageError(f"production: --touch must be 1..512 pages, got {touch}")
    if not 0.0 <= aligned <= 1.0:
        raise UsageError(f"production: --aligned must be in [0, 1], got {aligned}")
    if scale <= 0 or churn < 0:
        raise UsageError("production: --scale must be positive and --churn not negative")
    if chunk < REGION or chunk % REGION:
        raise UsageError("production: --chunk must be a positive multiple of 2 MiB")
    regions = max(1, int(round(virt * scale / REGION)))
    pages = int(round(res * scale / PAGE))
    if pages > regions * 512:
        raise UsageError(f"production: RES ({res * scale:.0f} bytes) exceeds VIRT ({regions * REGION} bytes)")
    rr = -(-pages // 512)
    non = regions - rr
    visits = int(non * int(churn)) + int(round(non * (churn - int(churn))))
    faults = pages + visits * touch
    mads = int(round(visits * (aligned + (1 - aligned) * (2 if touch >= 2 else 1))))
    chunks = -(-regions * REGION // chunk)
    return ProductionPlan(regions, regions * REGION, pages, rr, chunks, churn, touch, aligned, visits, faults,
                          faults + mads + chunks + 1)


def production_batches(clock: _Clock, virt=55 << 40, res=590 << 30, churn: float = 1.0, scale: float = 1.0,
                       touch: int = 464, aligned: float = 0.5, chunk=64 << 30, res_run: int = 512,
                       pid: int = 100, seed: int = 0, block_events: int = 1 << 20):
    """The seed's production shape (VIRT 55 TiB, RES 590 GiB, VmPTE ~110 GiB under `none`).

    1. mmap VIRT (scale x virt, in 2 MiB regions) as `chunk`-sized anonymous mappings.
    2. Sweep the regions in address order, `churn` times (a fraction sweeps the first part):
       a resident region (first sweep only) gets its pages faulted and kept; every other region
       gets `touch` consecutive pages faulted (random start) and then purged with MADV_DONTNEED:
       with probability `aligned` one DONTNEED of the whole aligned 2 MiB (pt_reclaim frees the
       table), otherwise the touched run in two pieces split at a random page (no single zap
       covers 2 MiB: pt_reclaim keeps the table, refcount frees it).
    3. exit.
    Resident pages (scale x res) fill whole regions, in runs of `res_run` regions (1 GiB by
    default) spread evenly over VIRT, so the ideal is ~res/512 plus a few PMD tables.
    """
    plan = production_plan(virt, res, churn, scale, touch, aligned, chunk)
    chunk = parse_size(chunk)
    R, pages, rr = plan.regions, plan.resident_pages, plan.resident_regions
    base = int(_layout([plan.virt_bytes])[0])
    starts = base + np.arange(plan.chunks, dtype=_I64) * chunk
    yield _mmaps(clock, starts, np.minimum(chunk, plan.virt_bytes - (starts - base)), pid)
    # resident regions: runs of res_run regions, aligned to res_run, spread evenly
    res_pages = np.zeros(R, np.int16)
    if rr:
        blocks = -(-rr // res_run)
        if R >= blocks * res_run:
            run_starts = (np.arange(blocks, dtype=_I64) * R // blocks) // res_run * res_run
        else:
            run_starts = np.array([0], _I64)
            blocks, res_run = 1, rr
        idx = (run_starts[:, None] + np.arange(res_run, dtype=_I64)[None, :]).ravel()[:rr]
        res_pages[idx] = 512
        res_pages[idx[-1]] = pages - 512 * (rr - 1)
    per_block = max(1, block_events // (touch + 2))
    sweeps = int(np.ceil(churn))
    for sweep in range(sweeps):
        frac = churn - sweep
        limit = R if frac >= 1 else None
        if limit is None:  # partial last sweep: its share of the non-resident regions, in address order
            want = int(round((R - rr) * frac))
            limit = int(np.searchsorted(np.cumsum(res_pages == 0), want, side="left")) + 1 if want else 0
        for r0 in range(0, limit, per_block):
            r1 = min(limit, r0 + per_block)
            rng = np.random.default_rng([seed, sweep, r0])
            rp = res_pages[r0:r1].astype(_I64)
            keep = rp > 0
            n = r1 - r0
            ra = (base + np.arange(r0, r1, dtype=_I64) * REGION).astype(_U64)
            off = np.where(keep, 0, rng.integers(0, 512 - touch + 1, n))
            nf = np.where(keep, rp if sweep == 0 else 0, touch)
            al = rng.random(n) < aligned
            two = ~al & (touch >= 2)
            m_n = np.where(keep, 0, np.where(two, 2, 1))
            split = rng.integers(1, max(touch, 2), n)
            run0 = ra + (off * PAGE).astype(_U64)
            m_addr = np.stack([np.where(al, ra, run0), run0 + (split * PAGE).astype(_U64)], axis=1)
            m_len = np.stack([np.where(al, REGION, np.where(two, split, touch) * PAGE),
                              (touch - split) * PAGE], axis=1).astype(_U64)
            yield _items(clock, nf, _runs(run0, nf), m_addr, m_len, m_n, pid)
    yield _exit(clock, pid, "production")


def jemalloc_batches(clock: _Clock, arenas: int = 4, arena_gib: int = 1, extents: int = 4000, live: int = 32,
                     pid: int = 100, seed: int = 0, block_events: int = 1 << 20):
    """jemalloc-like extent purging.  `arenas` arenas of `arena_gib` GiB; extents of 2-4 MiB (random
    page counts, so never 2 MiB aligned) are carved one after another from a random arena (wrapping
    around); an allocated extent gets a random 1/4..all of its pages faulted from its start; `live`
    allocations later it is freed and its dirty run purged with MADV_DONTNEED at page granularity."""
    rng = np.random.default_rng([seed, 1])
    abytes = arena_gib << 30
    bases = _layout(np.full(arenas, abytes)).astype(_I64)
    yield _mmaps(clock, bases, np.full(arenas, abytes), pid)
    arena = rng.integers(0, arenas, extents)
    size = rng.integers(512, 1025, extents)  # pages
    dirty = np.maximum(1, (size * rng.uniform(0.25, 1.0, extents)).astype(_I64))
    cursor = np.zeros(extents, _I64)
    room = abytes // PAGE - 1024
    for a in range(arenas):
        sel = arena == a
        cursor[sel] = (np.cumsum(size[sel]) - size[sel]) % room
    start = (bases[arena] + cursor * PAGE).astype(_U64)
    yield from _lagged(clock, start, dirty, start[:, None], (dirty * PAGE)[:, None], live, pid, block_events)
    yield _exit(clock, pid, "jemalloc")


def _lagged(clock, start, nfault, m_addr, m_len, live, pid, block_events):
    """Item j = faults of object j, then the purge of object j - live (objects still live at the end stay)."""
    n = len(start)
    avg = max(1, int(np.mean(nfault)) + 1) if n else 1
    per = max(1, block_events // avg)
    for j0 in range(0, n, per):
        j = np.arange(j0, min(n, j0 + per))
        old = j - live
        has = old >= 0
        oi = np.where(has, old, 0)
        yield _items(clock, nfault[j], _runs(start[j], nfault[j]), m_addr[oi], m_len[oi], has.astype(_I64), pid)


def tcmalloc_batches(clock: _Clock, spans: int = 50000, live: int = 1000, heap_gib: int = 4, pid: int = 100,
                     seed: int = 0, block_events: int = 1 << 20):
    """tcmalloc-like span release.  The page heap grows by 1 GiB mmaps (`heap_gib` of them); spans of
    8 KiB - 1 MiB (2-256 pages, log-uniform) are carved one after another (wrapping around), faulted
    fully when allocated and released with one MADV_DONTNEED of the whole span `live` spans later
    (a span is never a whole aligned 2 MiB, so pt_reclaim never frees a table here)."""
    rng = np.random.default_rng([seed, 2])
    bases = _layout(np.full(heap_gib, 1 << 30)).astype(_I64)
    yield _mmaps(clock, bases, np.full(heap_gib, 1 << 30), pid)
    size = np.exp(rng.uniform(np.log(2), np.log(257), spans)).astype(_I64).clip(2, 256)
    heap_pages = heap_gib * 262144 - 256
    pos = (np.cumsum(size) - size) % heap_pages
    start = (bases[0] + pos * PAGE).astype(_U64)  # the GiB mappings are contiguous (one span may straddle two)
    yield from _lagged(clock, start, size, start[:, None], (size * PAGE)[:, None], live, pid, block_events)
    yield _exit(clock, pid, "tcmalloc")


def swapout_batches(clock: _Clock, threads: int = 4, regions: int = 64, steps: int = 2000,
                    faults_per_step: int = 256, refault: float = 0.5, pid: int = 100, seed: int = 0,
                    block_events: int = 1 << 20):
    """The reviewers' pattern: `threads` worker threads fault single pages at random across
    `regions` 2 MiB regions while one zapper thread DONTNEEDs whole aligned regions (like reclaim
    or swap-out), round robin; right after each zap a `refault` share of the next step's faults
    land in the region just zapped, so its table is needed again at once."""
    rng = np.random.default_rng([seed, 3])
    base = int(_layout([regions * REGION])[0])
    tids = pid + 1 + np.arange(threads + 1)
    yield _mmaps(clock, [base], [regions * REGION], pid)
    yield _table(clock, np.full(threads + 1, _K_CLONE, np.int8), None, pid=pid, child=tids)
    per = max(1, block_events // (faults_per_step + 1))
    for s0 in range(0, steps, per):
        s = np.arange(s0, min(steps, s0 + per))
        n = len(s)
        zapped_before = (s - 1) % regions  # the region zapped at the end of the previous step
        F = faults_per_step
        hot = rng.random((n, F)) < np.where(s > 0, refault, 0.0)[:, None]
        reg = np.where(hot, zapped_before[:, None], rng.integers(0, regions, (n, F)))
        fa = (base + reg * REGION + rng.integers(0, 512, (n, F)) * PAGE).astype(_U64).ravel()
        ft = rng.choice(tids[:-1], n * F)
        m_addr = (base + (s % regions) * REGION).astype(_U64)[:, None]
        yield _items(clock, np.full(n, F), fa, m_addr, np.full((n, 1), REGION, _U64), np.ones(n, _I64), pid,
                     fault_tid=ft, m_tid=np.int32(tids[-1]))
    yield _exit(clock, pid, "swapout")


def balloon_batches(clock: _Clock, gib: float = 1.0, rounds: int = 4, pid: int = 100, seed: int = 0,
                    block_events: int = 1 << 20):
    """Balloon inflation: a `gib` GiB region is faulted fully, then `rounds` times inflated (the
    guest gives it back: MADV_DONTNEED in aligned 2 MiB steps, front to back) and deflated (every
    page faulted again)."""
    nreg = max(1, int(round(parse_size(f"{gib}G") / REGION)))
    base = int(_layout([nreg * REGION])[0])
    ra = (base + np.arange(nreg, dtype=_I64) * REGION).astype(_U64)
    yield _mmaps(clock, [base], [nreg * REGION], pid)
    per = max(1, block_events // 512)

    def fill():
        for r0 in range(0, nreg, per):
            r = ra[r0:r0 + per]
            yield _items(clock, np.full(len(r), 512), _runs(r, np.full(len(r), 512)), np.zeros((len(r), 0), _U64),
                         np.zeros((len(r), 0), _U64), np.zeros(len(r), _I64), pid)

    yield from fill()
    for _ in range(rounds):
        for r0 in range(0, nreg, block_events):
            r = ra[r0:r0 + block_events]
            yield _items(clock, np.zeros(len(r)), np.zeros(0, _U64), r[:, None], np.full((len(r), 1), REGION, _U64),
                         np.ones(len(r), _I64), pid)
        yield from fill()
    yield _exit(clock, pid, "balloon")


# ----------------------------------------------------------------------------- kinds table + writer

# kind -> (generator, help, [(option, type, default, help)]); options and help live in the
# import-light replay.synth_kinds (the CLI builds its parser from it without numpy/pyarrow)

def many_procs_batches(clock: _Clock, procs: int = 3000, iters: int = 4, outside: int = 16, live: int = 0,
                       burst: int = 256, one_pid: int = 0, pid: int = 100, seed: int = 0,
                       block_events: int = 1 << 20):
    """Many processes.  A launcher (`pid`, no memory of its own) forks `procs` children (pids
    pid + 1, ...); each maps 8 MiB anonymous, `iters` times write-faults the 512 pages of one of
    its four 2 MiB chunks and DONTNEEDs the chunk, write-faults `outside` pages outside every
    mapping (like exec'd code or a pre-trace stack: implicit VMAs; every other page of a window,
    in random order, so most stay separate VMAs), then exits.  `live` children run at once (0: all),
    a group after another; a group's children take turns in bursts of `burst` events (a time
    slice), so a child's rows stay in runs like a scheduled process's.  A child's rows do not
    depend on the others: replayed alone (its rows and its fork row) it gives the same summary.
    `one_pid` 1: the same programs run one after another by one process (pid + 1, forked once),
    an exec between two (the baseline of the same events in one process)."""
    rng = np.random.default_rng([seed, 6])
    per_group = 1 if one_pid else procs if live <= 0 else min(live, procs)
    base, window = TOP - (1 << 30), 0x7FFD00000000  # the children's mapping; the unmapped "stack" window
    n_map = 1 if iters > 0 else 0
    length = n_map + iters * 513 + outside + 1
    kind = np.full(length, _K_FAULT, np.int8)
    kind[:n_map] = _K_MMAP
    m_rows = n_map + 513 * np.arange(iters) + 512
    kind[m_rows] = _K_MADVISE
    kind[-1] = _K_EXIT
    for g0 in range(1, procs + 1, per_group):
        pids = np.arange(pid + g0, pid + min(g0 + per_group, procs + 1), dtype=_I64)
        g = len(pids)
        if one_pid and g0 > 1:
            pids[:] = pid + 1
        else:
            yield _table(clock, np.full(g, _K_FORK, np.int8), None, pid=pid, child=pids.astype(_I32))
        addr = np.zeros((g, length), _U64)
        addr[:, :n_map] = base
        chunk = (np.arange(iters)[None, :] + rng.integers(0, 4, g)[:, None]) % 4
        starts = (base + chunk * REGION).astype(_U64)
        frows = (n_map + 513 * np.arange(iters)[:, None] + np.arange(512)[None, :]).ravel()
        addr[:, frows] = np.repeat(starts, 512, axis=1) + np.tile(np.arange(512, dtype=_U64) * np.uint64(PAGE), iters)
        addr[:, m_rows] = starts
        if outside:
            pages = np.argsort(rng.random((g, 4 * outside)), axis=1)[:, :outside]
            addr[:, length - 1 - outside: length - 1] = (window + 2 * PAGE * pages).astype(_U64)
        nb = -(-length // burst)
        pad = nb * burst - length
        order = np.arange(g * length, dtype=_I64).reshape(g, length)
        order = np.pad(order, ((0, 0), (0, pad)), constant_values=-1).reshape(g, nb, burst).transpose(1, 0, 2).ravel()
        order = order[order >= 0]
        rows_p = pids[order // length]
        rows_k = kind[order % length]
        if one_pid and g0 < procs:
            rows_k = np.where(rows_k == _K_EXIT, _K_EXEC, rows_k).astype(np.int8)
        rows_a = addr.ravel()[order]
        for j in range(0, len(order), block_events):
            sl = slice(j, j + block_events)
            k, a, p = rows_k[sl], rows_a[sl], rows_p[sl]
            mm, md = k == _K_MMAP, k == _K_MADVISE
            ex = np.flatnonzero(k == _K_EXIT)
            yield _table(clock, k, a, np.where(mm, 8 << 20, np.where(md, REGION, 0)).astype(_U64),
                         advice=np.where(md, MADV_DONTNEED, -1), ecode=np.where(k == _K_FAULT, 0x6, -1),
                         pid=p, prot=np.where(mm, 3, -1), flags=np.where(mm, MAP_ANON_NORESERVE, -1),
                         ret=np.where(mm, a.astype(_I64), 0), comm={int(r): "worker" for r in ex})

_GENERATORS = {"seed-loop": seed_loop_batches, "production": production_batches, "jemalloc": jemalloc_batches,
               "tcmalloc": tcmalloc_batches, "swapout": swapout_batches, "balloon": balloon_batches,
               "many-procs": many_procs_batches}
KINDS = {k: (_GENERATORS[k], h, spec) for k, (h, spec) in KIND_OPTIONS.items()}
_NO_SEED = {"seed-loop"}


def stream(kind: str, clock: _Clock | None = None, seed: int = 0, pid: int = 100, **params):
    """Batches of a KIND's stream (tables), with `params` as in KINDS."""
    gen, _, spec = KINDS[kind]
    kw = {name: params.get(name, default) for name, _, default, _ in spec}
    if kind not in _NO_SEED:
        kw["seed"] = seed
    return gen(clock or _Clock(), pid=pid, **kw)


def table(kind: str, step_ns: int = 1000, **params) -> pa.Table:
    """The whole stream as one table (small sizes only), capture metadata attached."""
    clock = _Clock(step_ns=step_ns)
    t = pa.concat_tables(list(stream(kind, clock, **params)))
    meta = capture_meta(f"synth-{kind}", n_events=t.num_rows, step_ns=step_ns)
    meta.update(command_line=f"ptreplay.replay.synth.table({kind!r}, ...)", start_ns=clock.t0, end_ns=clock.last)
    import json
    from ptreplay.schemas import CAPTURE_KEY
    return t.replace_schema_metadata({**(t.schema.metadata or {}), CAPTURE_KEY: json.dumps(meta).encode()})


def write_stream(kind: str, path, force: bool = False, step_ns: int = 1000, seed: int = 0,
                 command_line: str = "", **params) -> tuple[int, dict]:
    """Write KIND's stream to an EVENTS Parquet at `path` (atomic, batch by batch); (rows, capture)."""
    from pathlib import Path
    from ptreplay.schemas.parquet_io import StreamWriter
    path = Path(path)
    clock = _Clock(step_ns=step_ns)
    with StreamWriter(path, EVENTS, capture=None, force=force) as w:
        for batch in stream(kind, clock, seed=seed, **params):
            w.write(batch)
        meta = capture_meta(path.name.split(".")[0], n_events=clock.rows, step_ns=step_ns)
        meta.update(command_line=command_line or f"ptreplay.replay.synth.write_stream({kind!r})", start_ns=clock.t0,
                    end_ns=clock.last)
        w.set_capture(meta)
    return clock.rows, meta
