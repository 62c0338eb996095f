"""`ptreplay plot`: one replay output's figures to a .png (png.py) or a self-contained .html (html.py)."""
from __future__ import annotations

from pathlib import Path

from ptreplay.schemas.errors import PipelineError, UsageError
from ptreplay.schemas.parquet_io import check_writable
from ptreplay.pipeline.presentation.plotdata import load
from ptreplay.pipeline.progress import warn


def plot(path: Path, output: Path, pid: int | None = None, force: bool = False,
         policies: list[str] | None = None, trace: str | None = None, heatmap_only: bool = False) -> Path:
    """Write `output` (.png or .html): VIRT/RES/VmPTE per policy with truth, cost vs
    savings, and the occupancy heatmap of `policies` (see :func:`load` for defaults)."""
    output = Path(output)
    kind = output.suffix.lower()
    if kind not in (".png", ".html"):
        raise UsageError(f"plot: {output}: expected a .png or .html file name")
    check_writable(output, force)   # before reading anything: a user's file is never replaced
    data = load(path, pid=pid, policies=policies, trace=trace)
    if data.note:
        warn(data.note)
    if heatmap_only and not data.heatmaps:
        raise PipelineError(f"plot: --heatmap-only, but {data.note}")
    if kind == ".html":
        from ptreplay.pipeline.presentation.html import write_html
        return write_html(data, output, force=force, heatmap_only=heatmap_only)
    from ptreplay.pipeline.presentation.png import write_png
    return write_png(data, output, force=force, heatmap_only=heatmap_only)
