"""The `top_sites` view (schemas/sql/40_attribution.sql) as a table, and the check that the
policies asked for were replayed."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from ptreplay.schemas.errors import UsageError
from ptreplay.schemas.units import human_bytes
from ptreplay.pipeline.warehouse import connect, execute


def check_policies(path: Path, policies: list[str] | None) -> None:
    """Refuse policies that the replay output at `path` does not hold (UsageError, one line)."""
    have = set(execute(connect(Path(path)), "SELECT DISTINCT policy FROM summary").column("policy").to_pylist())
    unknown = [p for p in policies or [] if p not in have]
    if unknown:
        raise UsageError(f"--policy {','.join(unknown)}: not replayed in {path} "
                         f"(it has {', '.join(sorted(have)) or 'no summary rows'})")


def top_sites(path: Path, policies: list[str] | None = None, top: int = 10, human: bool = True) -> pa.Table:
    """The `top_sites` view (schemas/sql/40_attribution.sql): the first `top` sites per policy."""
    if int(top) < 1:
        raise UsageError(f"--top {top}: must be at least 1")
    check_policies(path, policies)
    t = execute(connect(Path(path)), """
        SELECT policy, rank, site, site_dso, top_caller, kinds, events, pte_tables_allocated, pte_tables_emptied,
               empty_pte_bytes, empty_byte_seconds
        FROM top_sites
        WHERE rank <= $top AND (len($policies) = 0 OR list_contains($policies, policy))
        ORDER BY trace_id, policy, rank, site""", {"top": int(top), "policies": list(policies or [])})
    if not human:
        return t
    cols = {c: t.column(c).to_pylist() for c in t.column_names}
    cols["empty_pte_bytes"] = [human_bytes(v) for v in cols["empty_pte_bytes"]]
    cols["empty_byte_seconds"] = [f"{human_bytes(v)}s" for v in cols["empty_byte_seconds"]]
    return pa.table(cols)
