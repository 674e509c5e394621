"""``build_demo``: the header, the first screen (predictions beside the held-out curve), the tabs;
each panel's layout and events; and how the panels follow each other (what runs after a new
pair, a new text, a drag and a λ set), so that no panel imports another."""

from __future__ import annotations

import gradio as gr

from .. import opening_curves
from ..model import LanguageStack
from . import checks  # noqa: I001 (issue 41: every door)
from . import answers, compare, flips, header, keep, method, mlm, room, screen, similarity, sweep, tour
from .common import LINEAR, PRIVATE, Controls, Method, batch_answer, event, model_handler, serve

# The page's one stylesheet (Gradio 6 takes it at ``launch(css=CSS)``). The tagged spans read as a
# paragraph: Gradio lays each span out as a flex item of its own, a line each, which pushed the
# merged spans below a 1280 × 720 screen (issue 27); a type badge never breaks inside a word.
CSS = """
#spans-a .textfield, #spans-merged .textfield, #spans-b .textfield {
  display: block; line-height: 1.6; word-break: normal; }
#spans-a .label, #spans-merged .label, #spans-b .label { white-space: nowrap; }
#spans-a .token.highlighted, #spans-merged .token.highlighted, #spans-b .token.highlighted {
  margin-left: 0; margin-right: 0.25em; }
""" + screen.CSS  # the phone's layout and what keeps Gradio's components accessible

# What every ``launch`` of the page passes (Gradio 6 takes the stylesheet and the head at launch):
# the head script gives the λ slider its value in words.
LAUNCH = dict(css=CSS, head=screen.HEAD)


DETAILS_BATCH = 8  # visitors a details batch: about a second of work, so predictions wait little


@model_handler(duration=40, batched=DETAILS_BATCH, latest_only=True)
def on_details_rows(stack: LanguageStack, target, source, lam, text, mask_text,
                    method: Method = LINEAR, task_name=None):
    """What follows the predictions, in one event (one round trip): fill-mask under A, the merge
    and B, the masked-LM loss of the text over λ, and the per-layer plots of weights and hidden
    states; every visitor waiting in one batch. The merged forward of the plots comes from the
    memo the predictions filled."""
    fills = compare.fill_view(stack, target, source, lam, text, mask_text, method, task_name)
    lives = mlm.live_rows(stack, target, source, lam, text)
    views = compare.compare_view(stack, target, source, lam, text, mask_text, method, task_name, full=True)
    errors = [e for e in (*fills, *lives, *views) if isinstance(e, Exception)]
    if len(target) == 1 and errors:
        raise gr.Error(str(errors[0])) from None
    rows = []
    for f, l, v in zip(fills, lives, views):
        f = tuple(gr.update() for _ in range(3)) if isinstance(f, Exception) else f
        l = (gr.update(), f"**Not run:** {l}") if isinstance(l, Exception) else l
        v = (gr.update(), gr.update()) if isinstance(v, Exception) else v[-2:]
        rows.append((*f, *l, *v))
    return batch_answer(rows, 7)


class Follow:
    """What runs after an event, by what it changed. The model steps are chained (one visitor's
    predictions, then one details step for fill-mask, the masked-LM loss of its text and the
    per-layer plots: the predictions are painted first); the precomputed ones (flips, held-out
    curve, sweep tab) are CPU-only events of their own that never wait behind the model."""

    def __init__(self, run: dict, after: dict, precomputed: list[dict], on_lam: list[dict]):
        self.run, self.after = run, after
        self.precomputed, self.on_lam = precomputed, on_lam
        self._n = 0  # λ-setting events chained so far (their private steps' names)

    def compared(self, dep) -> None:
        """After predictions re-run by the method panel or a loaded recipe: the details."""
        dep.then(**self.after)

    def pair(self, dep) -> None:
        """A new pair (target, source, task): everything."""
        dep.then(**self.run).then(**self.after)
        for step in self.precomputed:
            dep.then(**step)

    def text(self, dep) -> None:
        """A new text: its predictions, then the details."""
        dep.then(**self.run).then(**self.after)

    def lam(self, dep, released: bool = False) -> None:
        """λ set by the page (a tour step, the animation) or released on the slider (whose event
        is the predictions themselves): the predictions, then the details; the flips."""
        # After the slider's release, the details step is public (``/details``: what a class
        # benchmark sends); everywhere else it is a private step.
        (dep if released else dep.then(**self.run)).then(
            **(self.after if not released else {**self.after, "api_name": "details", "api_visibility": "public"}))
        self._n += 1
        for step in self.on_lam:  # public only after the slider's release; a name of its own each
            dep.then(**(step if released else {**step, **PRIVATE, "api_name": f"{step['api_name']}_after_set_{self._n}"}))


def build_demo(stack: LanguageStack) -> gr.Blocks:
    serve(stack)  # the model handlers' stack, behind the GPU boundary
    opening_curves.seed(stack)  # the opening texts' live curves: a class's first release is cheap
    c = Controls()
    # analytics_enabled=False: no version check / telemetry thread even without app.py's env setting
    with gr.Blocks(title="langarith: language arithmetic", analytics_enabled=False) as demo:
        header.layout(stack, c)
        with gr.Row(equal_height=False, elem_id="first-screen"):  # predictions beside the tour and curve
            with gr.Column(scale=5):
                compare.layout_text(stack, c)
                shown = compare.layout_predictions(stack)
            with gr.Column(scale=4):
                tour_panel = tour.layout()
                c.step = tour_panel["step"]
                room_panel = room.layout_questions()  # the tour's questions, and a class room
                mlm_panel = mlm.layout_heldout()
        with gr.Tabs():
            with gr.Tab("Merge: details", id="merge"):
                method_panel = method.layout(stack, c)
                flips_panel = flips.layout()
                mlm_panel.update(mlm.layout_live())
                shown.update(compare.layout_fill(stack, c))
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
                room_opener = room.layout_open()

        # --- how the panels follow each other ----------------------------------------------
        run = compare.run_event(stack, c, shown)
        heldout = mlm.heldout_event(stack, c, mlm_panel, api_name="mlm_heldout", **PRIVATE)
        follow = Follow(
            run=run,
            after=event(on_details_rows, compare.inputs(c),
                        [*shown["fills"], *mlm.outputs_live(mlm_panel), shown["geometry"], shown["hidden"]],
                        api_name="details_step", show_progress="hidden", **PRIVATE),
            precomputed=[flips.flips_event(stack, c, flips_panel, **PRIVATE), heldout,
                         *sweep.shipped_events(stack, c, sweep_panel)],
            on_lam=[flips.flips_event(stack, c, flips_panel, api_name="flips")])
        # The curve's marker follows every λ the slider shows: dragged, released, set by the tour.
        c.lam.change(**heldout, trigger_mode="always_last", show_progress="hidden")
        c.lam.input(**flips.flips_event(stack, c, flips_panel, api_name="flips_drag", **PRIVATE),
                    trigger_mode="always_last", show_progress="hidden")

        header.wire(stack, c, follow, demo, tour.link_step_event(c, tour_panel))
        method.wire(stack, c, method_panel, run, follow.compared)
        compare.wire(stack, c, shown, follow, tour_panel["animate"])
        tour.wire(stack, c, tour_panel, follow.lam)
        flips.wire(stack, c, flips_panel, follow)
        mlm.wire(stack, c, mlm_panel)
        if answers.has_qa(stack):
            answers.wire(stack, c, qa_panel)
        sweep.wire(stack, c, sweep_panel, sweep_tab)
        similarity.wire(stack, c, sim_panel, sim_tab)
        keep.wire(stack, c, keep_panel, run, follow.compared)
        room.wire(stack, c, room_panel, room_opener, [mlm_panel["heldout"], mlm_panel["heldout_note"]], demo)
    return checks.install(demo)  # every event's inputs checked: after the last one is declared
