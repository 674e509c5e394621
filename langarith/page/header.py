"""The page's header: title, the pickers (target, source B, λ, task), what setting the pair is
in, the premise of the task, and a link's restored view."""

from __future__ import annotations

import gradio as gr

from .. import lambda_rules, results, share, tasks
from ..arithmetic import METHODS
from ..loading import InputError
from ..model import LanguageStack
from .common import (BAD_INPUT, CPU_LANE, FALLBACK_TEXT, LAM_STEP, PRIVATE, Controls, event, first_target, guarded,
                     language_choices, page_task, pts, task_choices)

TITLE = "# langarith · language arithmetic: `merged = λ·A + (1−λ)·B`"
LINE = ("MAD-X language adapters merged without training "
        "([Klimaszewski et al., COLING 2025](https://arxiv.org/abs/2404.15737))")
INTRO = """\
Pick a target language (one without an adapter of its own is marked *zero-shot*: A is then
English, the task's training language; a target with its own adapter is the *enhancement*
setting: A is that adapter), a related source language B and λ. The page merges the two adapters
live and shows the task predictions of the merged stack beside each adapter alone; the curve
beside them is the masked-LM loss of held-out text of the target language over λ (no labels
needed): where it dips below both ends, the merge models the language better than either
adapter. Below: the dev-set items whose prediction the merge changes, the masked-LM loss of the
text in the box, fill-mask, and how the merge moved the weights and hidden states layer by
layer. The tabs hold the λ sweep with bootstrap intervals, language similarity and typology,
and the export of the merged adapter.
"""


# A low-resource variant's arm, in the setting line: which of the two lessons it belongs to.
ARM_LINE = {"converged": "trained to convergence on it (the paper's setting: little text)",
            None: "with little training (equal compute for either share, not the paper's setting)"}


def _premise(stack: LanguageStack, task_name: str | None) -> dict | None:
    """The premise's numbers: own adapter vs English on each language's test set."""
    prem = results.bundle_results(stack).get("premise") or {}
    # measured on the bundle's own (topic) task: shown beside that task only
    if not prem or page_task(stack, task_name) != stack.bundle.default_task:
        return None
    diffs = {c: v["own_minus_en"] for c, v in prem.items()}
    return dict(lo=min(d["points"] for d in diffs.values()), hi=max(d["points"] for d in diffs.values()),
                clear=[c for c, d in diffs.items() if d["ci95"][0] > 0], k=len(diffs),
                n=next(iter(prem.values()))["n"])


def premise_line(stack: LanguageStack, task_name: str | None) -> str:
    """The premise in one line, beside the task."""
    p = _premise(stack, task_name)
    if p is None:
        return ""
    return (f"**Premise:** own adapter vs English: {pts(p['lo'])} to {pts(p['hi'])} points on this "
            "task; read its gains with their intervals.")


def premise_title(stack: LanguageStack, task_name: str | None) -> str:
    """The premise's accordion title: its numbers, in a few words."""
    p = _premise(stack, task_name)
    if p is None:
        return "Premise"
    return f"Premise: own adapter vs English, {pts(p['lo'])} to {pts(p['hi'])} points (why it matters)"


def premise_note(stack: LanguageStack, task_name: str | None) -> str:
    """What a reader must know before reading any gain: how much this task depends on the
    language adapter at all (own adapter vs the English one, on each language's test set)."""
    p = _premise(stack, task_name)
    if p is None:
        return ""
    return (f"On this task, a language's own adapter scores {pts(p['lo'])} to {pts(p['hi'])} "
            f"accuracy points against the English adapter on that language's test set "
            f"(n = {p['n']} each; clearly better, 95 % CI above 0, for "
            f"{', '.join(p['clear']) if p['clear'] else 'none'} of {p['k']}). Where the own adapter "
            "adds little, no mix of two adapters can move accuracy much either: small gains are "
            "read with their intervals. What the merge does to the language itself shows in the "
            "masked-LM curve, which needs no labels.")


@guarded
def on_target(stack: LanguageStack, target: str, current: str | None = None, note: str | None = None,
              lesson: dict | None = None):
    """A new target: the suggested source, its examples, a first text on which the merge changes
    the prediction (from the dev set), and whether this is zero-shot or enhancement. A source
    restored from a link (``note``) is kept when it suits the target, and a class link's text
    (``lesson``, from ``on_url``) replaces the first text."""
    bundle = stack.bundle
    a = tasks.baseline_language(stack, target)
    source = tasks.suggested_source(stack, target)
    restored = (note or "").startswith("Restored")
    if restored and current in bundle.adapter_languages() and current != a:
        source = current
    ex = list(bundle.language(target).examples)
    first = results.first_example(stack, target)
    where = ""
    linked = (lesson or {}).get("text") if restored else None
    if linked:
        where = " The text is **the class link's.**"
    elif first:
        where = " The first text is **from the dev set; the merge changes this prediction.**"
        ex = [first] + [e for e in ex if e != first]
    text = linked or (ex[0] if ex else FALLBACK_TEXT)
    lang = bundle.language(target)
    setting = "zero-shot" if a != target else "enhancement"
    if lang.is_variant:
        setting = (f"low-resource: this {bundle.language(lang.text_language).name} adapter saw only "
                   f"{lang.tokens:,} tokens of text, {ARM_LINE.get(lang.arm, ARM_LINE[None])}; the "
                   f"full one is `{lang.text_language}`")
    suggested = tasks.suggested_source(stack, target)
    info = f"Baseline A = **{a}** ({setting}); source B = **{source}**" + \
        (" (the suggested one)." if source == suggested else f" (suggested: {suggested}).") + where
    return (gr.update(value=source), gr.update(choices=ex, value=text if text in ex else None),
            text, tasks.mask_a_word(text, stack.tokenizer.mask_token), info)


@guarded
def on_label_free(stack: LanguageStack, target: str, source: str | None, task_name: str | None = None,
                  rule: str = "mlm"):
    """"Use the label-free λ": the slider goes to the λ of the chosen label-free rule
    (``lambda_rules``: ``mlm``, the masked-LM minimum of the target's unlabelled held-out text, or
    ``entropy``, the task head's least uncertain λ on its unlabelled dev texts), and one line names
    the rule and says how that λ did on the test set against the dev-chosen one. Where the bundle
    lacks the data, λ stays and the line says why."""
    r = lambda_rules.label_free_lambda(stack, target, source, task_name, rule=rule or "mlm")
    return (r["lam"] if r["ok"] else gr.update()), r["message"]


def on_url(stack: LanguageStack, request: gr.Request):
    """``?target=pt&source=es&lam=0.7`` restores a view (``&lam_layers=0.2,0.8&lam_inv=0.5`` the
    per-layer method with its anchors); a class link adds ``&task=..&example=2`` (or
    ``&text=..``) ``&step=3``: the task, the text and the tour step (``lesson``, read by
    ``on_target`` and the tour). A bad link says why and is ignored."""
    params = dict(request.query_params) if request else {}
    keep = (gr.update(),) * 8
    if "target" not in params:
        return (*keep, "")
    try:
        r = share.from_query(params)
        stack.bundle.language(r.target)
        if r.source and not stack.bundle.language(r.source).has_adapter:
            raise InputError(f"{r.source} has no adapter")
        layered = METHODS[r.method].per_layer  # a link carries per-layer λ only as its view
        if layered:
            from ..arithmetic import layer_lambdas

            layer_lambdas(r.lam_layers, stack.n_layers)  # bad anchors: refused here, with the reason
        lesson = _lesson(stack, r.target, share.lesson_from_query(params))
        # No source in the link: the target's suggested one (not whatever the page showed before)
        return (r.target, r.source or tasks.suggested_source(stack, r.target), r.lam,
                "layer_gradient" if layered else gr.update(),
                ", ".join(f"{t:g}" for t in r.lam_layers) if layered else gr.update(),
                r.lam_inv if layered and r.lam_inv is not None else gr.update(),
                lesson["task"] or gr.update(), lesson,
                f"Restored from the link: {r.target}" + (f", {lesson['what']}." if lesson["what"] else "."))
    except BAD_INPUT as e:
        gr.Warning(f"ignored the link's parameters: {e}")
        return (*keep, f"Link ignored: {e}")


def _lesson(stack: LanguageStack, target: str, lesson: share.Lesson) -> dict:
    """A class link's task, text and step, checked against this bundle: the page's state."""
    names = [name for _, name in task_choices(stack)]
    if lesson.task is not None and lesson.task not in names:
        raise InputError(f"unknown task {lesson.task!r} in the link; this page has: {', '.join(names)}")
    text = lesson.text
    if lesson.example is not None:
        ex = stack.bundle.language(target).examples
        if lesson.example >= len(ex):
            raise InputError(f"the link's example {lesson.example} is not one of {target}'s "
                             f"{len(ex)} examples (0 to {len(ex) - 1})")
        text = ex[lesson.example]
    what = [w for w, v in (("the task", lesson.task), ("the text", text),
                           (f"tour step {lesson.step}", lesson.step)) if v is not None]
    return dict(task=lesson.task, text=text, step=lesson.step, what=", ".join(what))


def layout(stack: LanguageStack, c: Controls) -> None:
    """Title in one line (the longer text one click away), the pickers, the task with its
    premise beside it, the pair's setting."""
    bundle = stack.bundle
    first = first_target(stack)
    shown = task_choices(stack)
    first_task = shown[0][1] if shown else None
    # Every pixel of height goes to the first screen (a 1280 × 720 projector): one line per row,
    # each row's parts in columns (so that an empty note takes width, not height). The rows'
    # elem_ids: the phone's layout lifts their parts out (``screen.PHONE_CSS``).
    with gr.Row(elem_id="header-row"):
        with gr.Column(scale=3, min_width=420):
            gr.Markdown(TITLE, elem_id="title")
        with gr.Column(scale=2, min_width=280):
            gr.Markdown(f"{LINE} · bundle **{bundle.name}** on `{stack.device}`", elem_id="intro-line")
        with gr.Column(scale=1, min_width=180):
            with gr.Accordion("What this page shows", open=False, elem_id="about"):
                gr.Markdown(INTRO)
    with gr.Row(elem_id="pickers"):
        c.target = gr.Dropdown(language_choices(stack), value=first, label="Target language",
                               elem_id="target", scale=3)
        c.source = gr.Dropdown(language_choices(stack, with_adapter_only=True),
                               value=tasks.suggested_source(stack, first),
                               label="Source language B (related, with an adapter)", elem_id="source",
                               scale=3)
        c.lam = gr.Slider(0, 1, value=0.5, step=LAM_STEP, label="λ (weight of A)", elem_id="lam", scale=4)
        swept = any(results.bundle_results(stack).get(s) for s in results.SETTINGS)
        with gr.Column(scale=1, min_width=150, visible=swept):  # a hub profile ships no sweeps
            c.label_free = gr.Button("use the label-free λ", size="sm", elem_id="label-free")
            # A dropdown, not a radio: two stacked radio items made the header row taller (issue 27)
            c.label_free_rule = gr.Dropdown([("masked-LM loss", "mlm"), ("head entropy", "entropy")],
                                            value="mlm", show_label=False, container=False,
                                            elem_id="label-free-rule")
    with gr.Row():  # the task, and its premise (its numbers in the title, the why one click away)
        with gr.Column(scale=5):
            c.task = gr.Radio(shown, value=first_task, show_label=False, container=False, elem_id="task",
                              visible=len(shown) > 1)
        with gr.Column(scale=3, min_width=240):
            with gr.Accordion(premise_title(stack, first_task), open=False, elem_id="premise-more",
                              visible=bool(premise_note(stack, first_task))) as c.premise_box:
                c.premise = gr.Markdown(premise_line(stack, first_task), elem_id="premise")
                c.premise_more = gr.Markdown(premise_note(stack, first_task), elem_id="premise-note")
    with gr.Row():  # the pair's setting, and the notes of the moment beside it
        with gr.Column(scale=3):
            c.setting = gr.Markdown(elem_id="setting")
        with gr.Column(scale=2):
            c.label_free_note = gr.Markdown(elem_id="label-free-note")
            c.link_note = gr.Markdown(elem_id="link-note")
    c.lesson = gr.State()  # a class link's task, text and tour step (on_url)

def target_event(stack: LanguageStack, c: Controls) -> dict:
    """A new target (or task): the suggested source, the first text and the setting."""
    return event(on_target, [c.target, c.source, c.link_note, c.lesson],
                 [c.source, c.example, c.text, c.mask_text, c.setting])


def wire(stack: LanguageStack, c: Controls, follow, demo: gr.Blocks, link_step: dict) -> None:
    """``follow.pair(event)`` appends what follows a new pair (the other panels' steps);
    ``link_step``: the tour's step of a class link, taken before the page's first comparison."""
    follow.pair(c.target.change(**target_event(stack, c), api_name="set_target"))
    gr.on([c.target.input, c.task.input], lambda: "", None, c.link_note, api_name="clear_link",
          **CPU_LANE, **PRIVATE)
    c.task.change(lambda t: (premise_line(stack, t), premise_note(stack, t),
                             gr.update(visible=bool(premise_note(stack, t)), label=premise_title(stack, t))),
                  c.task,
                  [c.premise, c.premise_more, c.premise_box], api_name="task_note", **CPU_LANE, **PRIVATE)
    follow.pair(c.task.change(**target_event(stack, c), api_name="task_target", **PRIVATE))
    follow.pair(c.source.input(lambda: None, None, None, api_name="source_changed", **CPU_LANE,
                               **PRIVATE))
    # The label-free λ is set like a tour step (the comparison and the flips follow); its line
    # belongs to one pair and task, so a new one clears it.
    follow.lam(c.label_free.click(**event(on_label_free, [c.target, c.source, c.task, c.label_free_rule],
                                          [c.lam, c.label_free_note]), api_name="label_free_lambda"))
    gr.on([c.target.change, c.source.change, c.task.change, c.label_free_rule.change], lambda: "", None,
          c.label_free_note,
          api_name="clear_label_free", **CPU_LANE, **PRIVATE)
    m = c.method
    load = demo.load(**event(on_url, None, [c.target, c.source, c.lam, m.method, m.lam_layers,
                                            m.lam_inv, c.task, c.lesson, c.link_note]),
                     api_name="from_link", **PRIVATE)
    follow.pair(load.then(**link_step).then(**target_event(stack, c), api_name="target_on_load", **PRIVATE))
