"""`ptreplay demo`: the main job on a bundled real capture.

ingest (perf.data -> events.parquet, carrying the kernel's truth) -> replay
(all policies; truth.parquet beside the outputs) -> report, whose last line
sets the model's final VmPTE next to what the kernel itself reported.

The default output, out/demo, is the demo's own and is replaced on every run;
any other directory holding a previous output needs `force`, and even then
only files ptreplay wrote are replaced.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ptreplay.schemas.errors import PipelineError

DATA = Path(__file__).resolve().parent.parent / "data"
DEFAULT_CAPTURE = "seed-2m"
DEFAULT_OUT = Path("out/demo")


def demo(capture: Path | None, out: Path = DEFAULT_OUT, force: bool = False) -> None:
    from ptreplay.pipeline.events.ingest import ingest, record_truth
    from ptreplay.pipeline.presentation.report import report
    from ptreplay.replay.engine import ReplayOptions, replay_outputs, replay_to_dir
    from ptreplay.schemas.parquet_io import check_writable, output_dir

    capture = Path(capture) if capture else DATA / DEFAULT_CAPTURE
    if not capture.exists():
        raise PipelineError(f"{capture}: capture not found (run from a ptreplay checkout, or name a capture directory)")
    out = Path(out)
    force = force or out == DEFAULT_OUT
    events = out / "events.parquet"
    for path in (events, *replay_outputs(out)):   # refuse before writing anything
        check_writable(path, force)
    output_dir(out)
    print(f"[1/3] ingest  {capture} -> {events}")
    ingest([capture], events, force=force)
    print(f"[2/3] replay  {events} -> {out} (all policies)")
    replay_to_dir(events, out, ReplayOptions(), force=force)
    print(f"[3/3] report  {out}\n")
    sys.stdout.write(report(out))
    if record_truth(capture) is None:
        print("\n(no kernel truth for this capture)")
