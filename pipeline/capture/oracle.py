"""The kernel as oracle: workloads/oracle.c's log as truth rows at operation boundaries.

Each `oracle PID T_NS OP KIND OK MEM VMSIZE RSSANON RSSFILE RSSSHMEM VMPTE` line (kB) is the
kernel's /proc/self/status read by the program itself after operation OP, stamped with
CLOCK_MONOTONIC after the read (perf's clock, as `ptreplay record`'s sampler does), at the
end of a quiet gap the program leaves after every operation.  `read_log` turns the lines into
a TRUTH table (one row a boundary) plus the operation of each row.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from ptreplay.schemas import TRUTH
from ptreplay.schemas.errors import PipelineError

FIELDS = 12   # "oracle" + 11 values
GAP_NS = 300_000   # workloads/oracle.c GAP_NS: no event in the GAP_NS before each row


@dataclass(frozen=True)
class OracleLog:
    """The boundaries of every program in a log: TRUTH rows and, row for row, the operation."""
    truth: pa.Table
    op_index: list[int]
    op_kind: list[str]
    ok: list[bool]
    mem: list[str]      # the kind of memory the operation acted on ("-": none)


def read_log(path: Path) -> OracleLog:
    """Parse an oracle log (lines of several processes, in any order) into time order."""
    rows = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        parts = line.split()
        if not parts or parts[0] != "oracle":
            continue
        if len(parts) != FIELDS:
            raise PipelineError(f"{path}:{n}: expected {FIELDS} fields, found {len(parts)}: {line!r}")
        pid, t_ns, op = int(parts[1]), int(parts[2]), int(parts[3])
        vmsize, anon, file, shmem, vmpte = (int(v) * 1024 for v in parts[7:])
        rows.append((t_ns, pid, vmsize, anon + file + shmem, anon, file, shmem, vmpte, op, parts[4],
                     parts[5] == "1", parts[6]))
    rows.sort(key=lambda r: (r[0], r[1]))
    cols = list(zip(*rows)) if rows else [()] * 12
    arrays = [pa.array(cols[0], pa.int64()), pa.array(cols[1], pa.int32())]
    arrays += [pa.array(c, pa.int64()) for c in cols[2:8]]
    truth = pa.Table.from_arrays(arrays, schema=TRUTH.schema)
    return OracleLog(truth, list(cols[8]), list(cols[9]), list(cols[10]), list(cols[11]))
