"""Question answering (profiles with an ``extractive_qa`` task, e.g. xlmr: M2QA,
Stack(language or merged, domain, qa)): the answer span under A alone, the merge and B alone."""

from __future__ import annotations

import gradio as gr

from ..model import LanguageStack
from .common import (FALLBACK_TEXT, PRIVATE, WHO, Controls, column_names, event, first_target, guarded,
                     model_handler)


def has_qa(stack: LanguageStack) -> bool:
    return any(t.kind == "extractive_qa" for t in stack.bundle.tasks.values())


@model_handler(duration=15)
@guarded
def on_qa(stack: LanguageStack, target: str, source: str, lam: float, question: str, context: str):
    """Extractive QA: A's, the merge's and B's answers."""
    from .. import qa

    qa_task = next(t for t in stack.bundle.tasks.values() if t.kind == "extractive_qa")
    cmp = qa.compare_qa(stack, question, context, target, source, lam, qa_task.name)
    names = column_names(cmp.a, cmp.b, cmp.lam)
    return (f"### `{cmp.formula}`" + (f"\n\n*{cmp.notice}*" if cmp.notice else ""),
            *(gr.update(value=cmp.answers[w]["text"],
                        label=f"{names[w]} · p = {cmp.answers[w]['score']:.3f}") for w in WHO))


def layout(stack: LanguageStack) -> dict:
    first_text = (stack.bundle.languages[first_target(stack)].examples or (FALLBACK_TEXT,))[0]
    gr.Markdown("Extractive QA: the answer span in the context under A alone, the "
                "merge at the current λ, and B alone (\"no answer\" when the null "
                "score wins, as in SQuAD 2.0).")
    question = gr.Textbox(label="Question", elem_id="qa-question", placeholder="Who met whom?")
    context = gr.Textbox(value=first_text, label="Context", lines=4, elem_id="qa-context")
    run = gr.Button("Answer", elem_id="qa-run")
    head = gr.Markdown(elem_id="qa-formula")
    with gr.Row():
        answers = [gr.Textbox(label=w, interactive=False, elem_id=f"qa-{w.lower()}") for w in WHO]
    return dict(question=question, context=context, run=run, head=head, answers=answers)


def wire(stack: LanguageStack, c: Controls, p: dict) -> None:
    qa = event(on_qa, [*c.pair, p["question"], p["context"]], [p["head"], *p["answers"]])
    p["run"].click(**qa, api_name="qa")
    p["question"].submit(**qa, api_name="qa_submit", **PRIVATE)
