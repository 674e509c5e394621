"""A short guided tour for a class: a few steps a teacher clicks through on the current target —
A alone, B alone, the merge at the dev-chosen λ, where the merge changes predictions, the
masked-LM curve — each setting the controls and saying in one sentence what to look at; and
an "animate λ" button (the comparison panel walks λ from 0 to 1; ``demo`` wires it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import gradio as gr

from .. import results, tasks
from ..loading import InputError
from ..model import LanguageStack
from .common import PRIVATE, Controls, event, guarded, page_kind, page_task


@dataclass
class Lesson:
    """What the tour's sentences need for one pair: A, B, the dev-chosen λ, the held-out curve."""
    target: str
    a: str
    b: str
    dev_lam: float | None
    curve: dict | None  # results.mlm_summary

    @property
    def best(self) -> float:
        """The λ the dev set chose (else the held-out curve's first half, else 0.5)."""
        if self.dev_lam is not None:
            return self.dev_lam
        return self.curve["halves"]["best_lam_first"] if self.curve else 0.5


def lesson(stack: LanguageStack, target: str, source: str | None, task_name: str | None) -> Lesson:
    a, b = tasks.merge_pair(stack, target, source)
    kind = page_kind(stack, task_name)
    dev = kind.dev_lambda(stack, target, a, b, page_task(stack, task_name)) if kind else None
    return Lesson(target, a, b, dev, results.mlm_summary(stack, target, b))


def _say_a(ls: Lesson) -> str:
    return (f"λ = 1: the merge is A = {ls.a} alone — the left column is the baseline; the middle "
            "one equals it.")


def _say_b(ls: Lesson) -> str:
    return (f"λ = 0: the merge is B = {ls.b} alone, the related language's adapter — compare the "
            "right column with the left one.")


def _say_merge(ls: Lesson) -> str:
    where = "chosen on the dev set" if ls.dev_lam is not None else "the held-out curve's choice"
    return (f"λ = {ls.best:g} ({where}): the middle column is one adapter made from {ls.a} and "
            f"{ls.b} with no training — does it side with A, with B, or with neither?")


def _say_flips(ls: Lesson) -> str:
    return ("The text now is a dev item the merge labels differently from A or B; the table under "
            "“Where the merge matters” lists the dev items the merge changes, its wins first.")


def _say_curve(ls: Lesson) -> str:
    if not ls.curve:
        return "This pair has no precomputed masked-LM curve; the live one for the text is below."
    s, lam = ls.curve["halves"]["second"], ls.curve["halves"]["best_lam_first"]
    below = s["merged"] < min(s["a"], s["b"])
    return (f"The curve: held-out {ls.target} text is predicted {'better' if below else 'no better'} "
            f"by the merge at λ = {lam:g} (loss {s['merged']:.3f}) than by A ({s['a']:.3f}) or "
            f"B ({s['b']:.3f}) — the effect of language arithmetic, with no labels.")


@dataclass(frozen=True)
class Step:
    title: str
    lam: Callable[[Lesson], float]
    say: Callable[[Lesson], str]
    changed_item: bool = False  # put a dev item the merge changes into the text box


STEPS = (Step("1 · A alone", lambda ls: 1.0, _say_a),
         Step("2 · B alone", lambda ls: 0.0, _say_b),
         Step("3 · Merge", lambda ls: ls.best, _say_merge),
         Step("4 · Changes", lambda ls: ls.best, _say_flips, changed_item=True),
         Step("5 · Curve", lambda ls: (ls.curve["halves"]["best_lam_first"] if ls.curve else ls.best),
              _say_curve))


def _changed_item(stack, target, source, lam, task_name) -> str | None:
    """An eval item whose prediction the merge at ``lam`` changes (its wins first), else None."""
    kind = page_kind(stack, task_name)
    if kind is None or kind.changed_texts is None:
        return None
    try:
        texts = kind.changed_texts(stack, target, source, lam, page_task(stack, task_name))
    except InputError:
        return None
    return texts[0] if texts else None


@guarded
def on_step(stack: LanguageStack, step: int, target: str, source: str, task_name: str | None = None):
    """One tour step: λ (and for the flips step, the text), and the sentence to read."""
    s = STEPS[int(step)]
    ls = lesson(stack, target, source, task_name)
    lam = round(float(s.lam(ls)), 2)
    text = _changed_item(stack, target, ls.b, lam, task_name) if s.changed_item else None
    keep = gr.update()
    return (lam, text or keep, tasks.mask_a_word(text, stack.tokenizer.mask_token) if text else keep,
            f"**{s.title}.** {s.say(ls)}", int(step) + 1)


@guarded
def on_link_step(stack: LanguageStack, lesson: dict | None, target: str, source: str, note: str,
                 task_name: str | None = None):
    """A class link's tour step (1-based), before the page's first comparison: its λ and
    sentence, and (step 4) its changed dev item as the lesson's text unless the link brings one.
    A step the tour lacks is ignored with the reason in the link's note."""
    keep = gr.update()
    step = (lesson or {}).get("step")
    if step is None or not note.startswith("Restored"):
        return (keep,) * 5
    if not 1 <= step <= len(STEPS):
        why = f"the link's tour step {step} is not one of the tour's 1 to {len(STEPS)}"
        gr.Warning(f"ignored the link's tour step: {why}")
        return keep, keep, keep, f"{note.rstrip('.')} (its tour step is ignored: {why}).", keep
    lam, text, _, said, shown = on_step(stack, step - 1, target, source, task_name)
    if isinstance(text, str) and not lesson.get("text"):
        lesson = {**lesson, "text": text}
    return lam, said, shown, keep, lesson


def layout() -> dict:
    with gr.Row(elem_id="tour"):
        buttons = [gr.Button(s.title, size="sm", elem_id=f"tour-{i + 1}", min_width=60)
                   for i, s in enumerate(STEPS)]
        animate = gr.Button("▶ animate", size="sm", elem_id="animate", min_width=60)
    steps = [gr.Number(i, precision=0, visible=False) for i in range(len(STEPS))]  # each button's step
    step = gr.State()  # the step the tour shows last (1-based): a class link carries it
    note = gr.Markdown("**Tour for a class:** click the steps in order; each sets λ and says in one "
                       "sentence what to look at.",
                       elem_id="tour-note")
    return dict(buttons=buttons, steps=steps, animate=animate, note=note, step=step)


def wire(stack: LanguageStack, c: Controls, p: dict, follow_lam) -> None:
    """``follow_lam(event)``: what follows a λ set by the page (comparison, flips, live curve)."""
    for i, (button, step) in enumerate(zip(p["buttons"], p["steps"])):
        follow_lam(button.click(**event(on_step, [step, c.target, c.source, c.task],
                                        [c.lam, c.text, c.mask_text, p["note"], c.step]),
                                api_name=f"tour_{i + 1}", **PRIVATE))


def link_step_event(c: Controls, p: dict) -> dict:
    """A class link's tour step, between the link's restore and the page's first comparison
    (``header.wire`` chains it)."""
    return event(on_link_step, [c.lesson, c.target, c.source, c.link_note, c.task],
                 [c.lam, p["note"], c.step, c.link_note, c.lesson], api_name="tour_from_link", **PRIVATE)
