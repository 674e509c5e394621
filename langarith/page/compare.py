"""The comparison: the text, the formula, the task predictions of A alone, the merge and B alone
(labels or tagged spans), fill-mask, and the per-layer plots of weights and hidden states."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import gradio as gr

from .. import analysis, plots, tasks
from ..arithmetic import pair_weights
from ..loading import InputError
from ..model import LanguageStack
from ..task_kinds import TaskKind
from .common import (BAD_INPUT, CPU_LANE, FALLBACK_TEXT, LINEAR, PRIVATE, WHO, Controls, Method,
                     batch_answer, column_names, each_row, event, first_target, guarded, method_rows,
                     model_handler, page_kind, page_task, per_row, readable)

@dataclass
class Shown:
    """What one comparison shows: formula, the λ it shows, the three label and span columns."""
    formula: str
    lam: float
    labels: list
    spans: list
    notice: str | None = None
    shift: dict | None = None


def _hidden() -> list:
    return [gr.update(visible=False) for _ in WHO]  # one dict each: Gradio consumes them


def _classification(stack, text, target, a, b, lam, task_name, merge) -> Shown:
    cmp = tasks.compare(stack, text, target, b, lam, task_name, merge=merge)
    shown = lam if merge is None else cmp.lam
    names, say = column_names(a, b, shown), readable(stack, task_name)
    labels = [gr.update(value={say(k): p for k, p in zip(cmp.labels, cmp.probs[w])}, label=names[w],
                        visible=True) for w in WHO]
    return Shown(cmp.formula, shown, labels, _hidden(), shift=cmp.hidden_shift)


def _tagging(stack, text, target, a, b, lam, task_name, merge) -> Shown:
    from .. import ner

    lam = tasks.check_lambda(lam)
    cmp = ner.compare_ner(stack, text, target, b, lam, task_name)
    names = column_names(a, b, lam)
    spans = [gr.update(value=cmp.highlighted(w, readable(stack, task_name)), label=names[w], visible=True)
             for w in WHO]
    return Shown(tasks.formula(pair_weights(a, b, lam)), lam, _hidden(), spans, notice=cmp.notice)


def _fill_mask_only(stack, text, target, a, b, lam, task_name, merge) -> Shown:
    lam = tasks.check_lambda(lam)
    return Shown(tasks.formula(pair_weights(a, b, lam)), lam, _hidden(), _hidden())


# The predictions view of each task kind (``task_kinds.KINDS``), and of a profile with no task.
VIEWS: dict[str | None, Callable] = {"classification": _classification, "tagging": _tagging,
                                     None: _fill_mask_only}


def geometry_summary(rows: list[dict], a: str, b: str, lam: float) -> str:
    """The per-layer weights plot in one line of numbers (its caption, for a screen reader)."""
    mean = lambda k: sum(r[k] for r in rows) / len(rows)  # noqa: E731
    cos = [r["cos_AB"] for r in rows]
    return (f"Weights at λ = {lam:.2f}: the merge lies on average {mean('dist_to_A'):.2f} of ‖{a}‖ "
            f"from {a} and {mean('dist_to_B'):.2f} of ‖{b}‖ from {b} over {len(rows)} layer parts; "
            f"cos({a}, {b}) {min(cos):.2f} to {max(cos):.2f}.")


def hidden_summary(shift: list[float], a: str, lam: float) -> str:
    """The hidden-states plot in one line of numbers (its caption, for a screen reader)."""
    names = ["the embeddings"] + [f"layer {i}" for i in range(len(shift) - 1)]
    top = max(range(len(shift)), key=shift.__getitem__)
    return (f"Hidden states on this text at λ = {lam:.2f}: the merge moves them {shift[0]:.2f} of "
            f"{a}'s at the embeddings and {shift[-1]:.2f} at the last layer (most, {shift[top]:.2f}, "
            f"at {names[top]}).")


def plot_views(rows: list[dict], shift: list[float], a: str, b: str, lam: float) -> tuple:
    """The two per-layer plots, each captioned with its summary in numbers."""
    return (gr.update(value=plots.geometry_figure(rows, a, b, lam), label=geometry_summary(rows, a, b, lam)),
            gr.update(value=plots.hidden_shift_figure(shift, a, lam), label=hidden_summary(shift, a, lam)))


def _compare_ensemble(stack, target, source, lam, text, task_name, full: bool):
    """The output ensemble's predictions beside A and B (the middle column), like the merge's."""
    cmp = tasks.compare_ensemble(stack, text, target, source, lam, task_name)
    names, say = column_names(cmp.a, cmp.b, cmp.lam, "output ensemble"), readable(stack, task_name)
    labels = [gr.update(value={say(k): p for k, p in zip(cmp.labels, cmp.probs[w])}, label=names[w],
                        visible=True) for w in WHO]
    merged_says = say(cmp.labels[max(range(len(cmp.labels)), key=cmp.probs["weight_merge"].__getitem__)])
    head = (f"### `{cmp.formula}`\n\nThe weight merge at the same λ predicts **{merged_says}**; "
            f"the ensemble runs the encoder twice (A's stack and B's).")
    if not full:
        return (head, *labels, *_hidden())
    weights = pair_weights(cmp.a, cmp.b, cmp.lam)  # plots: the weight merge at this λ
    rows = analysis.weight_geometry(stack, cmp.a, cmp.b, cmp.lam)
    shift = tasks.hidden_shift(stack, tasks.clean_text(text)[0], cmp.a, weights)
    return (head, *labels, *_hidden(), *plot_views(rows, shift, cmp.a, cmp.b, cmp.lam))


def _view(stack: LanguageStack, target, source, lam, text, method: Method, task_name, full: bool):
    """One visitor's comparison: the formula and the task predictions of A, the merge and B
    (labels or spans); with ``full``, also the weight and hidden-state plots. (Fill-mask is its
    own event, ``fill_view``: the predictions are painted before its three MLM forwards.) The
    predictions come through ``tasks.comparisons`` (a batch of one), so what ``compare_view``
    computed for the whole batch is read back from the stack's memo, under the same key."""
    kind = page_kind(stack, task_name)
    all_methods = kind is not None and kind.all_methods
    if method.method == tasks.ENSEMBLE:
        if not all_methods:
            raise InputError("the output ensemble is shown for classification tasks only for now")
        return _compare_ensemble(stack, target, source, lam, text, task_name, full)
    merge = method.merge(stack, target, source, lam)
    if merge is not None and not all_methods:
        raise InputError("this task merges linearly only (λ·A + (1−λ)·B) for now")
    text, notice = tasks.clean_text(text)
    a, b = tasks.merge_pair(stack, target, source)
    s = VIEWS[kind.name if kind else None](stack, text, target, a, b, lam, task_name, merge)
    notice = s.notice or notice
    head = f"### `{s.formula}`" + (f"\n\n*{notice}*" if notice else "")
    if not full:
        return (head, *s.labels, *s.spans)
    if notice:
        gr.Warning(notice)
    weights = merge if merge is not None else pair_weights(a, b, s.lam)
    shift = s.shift if s.shift is not None else tasks.hidden_shift(stack, text, a, weights)
    rows = analysis.weight_geometry(stack, a, b, s.lam, merge=merge)
    return (head, *s.labels, *s.spans, *plot_views(rows, shift, a, b, s.lam))


def probe(stack: LanguageStack, text, mask_text) -> str:
    """The fill-mask probe: the box's, else the text with a word masked."""
    text, _ = tasks.clean_text(text)
    mtext = mask_text if mask_text and mask_text.strip() else tasks.mask_a_word(text, stack.tokenizer.mask_token)
    return tasks.clean_text(mtext)[0]


def _fill(stack: LanguageStack, target, source, lam, text, mask_text, method: Method, task_name):
    """One visitor's fill-mask: the MLM head's top tokens for the probe under A, the merge (or the
    output ensemble) and B. The probe is the text with a word masked when the box is empty."""
    mtext = probe(stack, text, mask_text)
    if method.method == tasks.ENSEMBLE:
        cmp = tasks.compare_ensemble(stack, text, target, source, lam, task_name, mask_text=mtext)
        return tuple(gr.update(value=dict(cmp.fill_mask[w]), label=f"fill-mask, {n}")
                     for w, n in (("A", cmp.a), ("merged", "ensemble"), ("B", cmp.b)))
    lam = tasks.check_lambda(lam)
    merge = method.merge(stack, target, source, lam)
    a, b = tasks.merge_pair(stack, target, source)
    weights = merge if merge is not None else pair_weights(a, b, lam)
    fills = tasks.fill_mask(stack, [mtext] * 3, [a, weights, b])
    return tuple(gr.update(value=dict(f), label=f"fill-mask, {name}") for f, name in zip(fills, (a, "merged", b)))


@model_handler(duration=20)
@guarded
def on_compare(stack: LanguageStack, target: str, source: str, lam: float, text: str,
               mask_text: str, method: Method = LINEAR, task_name: str | None = None,
               progress=gr.Progress(track_tqdm=True)):
    """The merge (linear by default, or any method of the panel) beside A and B alone: task
    predictions (labels or spans), the weight and hidden-state plots. (A hub profile downloads a
    language's adapter the first time it is picked: its tqdm bar shows here.) ``mask_text`` is
    unused here (fill-mask is ``on_fill_mask``): it keeps the endpoints' inputs as they were."""
    return _view(stack, target, source, lam, text, method, task_name, full=True)


@model_handler(duration=10)
@guarded
def on_fill_mask(stack: LanguageStack, target: str, source: str, lam: float, text: str,
                 mask_text: str, method: Method = LINEAR, task_name: str | None = None):
    """Fill-mask under A, the merge and B: an event of its own after the comparison."""
    return _fill(stack, target, source, lam, text, mask_text, method, task_name)


@model_handler(duration=10)
@guarded
def on_drag(stack: LanguageStack, target: str, source: str, lam: float, text: str, mask_text: str,
            method: Method = LINEAR, task_name: str | None = None):
    """While the slider is dragged: the formula and the three predictions only (A's and B's are
    cached, so one forward); fill-mask and the plots follow on release."""
    return _view(stack, target, source, lam, text, method, task_name, full=False)


# --- the batched handlers: every visitor waiting on an event in one forward pass ------------------


def _linear_rows(stack, methods, task_names) -> dict[int, Callable]:
    """Rows whose merge is the plain λ·A + (1−λ)·B of a task kind with ``comparisons`` (one
    pass for many visitors), and that function; other rows run one at a time."""
    out = {}
    for i, m in enumerate(methods):
        kind = each_row(page_kind, stack, task_names[i])
        if (m.merges_linearly and m.method != tasks.ENSEMBLE and isinstance(kind, TaskKind)
                and kind.comparisons is not None):
            out[i] = kind.comparisons
    return out


def compare_view(stack, target, source, lam, text, mask_text, method, task_name, full: bool) -> list:
    """The comparison of every visitor of a batch (each input a list): each row's answer (a
    tuple of outputs, or its bad-input error). The plain linear merges of a task kind with
    ``comparisons`` run in one forward pass first; each row's view then reads them from the memo."""
    n = len(target)
    source, lam, text, task_name = (per_row(n, v) for v in (source, lam, text, task_name))
    methods = method_rows(method, n)
    fast = _linear_rows(stack, methods, task_name)
    for task in {task_name[i] for i in fast}:
        idx = [i for i in fast if task_name[i] == task]
        fast[idx[0]](stack, [(text[i], target[i], source[i], lam[i]) for i in idx], page_task(stack, task))
    return [each_row(_view, stack, target[i], source[i], lam[i], text[i], methods[i], task_name[i], full)
            for i in range(n)]


@model_handler(duration=30, batched=True)
def on_compare_rows(stack: LanguageStack, target, source, lam, text, mask_text,
                    method: Method = LINEAR, task_name=None):
    """``on_compare`` for every visitor waiting on the event (each input a list): the plain
    linear merges of the batch in one forward pass, one merge per row."""
    return batch_answer(compare_view(stack, target, source, lam, text, mask_text, method, task_name, full=True), 9)


@model_handler(duration=20, batched=True, served_first=True)
def on_predict_rows(stack: LanguageStack, target, source, lam, text, mask_text,
                    method: Method = LINEAR, task_name=None):
    """What the page sends on a drag, a release, a new text or pair: the formula and the three
    predictions only, for every visitor waiting. The plots, fill-mask and the text's loss (below
    the first screen) follow in the details step (``demo.on_details_rows``), so the predictions
    are never behind them."""
    return batch_answer(compare_view(stack, target, source, lam, text, mask_text, method, task_name, full=False), 7)


def fill_view(stack, target, source, lam, text, mask_text, method, task_name) -> list:
    """Fill-mask of every visitor of a batch (each input a list): the linear merges in one pass
    first (A's and B's are in the memo), then each row's answer reads them back from the memo."""
    n = len(target)
    source, lam, text, mask_text, task_name = (per_row(n, v) for v in (source, lam, text, mask_text, task_name))
    methods = method_rows(method, n)
    fast = []
    for i, m in enumerate(methods):
        if m.merges_linearly and m.method != tasks.ENSEMBLE:
            try:
                a, b = tasks.merge_pair(stack, target[i], source[i])
                fast.append((i, probe(stack, text[i], mask_text[i]),
                             pair_weights(a, b, tasks.check_lambda(lam[i]))))
            except BAD_INPUT:
                pass  # that row's own call below reports it
    if fast:
        try:
            tasks.fill_mask(stack, [p for _, p, _ in fast], [w for _, _, w in fast])
        except BAD_INPUT:
            pass  # e.g. a probe whose mask was cut off: each row on its own says which
    return [each_row(_fill, stack, target[i], source[i], lam[i], text[i], mask_text[i], methods[i],
                     task_name[i]) for i in range(n)]


@model_handler(duration=20, batched=True)
def on_fill_mask_rows(stack: LanguageStack, target, source, lam, text, mask_text,
                      method: Method = LINEAR, task_name=None):
    """``on_fill_mask`` batched."""
    return batch_answer(fill_view(stack, target, source, lam, text, mask_text, method, task_name), 3)


ANIMATE_LAMBDAS = [round(0.1 * i, 1) for i in range(11)]
ANIMATE_PAUSE_S = 0.3  # between frames, so that a class can follow


@model_handler(duration=lambda *_, **__: 5 + 2 * len(ANIMATE_LAMBDAS), frame_pause=ANIMATE_PAUSE_S)
@guarded
def on_animate(stack: LanguageStack, target: str, source: str, text: str, mask_text: str,
               method: Method = LINEAR, task_name: str | None = None):
    """Walk λ from 0 to 1: each frame sets the slider (the curve's marker follows it) and shows
    the formula and the three predictions (one forward a frame: A's and B's are cached). The
    frames are computed in one GPU call; the page plays them ``ANIMATE_PAUSE_S`` apart."""
    for lam in ANIMATE_LAMBDAS:
        yield (lam, *_view(stack, target, source, lam, text, method, task_name, full=False))


def layout_text(stack: LanguageStack, c: Controls) -> None:
    """The text and the target's examples (sets ``c.text``, ``c.example``)."""
    first = first_target(stack)
    first_text = (stack.bundle.languages[first].examples or (FALLBACK_TEXT,))[0]
    with gr.Row():
        c.text = gr.Textbox(value=first_text, label="Text — Shift+Enter to run", lines=2, max_lines=4,
                            elem_id="text", scale=3)
        c.example = gr.Dropdown(list(stack.bundle.languages[first].examples), value=first_text or None,
                                label="Examples in the target language", scale=2, elem_id="example")


def layout_predictions(stack: LanguageStack) -> dict:
    """Formula and the three prediction columns, A | merged | B (labels and spans)."""
    head = gr.Markdown(elem_id="formula")
    # Both kinds of prediction are rendered when the bundle has the task: the first comparison
    # hides the other kind (a component first rendered hidden did not reliably come back in
    # Gradio 6.17 when the task picker switched).
    kinds = {t.kind for t in stack.bundle.tasks.values()}
    with gr.Row(elem_id="preds"):
        labels = [gr.Label(label=f"{w} alone" if w != "merged" else w, num_top_classes=3,
                           show_heading=False, elem_id=f"pred-{w.lower()}", visible="classification" in kinds or not kinds)
                  for w in WHO]
    with gr.Row(elem_id="spans-row"):  # entities, with the spans the merge changed marked
        spans = [gr.HighlightedText(label=f"{w} alone" if w != "merged" else w,
                                    elem_id=f"spans-{w.lower()}", combine_adjacent=True,
                                    visible="tagging" in kinds) for w in WHO]
    return dict(head=head, labels=labels, spans=spans)


def layout_fill(stack: LanguageStack, c: Controls) -> dict:
    """The fill-mask probe and its top tokens under A, the merge and B (sets ``c.mask_text``)."""
    first = first_target(stack)
    first_text = (stack.bundle.languages[first].examples or (FALLBACK_TEXT,))[0]
    mask = stack.tokenizer.mask_token
    gr.Markdown("### Fill-mask: the MLM head through A, the merge and B")
    c.mask_text = gr.Textbox(value=tasks.mask_a_word(first_text, mask),
                             label=f"Fill-mask probe (uses {mask}; Enter to run)", elem_id="mask-text")
    with gr.Row():
        fills = [gr.Label(label=f"fill-mask, {w}", num_top_classes=5, elem_id=f"fill-{e}")
                 for w, e in (("A", "a"), ("merged", "merged"), ("B", "b"))]
    return dict(fills=fills)


def layout_plots() -> dict:
    gr.Markdown("### How the merge moved the weights and the hidden states, layer by layer")
    geometry = gr.Plot(label="Per-layer weights", elem_id="geometry")
    hidden = gr.Plot(label="Per-layer hidden states", elem_id="hidden")
    linear_api = gr.Button(visible=False)  # the /compare endpoint: the five plain inputs
    return dict(geometry=geometry, hidden=hidden, linear_api=linear_api)


def inputs(c: Controls) -> list:
    """The comparison's inputs: pair, text, probe, the method panel's controls, the task."""
    return [*c.pair, c.text, c.mask_text, *c.method.inputs, c.task]


def outputs(p: dict) -> list:
    return [p["head"], *p["labels"], *p["spans"], p["geometry"], p["hidden"]]


def run_event(stack: LanguageStack, c: Controls, p: dict) -> dict:
    """The predictions, as a step after any change (the details step follows them)."""
    return event(on_predict_rows, inputs(c), outputs(p)[:7], api_name="refresh", **PRIVATE)


def fill_event(stack: LanguageStack, c: Controls, p: dict, **kw) -> dict:
    """Fill-mask, as a step after the comparison (or on its own, for a new probe)."""
    return event(on_fill_mask_rows, inputs(c), p["fills"], **{"api_name": "fill_mask_step", **PRIVATE, **kw})


QUIET = dict(trigger_mode="always_last", show_progress="hidden")


def wire(stack: LanguageStack, c: Controls, p: dict, follow, animate) -> None:
    """The slider: predictions follow it while dragging (only the latest pending update runs:
    no queue of stale work), the full comparison on release; ``follow.text``/``follow.lam``
    chain what follows a new text or a released λ; ``animate``: the tour's button."""
    c.lam.input(**event(on_predict_rows, inputs(c), outputs(p)[:7]), api_name="compare_drag",
                **QUIET, **PRIVATE)
    follow.lam(c.lam.release(**event(on_predict_rows, inputs(c), outputs(p)[:7]),
                             api_name="compare_recipe", **QUIET), released=True)
    p["linear_api"].click(**event(on_compare_rows, inputs(c)[:5], outputs(p)), api_name="compare")
    p["linear_api"].click(**event(on_fill_mask_rows, inputs(c)[:5], p["fills"]), api_name="fill_mask")
    mask = stack.tokenizer.mask_token
    follow.text(c.example.input(lambda t: (t, tasks.mask_a_word(t or "", mask)), c.example,
                                [c.text, c.mask_text], api_name="pick_example", **CPU_LANE, **PRIVATE))
    follow.text(c.text.submit(lambda t: tasks.mask_a_word(t or "", mask), c.text, c.mask_text,
                              api_name="mask_probe", **CPU_LANE, **PRIVATE))
    c.mask_text.submit(**fill_event(stack, c, p, api_name="fill_mask_probe"))
    frames = [c.lam, p["head"], *p["labels"], *p["spans"]]
    follow.lam(animate.click(**event(on_animate, [c.target, c.source, c.text, c.mask_text,
                                                         *c.method.inputs, c.task], frames),
                             api_name="animate", **PRIVATE))
