"""Units: sizes and durations as people write them, and bytes as people read them.

One parser for every duration (``--interval``, ``--duration``, policy arguments such as
``scan:1s``) and every size, so the command line, the policies and the library agree.
"""
from __future__ import annotations


def human_bytes(n: float) -> str:
    """1234567 -> '1.18M' (binary units, like top's VIRT/RES columns)."""
    n = float(n)
    for unit in ("", "k", "M", "G", "T", "P"):
        if abs(n) < 1024 or unit == "P":
            return f"{n:.0f}{unit}" if unit == "" else f"{n:.3g}{unit}"
        n /= 1024
    return f"{n}"
