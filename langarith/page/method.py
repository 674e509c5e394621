"""The merge-method accordion: the Method radio and one control per ``Method`` field (density,
seed, N-way weights, extrapolation, per-layer λ with its plot, the typology merge's feature set,
k and T, with a button that fills the typology weights into the N-way panel)."""

from __future__ import annotations

import gradio as gr

from .. import plots, share, tasks, typology
from ..model import LanguageStack
from .common import (CPU_LANE, PANEL, PRIVATE, Controls, MethodControls, event, guarded,
                     method_choices)


@guarded
def on_layer_plot(stack: LanguageStack, lam, lam_layers, lam_inv, allow_extrapolation=False):
    """The λ-per-layer plot of the panel's anchors (empty anchors: λ everywhere)."""
    from ..arithmetic import layer_lambdas

    anchors = share.parse_anchors(lam_layers) or [lam]
    lams = layer_lambdas(anchors, stack.n_layers, allow_extrapolation=bool(allow_extrapolation))
    return plots.layer_lambda_figure(lams, lam if lam_inv is None else lam_inv)


def lam_range(extrapolate: bool):
    """Extrapolation widens the slider to [-1, 2]."""
    return gr.update(minimum=-1 if extrapolate else 0, maximum=2 if extrapolate else 1)


@guarded
def fill_weights(stack: LanguageStack, target: str, feature_set: str, k: float, temperature: float):
    """The typology merge's weights into the N-way panel (method switched to N-way)."""
    w = typology.merge_weights(stack, target, feature_set, int(k), float(temperature))
    note = (f"Typology merge for **{target}** ({feature_set}, k = {int(k)}, T = {float(temperature):g}): "
            f"`{tasks.formula(w)}`. The N-way panel now holds these weights (press Enter in it to apply).")
    return typology.weights_text(w), "nway", note


def layout(stack: LanguageStack, c: Controls):
    """The accordion; sets ``c.method`` (the ``Method`` fields' controls). Returns the panel's
    own components (layer plot, typology fill button and note)."""
    d = PANEL
    with gr.Accordion("Merge method", open=False):
        with gr.Row():
            method = gr.Radio(method_choices(), value=d.method, label="Method", elem_id="method")
            density = gr.Slider(0.05, 1, value=d.density, step=0.05, label="density (TIES, DARE)",
                                elem_id="density")
            seed = gr.Number(d.seed, precision=0, label="seed (DARE)", elem_id="seed")
        with gr.Row():
            weights_text = gr.Textbox(d.weights_text, label="N-way weights (up to 4 languages)",
                                      placeholder="en: 0.5, es: 0.3, it: 0.2", elem_id="weights")
            allow_extrapolation = gr.Checkbox(d.allow_extrapolation, label="allow extrapolation (λ outside [0, 1]); "
                                      "results may be unreliable", elem_id="extrapolate")
        with gr.Row():  # per-layer λ: anchors from the bottom layer to the top
            lam_layers = gr.Textbox(d.lam_layers, label=f"per-layer λ anchors, bottom → top "
                                    f"({stack.n_layers} layers; Enter to apply)",
                                    placeholder="0.2, 0.5, 0.8", elem_id="lam-layers")
            lam_inv = gr.Slider(0, 1, value=d.lam_inv, step=0.05, label="λ_inv (invertible "
                                "adapter, per-layer λ)", elem_id="lam-inv")
            layer_plot = gr.Plot(label="λ per layer", elem_id="layer-plot")
        with gr.Row():
            typology_set = gr.Dropdown(typology.feature_set_choices(), value=d.typology,
                                       label="typology merge: URIEL feature set",
                                       elem_id="typology-merge-set")
            k = gr.Slider(1, 4, value=d.k, step=1, label="k (most similar adapters)",
                                   elem_id="typology-k")
            temperature = gr.Slider(0.01, 1, value=d.temperature, step=0.01,
                                   label="temperature T (wᵢ ∝ exp(simᵢ / T))", elem_id="typology-t")
            fill = gr.Button("Fill typology weights into the N-way panel", elem_id="typology-fill")
        note = gr.Markdown(elem_id="typology-note")
    c.method = MethodControls(dict(
        method=method, weights_text=weights_text, density=density, seed=seed,
        allow_extrapolation=allow_extrapolation, lam_layers=lam_layers, lam_inv=lam_inv,
        typology=typology_set, k=k, temperature=temperature))
    return dict(layer_plot=layer_plot, fill=fill, note=note)


def wire(stack: LanguageStack, c: Controls, own: dict, run: dict, after) -> None:
    """``run``: the comparison's event, re-run when a method control changes; ``after(event)``
    chains what follows a comparison (fill-mask)."""
    m = c.method
    for comp in (m.method, m.allow_extrapolation):
        after(comp.change(lam_range, m.allow_extrapolation, c.lam, api_name="lam_range", **CPU_LANE,
                          **PRIVATE).then(**run))
    after(m.density.release(**run))
    after(m.typology.change(**run))
    for comp in (m.k, m.temperature):
        after(comp.release(**run))
    layer_in = [c.lam, m.lam_layers, m.lam_inv, m.allow_extrapolation]
    after(m.lam_layers.submit(**event(on_layer_plot, layer_in, own["layer_plot"]),
                              api_name="layer_plot").then(**run))
    after(m.lam_inv.release(**event(on_layer_plot, layer_in, own["layer_plot"]),
                            api_name="layer_plot_inv", **PRIVATE).then(**run))
    after(m.weights_text.submit(**run))
    after(m.seed.submit(**run))
    own["fill"].click(**event(fill_weights, [c.target, m.typology, m.k, m.temperature],
                              [m.weights_text, m.method, own["note"]]), api_name="typology_weights")
