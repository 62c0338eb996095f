"""SYNTHETIC event streams (EVENTS schema) for tests and benchmarks.

Nothing here comes from a real capture: every table is marked synthetic in
its capture metadata (`capture_meta`).  Times advance by `step_ns` per event.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from schemas import EVENTS

SEED_BASE = 0x7F0000000000  # 512 GiB aligned, like a large anonymous mmap result
_I32, _I64, _U64 = np.int32, np.int64, np.uint64


def capture_meta(trace_id: str, thp_mode: str = "madvise", n_events: int = 0, step_ns: int = 1000) -> dict:
    """Capture metadata of a synthetic stream (synthetic=True, source_format='synthetic')."""
    return {"trace_id": trace_id, "host": "synthetic", "kernel_release": "", "arch": "x86_64",
            "page_size_bytes": 4096, "paging_levels": 4, "thp_mode": thp_mode, "pt_reclaim": "unknown",
            "clock": "synthetic", "perf_version": "", "command_line": "replay.synth", "source_format": "synthetic",
            "lost_events": 0, "lost_samples": 0, "synthetic": True, "start_ns": 0, "end_ns": n_events * step_ns}


def events_table(rows: list[dict], start_ns: int = 1_000_000, step_ns: int = 1000) -> pa.Table:
    """Build an EVENTS table from short dicts; missing fields get neutral values.

    Each dict needs `kind`; `t_ns` defaults to start_ns + i * step_ns.
    """
    defaults = dict(pid=100, tid=-1, cpu=-1, addr=0, len=0, prot=-1, flags=-1, fd=-1, pgoff=0, advice=-1,
                    error_code=-1, ip=0, user_mode=True, new_addr=0, new_len=0, ret=0, dur_ns=0, req_addr=0, child_pid=-1,
                    failed=False, unfinished=False, comm=None)
    cols = {f.name: [] for f in EVENTS.schema}
    for i, r in enumerate(rows):
        full = {**defaults, "t_ns": start_ns + i * step_ns, **r}
        if full["tid"] == -1:
            full["tid"] = full["pid"]
        for name in cols:
            cols[name].append(full[name])
    return pa.Table.from_pydict(cols, schema=EVENTS.schema)


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
