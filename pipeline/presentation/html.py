"""Interactive HTML of the same panels as the PNG (png.py), via plotly.

    figures(PlotData) -> [timeline figure, heatmap figure]   (plotly Figure objects)
    fragment(PlotData) -> str                                 <div>s to embed (plotly.js inline once)
    write_html(PlotData, OUTPUT) -> OUTPUT                    a standalone page that works offline

Hover texts give bytes in human units (k/M/G, as `ptreplay report`).  Strings from
captures (comm, policy) reach the page only through plotly's JSON, which escapes
``<``, ``>`` and ``/``, or through html.escape.
"""
from __future__ import annotations

import dataclasses
import html
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from ptreplay.schemas import HTML_MARK
from ptreplay.schemas.parquet_io import atomic_path, write_error
from ptreplay.pipeline.presentation.plotdata import (MIB, OCCUPANCY_LABEL, PANELS, TRUTH_LABEL, PlotData, cost_of,
                                                     heatmap_caption)
from ptreplay.schemas.units import human_bytes

PAGE = 4096
# RdYlBu as in the PNG: red = tables with nothing mapped, blue = full.
COLORSCALE = [[0.0, "#a50026"], [0.1, "#d73027"], [0.2, "#f46d43"], [0.3, "#fdae61"], [0.4, "#fee090"],
              [0.5, "#ffffbf"], [0.6, "#e0f3f8"], [0.7, "#abd9e9"], [0.8, "#74add1"], [0.9, "#4575b4"],
              [1.0, "#313695"]]
NO_TABLE = "#d9d9d9"


def figures(data: PlotData, heatmap_only: bool = False) -> list:
    """The timeline figure (VIRT, RES, VmPTE, cost vs savings) and, when there is
    occupancy, the heatmap figure."""
    out = [] if heatmap_only else [timeline_figure(data)]
    return out + ([heatmap_figure(data)] if data.heatmaps else [])


def timeline_figure(data: PlotData):
    import plotly.colors
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    who = html.escape(data.who)  # plotly.js reads tags and entities in text: show a comm as written
    titles = [f"{title} of {who}" for _, _, title in PANELS] + ["cost vs savings per policy"]
    fig = make_subplots(rows=2, cols=2, subplot_titles=titles, horizontal_spacing=0.08, vertical_spacing=0.12)
    palette = plotly.colors.qualitative.Plotly
    ts, truth = data.timeseries, data.truth
    for i, (col, truth_col, title) in enumerate(PANELS):
        row, c = divmod(i, 2)
        for k, policy in enumerate(data.policies):
            part = ts.filter(pc.equal(ts.column("policy"), policy))
            y = part.column(col).to_numpy()
            fig.add_trace(go.Scatter(
                x=data.seconds(part.column("t_ns")), y=y / MIB, name=policy, legendgroup=policy,
                showlegend=i == 0, mode="lines", line_shape="hv",
                line=dict(color=palette[k % len(palette)], width=3.5 - 0.5 * k, dash="solid" if k % 2 == 0 else "dash"),
                customdata=[human_bytes(v) for v in y],
                hovertemplate=f"{html.escape(policy)}: {title} %{{customdata}}<br>t = %{{x:.3f}} s<extra></extra>"),
                row=row + 1, col=c + 1)
        if truth.num_rows:
            y = truth.column(truth_col).to_numpy()
            fig.add_trace(go.Scatter(
                x=data.seconds(truth.column("t_ns")), y=y / MIB, name=TRUTH_LABEL, legendgroup="truth",
                showlegend=i == 0, mode="markers", marker=dict(color="black", size=3),
                customdata=[human_bytes(v) for v in y],
                hovertemplate=f"kernel: {title} %{{customdata}}<br>t = %{{x:.3f}} s<extra></extra>"),
                row=row + 1, col=c + 1)
        fig.update_xaxes(title_text="seconds since first event", row=row + 1, col=c + 1)
        fig.update_yaxes(title_text="MiB", row=row + 1, col=c + 1)
    rows = data.summary.to_pylist()
    fig.add_trace(go.Scatter(
        x=[r["vmpte_saved_bytes"] / MIB for r in rows], y=[cost_of(r) for r in rows],
        text=[r["policy"] for r in rows], mode="markers+text", textposition="top right",
        name="policies (cost vs savings)", showlegend=False, marker=dict(size=9, color="#444"),
        customdata=[[human_bytes(r["vmpte_saved_bytes"]), r["refaults"], r["scan_entries"]] for r in rows],
        hovertemplate=("%{text}: saves %{customdata[0]} of final VmPTE<br>%{customdata[1]} tables refaulted, "
                       "%{customdata[2]} entries scanned<extra></extra>")), row=2, col=2)
    fig.update_xaxes(title_text="final VmPTE saved vs none (MiB)", row=2, col=2)
    fig.update_yaxes(title_text="refaulted tables + scanned tables", row=2, col=2)
    fig.update_layout(height=800, title_text=html.escape(f"ptreplay: {data.trace_id}, {data.who}"),
                      legend=dict(font=dict(size=10)), template="plotly_white")
    return fig


def heatmap_figure(data: PlotData):
    """One heatmap per policy side by side (rows: 1 GiB regions, lowest address at the
    bottom), over a strip of PTE tables and empty PTE tables summed over every region."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    hms = data.heatmaps
    n = len(hms)
    rows = max(len(h.region_start) for h in hms)
    fig = make_subplots(rows=2, cols=n, row_heights=[0.8, 0.2], shared_xaxes=True, shared_yaxes="rows",
                        vertical_spacing=0.06, horizontal_spacing=0.04,
                        subplot_titles=[f"under {h.policy}" for h in hms] + [""] * n)
    for j, hm in enumerate(hms):
        x = data.seconds(hm.t_ns)
        labels = hm.labels
        z = [[None if np.isnan(v) else float(v) for v in row] for row in hm.occupancy]
        custom = [[[int(tables), int(e), int(f), int(live), human_bytes(live * PAGE), human_bytes(e * PAGE)]
                   for tables, e, f, live in zip(*cells)]
                  for cells in zip(hm.pte_tables, hm.empty_pte_tables, hm.full_pte_tables, hm.live_entries)]
        fig.add_trace(go.Heatmap(
            x=x, y=labels, z=z, zmin=0.0, zmax=1.0, colorscale=COLORSCALE, name=f"occupancy {hm.policy}",
            showscale=j == 0, colorbar=dict(title=dict(text=OCCUPANCY_LABEL, side="right"), len=0.75, y=0.6),
            customdata=custom, hoverongaps=False,
            hovertemplate=("region %{y}, t = %{x:.3f} s<br>occupancy %{z:.1%}<br>"
                           "%{customdata[0]} PTE tables: %{customdata[1]} empty (%{customdata[5]} of VmPTE), "
                           "%{customdata[2]} full<br>%{customdata[3]} live entries (%{customdata[4]} mapped)"
                           f"<extra>{html.escape(hm.policy)}</extra>")), row=1, col=j + 1)
        ri, ti = np.nonzero(hm.mostly_empty)
        fig.add_trace(go.Scatter(
            x=x[ti], y=[labels[i] for i in ri], mode="markers", hoverinfo="skip",
            name="more than half of the tables empty", legendgroup="mostly empty", showlegend=j == 0,
            marker=dict(symbol="x-thin", size=6, line=dict(width=1, color="rgba(0,0,0,0.55)"))), row=1, col=j + 1)
        for name, y, color in (("PTE tables", hm.all_pte_tables, "#4575b4"),
                               ("empty PTE tables", hm.all_empty_pte_tables, "#d73027")):
            fig.add_trace(go.Scatter(
                x=x, y=y, name=f"{name} ({hm.policy})", mode="lines", line_shape="hv", line=dict(color=color),
                showlegend=False, customdata=[human_bytes(v * PAGE) for v in y],
                hovertemplate=f"{name}: %{{y}} (%{{customdata}})<br>t = %{{x:.3f}} s<extra>{html.escape(hm.policy)}</extra>"),
                row=2, col=j + 1)
        fig.update_xaxes(title_text="seconds since first event", row=2, col=j + 1)
        fig.update_xaxes(showgrid=False, row=1, col=j + 1)
    fig.update_yaxes(type="category", tickfont=dict(family="monospace", size=10), showgrid=False, row=1)
    fig.update_yaxes(title_text="1 GiB region", row=1, col=1)
    fig.update_yaxes(title_text="tables", row=2, col=1)
    fig.update_layout(height=int(max(450, 14 * rows + 320)), template="plotly_white",
                      title=dict(text=html.escape(f"{data.trace_id}: ") + _escaped_caption(data), font=dict(size=13)))
    for j in range(n):  # heatmap gaps (no table) show this grey, like the PNG's
        axis = "" if j == 0 else str(j + 1)
        fig.add_shape(type="rect", xref=f"x{axis} domain", yref=f"y{axis} domain",
                      x0=0, x1=1, y0=0, y1=1, fillcolor=NO_TABLE, line_width=0, layer="below")
    return fig


def _escaped_caption(data: PlotData) -> str:
    return heatmap_caption(dataclasses.replace(data, comm=html.escape(data.comm)), mark="marked x", sep="<br>")


def fragment(data: PlotData, heatmap_only: bool = False, include_plotlyjs="inline") -> str:
    """HTML <div>s of the figures, plotly.js included once (inline by default: works offline)."""
    import plotly.io as pio
    parts = []
    if data.note:
        parts.append(f"<p class='note'>note: {html.escape(data.note)}</p>")
    for i, fig in enumerate(figures(data, heatmap_only)):
        js = (True if include_plotlyjs == "inline" else include_plotlyjs) if i == 0 else False
        parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=js, config={"displaylogo": False}))
    return "\n".join(parts)


def write_html(data: PlotData, output: Path, force: bool = False, heatmap_only: bool = False) -> Path:
    title = html.escape(f"ptreplay plot: {data.trace_id}, {data.who}")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'>{HTML_MARK}<title>{title}</title></head>"
            f"<body>{fragment(data, heatmap_only)}</body></html>\n")
    with atomic_path(Path(output), force) as tmp:
        try:
            tmp.write_text(page, encoding="utf-8")
        except OSError as e:
            raise write_error(output, e) from None
    return Path(output)

