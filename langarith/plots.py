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


def _panels(titles: tuple[str, ...], spacing: float) -> dict:
    """Layout of len(titles) side-by-side panels, each with its title above it: what
    ``make_subplots(rows=1, cols=n, subplot_titles=...)`` lays out, written as one dict because
    the figure is rebuilt on every slider release and ``make_subplots`` + ``add_trace`` (each call
    validated on its own) cost about 5x as much as one constructor call."""
    n = len(titles)
    width = (1 - spacing * (n - 1)) / n
    layout: dict = {"annotations": []}
    for i, title in enumerate(titles):
        s = "" if i == 0 else str(i + 1)
        x0 = i * (width + spacing)
        layout["xaxis" + s] = dict(domain=[x0, x0 + width], anchor="y" + s)
        layout["yaxis" + s] = dict(anchor="x" + s)
        layout["annotations"].append(dict(text=title, x=x0 + width / 2, y=1.0, xref="paper", yref="paper",
                                          xanchor="center", yanchor="bottom", showarrow=False,
                                          font=dict(size=16)))
    return layout


PART_COLORS = {"down": "#636efa", "up": "#ef553b", "F": "#00cc96", "G": "#ab63fa"}  # one per legend entry


def geometry_figure(rows: list[dict], a: str, b: str, lam: float) -> go.Figure:
    """Per layer (and the invertible adapter as its own row): distance of the merge to A and to B,
    relative to their norms, and cos(A, B); one line per part (down, up; F, G)."""
    layout = _panels((f"‖merged − {a}‖ / ‖{a}‖", f"‖merged − {b}‖ / ‖{b}‖", f"cos({a}, {b})"), 0.07)
    order = list(dict.fromkeys(r["row"] for r in rows))
    for i in range(3):
        s = "" if i == 0 else str(i + 1)
        layout["xaxis" + s].update(categoryorder="array", categoryarray=order)
        if i < 2:
            layout["yaxis" + s]["rangemode"] = "tozero"
    data = []
    for part, dash in (("down", "solid"), ("up", "dot"), ("F", "solid"), ("G", "dot")):
        sel = [r for r in rows if r["part"] == part]
        if not sel:
            continue
        x = [r["row"] for r in sel]
        for i, key in enumerate(("dist_to_A", "dist_to_B", "cos_AB")):
            s = "" if i == 0 else str(i + 1)
            data.append(dict(type="scatter", x=x, y=[r[key] for r in sel], name=part, legendgroup=part,
                             showlegend=i == 0, mode="lines+markers",
                             line=dict(dash=dash, color=PART_COLORS[part]),
                             xaxis="x" + s, yaxis="y" + s))
    layout.update(height=320, margin=dict(l=40, r=10, t=70, b=30),
                  title=dict(text=f"How the weights moved (λ={lam:.2f})", font=dict(size=13)))
    return go.Figure(data=data, layout=layout)


def placeholder_figure(text: str, height: int = 200) -> go.Figure:
    """An empty plot that says what will be drawn (an empty gr.Plot is an unnamed box to a
    screen reader)."""
    return go.Figure(layout=dict(height=height, margin=dict(l=10, r=10, t=10, b=10),
                                 xaxis=dict(visible=False), yaxis=dict(visible=False),
                                 annotations=[dict(text=text, showarrow=False, x=0.5, y=0.5,
                                                   xref="paper", yref="paper")]))


def hidden_shift_figure(shift: list[float], a: str, lam: float) -> go.Figure:
    """Per layer: relative change of the hidden states on this input, merged vs A alone."""
    x = ["emb"] + [f"L{i}" for i in range(len(shift) - 1)]
    return go.Figure(
        data=[dict(type="scatter", x=x, y=shift, mode="lines+markers", line=dict(color=COLORS["merged"]))],
        layout=dict(height=280, margin=dict(l=40, r=10, t=40, b=30),
                    title=dict(text=f"Hidden states on this text: ‖h_merged − h_{a}‖ / ‖h_{a}‖ (λ={lam:.2f})",
                               font=dict(size=13)),
                    xaxis=dict(categoryorder="array", categoryarray=x),
                    yaxis=dict(title="relative change", rangemode="tozero")))


def metric_of(sweep: dict) -> str:
    """The metric a sweep reports: "accuracy" (topic task) or "f1" (span tagging)."""
    return "accuracy" if "accuracy" in sweep["points"][0]["test"] else "f1"


def points_scale(sweep: dict) -> float:
    """What turns a sweep's scores into points: 100 for fractions (the topic task, a hub
    profile's reproduce results: per-metric dicts), 1 for span-tagging curves, already in points
    (their single-adapter scores are plain numbers)."""
    return 1.0 if isinstance(sweep.get("a_alone"), (int, float)) else 100.0


def _level(x0: float, x1: float, y: float, name: str, color: str, dash: str) -> go.Scatter:
    """A reference level as a legend entry (line labels printed on the plot overlap)."""
    return go.Scatter(x=[x0, x1], y=[y, y], mode="lines", name=name, hovertemplate=f"{name}: %{{y:.1f}}<extra></extra>",
                      line=dict(color=color, dash=dash, width=1.5))


def sweep_figure(sweep: dict, title: str) -> go.Figure:
    """The metric against λ on dev and test, with the bootstrap's 95 % interval of test at each λ,
    the two unmerged adapters (and a reference adapter) as levels named in the legend, the
    dev-chosen λ marked.

    ``sweep`` is a ``tasks.sweep`` result or a precomputed curve from the bundle's results file;
    scores are drawn in points whichever unit the curve stores (``points_scale``)."""
    metric, scale = metric_of(sweep), points_scale(sweep)
    lams = [p["lam"] for p in sweep["points"]]
    test = [scale * p["test"][metric] for p in sweep["points"]]
    ci = (sweep.get("bootstrap") or {}).get("test_ci95")  # in points (stats.bootstrap_sweep)
    err = dict(type="data", symmetric=False, array=[hi - y for (lo, hi), y in zip(ci, test)],
               arrayminus=[y - lo for (lo, hi), y in zip(ci, test)], color=COLORS["merged"],
               thickness=1) if ci else None
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=lams, y=[scale * p["dev"][metric] for p in sweep["points"]],
                             name="merged, dev", mode="lines+markers",
                             line=dict(color=COLORS["merged"], dash="dot")))
    fig.add_trace(go.Scatter(x=lams, y=test, name="merged, test (95 % CI)" if ci else "merged, test",
                             mode="lines+markers", error_y=err, line=dict(color=COLORS["merged"])))
    a, b = sweep["a"], sweep.get("b") or sweep.get("source")
    ends = {p["lam"]: p for p in sweep["points"]}
    x0, x1 = min(lams), max(lams)
    for name, lam, code in (("A", 1.0, a), ("B", 0.0, b)):
        if lam in ends:
            fig.add_trace(_level(x0, x1, scale * ends[lam]["test"][metric], f"{code} alone (test)",
                                 COLORS[name], "dash"))
    if sweep.get("own") is not None:  # a reference: the target's own adapter (hub enhancement targets)
        fig.add_trace(_level(x0, x1, scale * sweep["own"], sweep.get("own_label", "own adapter (test)"),
                             "black", "dot"))
    fig.add_vline(x=sweep["best_lam"], line=dict(color="grey", dash="dot"),
                  annotation_text=f"best λ on dev = {sweep['best_lam']}")
    fig.update_layout(title=dict(text=title, font=dict(size=13)), height=360,
                      xaxis=dict(title=f"λ (weight of {a})"), yaxis=dict(title=f"{metric} (points)"),
                      margin=dict(l=50, r=10, t=60, b=40), legend=dict(orientation="h", y=-0.25))
    return fig


def mlm_figure(curve: dict, title: str, lam: float | None = None, height: int = 320,
               compact: bool = False) -> go.Figure:
    """Masked-LM loss against λ: both endpoints (A and B alone) and the minimum marked; the
    current λ as a vertical line. Lower is better: the merge models the text better.
    ``compact`` (the first screen): no title row; the legend takes its place and names the text."""
    lams = [p["lam"] for p in curve["points"]]
    loss = [p["loss"] for p in curve["points"]]
    best = min(range(len(loss)), key=lambda i: (loss[i], abs(lams[i] - 0.5)))
    fig = go.Figure(go.Scatter(x=lams, y=loss, mode="lines+markers",
                               name=f"merged, on {title}" if compact else "merged",
                               line=dict(color=COLORS["merged"])))
    marks = [(lams.index(1.0), f"{curve['a']} alone (A)", COLORS["A"]),
             (lams.index(0.0), f"{curve['b']} alone (B)", COLORS["B"]),
             (best, f"minimum, λ = {lams[best]:g}", "black")]
    for i, name, color in marks:
        fig.add_trace(go.Scatter(x=[lams[i]], y=[loss[i]], mode="markers", name=name,
                                 marker=dict(size=12, color=color, symbol="diamond")))
    if lam is not None:  # the slider's λ: a line, and a point on the curve (read between grid points)
        fig.add_vline(x=lam, line=dict(color="grey", dash="dot"), annotation_text=f"λ = {lam:.2f}")
        if lams[0] <= lam <= lams[-1]:
            fig.add_trace(go.Scatter(x=[lam], y=[interpolate_at(*zip(*sorted(zip(lams, loss))), lam)], mode="markers",
                                     name=f"current λ = {lam:.2f}",
                                     marker=dict(size=14, color="rgba(0,0,0,0)",
                                                 line=dict(color="black", width=2))))
    fig.update_layout(title=dict(text=title, font=dict(size=13)), height=height,
                      xaxis=dict(title=f"λ (weight of {curve['a']})"),
                      yaxis=dict(title="masked-LM loss (lower is better)"),
                      margin=dict(l=50, r=10, t=50, b=40), legend=dict(orientation="h", y=-0.3))
    if compact:
        fig.update_layout(title=None, margin=dict(l=50, r=10, t=10, b=40), yaxis=dict(title="masked-LM loss"),
                          legend=dict(orientation="h", y=1.02, yanchor="bottom", x=0, font=dict(size=11)))
    return fig


def interpolate_at(xs: list[float], ys: list[float], x: float) -> float:
    """``ys`` read at ``x`` on straight lines between the points (``xs`` ascending)."""
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return ys[0] if x < xs[0] else ys[-1]


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


def layer_lambda_figure(lams: list[float], lam_inv: float) -> go.Figure:
    """λ per layer of a per-layer merge (bottom to top), the invertible adapter's λ first."""
    x = ["inv"] + [f"L{i}" for i in range(len(lams))]  # category order kept as given
    y = [lam_inv] + list(lams)
    fig = go.Figure(go.Scatter(x=x, y=y, mode="lines+markers", line=dict(color=COLORS["merged"]),
                               name="λ (weight of A)"))
    fig.update_layout(height=220, margin=dict(l=40, r=10, t=30, b=30),
                      title=dict(text="λ per layer (inv = invertible adapter)", font=dict(size=12)),
                      xaxis=dict(type="category"), yaxis=dict(title="λ", range=[min(0, *y) - 0.05,
                                                                             max(1, *y) + 0.05]))
    return fig


def merge_vs_ensemble_mlm_figure(merge: dict, ensemble: dict, title: str,
                                 lam: float | None = None) -> go.Figure:
    """Masked-LM loss over λ of the weight merge and of the output ensemble (equal at 0 and 1)."""
    fig = go.Figure()
    for curve, name, color in ((merge, "weight merge", COLORS["merged"]),
                               (ensemble, "output ensemble", "#ab63fa")):
        fig.add_trace(go.Scatter(x=[p["lam"] for p in curve["points"]],
                                 y=[p["loss"] for p in curve["points"]], mode="lines+markers",
                                 name=name, line=dict(color=color)))
    if lam is not None:
        fig.add_vline(x=lam, line=dict(color="grey", dash="dot"))
    fig.update_layout(title=dict(text=title, font=dict(size=13)), height=320,
                      xaxis=dict(title=f"λ (weight of {merge['a']})"),
                      yaxis=dict(title="masked-LM loss (lower is better)"),
                      margin=dict(l=50, r=10, t=50, b=40), legend=dict(orientation="h", y=-0.3))
    return fig


LOWRES_PANELS = (("mlm", "masked-LM loss drop (nats/token)", 1.0),
                 ("tagging", "span F1 gain (points)", 1.0),
                 ("topic", "topic accuracy gain (points)", 1.0))


ARM_STYLE = {"converged": ("solid", "circle", "little text, trained to convergence"),
             "equal_compute": ("dot", "x", "little training (200 steps)")}


def lowres_figure(table: dict, title: str = "Gain of the merge over the better single adapter, "
                  "by how much text the own adapter saw") -> go.Figure:
    """The low-resource lesson: x = tokens of own text the adapter saw (log), y = the merge's gain
    over the better of A and B (λ chosen on dev / the first half), a 95 % interval at each point;
    one colour per language, one line style per arm (``converged``: the paper's setting, solid;
    ``equal_compute``: dotted; both end at the full adapter), one panel per measure."""
    fig = make_subplots(rows=1, cols=len(LOWRES_PANELS), horizontal_spacing=0.08,
                        subplot_titles=[t for _, t, _ in LOWRES_PANELS])
    palette = ["#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3"]
    two_arms = any(row.get("converged") for row in table["languages"].values())
    for i, (code, row) in enumerate(table["languages"].items()):
        full = {"full": row["points"]["full"]} if "full" in row["points"] else {}
        arms = {"equal_compute": row["points"], "converged": {**row.get("converged", {}), **full}}
        for arm, points in arms.items():
            if not set(points) - {"full"}:
                continue
            dash, symbol, words = ARM_STYLE[arm]
            name = f"{code} ← {row['partner']}" + (f", {words}" if two_arms else "")
            pts = sorted(points.items(), key=lambda kv: row["tokens"][kv[0]])
            for col, (measure, _, scale) in enumerate(LOWRES_PANELS, start=1):
                have = [(k, p[measure]) for k, p in pts if p.get(measure)]
                if not have:
                    continue
                g = [m["gain_vs_better"] for _, m in have]
                y = [scale * x["points"] for x in g]
                unit = 100 if measure == "topic" else 1
                fig.add_trace(go.Scatter(
                    x=[row["tokens"][k] for k, _ in have], y=y, mode="lines+markers", name=name,
                    legendgroup=f"{code}-{arm}", showlegend=col == 1,
                    line=dict(color=palette[i % len(palette)], dash=dash),
                    marker=dict(symbol=symbol, size=8),
                    text=[f"{code} {k} ({words}): A {m['a_alone'] * unit:.2f}, B {m['b_alone'] * unit:.2f}, "
                          f"merged {m['merged'] * unit:.2f} at λ = {m['best_lam']}"
                          for k, m in have], hovertemplate="%{text}<br>gain %{y:.2f}<extra></extra>",
                    error_y=dict(type="data", symmetric=False,
                                 array=[scale * x["ci95"][1] - v for x, v in zip(g, y)],
                                 arrayminus=[v - scale * x["ci95"][0] for x, v in zip(g, y)])),
                    row=1, col=col)
    for col in range(1, len(LOWRES_PANELS) + 1):
        fig.add_hline(y=0, line=dict(color="grey", dash="dot"), row=1, col=col)
    fig.update_xaxes(type="log", title="tokens of own text (log)")
    sub = ("<br><sup>solid: little text, trained to convergence (the paper's low-resource "
           "setting); dotted: little training, 200 steps</sup>") if two_arms else ""
    fig.update_layout(title=dict(text=title + sub, font=dict(size=13)), height=420 if two_arms else 380,
                      margin=dict(l=50, r=10, t=80 if two_arms else 70, b=40),
                      legend=dict(orientation="h", y=-0.3))
    return fig
