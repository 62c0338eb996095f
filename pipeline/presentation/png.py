"""PNG figure of a PlotData (matplotlib, Agg): VIRT/RES/VmPTE over time per policy with the
kernel truth overlaid, the policies' cost against their savings, and the PTE-table occupancy heatmaps."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from ptreplay.schemas import PLOT_TAG, SCHEMA_KEY
from ptreplay.schemas.parquet_io import atomic_path, write_error
from ptreplay.pipeline.presentation.plotdata import (MIB, OCCUPANCY_LABEL, PANELS, TRUTH_LABEL, PlotData, cost_of,
                                                     heatmap_caption)


def write_png(data: PlotData, output: Path, force: bool = False, heatmap_only: bool = False) -> Path:
    """The figure to `output` (atomically), marked as ptreplay's by a tEXt chunk (`--force` checks it)."""
    import matplotlib.pyplot as plt
    fig = render_png(data, heatmap_only)
    try:
        with atomic_path(output, force) as tmp:
            try:
                fig.savefig(tmp, format="png", dpi=100, metadata={SCHEMA_KEY.decode(): PLOT_TAG})
            except OSError as e:
                raise write_error(output, e) from None
    finally:
        plt.close(fig)
    return output


def render_png(data: PlotData, heatmap_only: bool = False):
    """The matplotlib Figure: 2 x 2 line/cost panels above the heatmaps (one per policy)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hm_h = _heatmap_height(data) if data.heatmaps else 0.0
    lines_h = 0.0 if heatmap_only else 8.0
    fig = plt.figure(figsize=(12, lines_h + hm_h + (0.3 if data.note else 0)), layout="constrained")
    if data.heatmaps and not heatmap_only:
        top, bottom = fig.subfigures(2, 1, height_ratios=[lines_h, hm_h])
    else:
        top, bottom = (None, fig) if heatmap_only else (fig, None)
    if top is not None:
        _line_panels(top.subplots(2, 2), data)
    if bottom is not None:
        _heatmap_panels(bottom, data)
    if data.note:
        fig.suptitle(f"note: {data.note}", fontsize=9, color="#a00")
    return fig


def _heatmap_height(data: PlotData) -> float:
    rows = max(len(h.region_start) for h in data.heatmaps)
    return float(np.clip(0.17 * rows + 3.2, 4.5, 15.0))


def _line_panels(axes, data: PlotData) -> None:
    ts, truth = data.timeseries, data.truth
    for ax, (col, truth_col, title) in zip(axes.flat, PANELS):
        for k, policy in enumerate(data.policies):  # wide to narrow, dashed alternately: overlaps stay visible
            part = ts.filter(pc.equal(ts.column("policy"), policy))
            ax.step(data.seconds(part.column("t_ns")), part.column(col).to_numpy() / MIB,
                    where="post", label=policy, linewidth=3.5 - 0.5 * k, alpha=0.85,
                    linestyle="-" if k % 2 == 0 else "--")
        if truth.num_rows:
            ax.plot(data.seconds(truth.column("t_ns")), truth.column(truth_col).to_numpy() / MIB,
                    "k.", markersize=2, label=TRUTH_LABEL)
        ax.set_title(f"{title} of {data.who}")
        ax.set_xlabel("seconds since first event")
        ax.set_ylabel("MiB")
        ax.legend(fontsize=7)
    _cost_panel(axes.flat[3], data.summary, data.policies)


def _cost_panel(ax, summary, policies: list[str]) -> None:
    """Savings (x) against the work each policy adds (y); policies on the same point share a
    label, coloured as the first one's lines."""
    points: dict[tuple, list[str]] = {}
    for r in summary.to_pylist():
        points.setdefault((r["vmpte_saved_bytes"] / MIB, cost_of(r)), []).append(r["policy"])
    for k, ((x, y), names) in enumerate(sorted(points.items())):
        ax.scatter(x, y, color=f"C{policies.index(names[0]) % 10}" if names[0] in policies else None)
        ax.annotate(", ".join(names), (x, y), fontsize=8, xytext=(4, 4 + 11 * (k % 3)), textcoords="offset points")
    ax.set_title("cost vs savings per policy")
    ax.set_xlabel("final VmPTE saved vs none (MiB)")
    ax.set_ylabel("refaulted tables + scanned tables")
    ax.margins(x=0.15, y=0.15)


def occupancy_cmap():
    """Red at 0 (tables with nothing mapped), yellow half full, blue full; grey = no table."""
    import matplotlib
    return matplotlib.colormaps["RdYlBu"].with_extremes(bad="#d9d9d9")


def _heatmap_panels(sub, data: PlotData) -> None:
    n = len(data.heatmaps)
    axes = sub.subplots(2, n, height_ratios=[max(3.0, _heatmap_height(data) - 1.6), 1.2],
                        sharex="col", sharey="row", squeeze=False)
    mesh = None
    for j, hm in enumerate(data.heatmaps):
        ax, strip = axes[0, j], axes[1, j]
        x = _edges(data.seconds(hm.t_ns))
        rows = len(hm.region_start)
        mesh = ax.pcolormesh(x, np.arange(rows + 1), np.ma.masked_invalid(hm.occupancy),
                             cmap=occupancy_cmap(), vmin=0.0, vmax=1.0)
        mesh.set_gid(f"occupancy {hm.policy}")
        _hatch(ax, x, hm.mostly_empty)
        ax.set_yticks(np.arange(rows) + 0.5)
        ax.set_yticklabels(hm.labels, fontsize=float(np.clip(480 / max(rows, 1), 5, 8)), family="monospace")
        ax.set_title(f"under {hm.policy}", fontsize=10)
        if j == 0:
            ax.set_ylabel("1 GiB region (start address)")
        strip.step(x[:-1], hm.all_pte_tables, where="post", color="#4575b4", linewidth=3, alpha=0.6,
                   label="PTE tables")
        strip.step(x[:-1], hm.all_empty_pte_tables, where="post", color="#d73027", linewidth=1.2,
                   label="empty PTE tables")
        strip.set_xlabel("seconds since first event")
        strip.set_xlim(min(0.0, x[0]), x[-1])
        strip.set_ylabel("tables (all regions)", fontsize=8)
        strip.legend(fontsize=7, loc="best", framealpha=0.7)
    caption = heatmap_caption(data, sep="\n")
    sub.suptitle(f"{data.trace_id}: {caption}", fontsize=9)
    sub.colorbar(mesh, ax=axes[0, :], label=OCCUPANCY_LABEL, shrink=float(np.clip(5.0 / _heatmap_height(data), 0.35, 0.9)))


def _hatch(ax, x_edges: np.ndarray, mask: np.ndarray) -> None:
    """Hatch the cells of `mask`, one rectangle per run of consecutive snapshots in a row."""
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle
    rects = []
    for i, line in enumerate(mask):
        padded = np.concatenate([[False], line, [False]]).astype(np.int8)
        starts, ends = np.flatnonzero(np.diff(padded) == 1), np.flatnonzero(np.diff(padded) == -1)
        rects += [Rectangle((x_edges[a], i), x_edges[b] - x_edges[a], 1) for a, b in zip(starts, ends)]
    if rects:
        ax.add_collection(PatchCollection(rects, facecolor="none", edgecolor=(0, 0, 0, 0.45), linewidth=0,
                                          hatch="////", gid="mostly empty"))


def _edges(x: np.ndarray) -> np.ndarray:
    """Cell edges for snapshot times: each column spans [t_i, t_i+1), the last one a median step."""
    if len(x) == 0:
        return np.array([0.0])
    step = float(np.median(np.diff(x))) if len(x) > 1 else 1.0
    return np.append(x, x[-1] + (step if step > 0 else 1.0))
