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
from ptreplay.replay import kernels as K

NAMES = ("none", "pt_reclaim", "refcount", "scan", "delayed", "all_levels")
_CODES = {"none": K.POL_NONE, "pt_reclaim": K.POL_PT_RECLAIM, "refcount": K.POL_REFCOUNT,
          "scan": K.POL_SCAN, "delayed": K.POL_DELAYED, "all_levels": K.POL_ALL_LEVELS}
_DEFAULT_ARG_NS = {"scan": 1_000_000_000, "delayed": 100_000_000}
_UNITS = (("ns", 1), ("us", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000), ("m", 60_000_000_000))


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


def format_ns(ns: int) -> str:
    """Shortest exact duration string: 1s, 100ms, 250us, 7ns."""
    for suffix, unit in reversed(_UNITS[:4]):
        if ns % unit == 0:
            return f"{ns // unit}{suffix}"
    return f"{ns}ns"


def parse_duration_ns(text: str, what: str) -> int:
    t = text.strip().lower()
    for suffix, unit in sorted(_UNITS, key=lambda u: -len(u[0])):
        if t.endswith(suffix):
            num = t[: -len(suffix)]
            break
    else:
        num, unit = t, 1_000_000_000
    try:
        value = float(num)
    except ValueError:
        raise UsageError(f"policy '{what}': '{text}' is not a duration (expected e.g. 100ms, 1s)") from None
    ns = int(round(value * unit))
    if ns <= 0:
        raise UsageError(f"policy '{what}': duration '{text}' must be positive")
    return ns


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
    return Policy(name, parse_duration_ns(arg, spec) if arg else _DEFAULT_ARG_NS[name])


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
