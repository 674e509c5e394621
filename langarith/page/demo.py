"""``build_demo``: the header, then the tabs, each panel's layout and events; it chains the panels
(what follows a new pair, a new text, a drag and a release) so that no panel imports another."""

from __future__ import annotations

import gradio as gr

from ..model import LanguageStack
from . import answers, compare, flips, header, keep, method, mlm, similarity, sweep
from .common import PRIVATE, Controls, serve


def build_demo(stack: LanguageStack) -> gr.Blocks:
    serve(stack)  # the model handlers' stack, behind the GPU boundary
    c = Controls()
    # analytics_enabled=False: no version check / telemetry thread even without app.py's env setting
    with gr.Blocks(title="langarith: language arithmetic", analytics_enabled=False) as demo:
        header.layout(stack, c)
        with gr.Tabs():
            with gr.Tab("Merge", id="merge"):
                method_panel = method.layout(stack, c)
                compare.layout_text(stack, c)
                shown = compare.layout_predictions(stack)
                flips_panel = flips.layout()
                mlm_panel = mlm.layout()
                shown.update(compare.layout_plots())
            if answers.has_qa(stack):
                with gr.Tab("Question answering", id="qa"):
                    qa_panel = answers.layout(stack)
            with gr.Tab("λ sweep", id="sweep") as sweep_tab:
                sweep_panel = sweep.layout()
            with gr.Tab("Similarity", id="similarity") as sim_tab:
                sim_panel = similarity.layout(stack)
            with gr.Tab("Keep & share", id="share"):
                keep_panel = keep.layout()

        # --- how the panels follow each other ----------------------------------------------
        run = compare.run_event(stack, c, shown)

        def refresh(trigger):
            """After a new pair or text: predictions, then flips and both masked-LM views."""
            trigger.then(**run).then(**flips.flips_event(stack, c, flips_panel, **PRIVATE)) \
                .then(**mlm.live_event(stack, c, mlm_panel, **PRIVATE)) \
                .then(**mlm.heldout_event(stack, c, mlm_panel, **PRIVATE))

        def after_drag(trigger):
            trigger.then(**flips.flips_event(stack, c, flips_panel, api_name="flips_drag", **PRIVATE))

        def after_release(trigger):
            trigger.then(**flips.flips_event(stack, c, flips_panel, api_name="flips")) \
                .then(**mlm.live_event(stack, c, mlm_panel, api_name="mlm_live")) \
                .then(**mlm.heldout_event(stack, c, mlm_panel, api_name="mlm_heldout", **PRIVATE))

        header.wire(stack, c, refresh, demo)
        method.wire(stack, c, method_panel, run)
        compare.wire(stack, c, shown, refresh, after_drag, after_release)
        flips.wire(stack, c, flips_panel, refresh)
        mlm.wire(stack, c, mlm_panel)
        if answers.has_qa(stack):
            answers.wire(stack, c, qa_panel)
        sweep.wire(stack, c, sweep_panel, sweep_tab)
        similarity.wire(stack, c, sim_panel, sim_tab)
        keep.wire(stack, c, keep_panel, run)
    return demo
