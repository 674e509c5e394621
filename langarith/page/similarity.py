"""The Similarity tab: cosine between the language vectors τ = θ − init of every pair of adapters
(overall and per layer), the target's sources ranked, similarity against the gain arithmetic
brought; and URIEL typology beside it (issue 13): a heatmap per feature set, the sources ranked
by each signal, and how far the rankings agree."""

from __future__ import annotations

import gradio as gr

from .. import analysis, plots, results, typology
from ..model import LanguageStack
from .common import Controls, event, guarded, model_handler


def _similarity(stack: LanguageStack) -> dict:
    return stack.memo.get("similarity", "all", lambda: analysis.similarity(stack))  # once per stack


@guarded
def on_similarity(stack: LanguageStack, row: str):
    sim = _similarity(stack)
    matrix = sim["overall"] if row == "all layers" else sim["per_row"][row]
    rel = "relative to the shared init" if sim["relative_to_init"] else "raw weights"
    fig = plots.similarity_figure(sim["languages"], matrix,
                                  f"cos between language vectors ({rel}), {row}")
    res = results.bundle_results(stack)
    sweeps = {**res.get("zero_shot", {}), **res.get("enhancement", {})}
    scatter = plots.gain_figure(analysis.similarity_vs_gain(stack, sweeps, sim)) if sweeps else None
    return fig, scatter


@model_handler(duration=20)  # a zero-shot target is ranked by each adapter's masked-LM loss
@guarded
def on_rank(stack: LanguageStack, target: str, progress=gr.Progress()):
    progress(0, desc="scoring source languages")
    ranking = analysis.rank_sources(stack, target, _similarity(stack))
    lines = [f"| {i + 1} | {r['language']} | {r['score']:.3f} |" for i, r in enumerate(ranking)]
    measure = ranking[0]["measure"] if ranking else ""
    return (f"Sources for **{target}**, most similar first ({measure}); suggested: "
            f"**{ranking[0]['language']}**\n\n| rank | language | score |\n|---|---|---|\n"
            + "\n".join(lines)), gr.update(value=ranking[0]["language"])


@guarded
def typology_heatmap(stack: LanguageStack, feature_set: str):
    """The URIEL similarity of every pair of the bundle's languages, and what is missing."""
    sim = typology.for_stack(stack, feature_set)
    fig = plots.similarity_figure(sim["languages"], sim["matrix"],
                                  f"URIEL {feature_set} similarity ({sim['vectors']}, {sim['measure']})")
    notes = [f"- {c}: {why}" for c, why in {**sim["notes"], **sim["missing"]}.items()]
    return fig, "\n".join(notes)


def ranking_table(rankings: dict[str, list[dict]]) -> str:
    """One column per signal: the sources in its order, with scores."""
    names = list(rankings)
    depth = max(len(r) for r in rankings.values())
    head = "| rank | " + " | ".join(names) + " |\n|---|" + "---|" * len(names)
    rows = [f"| {i + 1} | " + " | ".join(
        f"{r[i]['language']} ({r[i]['score']:.3f})" if i < len(r) else "" for r in rankings.values())
        + " |" for i in range(depth)]
    return "\n".join([head, *rows])


def agreement_lines(pairs: list[dict]) -> str:
    return "\n".join(f"- {p['a']} vs {p['b']}: Spearman ρ = **{p['spearman']:+.2f}** over {p['n']} sources"
                     for p in pairs)


@model_handler(duration=20)  # the adapters' own ranking: masked-LM loss for a zero-shot target
@guarded
def typology_ranks(stack: LanguageStack, target: str, progress=gr.Progress()):
    """The target's sources ranked by each URIEL feature set and by the adapters' own signal
    (language-vector cosine, or masked-LM loss for a zero-shot target), and Spearman between them."""
    progress(0, desc="ranking sources by typology and by the adapters")
    own = analysis.rank_sources(stack, target, _similarity(stack))
    rankings = typology.all_rankings(stack, target, own)
    return (f"Sources for **{target}**, most similar first, by each signal:\n\n"
            f"{ranking_table(rankings)}\n\nHow far the rankings agree:\n\n"
            f"{agreement_lines(typology.agreement(rankings))}")


def layout(stack: LanguageStack) -> dict:
    gr.Markdown("Cosine similarity between language vectors τ = θ − init of every pair of "
                "adapters; rank the sources for the current target.")
    with gr.Row():
        row = gr.Dropdown(["all layers"] + list(_similarity(stack)["per_row"]), value="all layers",
                          label="Layer", elem_id="sim-row")
        rank = gr.Button("Rank sources for the target", elem_id="rank")
    plot = gr.Plot(elem_id="sim-plot")
    rank_note = gr.Markdown(elem_id="rank-note")
    gain_plot = gr.Plot(elem_id="gain-plot")
    gr.Markdown("### Typology (URIEL, from lang2vec) beside the adapters' own similarity")
    with gr.Row():
        fs = gr.Dropdown(typology.feature_set_choices(), value=typology.DEFAULT_FEATURE_SET,
                         label="URIEL feature set", elem_id="typology-set")
        ty_rank = gr.Button("Rank sources by typology and by the adapters", elem_id="typology-rank")
    ty_plot = gr.Plot(elem_id="typology-plot")
    missing = gr.Markdown(elem_id="typology-missing")
    ranks = gr.Markdown(elem_id="typology-ranks")
    return dict(row=row, rank=rank, plot=plot, rank_note=rank_note, gain_plot=gain_plot, fs=fs,
                ty_rank=ty_rank, ty_plot=ty_plot, missing=missing, ranks=ranks)


def wire(stack: LanguageStack, c: Controls, p: dict, tab) -> None:
    heat = event(on_similarity, p["row"], [p["plot"], p["gain_plot"]])
    p["row"].change(**heat, api_name="similarity")
    tab.select(**heat, api_name="similarity_tab", api_visibility="private")
    p["rank"].click(**event(on_rank, c.target, [p["rank_note"], c.source]),
                    api_name="rank_sources")
    typ = event(typology_heatmap, p["fs"], [p["ty_plot"], p["missing"]],
                api_visibility="private")
    p["fs"].change(**typ, api_name="typology")
    tab.select(**typ, api_name="typology_tab")
    p["ty_rank"].click(**event(typology_ranks, c.target, p["ranks"]), api_name="typology_ranks")
