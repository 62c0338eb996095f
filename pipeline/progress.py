"""Progress display: a rich progress bar on a terminal, silence when piped."""
from __future__ import annotations

import logging
import sys
from contextlib import contextmanager


def interactive() -> bool:
    return sys.stderr.isatty()


@contextmanager
def progress(description: str, total: float | None = None, unit: str = ""):
    """Yield `advance(n)`; draws a bar on stderr only when it is a terminal."""
    if not interactive():
        yield lambda n=1: None
        return
    from rich.progress import (BarColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)
    cols = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,.0f}" + (f" {unit}" if unit else "")),
            TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*cols, transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


class _OneLine(logging.Handler):
    """Log records of the `ptreplay` loggers (the replay engine's warnings) as warn() lines."""

    def emit(self, record):
        print(f"ptreplay: warning: {record.getMessage()}", file=sys.stderr)


def route_warnings() -> None:
    """Make the library's logged warnings look like the command line's own (once per process)."""
    log = logging.getLogger("ptreplay")
    if not any(isinstance(h, _OneLine) for h in log.handlers):
        log.addHandler(_OneLine(logging.WARNING))
        log.propagate = False


def warn(message: str) -> None:
    """One-line warning on stderr."""
    print(f"ptreplay: warning: {message}", file=sys.stderr)


def note(message: str) -> None:
    """One-line notice on stderr (something ptreplay did for the user)."""
    print(f"ptreplay: {message}", file=sys.stderr)
