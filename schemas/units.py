"""Units: sizes and durations as people write them, and bytes as people read them.

One parser for every duration (``--interval``, ``record --duration``, policy arguments
such as ``scan:1s``) and one for every size (``synth production --virt 55T``), so the
command line, the policies and the library agree: a duration is rounded to the nearest
nanosecond and must be positive and finite; a bare number is seconds (durations) or
bytes (sizes); size units are binary (1K = 1024).
"""
from __future__ import annotations

import math
import re

from ptreplay.schemas.errors import UsageError

DURATION_UNITS = (("ns", 1), ("us", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000), ("m", 60_000_000_000))
SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
_NUMBER = r"([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)"
_DURATION = re.compile(rf"\s*{_NUMBER}\s*(ns|us|ms|s|m)?\s*", re.IGNORECASE)
_SIZE = re.compile(rf"\s*{_NUMBER}\s*([kmgtp]?)(?:i?b)?\s*", re.IGNORECASE)


def parse_duration_ns(text, what: str = "duration") -> int:
    """'10ms', '1s', '500us', '2m', '250ns', or a bare number of seconds -> ns (> 0).

    `what` names the option or policy in the error: "--interval: '0' must be positive"."""
    m = _DURATION.fullmatch(str(text))
    if not m:
        raise UsageError(f"{what}: '{text}' is not a duration (expected e.g. 10ms, 1s, 500us)")
    unit = dict(DURATION_UNITS)[(m.group(2) or "s").lower()]
    value = float(m.group(1)) * unit
    if not math.isfinite(value) or value > 2**62:
        raise UsageError(f"{what}: '{text}' is too long (at most {2**62 // 10**9} s)")
    ns = int(round(value))
    if ns <= 0:
        raise UsageError(f"{what}: '{text}' must be positive")
    return ns


def format_ns(ns: int) -> str:
    """Shortest exact duration string: 1s, 100ms, 250us, 7ns (parse_duration_ns reads it back)."""
    for suffix, unit in reversed(DURATION_UNITS[:4]):
        if ns % unit == 0:
            return f"{ns // unit}{suffix}"
    return f"{ns}ns"


def parse_size(text, what: str = "size") -> int:
    """'55T', '590g', '1.5GiB', '4096' -> bytes (binary units)."""
    if isinstance(text, int):
        return text
    m = _SIZE.fullmatch(str(text))
    if not m:
        raise UsageError(f"{what}: '{text}' is not a size (expected e.g. 55T, 590G, 2M, 4096)")
    value = float(m.group(1)) * SIZE_UNITS[m.group(2).upper()]
    if not math.isfinite(value) or value >= 2**63:
        raise UsageError(f"{what}: '{text}' is too large")
    return int(round(value))


def human_bytes(n: float) -> str:
    """1234567 -> '1.18M' (binary units, like top's VIRT/RES columns)."""
    n = float(n)
    for unit in ("", "k", "M", "G", "T", "P"):
        if abs(n) < 1024 or unit == "P":
            return f"{n:.0f}{unit}" if unit == "" else f"{n:.3g}{unit}"
        n /= 1024
    return f"{n}"
