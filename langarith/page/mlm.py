"""How well the merge models the language (masked-LM loss, no labels): the precomputed curve over
λ on held-out target-language text, the same curve live for the text in the box, and the
weight merge against the output ensemble on that text."""

from __future__ import annotations

import gradio as gr

from .. import plots, results, tasks
from ..lambda_rules import nearest_on_grid
from ..model import LanguageStack
from .common import BAD_INPUT, LAM_GRID, Controls, batch_answer, each_row, event, guarded, model_handler, per_row


@guarded
def on_mlm_heldout(stack: LanguageStack, target: str, source: str, lam: float):
    """The precomputed masked-LM curve of held-out target-language text, shown at once."""
    b = source or tasks.suggested_source(stack, target)
    curve = results.mlm_summary(stack, target, b)
    if curve is None:
        return None, (f"No precomputed masked-LM curve for {target} with B = {b}; "
                      "the live curve for the text in the box is beside it.")
    h = curve["halves"]
    s = h["second"]
    best = min(s["a"], s["b"])
    verdict = ("lower than both single adapters" if s["merged"] < best else
               "not lower than the better single adapter")
    md = (f"λ chosen on the first half of the held-out {target} text: **{h['best_lam_first']:g}**; "
          f"on the second half the merge's loss is **{s['merged']:.3f}** vs A = {curve['a']} {s['a']:.3f}, "
          f"B = {curve['b']} {s['b']:.3f}: {verdict} ({s['merged'] - best:+.3f}; "
          f"{curve['n_texts']} paragraphs no adapter was trained on, {curve['n_tokens']} masked tokens).")
    return plots.mlm_figure(curve, f"held-out {target} text", lam, height=FIRST_SCREEN_PLOT_HEIGHT,
                            compact=True), md


def _grid(lam: float) -> list[float]:
    """Every λ the slider can show, and this one (the ensemble's comparison)."""
    return sorted({*LAM_GRID, round(lam, 6)})


def _nearest_on_grid(lam: float) -> float:
    """The slider's λ nearest ``lam``: the live curve is the text's curve on the slider's grid,
    computed once per text (about 100 scoring passes; shipped for the opening texts) and then
    served to every visitor's release from the memo. A λ typed off the grid (an API caller's)
    is read off the curve at its nearest grid point, and the line says so, instead of costing
    each visitor five more masked passes of its own."""
    return LAM_GRID[nearest_on_grid(lam, LAM_GRID)]


@model_handler(duration=20)
@guarded
def on_mlm_live(stack: LanguageStack, target: str, source: str, lam: float, text: str,
                progress=gr.Progress()):
    """The masked-LM loss of the text in the box at every λ of the slider's grid (computed once
    per text) and the current one."""
    progress(0, desc="masked-LM loss over λ")
    return live_view(stack, target, source, lam, text, progress=lambda i, n, m: progress(i / n, desc=m))


def live_requests(stack: LanguageStack, target: str, source: str, lam: float, text: str) -> list[tuple]:
    """The masked-LM scoring passes ``live_view`` needs (for a batch to make together)."""
    texts, _ = tasks.mlm_text(text)
    a, b = tasks.merge_pair(stack, target, source)
    tasks.check_lambda(lam)
    return tasks.mlm_curve_requests(texts, a, b, LAM_GRID)


def live_view(stack: LanguageStack, target: str, source: str, lam: float, text: str, progress=None):
    """The live curve and its line (the passes come from the memo where a batch made them)."""
    texts, _ = tasks.mlm_text(text)
    a, b = tasks.merge_pair(stack, target, source)
    lam = tasks.check_lambda(lam)
    curve = tasks.mlm_curve(stack, texts, a, b, LAM_GRID, progress=progress)
    loss = {p["lam"]: p["loss"] for p in curve["points"]}
    at = _nearest_on_grid(lam)
    where = f"λ = {at:.2f}" if at == round(lam, 6) else f"λ = {at:.2f}, the slider's point nearest {lam:g}"
    md = (f"Masked-LM loss of this text ({curve['n_tokens']} tokens, every 5th masked in turn): "
          f"A = {a} **{loss[1.0]:.3f}** · merged ({where}) **{loss[at]:.3f}** · "
          f"B = {b} **{loss[0.0]:.3f}** (lower: the stack predicts the text's own words better).")
    return plots.mlm_figure(curve, "Masked-LM loss of this text over λ", at), md


def live_rows(stack: LanguageStack, target, source, lam, text) -> list:
    """The live curves of a batch: every row's uncached scoring passes in shared forwards."""
    n = len(target)
    source, lam, text = (per_row(n, v) for v in (source, lam, text))
    need = []
    for i in range(n):
        got = each_row(live_requests, stack, target[i], source[i], lam[i], text[i])
        need += [] if isinstance(got, Exception) else got
    if need:
        try:
            tasks.mlm_token_losses(stack, need)
        except BAD_INPUT:  # one row's text cannot be scored: each row on its own below, which says so
            pass
    return [each_row(live_view, stack, target[i], source[i], lam[i], text[i]) for i in range(n)]


@model_handler(duration=30, batched=True)
def on_mlm_live_rows(stack: LanguageStack, target, source, lam, text):
    """``on_mlm_live`` batched (the public ``/mlm_live``)."""
    return batch_answer(live_rows(stack, target, source, lam, text), 2, message_at=1)  # 0: the plot


@model_handler(duration=30)  # two stacks per λ
@guarded
def on_mlm_ensemble(stack: LanguageStack, target: str, source: str, lam: float, text: str):
    """Masked-LM loss of the text over λ: weight merge vs output ensemble (mixed distributions)."""
    texts, _ = tasks.mlm_text(text)
    a, b = tasks.merge_pair(stack, target, source)
    lam = tasks.check_lambda(lam)
    merge = tasks.mlm_curve(stack, texts, a, b, _grid(lam))
    ens = tasks.ensemble_mlm_curve(stack, texts, a, b, _grid(lam))
    at = {p["lam"]: p["loss"] for p in ens["points"]}[round(lam, 6)]
    mt = {p["lam"]: p["loss"] for p in merge["points"]}[round(lam, 6)]
    md = (f"At λ = {lam:.2f}: weight merge **{mt:.3f}**, output ensemble **{at:.3f}** "
          f"(equal at λ = 0 and 1, where both are one adapter).")
    return plots.merge_vs_ensemble_mlm_figure(merge, ens, "Masked-LM loss of this text: merge vs "
                                              "ensemble", lam), md


FIRST_SCREEN_PLOT_HEIGHT = 250  # px: with the tour above it, inside a 1280 × 720 projector screen


def layout_heldout() -> dict:
    """The first screen's curve: held-out text of the target over λ, the slider's λ marked."""
    heldout = gr.Plot(label="masked-LM loss of held-out text over λ (lower: the merge models the "
                      "language better)", elem_id="mlm-heldout")
    heldout_note = gr.Markdown(elem_id="mlm-heldout-note")
    return dict(heldout=heldout, heldout_note=heldout_note)


def layout_live() -> dict:
    """Below: the same curve for the text in the box, and merge vs output ensemble."""
    gr.Markdown("### The masked-LM loss of the text in the box over λ")
    with gr.Row():
        live = gr.Plot(label="this text", elem_id="mlm-live")
        ens = gr.Plot(plots.placeholder_figure("merge vs ensemble: press the button below"),
                      label="merge vs ensemble", elem_id="mlm-ensemble")
    live_api = gr.Button(visible=False)  # the /mlm_live endpoint
    with gr.Row():
        live_note = gr.Markdown(elem_id="mlm-live-note")
        with gr.Column():
            ens_run = gr.Button("Masked-LM loss of this text: weight merge vs output ensemble",
                                elem_id="mlm-ensemble-run", size="sm")
            ens_note = gr.Markdown(elem_id="mlm-ensemble-note")
    return dict(live=live, live_note=live_note, ens_run=ens_run, ens=ens, ens_note=ens_note,
                live_api=live_api)


def outputs_live(p: dict) -> list:
    return [p["live"], p["live_note"]]


def heldout_event(stack: LanguageStack, c: Controls, p: dict, **kw) -> dict:
    """Precomputed: a CPU-only event, never behind the model."""
    return event(on_mlm_heldout, c.pair, [p["heldout"], p["heldout_note"]], **kw)


def wire(stack: LanguageStack, c: Controls, p: dict) -> None:
    p["live_api"].click(**event(on_mlm_live_rows, [*c.pair, c.text], outputs_live(p)), api_name="mlm_live")
    p["ens_run"].click(**event(on_mlm_ensemble, [*c.pair, c.text], [p["ens"], p["ens_note"]]),
                       api_name="mlm_ensemble")
