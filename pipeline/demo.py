"""`ptreplay demo`: the main job on a bundled real capture.

ingest (perf.data -> events.parquet) -> replay (all policies) -> report, then
the model's final VmPTE next to what the kernel itself reported (truth).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from ptreplay.schemas.errors import PipelineError

DATA = Path(__file__).resolve().parent.parent / "data"
DEFAULT_CAPTURE = "seed-2m"


def demo(capture: Path | None, out: Path, force: bool = True) -> None:
    from ptreplay.pipeline.events.ingest import ingest
    from ptreplay.pipeline.presentation.report import report
    from ptreplay.replay.engine import ReplayOptions, replay_to_dir

    capture = Path(capture) if capture else DATA / DEFAULT_CAPTURE
    if not capture.exists():
        raise PipelineError(f"{capture}: capture not found (run from a ptreplay checkout, or name a capture directory)")
    out.mkdir(parents=True, exist_ok=True)
    events = out / "events.parquet"
    print(f"[1/3] ingest  {capture} -> {events}")
    ingest([capture], events, force=True)
    print(f"[2/3] replay  {events} -> {out} (all policies)")
    replay_to_dir(events, out, ReplayOptions(), force=True)
    if (capture / "truth.parquet").exists():
        shutil.copyfile(capture / "truth.parquet", out / "truth.parquet")
    print(f"[3/3] report  {out}\n")
    print(report(out))
    print(truth_line(out))


def truth_line(out: Path) -> str:
    """The kernel's final VmPTE for the main process next to the model's, per policy."""
    import pyarrow.compute as pc
    from ptreplay.schemas.parquet_io import read_table
    from ptreplay.schemas import SUMMARY, TRUTH
    if not (out / "truth.parquet").exists():
        return "(no kernel truth for this capture)"
    truth = read_table(out / "truth.parquet", TRUTH)
    summary = read_table(out / "summary.parquet", SUMMARY)
    lines = []
    for pid in sorted(set(truth.column("pid").to_pylist())):
        t = truth.filter(pc.equal(truth.column("pid"), pid))
        kernel = t.column("vmpte_bytes")[-1].as_py()
        s = summary.filter(pc.equal(summary.column("pid"), pid)).to_pylist()
        model = ", ".join(f"{r['policy']} {r['final_vmpte_bytes'] // 1024} kB" for r in s)
        lines.append(f"pid {pid}: kernel (CONFIG_PT_RECLAIM=y) final VmPTE {kernel // 1024} kB; model: {model}")
    return "\n".join(lines)
