"""PTE-table reclaim policies, parsed from short specs.

=================  ===========================================================
``none``           tables go only at munmap/exit (free_pgtables; kernels < 6.14)
``pt_reclaim``     upstream 6.14+ (mm/pt_reclaim.c): MADV_DONTNEED(_LOCKED) frees a
                   PTE table when one VMA-clipped zap covers its whole 2 MiB
``refcount``       the 2021 series: any zap that clears a table's last entry frees it
``scan[:INTERVAL]`` a scanner frees every empty PTE table each INTERVAL (default 1s)
``delayed[:HOLD]`` refcount, but an emptied table is freed only after HOLD
                   (default 100ms) without a refault; a sooner fault reuses it
``all_levels``     refcount plus freeing PMD and PUD tables left without children
=================  ===========================================================

``all`` expands to the six with their defaults.
"""
from __future__ import annotations

from dataclasses import dataclass

from ptreplay.schemas.errors import UsageError
from ptreplay.schemas.units import format_ns, parse_duration_ns
from ptreplay.replay import layout as L

NAMES = ("none", "pt_reclaim", "refcount", "scan", "delayed", "all_levels")
_CODES = {"none": L.POL_NONE, "pt_reclaim": L.POL_PT_RECLAIM, "refcount": L.POL_REFCOUNT,
          "scan": L.POL_SCAN, "delayed": L.POL_DELAYED, "all_levels": L.POL_ALL_LEVELS}
MAX_ARG_NS = 1 << 52  # ~52 days: timer sums stay far from int64's end
_DEFAULT_ARG_NS = {"scan": 1_000_000_000, "delayed": 100_000_000}


@dataclass(frozen=True)
class Policy:
    """One policy: its name, its parameter in ns (scan interval or hold), its spec."""

    name: str
    arg_ns: int = 0

    @property
    def code(self) -> int:
        return _CODES[self.name]

    @property
    def spec(self) -> str:
        """Canonical spec string as stored in the outputs' `policy` column."""
        if self.name not in _DEFAULT_ARG_NS:
            return self.name
        return f"{self.name}:{format_ns(self.arg_ns)}"


def parse_policy(spec: str) -> Policy:
    """'scan:500ms' -> Policy('scan', 500_000_000); bad specs raise UsageError."""
    name, _, arg = spec.strip().partition(":")
    name = name.strip().lower()
    if name not in _CODES:
        raise UsageError(f"unknown policy '{spec}' (expected one of: {', '.join(NAMES)}, all; "
                         "scan and delayed take :DURATION)")
    if name not in _DEFAULT_ARG_NS:
        if arg:
            raise UsageError(f"policy '{spec}': {name} takes no parameter")
        return Policy(name)
    arg_ns = parse_duration_ns(arg, f"policy '{spec}'") if arg else _DEFAULT_ARG_NS[name]
    if arg_ns > MAX_ARG_NS:
        raise UsageError(f"policy '{spec}': at most {MAX_ARG_NS // 86_400_000_000_000} days")
    return Policy(name, arg_ns)


def parse_policies(specs) -> list[Policy]:
    """A comma-separated string or a list of specs -> distinct policies in order ('all' = all six)."""
    if isinstance(specs, str):
        specs = specs.split(",")
    out: list[Policy] = []
    for s in specs:
        s = s.strip()
        if not s:
            continue
        items = [parse_policy(n) for n in NAMES] if s.lower() == "all" else [parse_policy(s)]
        for p in items:
            if p not in out:
                out.append(p)
    if not out:
        raise UsageError("no policy given (expected e.g. --policy none,pt_reclaim or all)")
    return out
