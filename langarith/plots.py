"""Layer 4: plotly figures. Pure presentation: data in, figure out."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

COLORS = {"A": "#636efa", "merged": "#ef553b", "B": "#00cc96"}


def predictions_figure(cmp) -> go.Figure:
    """Grouped bars: label probabilities of A alone, the merge and B alone."""
    names = {"A": f"A = {cmp.a} alone", "merged": f"merged (λ={cmp.lam:.2f})", "B": f"B = {cmp.b} alone"}
    fig = go.Figure([
        go.Bar(name=names[w], x=cmp.labels, y=cmp.probs[w], marker_color=COLORS[w])
        for w in ("A", "merged", "B")
    ])
    fig.update_layout(barmode="group", yaxis=dict(range=[0, 1], title="probability"),
                      title=cmp.formula, height=320, margin=dict(l=40, r=10, t=50, b=40),
                      legend=dict(orientation="h", y=-0.2))
    return fig


def geometry_figure(rows: list[dict], a: str, b: str, lam: float) -> go.Figure:
    """Per layer (and the invertible adapter as its own row): distance of the merge to A and to B,
    relative to their norms, and cos(A, B); one line per part (down, up; F, G)."""
    fig = make_subplots(rows=1, cols=3, shared_xaxes=False, horizontal_spacing=0.07, subplot_titles=(
        f"‖merged − {a}‖ / ‖{a}‖", f"‖merged − {b}‖ / ‖{b}‖", f"cos({a}, {b})"))
    for part, dash in (("down", "solid"), ("up", "dot"), ("F", "solid"), ("G", "dot")):
        sel = [r for r in rows if r["part"] == part]
        if not sel:
            continue
        x = [r["row"] for r in sel]
        for col, key in enumerate(("dist_to_A", "dist_to_B", "cos_AB"), start=1):
            fig.add_trace(go.Scatter(x=x, y=[r[key] for r in sel], name=part, legendgroup=part,
                                     showlegend=col == 1, mode="lines+markers",
                                     line=dict(dash=dash)), row=1, col=col)
    order = list(dict.fromkeys(r["row"] for r in rows))
    fig.update_xaxes(categoryorder="array", categoryarray=order)
    fig.update_yaxes(rangemode="tozero", row=1, col=1)
    fig.update_yaxes(rangemode="tozero", row=1, col=2)
    fig.update_layout(height=320, margin=dict(l=40, r=10, t=70, b=30),
                      title=dict(text=f"How the weights moved (λ={lam:.2f})", font=dict(size=13)))
    return fig


def hidden_shift_figure(shift: list[float], a: str, lam: float) -> go.Figure:
    """Per layer: relative change of the hidden states on this input, merged vs A alone."""
    x = ["emb"] + [f"L{i}" for i in range(len(shift) - 1)]
    fig = go.Figure(go.Scatter(x=x, y=shift, mode="lines+markers", line=dict(color=COLORS["merged"])))
    fig.update_layout(height=280, margin=dict(l=40, r=10, t=40, b=30),
                      title=dict(text=f"Hidden states on this text: ‖h_merged − h_{a}‖ / ‖h_{a}‖ (λ={lam:.2f})",
                                 font=dict(size=13)),
                      yaxis=dict(title="relative change", rangemode="tozero"))
    fig.update_xaxes(categoryorder="array", categoryarray=x)
    return fig


def sweep_figure(sweep: dict, title: str) -> go.Figure:
    """Accuracy against λ on dev and test, the two unmerged adapters as lines, best λ marked.

    ``sweep`` is a ``tasks.sweep`` result or a precomputed curve from the bundle's results file."""
    lams = [p["lam"] for p in sweep["points"]]
    fig = go.Figure()
    for split, dash in (("dev", "dot"), ("test", "solid")):
        fig.add_trace(go.Scatter(x=lams, y=[p[split]["accuracy"] for p in sweep["points"]],
                                 name=f"merged, {split}", mode="lines+markers",
                                 line=dict(color=COLORS["merged"], dash=dash)))
    a, b = sweep["a"], sweep.get("b") or sweep.get("source")
    ends = {p["lam"]: p for p in sweep["points"]}
    for name, lam, code in (("A", 1.0, a), ("B", 0.0, b)):
        if lam in ends:
            fig.add_hline(y=ends[lam]["test"]["accuracy"], line=dict(color=COLORS[name], dash="dash"),
                          annotation_text=f"{code} alone (test)", annotation_position="top left")
    fig.add_vline(x=sweep["best_lam"], line=dict(color="grey", dash="dot"),
                  annotation_text=f"best λ on dev = {sweep['best_lam']}")
    fig.update_layout(title=dict(text=title, font=dict(size=13)), height=340,
                      xaxis=dict(title=f"λ (weight of {a})"), yaxis=dict(title="accuracy"),
                      margin=dict(l=50, r=10, t=60, b=40), legend=dict(orientation="h", y=-0.25))
    return fig


def similarity_figure(languages: list[str], matrix: list[list[float]], title: str) -> go.Figure:
    fig = go.Figure(go.Heatmap(z=matrix, x=languages, y=languages, colorscale="Viridis",
                               text=[[f"{v:.2f}" for v in row] for row in matrix],
                               texttemplate="%{text}", hovertemplate="%{y}–%{x}: %{z:.3f}<extra></extra>"))
    fig.update_layout(title=dict(text=title, font=dict(size=13)), height=460,
                      margin=dict(l=40, r=10, t=50, b=40), yaxis=dict(autorange="reversed"))
    return fig


def gain_figure(rows: list[dict]) -> go.Figure:
    """One point per swept target: cos(τ_A, τ_B) against the gain of arithmetic (test accuracy)."""
    fig = go.Figure(go.Scatter(
        x=[r["cos"] for r in rows], y=[100 * r["gain"] for r in rows], mode="markers+text",
        text=[f"{r['target']} ({r['a']}+{r['b']})" for r in rows], textposition="top center",
        marker=dict(size=10, color=COLORS["merged"])))
    fig.add_hline(y=0, line=dict(color="grey", dash="dot"))
    fig.update_layout(title=dict(text="Similarity of the merged pair vs gain over the better single "
                                      "adapter (test, dev-chosen λ)", font=dict(size=13)),
                      xaxis=dict(title="cos(τ_A, τ_B)"), yaxis=dict(title="gain (accuracy points)"),
                      height=360, margin=dict(l=50, r=10, t=50, b=40))
    return fig
