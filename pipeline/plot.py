"""Plots of a replay output: VIRT/RES/VmPTE over time per policy (kernel truth overlaid)
and the policies' cost against their savings.  PNG via matplotlib (Agg, headless).
"""
from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc

from pipeline.errors import PipelineError, UsageError
from pipeline.parquet_io import atomic_path

MIB = 1 << 20


def plot(path: Path, output: Path, pid: int | None = None, force: bool = False) -> Path:
    """Write a PNG with three time panels (VIRT, RES, VmPTE) and a cost-vs-savings panel."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipeline.warehouse import connect, execute

    output = Path(output)
    if output.suffix.lower() != ".png":
        raise UsageError(f"plot: {output}: only .png output is supported")
    con = connect(Path(path))
    ts = execute(con, "SELECT * FROM timeseries ORDER BY pid, policy, t_ns")
    if ts.num_rows == 0:
        raise PipelineError(f"{path}: no timeseries.parquet to plot (run `ptreplay replay` first)")
    pid = pid if pid is not None else _busiest_pid(con)
    ts = ts.filter(pc.equal(ts.column("pid"), pid))
    truth = execute(con, "SELECT * FROM truth WHERE pid = $pid ORDER BY t_ns", {"pid": pid})
    summary = execute(con, "SELECT * FROM summary WHERE pid = $pid", {"pid": pid})
    t0 = min(ts.column("t_ns").to_numpy())

    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    panels = [("virt_bytes", "vmsize_bytes", "VIRT"), ("rss_bytes", "vmrss_bytes", "RES"),
              ("vmpte_bytes", "vmpte_bytes", "VmPTE")]
    for ax, (col, truth_col, title) in zip(axes.flat, panels):
        policies = sorted(set(ts.column("policy").to_pylist()))
        for k, policy in enumerate(policies):  # wide to narrow, dashed alternately: overlaps stay visible
            part = ts.filter(pc.equal(ts.column("policy"), policy))
            ax.step((part.column("t_ns").to_numpy() - t0) / 1e9, part.column(col).to_numpy() / MIB,
                    where="post", label=policy, linewidth=3.5 - 0.5 * k, alpha=0.85,
                    linestyle="-" if k % 2 == 0 else "--")
        if truth.num_rows:
            ax.plot((truth.column("t_ns").to_numpy() - t0) / 1e9, truth.column(truth_col).to_numpy() / MIB,
                    "k.", markersize=2, label="kernel (/proc truth)")
        ax.set_title(f"{title} of pid {pid}")
        ax.set_xlabel("seconds since first event")
        ax.set_ylabel("MiB")
        ax.legend(fontsize=7)
    _cost_panel(axes.flat[3], summary)
    fig.tight_layout()
    with atomic_path(output, force) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return output


def _cost_panel(ax, summary) -> None:
    """Savings (x) against the work each policy adds (y: tables re-allocated + scanned entries / 512)."""
    for r in summary.to_pylist():
        cost = r["refaults"] + r["scan_entries"] / 512
        ax.scatter(r["vmpte_saved_bytes"] / MIB, cost)
        ax.annotate(r["policy"], (r["vmpte_saved_bytes"] / MIB, cost), fontsize=8)
    ax.set_title("cost vs savings per policy")
    ax.set_xlabel("final VmPTE saved vs none (MiB)")
    ax.set_ylabel("refaulted tables + scanned tables")


def _busiest_pid(con) -> int:
    from pipeline.warehouse import execute
    rows = execute(con, "SELECT pid FROM summary WHERE policy = 'none' ORDER BY peak_vmpte_bytes DESC LIMIT 1").to_pylist()
    if not rows:
        raise PipelineError("plot: the summary has no process under policy none")
    return rows[0]["pid"]
