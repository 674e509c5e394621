"""Layer 4: the page's typology parts (issue 13) — a URIEL heatmap beside the language-vector one,
the target's sources ranked by each signal with their agreement, and a button that fills the
typology-weighted merge into the N-way panel. Handlers are plain functions of (stack, inputs);
``similarity_panel`` and ``fill_panel`` lay out and bind them inside ``ui.build_demo``."""

from __future__ import annotations

import gradio as gr

from . import analysis, plots, tasks, typology
from .model import LanguageStack

FEATURE_CHOICES = [(f"{name} ({vec}, {measure})", name)
                   for name, (vec, measure) in typology.FEATURE_SETS.items()]


def _guarded(fn):
    from .ui import guarded  # ui imports this module: bind late

    return guarded(fn)


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


def typology_ranks(stack: LanguageStack, target: str, progress=gr.Progress()):
    """The target's sources ranked by each URIEL feature set and by the adapters' own signal
    (language-vector cosine, or masked-LM loss for a zero-shot target), and Spearman between them."""
    from .ui import _similarity  # the page's cached language-vector similarity

    progress(0, desc="ranking sources by typology and by the adapters")
    own = analysis.rank_sources(stack, target, _similarity(stack))
    rankings = typology.all_rankings(stack, target, own)
    return (f"Sources for **{target}**, most similar first, by each signal:\n\n"
            f"{ranking_table(rankings)}\n\nHow far the rankings agree:\n\n"
            f"{agreement_lines(typology.agreement(rankings))}")


def fill_weights(stack: LanguageStack, target: str, feature_set: str, k: float, temperature: float):
    """The typology merge's weights into the N-way panel (method switched to N-way)."""
    w = typology.merge_weights(stack, target, feature_set, int(k), float(temperature))
    note = (f"Typology merge for **{target}** ({feature_set}, k = {int(k)}, T = {float(temperature):g}): "
            f"`{tasks.formula(w)}`. The N-way panel now holds these weights (press Enter in it to apply).")
    return typology.weights_text(w), "nway", note


def similarity_panel(stack: LanguageStack, target: gr.components.Component, tab) -> None:
    """Inside the Similarity tab: the typology heatmap (feature set dropdown), the rankings by
    each signal and their agreement."""
    gr.Markdown("### Typology (URIEL, from lang2vec) beside the adapters' own similarity")
    with gr.Row():
        fs = gr.Dropdown(FEATURE_CHOICES, value=typology.DEFAULT_FEATURE_SET, label="URIEL feature set",
                         elem_id="typology-set")
        rank = gr.Button("Rank sources by typology and by the adapters", elem_id="typology-rank")
    plot = gr.Plot(elem_id="typology-plot")
    missing = gr.Markdown(elem_id="typology-missing")
    ranks = gr.Markdown(elem_id="typology-ranks")
    heat = _guarded(lambda f: typology_heatmap(stack, f))
    fs.change(heat, fs, [plot, missing], api_name="typology", api_visibility="private")
    tab.select(heat, fs, [plot, missing], api_name="typology_tab", api_visibility="private")
    rank.click(_guarded(lambda t, progress=gr.Progress(): typology_ranks(stack, t, progress)),
               target, ranks, api_name="typology_ranks")


def fill_panel(stack: LanguageStack, target, method, weights_text) -> list:
    """Inside the merge-method accordion: k, T, feature set and the fill button. Returns the
    (feature set, k, T) components: the ``typology`` method's inputs."""
    with gr.Row():
        fs = gr.Dropdown(FEATURE_CHOICES, value=typology.DEFAULT_FEATURE_SET,
                         label="typology merge: URIEL feature set", elem_id="typology-merge-set")
        k = gr.Slider(1, 4, value=typology.DEFAULT_K, step=1, label="k (most similar adapters)",
                      elem_id="typology-k")
        t = gr.Slider(0.01, 1, value=typology.DEFAULT_TEMPERATURE, step=0.01,
                      label="temperature T (wᵢ ∝ exp(simᵢ / T))", elem_id="typology-t")
        fill = gr.Button("Fill typology weights into the N-way panel", elem_id="typology-fill")
    note = gr.Markdown(elem_id="typology-note")
    fill.click(_guarded(lambda tg, f, kk, tt: fill_weights(stack, tg, f, kk, tt)),
               [target, fs, k, t], [weights_text, method, note], api_name="typology_weights")
    return [fs, k, t]
